"""No secret leaks; TLS verification cannot be switched off; policies are data, never code."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from pathlib import Path

import pytest

import alpolicy
from alpolicy import AuthError, Policy, PolicyError, RunOptions

from .cli import alpolicy as alpolicy_cli
from .conftest import API_KEY, make_frames
from .corpus.predictions import echoing_answer

ROOT = Path(__file__).resolve().parents[1]


def every_file_under(*roots: Path) -> dict[Path, str]:
    return {path: path.read_bytes().decode("latin-1") for root in roots for path in root.rglob("*") if path.is_file()}


def test_the_api_key_appears_in_no_artefact_of_a_run(roboflow, env, tmp_path, caplog):
    frames = tmp_path / "frames"
    make_frames(frames, 12, seed=4)
    (frames / "broken.jpg").write_text("not an image")
    roboflow.set_faults("upload", error_every=2)  # retries are logged
    roboflow.set_faults("infer", reset_every=4)
    state = tmp_path / "state"
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", "roboflow:q", "--journal",
                          str(state / "journal.sqlite"), "--report", str(tmp_path / "report"), "--api-key", API_KEY, env=env)
    assert result.code == 1 and "broken.jpg" in result.out
    with caplog.at_level(logging.DEBUG, logger="alpolicy"):  # the library too, with its debug logging on
        options = RunOptions(journal=str(state / "lib.sqlite"), progress=False, decisions_log=str(state / "lib.jsonl"))
        options.model_options.retry_backoff = options.destination_options.retry_backoff = 0.01
        alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="folder:" + str(tmp_path / "out"),
                     options=options)
    artefacts = every_file_under(state, tmp_path / "report", tmp_path / "out")
    artefacts[Path("stdout")], artefacts[Path("stderr")], artefacts[Path("log")] = result.out, result.err, caplog.text
    assert len(artefacts) > 10 and any("retrying" in text for text in (caplog.text,))
    leaking = [str(path) for path, text in artefacts.items() if API_KEY in text]
    assert leaking == []


def test_a_refused_key_is_never_quoted_in_the_error_or_its_traceback(roboflow, env, tmp_path, monkeypatch):
    secret = "rf_wrong_but_secret_key_991"
    monkeypatch.setenv("ROBOFLOW_API_KEY", secret)
    frames = tmp_path / "frames"
    make_frames(frames, 2)
    with pytest.raises(AuthError) as caught:
        alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="roboflow:q",
                     options=RunOptions(journal=None, progress=False))
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert secret not in text and "HTTP 401" in text


def straddling(secret: str, cuts: tuple[int, ...] = (200, 300, 500), head: str = "proxy error: ") -> str:
    """An error body quoting ``secret`` across each of ``cuts`` (half of it either side): a
    message cut there before redaction would keep the secret's first half unmasked."""
    text = head
    for cut in cuts:
        text += "." * (cut - len(secret) // 2 - len(text)) + secret
    return text + " (end of page)"


def leaks(secret: str, text: str) -> bool:
    """Whether ``text`` holds the secret or any prefix of it of 8 characters or more."""
    return secret[:8] in text


def test_a_key_crossing_the_cut_of_an_error_body_is_masked_whole(roboflow, env, tmp_path, caplog):
    """The body of an error is redacted before it is cut, in every message it reaches."""
    caplog.set_level(logging.INFO, logger="alpolicy")  # the retries' log lines quote it too
    frames = tmp_path / "frames"
    make_frames(frames, 8, seed=6)
    state = tmp_path / "state"
    state.mkdir()
    for body in (straddling(API_KEY), {"message": straddling(API_KEY)}):  # a text page, a JSON message
        assert leaks(API_KEY, str(body))
        roboflow.reset()
        roboflow.set_faults("upload", down=True, error_body=body)
        name = "text" if isinstance(body, str) else "json"
        options = RunOptions(journal=str(state / f"{name}.sqlite"), progress=False, concurrency=1,
                             decisions_log=str(state / f"{name}.jsonl"), max_consecutive_failures=3)
        options.destination_options.attempts, options.destination_options.retry_backoff = 2, 0.01
        options.model_options.extra = {"task": "object-detection"}  # no metadata read: the root request is the destination's
        report = alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                              destination="roboflow:q", options=options)
        uploads = roboflow.requests["upload"]
        assert report.status == "aborted" and report.pending >= 3 and uploads.total >= 2 * 3 and set(uploads.by_status) == {503}
        assert "HTTP 503: proxy error: ..." in report.message  # the body reached the message...
        journal = b"".join(path.read_bytes() for path in state.glob(f"{name}.sqlite*"))
        texts = {"summary": report.summary(), "report": str(report.to_json()), "message": report.message,
                 "journal": journal.decode("latin-1"), "decisions log": (state / f"{name}.jsonl").read_text(),
                 "log": caplog.text}
        assert all("proxy error: ..." in text for text in texts.values()), texts  # ...and every artefact
        assert [where for where, text in texts.items() if leaks(API_KEY, text)] == [], name

        # The same body stopping the run at its first request: the exception and its traceback.
        roboflow.set_faults("root", down=True, error_body=body)
        with pytest.raises(alpolicy.ServiceError) as caught:
            alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="roboflow:q",
                         options=options)
        text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert "checking the API key failed after 2 attempts: HTTP 503: proxy error: ..." in text
        assert not leaks(API_KEY, text), text


