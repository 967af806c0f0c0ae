"""The journal's group commit: redoable records wait for the next durable write, never longer
than GROUP_COMMIT_SECONDS, and every commit holds a prefix of the writes in order."""

from __future__ import annotations

import sqlite3

from alpolicy.io.images import ImageFile
from alpolicy.runtime import journal as journal_module
from alpolicy.runtime.journal import Journal
from alpolicy.testing import image_folder, make_detection, make_prediction


def seen(path, table: str) -> int:
    """What another process would see: a second connection, reading committed rows only."""
    with sqlite3.connect(path) as other:
        return other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def opened(tmp_path):
    (image_path,) = image_folder(tmp_path / "frames", 1)
    journal = Journal(tmp_path / "j.sqlite")
    run = journal.start_run(source="frames", model="m", destination="queue", policy="{}", options={})
    return journal, ImageFile.from_path(image_path), run


def test_a_stored_prediction_commits_with_the_next_delivery_intent(tmp_path):
    journal, image, run = opened(tmp_path)
    path = tmp_path / "j.sqlite"
    assert seen(path, "runs") == 1, "a run's row is durable at once"
    journal.save_prediction(image, "m", make_prediction(make_detection()))
    journal.save_decision(run, 0, image, {"qualifies": True})
    assert (seen(path, "predictions"), seen(path, "decisions")) == (0, 0), "redoable writes wait for a group commit"
    assert journal.prediction(image, "m") is not None, "the writer reads its own group"
    journal.mark_sending(image, "queue", run)
    assert (seen(path, "predictions"), seen(path, "decisions"), seen(path, "deliveries")) == (1, 1, 1)
    journal.close()


def test_a_group_commits_once_it_is_old_enough_or_large_enough(tmp_path, monkeypatch):
    journal, image, run = opened(tmp_path)
    path = tmp_path / "j.sqlite"
    monkeypatch.setattr(journal_module, "GROUP_COMMIT_WRITES", 3)
    for seq in range(3):
        journal.save_decision(run, seq, image, {"qualifies": False})
    assert seen(path, "decisions") == 3, "the third write filled the group"
    monkeypatch.setattr(journal_module, "GROUP_COMMIT_SECONDS", 0.0)
    journal.save_decision(run, 3, image, {"qualifies": False})
    assert seen(path, "decisions") == 4, "a group past its time commits at its next write"
    journal.close()


def test_close_and_flush_commit_the_open_group(tmp_path):
    journal, image, run = opened(tmp_path)
    path = tmp_path / "j.sqlite"
    journal.record_failure(run, image, "inference", "boom")
    assert seen(path, "failures") == 0
    journal.flush()
    assert seen(path, "failures") == 1
    journal.save_decision(run, 0, image, {"qualifies": True})
    journal.close()
    assert seen(path, "decisions") == 1
