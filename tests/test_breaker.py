"""The circuit breaker counts every failed send, permanent ones too: a destination that refuses
every image (here a Roboflow project that exists -- the check before the run passes -- but answers
400 to every upload) stops the run
after ``max_consecutive_failures`` in a row with one line, instead of failing every image."""

from __future__ import annotations

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.runtime.journal import Journal

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

FRAMES = 60


@pytest.fixture
def refusing(roboflow):
    """The loopback server refusing every upload with 400 (the project exists: the check passes)."""
    roboflow.set_faults("upload", error_every=1, error_status=400)
    return roboflow


def test_a_destination_refusing_every_upload_stops_the_run_after_n_in_a_row(refusing, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=21)
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=1, max_consecutive_failures=5)
    report = alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                          destination="roboflow:refusing", options=options)
    assert report.status == "aborted" and report.exit_code == 1
    assert "sending failed for 5 images in a row" in (report.message or "")
    assert "HTTP 400" in (report.message or "") and "\n" not in (report.message or "")
    assert len(expected_uploads(refusing, folder, {})) > 20, "too few qualifying images for the test to mean anything"
    # At most the breaker's count plus the sends already under way when it tripped reached the
    # server (2 send threads per concurrency); sends still queued were cancelled, left pending.
    uploads = refusing.requests["upload"].total
    assert uploads <= 5 + 2 * options.concurrency and report.failed == uploads
    assert report.failed + report.pending == report.qualified < 20
    journal = Journal(tmp_path / "journal.sqlite")
    counts = journal.delivery_counts("roboflow:refusing")
    journal.close()
    assert counts.get("failed") == uploads and "sending" not in counts  # queued sends stay pending, recorded


def test_the_cli_says_it_in_one_line(refusing, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=22)
    result = alpolicy_cli("run", str(folder), "--model", "roboflow:vehicles/3", "--to", "roboflow:refusing",
                          "--journal", str(tmp_path / "journal.sqlite"), "--concurrency", "1", "--no-progress", env=env)
    assert result.code == 1
    lines = [line for line in result.out.splitlines() if "in a row" in line]
    assert len(lines) == 1 and "sending failed for 25 images in a row" in lines[0], result.out
    assert refusing.requests["upload"].total <= 25 + 2
