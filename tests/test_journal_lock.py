"""One writer per journal: two real ``alpolicy run`` processes on one journal never send twice.

The server is the loopback Roboflow fake in this process, made slow (inference latency) so that
the first run is still going when the others start; then fast again so that it finishes. Uploads
are counted at the server (requests, not only stored images).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions, UsageError
from alpolicy.runtime.journal_lock import JournalInUse, JournalLock

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

IN_USE = re.compile(
    r"alpolicy: error: journal (?P<journal>.+) is in use by alpolicy run "
    r"\(pid (?P<pid>\d+), started \d\d:\d\d:\d\d\); wait for it or pass another --journal"
)


def command(folder: Path, journal: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "alpolicy", "run", str(folder), "--model", "roboflow:vehicles/3", "--to",
            "roboflow:queue", "--journal", str(journal), "--no-progress", "--concurrency", "2", *extra]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, timeout=180)


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def inferring(roboflow) -> bool:
    return roboflow.requests["infer"].total > 0


def assert_each_uploaded_once(roboflow, folder: Path) -> list[str]:
    expected = sorted(expected_uploads(roboflow, folder, {}))
    images = roboflow.images("queue")
    assert sorted(image["name"] for image in images) == expected
    assert [image["upload_count"] for image in images] == [1] * len(expected)
    assert roboflow.requests["upload"].total == len(expected), "an image was uploaded twice"
    return expected


@pytest.fixture
def folder(tmp_path) -> Path:
    frames = tmp_path / "frames"
    make_frames(frames, 40, seed=3)
    return frames


@pytest.mark.slow
def test_a_second_run_on_the_journal_stops_with_one_line_naming_the_first(roboflow, env, folder, tmp_path):
    journal = tmp_path / "state" / "journal.sqlite"  # brand new: neither the file nor its folder exist
    roboflow.latency.update(infer=2.0)  # the first run holds the journal while the second starts
    first = start(command(folder, journal), env)
    try:
        wait_for(lambda: inferring(roboflow), "the first run's first inference")
        second = finish(command(folder, journal), env)
    finally:
        roboflow.latency.update(infer=0.0)
        out, err = first.communicate(timeout=180)
    assert second.returncode == 2, (second.stdout, second.stderr)
    assert second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    match = IN_USE.fullmatch(lines[0])
    assert match, lines[0]
    assert match["pid"] == str(first.pid) and match["journal"] == str(journal)
    assert "database is locked" not in second.stderr
    assert first.returncode == 0, err
    expected = assert_each_uploaded_once(roboflow, folder)
    assert re.search(rf"^  sent +{len(expected)}$", out, re.M), out
    # Once the first has finished, the journal is free again.
    again = finish(command(folder, journal), env)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"^  already sent +{len(expected)} ", again.stdout, re.M), again.stdout
    assert roboflow.requests["upload"].total == len(expected)


@pytest.mark.slow
def test_runs_started_at_once_on_a_brand_new_journal_one_writes_the_others_stop(roboflow, env, folder, tmp_path):
    journal = tmp_path / "new" / "journal.sqlite"
    roboflow.latency.update(infer=1.0)
    processes = [start(command(folder, journal), env) for _ in range(4)]
    try:
        # The losers stop at once; the winner is slowed down until they have.
        deadline = time.monotonic() + 60
        while sum(process.poll() is not None for process in processes) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        roboflow.latency.update(infer=0.0)
        outcomes = [process.communicate(timeout=180) for process in processes]
    codes = [process.returncode for process in processes]
    assert sorted(codes) == [0, 2, 2, 2], (codes, outcomes)
    winner = processes[codes.index(0)]
    for process, (out, err) in zip(processes, outcomes):
        assert "database is locked" not in err and "not a usable alpolicy journal" not in err, err
        if process is not winner:
            match = IN_USE.fullmatch(err.strip())
            assert match and match["pid"] == str(winner.pid), err
    assert_each_uploaded_once(roboflow, folder)


@pytest.mark.slow
def test_wait_for_journal_waits_for_the_first_run_then_finds_everything_sent(roboflow, env, folder, tmp_path):
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(infer=2.0)
    first = start(command(folder, journal), env)
    try:
        wait_for(lambda: inferring(roboflow), "the first run's first inference")
        second = start(command(folder, journal, "--wait-for-journal", "300"), env)
        waiting = second.stderr.readline()  # printed while the first still runs
    finally:
        roboflow.latency.update(infer=0.0)
    _, first_err = first.communicate(timeout=180)
    out, err = second.communicate(timeout=180)
    assert f"journal {journal} is in use by alpolicy run (pid {first.pid}, started " in waiting, waiting
    assert "waiting up to 300s" in waiting
    assert first.returncode == 0, first_err
    assert second.returncode == 0, waiting + err
    expected = assert_each_uploaded_once(roboflow, folder)
    assert re.search(rf"^  already sent +{len(expected)} ", out, re.M), out


@pytest.mark.slow
def test_a_run_killed_while_holding_the_journal_leaves_no_stale_lock(roboflow, env, folder, tmp_path):
    journal = tmp_path / "journal.sqlite"
    roboflow.latency.update(infer=2.0)
    first = start(command(folder, journal), env)
    wait_for(lambda: inferring(roboflow), "the first run's first inference")
    first.send_signal(signal.SIGKILL)
    first.wait()
    roboflow.latency.update(infer=0.0)
    # The lock file still names the dead holder: only the OS lock counts, and the OS dropped it.
    assert f'"pid": {first.pid}' in Path(f"{journal}.lock").read_text()
    again = finish(command(folder, journal), env)
    assert again.returncode == 0, again.stderr
    assert_each_uploaded_once(roboflow, folder)


@pytest.mark.slow
def test_readers_work_while_a_run_holds_the_journal_but_a_dry_run_is_a_writer(roboflow, env, folder, tmp_path):
    journal = tmp_path / "journal.sqlite"
    policy = tmp_path / "policy.json"
    policy.write_text('{"version": 1}')
    roboflow.latency.update(infer=1.0)
    first = start(command(folder, journal), env)
    try:
        def predictions_stored() -> bool:
            if not journal.exists():
                return False
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                try:
                    return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] >= 2
                except sqlite3.OperationalError:
                    return False

        wait_for(predictions_stored, "the first run's first predictions")
        report = alpolicy_cli("report", str(journal), "--out", str(tmp_path / "report"), env=env)
        compared = alpolicy_cli("compare", str(journal), str(policy), str(policy), env=env)
        dry = alpolicy_cli("run", str(folder), "--model", "roboflow:vehicles/3", "--dry-run", "--journal", str(journal),
                           "--no-progress", env=env)
        assert first.poll() is None, "the first run ended before the readers were tried"
    finally:
        roboflow.latency.update(infer=0.0)
        _, err = first.communicate(timeout=180)
    assert report.code == 0, report.err
    assert (tmp_path / "report" / "index.html").exists()
    assert compared.code == 0, compared.err
    assert dry.code == 2 and IN_USE.fullmatch(dry.err.strip()), dry.err
    assert first.returncode == 0, err
    assert_each_uploaded_once(roboflow, folder)


def test_a_run_in_this_process_stops_while_another_holds_the_journal_and_releases_it_on_error(tmp_path, frames):
    journal = tmp_path / "journal.sqlite"
    options = RunOptions(journal=str(journal), progress=False, dry_run=True)
    policy = Policy.from_conditionals({})
    (tmp_path / "none").mkdir()  # replay: no stored predictions, every image fails; the run goes on
    with JournalLock(journal):
        with pytest.raises(JournalInUse, match=rf"pid {os.getpid()}, started "):
            alpolicy.run(str(frames), policy, model="replay:" + str(tmp_path / "none"), options=options)
    # A mistyped command stops before locking: it leaves no lock file (nor folder) behind.
    elsewhere = RunOptions(journal=str(tmp_path / "state" / "journal.sqlite"), progress=False, dry_run=True)
    with pytest.raises(UsageError, match="does not exist"):
        alpolicy.run(str(tmp_path / "missing"), policy, model="replay:" + str(tmp_path / "none"), options=elsewhere)
    assert not (tmp_path / "state").exists()
    # A run that fails after taking the lock (the journal is not one) gives it back.
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database" * 100)
    with pytest.raises(UsageError, match="not a usable alpolicy journal"):
        alpolicy.run(str(frames), policy, model="replay:" + str(tmp_path / "none"),
                     options=RunOptions(journal=str(broken), progress=False, dry_run=True))
    JournalLock(broken).acquire().release()
    JournalLock(journal).acquire().release()
    # In-memory journals need no lock: two at once are fine.
    memory = RunOptions(journal=None, progress=False, dry_run=True)
    with JournalLock(journal):
        alpolicy.run(str(frames), policy, model="replay:" + str(tmp_path / "none"), options=memory)
