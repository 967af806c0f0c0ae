"""kill -9 a real ``alpolicy run`` subprocess at random moments, resume, and check exactly-once.

The server is the loopback Roboflow fake in this process; each run is a real subprocess killed
with SIGKILL (no cleanup, no atexit, the journal's last transaction possibly in flight). After
the kills, one run completes; every qualifying image must then be in the destination exactly
once, pre-labelled, and nothing else.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

KILLS = 30
FRAMES = 240


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


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_then_resume(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=11)
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(infer=0.05, upload=0.03, annotate=0.03)
    rng = random.Random(1127)
    killed_mid_run = 0
    for _ in range(KILLS):
        process = start_run(folder, journal, env)
        time.sleep(rng.uniform(0.3, 0.9))
        if process.poll() is None:
            killed_mid_run += 1
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = start_run(folder, journal, env)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    images = check_exactly_once(roboflow, folder)
    assert killed_mid_run >= 2 * KILLS // 3, "the runs finished too fast for the kills to land mid-run"
    # Re-sends happen only for images in flight at a kill: bounded by kills x in-flight sends.
    extra_posts = sum(image["upload_count"] - 1 for image in images)
    assert extra_posts <= killed_mid_run * 8


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
    roboflow.latency.update(infer=0.03, upload=0.1, annotate=0.1)
    command = [sys.executable, "-m", "alpolicy", "run", str(folder), "--model", "roboflow:vehicles/3", "--to", "roboflow:budget",
               "--policy", str(policy), "--journal", str(journal), "--no-progress", "--concurrency", "2"]
    rng = random.Random(77)
    for _ in range(6):
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    images = roboflow.images("budget")
    assert len(images) == 10 and all(roboflow.annotations("budget").get(i["id"]) for i in images)
