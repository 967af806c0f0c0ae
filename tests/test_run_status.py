"""A run's row in the journal says how it ended, whatever ended it: an exception nobody expected
(a bug in a callback or in a third-party destination) marks it ``failed`` with one redacted line,
and the exception still reaches the caller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.destinations import Delivery, Receipt
from alpolicy.runtime.journal import Journal

from .conftest import API_KEY
from .helpers import det, pred
from .test_replay_backend import make_jpeg, write_json


def folder_with_predictions(tmp_path: Path, count: int = 4) -> tuple[Path, Path]:
    images, stored = tmp_path / "frames", tmp_path / "preds"
    for index in range(count):
        make_jpeg(images / f"f{index}.jpg", (index * 40, 10, 10))
        write_json(stored / f"f{index}.json", pred(det("car", 0.5), width=64, height=48))
    return images, stored


def last_run(journal: Path) -> dict:
    db = Journal(journal)
    try:
        return db.runs()[-1]
    finally:
        db.close()


def test_an_on_result_callback_that_raises_marks_the_run_failed(tmp_path):
    images, stored = folder_with_predictions(tmp_path)
    journal = tmp_path / "journal.sqlite"

    def broken(image, prediction):
        raise RuntimeError(f"callback bug near\napi_key={API_KEY}")

    with pytest.raises(RuntimeError, match="callback bug"):
        alpolicy.run(str(images), Policy.from_conditionals({}), model=f"replay:{stored}",
                     destination=f"folder:{tmp_path / 'out'}", on_result=broken,
                     options=RunOptions(journal=str(journal), progress=False))
    row = last_run(journal)
    assert row["status"] == "failed" and row["finished_at"] is not None
    message = json.loads(row["summary"])["message"]
    assert message.startswith("stopped by an unexpected error: RuntimeError: callback bug near")
    assert "\n" not in message and API_KEY not in message


class ExplodingDestination:
    """A third-party destination with a bug: ``send`` raises what no destination may raise."""

    name = "exploding:queue"

    def check(self) -> None:
        pass

    def send(self, delivery: Delivery) -> Receipt:
        raise KeyError("remote_id")

    def close(self) -> None:
        pass


def test_a_destination_that_raises_an_unexpected_exception_fails_its_images_and_the_run_ends(tmp_path):
    """A bug in a destination's ``send`` fails that image (see test_plugin_crashes.py); the run
    still ends, and its row says so instead of staying ``running``."""
    images, stored = folder_with_predictions(tmp_path)
    journal = tmp_path / "journal.sqlite"
    report = alpolicy.run(str(images), Policy.from_conditionals({}), model=f"replay:{stored}",
                          destination=ExplodingDestination(), options=RunOptions(journal=str(journal), progress=False))
    assert (report.status, report.failed, report.sent) == ("completed", 4, 0)
    assert all("KeyError" in failure["error"] for failure in report.failures)
    row = last_run(journal)
    assert row["status"] == "completed" and row["finished_at"] is not None


def test_a_run_that_cannot_open_its_decisions_log_is_marked_failed(tmp_path):
    images, stored = folder_with_predictions(tmp_path, count=1)
    journal = tmp_path / "journal.sqlite"
    (tmp_path / "a-file").write_text("not a folder")
    options = RunOptions(journal=str(journal), progress=False, decisions_log=str(tmp_path / "a-file" / "log.jsonl"))
    with pytest.raises(OSError):
        alpolicy.run(str(images), Policy.from_conditionals({}), model=f"replay:{stored}", options=options,
                     destination=f"folder:{tmp_path / 'out'}")
    assert last_run(journal)["status"] == "failed"
