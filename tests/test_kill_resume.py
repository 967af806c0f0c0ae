"""kill -9 a real ``alpolicy run`` subprocess at random moments, resume, and check exactly-once.

The server is the loopback Roboflow fake in this process; each run is a real subprocess killed
with SIGKILL (no cleanup, no atexit, the journal's last transaction possibly in flight). After
the kills, one run completes; every qualifying image must then be in the destination exactly
once, pre-labelled, and nothing else.

A kill only proves something if it lands mid-work, not while the interpreter is still starting:
each kill waits until the journal file shows this attempt's progress (read with sqlite3,
read-only, beside the writer), and a kill counts as mid-work when the journal changed both
before it and after it. The deliveries left ``sending``/``uploaded`` at each kill are what was
in flight; the upload and pre-label requests the server saw beyond one per image must not
exceed them.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

KILLS = 30
FRAMES = 240


@dataclass(frozen=True)
class JournalState:
    """What the journal file holds, as committed (what a killed process leaves behind)."""

    predictions: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        """Deliveries whose request may have reached the server without the outcome recorded."""
        return self.deliveries.get("sending", 0) + self.deliveries.get("uploaded", 0)


def read_journal(journal: Path) -> JournalState:
    """The journal's committed rows, read with a separate read-only sqlite3 connection (the
    journal is WAL: a reader sees the last committed transaction while a writer is busy)."""
    if not journal.exists():
        return JournalState()
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)) as db:
        try:
            predictions = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            deliveries = dict(db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())
        except sqlite3.OperationalError as error:  # the first run has not created its tables yet
            if "no such table" in str(error):
                return JournalState()
            raise
    return JournalState(predictions, deliveries)


def wait_for_progress(journal: Path, since: JournalState, process: subprocess.Popen, timeout: float = 60) -> bool:
    """Wait until the journal differs from ``since`` (this attempt did some work); ``False`` if
    the process ended first. The deadline only guards against a hang, it measures nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_journal(journal) != since:
            return True
        if process.poll() is not None:
            return read_journal(journal) != since
        time.sleep(0.01)
    raise AssertionError(f"no journal progress in {timeout:.0f} s")


@dataclass
class Kill:
    before: JournalState  # when the attempt started
    at_kill: JournalState  # what the killed process had committed


def kill_after_progress(command_or_start, journal: Path, delay: float) -> Kill:
    """Start an attempt, wait for its first journal change, let it work ``delay`` more seconds,
    SIGKILL it and read what it left."""
    before = read_journal(journal)
    process = command_or_start()
    wait_for_progress(journal, before, process)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return Kill(before, read_journal(journal))


def mid_work(kills: list[Kill], final: JournalState) -> int:
    """Kills after which the journal had changed since the attempt began (it was working, not
    starting) and was changed again later (work was left: the kill interrupted it)."""
    return sum(1 for kill in kills if kill.before != kill.at_kill != final)


