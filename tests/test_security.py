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


def test_tls_verification_cannot_be_turned_off():
    sources = {path: path.read_text() for path in (ROOT / "alpolicy").rglob("*.py")}
    offenders = [str(p) for p, text in sources.items() if re.search(r"verify\s*=\s*False|CERT_NONE|_create_unverified_context", text)]
    assert offenders == []
    from alpolicy.http import HttpClient

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