def test_tls_verification_cannot_be_turned_off():
    sources = {path: path.read_text() for path in (ROOT / "alpolicy").rglob("*.py")}
    offenders = [str(p) for p, text in sources.items() if re.search(r"verify\s*=\s*False|CERT_NONE|_create_unverified_context", text)]
    assert offenders == []
    from alpolicy.io.http import HttpClient

    assert HttpClient().session.verify is not False


def test_a_policy_is_data_nothing_in_it_is_imported_or_executed(tmp_path):
    marker = tmp_path / "pwned"
    hostile = {
        "version": 1,
        "name": f"__import__('os').system('touch {marker}')",
        "detection": [{"rule": "os.system", "cmd": f"touch {marker}"}],
        "image": {"rule": "alpolicy_example_rule.plugin"},
        "sampling": [{"rule": "random", "rate": 0.5, "seed": "{{7*7}}"}],
    }
    before = set(sys.modules)
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(hostile)
    assert "unknown detection rule 'os.system'" in str(caught.value)
    assert not marker.exists() and set(sys.modules) - before <= {"difflib"}


def test_the_roboflow_key_given_on_the_command_line_is_never_sent_to_label_studio(tmp_path):
    """--api-key is for Roboflow: a run into Label Studio must not use it as a Label Studio token."""
    import http.server
    import json
    import threading

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append(self.headers.get("Authorization") or "")
            body = json.dumps({"detail": "nope"}).encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    frames = tmp_path / "frames"
    make_frames(frames, 1)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = alpolicy_cli("run", str(frames), "--model", "replay:sidecar", "--to", "labelstudio:1", "--labelstudio-url", url,
                          "--api-key", API_KEY, "--journal", str(tmp_path / "j.sqlite"),
                          env={"LABEL_STUDIO_API_KEY": "ls-token-1234"})
    server.shutdown()
    assert result.code == 2 and "refused the legacy API token" in result.err and "check LABEL_STUDIO_API_KEY" in result.err
    assert seen and all(API_KEY not in header for header in seen)
    assert all("ls-token-1234" in header for header in seen)


DEBUG_RUN = r"""
import io, logging, os, sys
stream = io.StringIO()
logging.basicConfig(level=logging.DEBUG, stream=stream, format="%(name)s %(levelname)s %(message)s")
import alpolicy
from alpolicy import Policy, RunOptions
key = os.environ["ROBOFLOW_API_KEY"]
options = RunOptions(journal=None, progress=False)
options.destination_options.retry_backoff = options.model_options.retry_backoff = 0.01
alpolicy.run(sys.argv[1], Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="roboflow:q", options=options)
logging.getLogger("alpolicy.x").warning("a child logger with the key %s in its arguments", key)
logging.getLogger("alpolicy.x.y").info("a grandchild with the key " + key + " in its message")
logging.getLogger("someone.else").debug("a foreign logger: %r", {"api_key": key})
try:
    raise RuntimeError("the key in an exception: " + key)
except RuntimeError:
    logging.getLogger("urllib3").exception("a traceback")
logging.getLogger("alpolicy").debug("stack", stack_info=True)
logging.getLogger("someone.else").warning("a malformed format %d", key)  # logging reports it on stderr
sys.stdout.write(stream.getvalue())
"""


