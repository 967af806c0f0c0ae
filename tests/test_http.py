"""The HTTP client: environment handling (proxies read once per host, TLS verification on) and
its reading of ``Retry-After``, end to end against the loopback Roboflow server."""

from __future__ import annotations

import requests

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.io.http import HttpClient, retry_after_seconds, server_message

from .conftest import make_frames


def test_proxies_come_from_the_environment_once_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    client = HttpClient()
    assert client._proxies_for("https://api.roboflow.com/dataset/x/upload")["https"] == "http://proxy.internal:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://changed:1")
    assert client._proxies_for("https://api.roboflow.com/other")["https"] == "http://proxy.internal:3128"  # cached
    assert client._proxies_for("http://127.0.0.1:9001/model/1") == {}  # NO_PROXY honoured
    client.close()


def test_tls_verification_stays_on_and_a_ca_bundle_is_honoured(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert HttpClient().session.verify is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    assert HttpClient().session.verify == "/etc/ssl/corp.pem"


def test_a_malformed_retry_after_is_ignored_and_the_request_retried(roboflow, env, tmp_path):
    """``Retry-After: soon`` on a 429 (inference and upload): backoff instead, no crash."""
    frames = tmp_path / "frames"
    make_frames(frames, 3, seed=5)
    for route in ("infer", "upload"):
        roboflow.set_faults(route, throttle_every=1, retry_after="soon", max_faults=1)
    options = RunOptions(journal=None, progress=False, concurrency=1)
    options.model_options.retry_backoff = options.destination_options.retry_backoff = 0.01
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                          destination="roboflow:later", options=options)
    assert (report.failed, report.pending, report.sent) == (0, 0, 3), report.failures
    assert report.retries == 2
    for route in ("infer", "upload"):
        stats = roboflow.requests[route]
        assert stats.faults == {"throttle": 1} and stats.by_status == {429: 1, 200: 3} and stats.total == 4
    assert sorted(image["name"] for image in roboflow.images("later")) == [p.name for p in sorted(frames.iterdir())]


def test_retry_after_is_seconds_or_an_http_date_and_anything_else_is_absent():
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 UTC
    assert retry_after_seconds("3", 120, now) == 3.0 and retry_after_seconds(" 0.25 ", 120, now) == 0.25
    assert retry_after_seconds("9" * 400, 120, now) == 120  # a huge wait is capped
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", 120, now) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 -0000", 120, now) == 30.0  # no zone: UTC
    assert retry_after_seconds("Wed, 21 Oct 2015 07:27:00 GMT", 120, now) == 0.0  # the past: no wait
    assert retry_after_seconds("Thu, 22 Oct 2015 07:28:00 GMT", 120, now) == 120
    for malformed in (None, "", "soon", "-5", "nan", "inf", "-inf", "1e3", "0x10", "Wed, 99 Oct 2015"):
        assert retry_after_seconds(malformed, 120, now) is None, malformed


def answer(status: int, body: str, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code, response._content, response.encoding = status, body.encode(), "utf-8"
    response.headers["Content-Type"] = content_type
    return response


def test_one_reader_of_error_bodies_knows_every_services_shape():
    shapes = {
        '{"error": {"message": "Unknown project.", "type": "GraphMethodException"}}': "Unknown project.",  # Roboflow API
        '{"message": "Invalid image"}': "Invalid image",  # Roboflow inference
        '{"detail": "Not found."}': "Not found.",  # Label Studio
        '{"detail": "Validation error", "validation_errors": {"non_field_errors": ["a", "b"], "title": "too long"}}':
            "a; b title: too long",
        '["just", "a list"]': "['just', 'a list']",
        "{}": "no message",
        "": "no message",
        "  Bad\n gateway  ": "Bad gateway",
    }
    for body, expected in shapes.items():
        assert server_message(answer(400, body)) == expected, body
    assert server_message(answer(502, "<!DOCTYPE html><html><body>nginx</body></html>", "text/html")) == "(an HTML page)"
