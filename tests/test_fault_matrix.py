"""The fault matrix: every fault the loopback Roboflow server can inject, end to end through the
pipeline, each asserting what the destination holds and what the journal says.

Figures (asserted below, quoted in RELIABILITY.md): 7 fault kinds, 0 images lost, 0 duplicates.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.journal import Journal

from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

FRAMES = 24
PROJECT = "faults"
#: Faults injected by each test, written to test-artifacts/fault-tally.json (RELIABILITY.md quotes it).
TALLY: dict[str, int] = {}


def tally(name: str, roboflow) -> None:
    TALLY[name] = sum(sum(roboflow.requests[route].faults.values()) for route in ("infer", "upload", "annotate"))


def triage(folder: Path, tmp_path: Path, **tweaks) -> alpolicy.RunReport:
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=4)
    options.model_options.retry_backoff = options.destination_options.retry_backoff = 0.01
    options.model_options.attempts = options.destination_options.attempts = tweaks.pop("attempts", 12)
    for key, value in tweaks.items():
        setattr(options, key, value)
    return alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                        destination=f"roboflow:{PROJECT}", options=options)


def assert_exactly_once(roboflow, folder: Path, tmp_path: Path) -> None:
    """The destination holds every qualifying image once, each pre-labelled; the journal agrees."""
    expected = sorted(expected_uploads(roboflow, folder, {}))
    tally(f"{len(TALLY)}", roboflow)
    images = roboflow.images(PROJECT)
    assert sorted(image["name"] for image in images) == expected, "an image was lost or sent twice"
    annotations = roboflow.annotations(PROJECT)
    assert all(annotations.get(image["id"]) for image in images), "an image arrived without its pre-label"
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts(f"roboflow:{PROJECT}") == {"sent": len(expected)}
    journal.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    frames = tmp_path / "frames"
    make_frames(frames, FRAMES, seed=8)
    return frames


@pytest.mark.parametrize(
    ("route", "fault"),
    [
        ("infer", {"error_every": 3}),
        ("upload", {"error_every": 2, "error_status": 502}),
        ("annotate", {"error_every": 3, "error_status": 500}),
        ("infer", {"throttle_every": 4, "retry_after": 0.2}),
        ("upload", {"throttle_every": 3, "retry_after": 0.2}),
        ("infer", {"reset_every": 3}),
        ("upload", {"reset_every": 2, "max_faults": 4}),
        ("upload", {"lose_response_every": 2, "max_faults": 4}),
        ("annotate", {"lose_response_every": 2, "max_faults": 4}),
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(f"{k}={v}" for k, v in value.items()),
)
def test_transient_faults_lose_nothing_and_send_nothing_twice(roboflow, env, folder, tmp_path, route, fault):
    roboflow.set_faults(route, **fault)
    report = triage(folder, tmp_path)
    assert report.failed == 0 and report.pending == 0
    assert sum(roboflow.requests[route].faults.values()) >= 2, "the fault was never injected"
    assert_exactly_once(roboflow, folder, tmp_path)


def test_retry_after_is_honoured(roboflow, env, folder, tmp_path):
    roboflow.set_faults("infer", throttle_every=1, retry_after=0.5, max_faults=1)
    started = time.monotonic()
    report = triage(folder, tmp_path, concurrency=1)
    assert report.failed == 0 and time.monotonic() - started >= 0.5
    assert report.retries == 1


def test_a_response_slower_than_the_timeout_on_upload_is_retried_into_a_duplicate(roboflow, env, folder, tmp_path):
    roboflow.set_faults("upload", slow_every=2, slow_delay=1.0, max_faults=3)  # stored, then answered too late
    report = alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination=f"roboflow:{PROJECT}",
                          options=_options(tmp_path, timeout=0.4))
    assert report.failed == 0 and roboflow.requests["upload"].faults == {"slow": 3}
    assert_exactly_once(roboflow, folder, tmp_path)


def _options(tmp_path: Path, timeout: float) -> RunOptions:
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=4)
    options.destination_options.timeout = timeout
    options.destination_options.retry_backoff = options.model_options.retry_backoff = 0.01
    return options


def test_the_destination_down_for_the_whole_run_leaves_everything_pending_for_the_next(roboflow, env, folder, tmp_path):
    roboflow.set_faults("upload", down=True)
    first = triage(folder, tmp_path, attempts=2, max_consecutive_failures=1000, retry_for=0.2, retry_backoff=0.05)
    qualifying = len(expected_uploads(roboflow, folder, {}))
    assert first.sent == 0 and first.pending == qualifying and first.failed == 0 and first.exit_code == 1
    assert roboflow.images(PROJECT) == []
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts(f"roboflow:{PROJECT}") == {"pending": qualifying}
    journal.close()
    roboflow.clear_faults()
    calls = roboflow.requests["infer"].total
    second = triage(folder, tmp_path)
    assert second.sent == qualifying and roboflow.requests["infer"].total == calls  # predictions reused
    assert_exactly_once(roboflow, folder, tmp_path)


def test_a_destination_that_keeps_failing_stops_the_run_early_and_loses_nothing(roboflow, env, folder, tmp_path):
    roboflow.set_faults("upload", down=True)
    report = triage(folder, tmp_path, attempts=1, max_consecutive_failures=3)
    assert report.status == "aborted" and "they stay pending: run again" in (report.message or "")
    roboflow.clear_faults()
    triage(folder, tmp_path)
    assert_exactly_once(roboflow, folder, tmp_path)


def test_inference_down_decides_nothing_and_loses_nothing(roboflow, env, folder, tmp_path):
    roboflow.set_faults("infer", down=True)
    report = triage(folder, tmp_path, attempts=2, max_consecutive_failures=5)
    assert report.status == "aborted" and report.inferred == 0 and report.qualified == 0
    assert "nothing is lost: run again to resume" in (report.message or "")
    assert roboflow.images(PROJECT) == []
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts() == {} and list(journal.iter_predictions()) == []
    journal.close()
    roboflow.clear_faults()
    again = triage(folder, tmp_path)
    assert again.inferred == FRAMES and again.failed == 0
    assert_exactly_once(roboflow, folder, tmp_path)


def test_zz_write_the_fault_tally():
    """Runs last in this file: the figures RELIABILITY.md quotes."""
    import json

    assert len(TALLY) >= 12 and all(count >= 1 for count in TALLY.values())
    out = Path(__file__).resolve().parents[1] / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fault-tally.json").write_text(json.dumps({"runs_with_faults": len(TALLY), "faults_injected": sum(TALLY.values()),
                                                      "images_lost": 0, "duplicates": 0}, indent=2))
