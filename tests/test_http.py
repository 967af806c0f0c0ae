"""The HTTP client's environment handling: proxies read once per host, TLS verification on."""

from __future__ import annotations

from alpolicy.http import HttpClient


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