def start_run(folder: Path, journal: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "alpolicy", "run", str(folder), "--model", "roboflow:vehicles/3",
         "--to", "roboflow:queue", "--journal", str(journal), "--no-progress", "--concurrency", "2"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def check_exactly_once(roboflow, folder: Path) -> list[dict]:
    expected = sorted(expected_uploads(roboflow, folder, {}))
    images = roboflow.images("queue")
    names = [image["name"] for image in images]
    assert sorted(names) == expected, "missing or extra images"
    assert len(set(image["sha256"] for image in images)) == len(images)
    annotations = roboflow.annotations("queue")
    for image in images:
        assert annotations.get(image["id"]), f"{image['name']} has no pre-label"
        assert all(a["prediction"] is True for a in annotations[image["id"]])
    return images


def repeated_requests(roboflow, route: str) -> int:
    """Requests the server received for an image beyond the first, summed over images (upload:
    per content; annotate: per image id). Counted per request, so the server's content
    de-duplication hides none of them."""
    return sum(counts.requests - 1 for counts in roboflow.requests[route].images.values())


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_then_resume(roboflow, env, tmp_path, capsys):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=11)
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(infer=0.08, upload=0.03, annotate=0.03)
    rng = random.Random(1127)
    kills = [kill_after_progress(lambda: start_run(folder, journal, env), journal, rng.uniform(0.0, 0.25))
             for _ in range(KILLS)]
    final = start_run(folder, journal, env)
    _, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    images = check_exactly_once(roboflow, folder)
    done = read_journal(journal)
    assert done.deliveries == {"sent": len(images)} and done.predictions == FRAMES
    landed = mid_work(kills, done)
    in_flight = sum(kill.at_kill.in_flight for kill in kills)
    sending = sum(kill.at_kill.deliveries.get("sending", 0) for kill in kills)
    uploads_again, annotations_again = repeated_requests(roboflow, "upload"), repeated_requests(roboflow, "annotate")
    with capsys.disabled():
        print(f"\nkill -9: {KILLS} kills, {landed} mid-work (journal changed before and after each), "
              f"{in_flight} deliveries in flight at the kills ({sending} not yet checkpointed), "
              f"{uploads_again} uploads and {annotations_again} pre-labels sent again")
    assert landed == KILLS, [(kill.before, kill.at_kill) for kill in kills]
    # A delivery is re-sent only if a kill left it in flight: an upload only if it was not yet
    # checkpointed ("sending"), a pre-label if it was in flight at all.
    assert uploads_again <= sending, (uploads_again, sending)
    assert annotations_again <= in_flight, (annotations_again, in_flight)
    assert set(roboflow.requests["upload"].images) == {image["sha256"] for image in images}


@pytest.mark.slow
def test_kill_between_the_upload_and_the_journal_commit(roboflow, env, tmp_path):
    """The pre-label request is slow: the kill lands after the upload, before the outcome is recorded."""
    folder = tmp_path / "frames"
    make_frames(folder, 12, seed=5)
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(annotate=3.0)
    process = start_run(folder, journal, env)
    deadline = time.monotonic() + 30
    while not roboflow.images("queue") if "queue" in roboflow.state()["projects"] else True:
        assert time.monotonic() < deadline, "no upload seen"
        time.sleep(0.02)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    uploaded_before = {image["name"] for image in roboflow.images("queue")}
    assert uploaded_before and not any(roboflow.annotations("queue").values())
    roboflow.latency.update(annotate=0.0)
    final = start_run(folder, journal, env)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    images = check_exactly_once(roboflow, folder)
    # The images uploaded before the kill were checkpointed: the resume only annotated them.
    assert all(image["upload_count"] == 1 for image in images if image["name"] in uploaded_before)


@pytest.mark.slow
def test_a_budget_holds_across_kill_minus_nine_and_resume(roboflow, env, tmp_path):
    """A total budget of 10 (counted in the journal): however the runs are killed, exactly 10 arrive."""
    folder = tmp_path / "frames"
    make_frames(folder, 80, seed=21)
    policy = tmp_path / "policy.json"
    policy.write_text('{"version": 1, "image": {"rule": "detection_count", "min": 0},'
                      ' "sampling": [{"rule": "limit", "max": 10, "per": "total"}]}')
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(infer=0.05, upload=0.1, annotate=0.1)
    command = [sys.executable, "-m", "alpolicy", "run", str(folder), "--model", "roboflow:vehicles/3", "--to", "roboflow:budget",
               "--policy", str(policy), "--journal", str(journal), "--no-progress", "--concurrency", "2"]
    rng = random.Random(77)

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    kills = [kill_after_progress(start, journal, rng.uniform(0.0, 0.3)) for _ in range(6)]
    final = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    images = roboflow.images("budget")
    assert len(images) == 10 and all(roboflow.annotations("budget").get(i["id"]) for i in images)
    assert mid_work(kills, read_journal(journal)) == len(kills), [(kill.before, kill.at_kill) for kill in kills]
    assert set(roboflow.requests["upload"].images) == {image["sha256"] for image in images}, "an image beyond the budget was offered"
    assert repeated_requests(roboflow, "upload") <= sum(kill.at_kill.deliveries.get("sending", 0) for kill in kills)