def test_no_logger_at_any_level_sees_the_key_with_debug_logging_on_at_the_root(roboflow, env, tmp_path):
    """logging.basicConfig(level=DEBUG) is what users do when something goes wrong: urllib3 then
    logs every URL it requests, and Roboflow's URLs carry ``api_key=``."""
    frames = tmp_path / "frames"
    make_frames(frames, 6, seed=9)
    roboflow.set_faults("upload", error_every=3)  # a retry is logged too
    import os
    import subprocess

    result = subprocess.run([sys.executable, "-c", DEBUG_RUN, str(frames)], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The test sees what it must hide: urllib3's request lines, each of the records above.
    assert re.search(r'urllib3\.connectionpool DEBUG .*"POST /vehicles/3\?api_key=\*\*\*&', output), output
    assert "a child logger with the key *** in its arguments" in output
    assert "a grandchild with the key *** in its message" in output
    assert "a foreign logger: {'api_key': '***'}" in output
    assert "RuntimeError: the key in an exception: ***" in output
    assert roboflow.requests["upload"].total > 6
    assert "--- Logging error ---" in result.stderr and "Message: 'a malformed format %d'" in result.stderr
    assert API_KEY not in output


def test_no_repr_shows_a_secret():
    from alpolicy import DestinationOptions, ModelOptions
    from alpolicy.backends.roboflow import RoboflowInference
    from alpolicy.destinations.roboflow import RoboflowDestination

    model, destination = ModelOptions(api_key=API_KEY), DestinationOptions(api_key=API_KEY)
    texts = [repr(model), repr(destination), repr(RunOptions(model_options=model, destination_options=destination))]
    backend = RoboflowInference("vehicles/3", model)
    sink = RoboflowDestination("q", destination)
    texts += [repr(backend.params), repr(vars(backend)), repr(vars(sink))]
    assert all(API_KEY not in text for text in texts), texts
    assert backend.params["api_key"] == API_KEY  # still the key where it is used


def test_a_key_echoed_inside_a_successful_prediction_is_never_stored_nor_sent(roboflow, env, tmp_path):
    import json

    frames = tmp_path / "frames"
    make_frames(frames, 3, seed=9)
    roboflow.add_model("vehicles", 3, answer=echoing_answer)
    take_all = tmp_path / "take-all.json"
    take_all.write_text('{"version": 1, "image": {"rule": "detection_count", "min": 1}}')
    runs = {}
    for name, destination in (("roboflow", "roboflow:dest"), ("folder", f"folder:{tmp_path / 'queue'}")):
        state = tmp_path / f"state-{name}"
        result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", destination, "--policy", str(take_all),
                              "--journal", str(state / "journal.sqlite"), "--no-progress", env=env)
        assert result.code == 0, result.err
        runs[name] = result
    assert len(roboflow.images("dest")) == 3 and roboflow.requests["infer"].total == 6

    artefacts = every_file_under(tmp_path / "state-roboflow", tmp_path / "state-folder", tmp_path / "queue")
    assert any(path.name == "journal.sqlite" for path in artefacts) and any(path.suffix == ".jsonl" for path in artefacts)
    annotations = roboflow.annotations("dest")
    assert sum(len(calls) for calls in annotations.values()) == 3
    artefacts[Path("server: annotations and their request bodies")] = json.dumps(annotations)
    artefacts[Path("server: images and their metadata")] = json.dumps(roboflow.images("dest"))
    for name, result in runs.items():
        artefacts[Path(f"{name}: stdout and stderr")] = result.out + result.err
    leaking = [str(path) for path, text in artefacts.items() if API_KEY in text]
    assert leaking == []
    # The fields are kept, masked: the record stays whole, only the secret is gone.
    for calls in annotations.values():
        (call,) = calls
        label = json.loads(call["annotation_file"])
        assert label["debug_request"] == "POST https://serverless.roboflow.com/vehicles/3?api_key=***&confidence=40"
        (detection,) = label["predictions"]
        assert detection["detection_id"] == "d-***" and detection["debug"]["headers"] == ["Authorization: Bearer ***"]
        assert (detection["x"], detection["confidence"], detection["class"]) == (40, 0.9, "car")


def test_a_prediction_is_redacted_where_it_enters_and_copied_only_then():
    from alpolicy import Prediction

    clean = {"image": {"width": 96, "height": 72}, "inference_id": "i-2",
             "predictions": [{"x": 4, "y": 4, "width": 2, "height": 2, "confidence": 0.5, "class": "car", "detection_id": "a"}]}
    prediction = Prediction.from_json(clean)
    assert prediction.detections is clean["predictions"]  # nothing to mask: no copy
    echoed = {**clean, "note": f"key={API_KEY}", "predictions": [*clean["predictions"], {**clean["predictions"][0], "class": API_KEY}]}
    prediction = Prediction.from_json(echoed)
    assert prediction.extra["note"] == "key=***" and prediction.detections[1]["class"] == "***"
    assert prediction.detections[0] is clean["predictions"][0] and echoed["predictions"][1]["class"] == API_KEY  # the caller's dict is untouched
