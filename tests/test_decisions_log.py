"""Each journal has its own decisions logs: two journals in one folder never share a file."""

from __future__ import annotations

import json
from pathlib import Path

import alpolicy
from alpolicy import Policy, RunOptions

from .cli import alpolicy as alpolicy_cli
from .test_run_status import folder_with_predictions


def records(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_two_journals_in_one_folder_keep_separate_decisions_logs(tmp_path):
    images, stored = folder_with_predictions(tmp_path, count=5)
    state = tmp_path / "state"
    logs = []
    for name in ("first.sqlite", "second.sqlite"):
        report = alpolicy.run(str(images), Policy.from_conditionals({}), model=f"replay:{stored}", destination=None,
                              options=RunOptions(journal=str(state / name), progress=False, dry_run=True))
        assert report.run_id == 1
        logs.append(report.decisions_log)
    for log in logs:
        assert [r["seq"] for r in records(log)] == [1, 2, 3, 4, 5]  # its own run's records, once
    assert logs == [str(state / "decisions" / "first-run-1.jsonl"), str(state / "decisions" / "second-run-1.jsonl")]


def test_the_cli_names_the_log_after_its_journal(tmp_path):
    images, stored = folder_with_predictions(tmp_path, count=2)
    journal = tmp_path / "state" / "journal.sqlite"
    result = alpolicy_cli("run", str(images), "--model", f"replay:{stored}", "--dry-run", "--journal", str(journal),
                          "--no-progress")
    assert result.code == 0, result.err
    expected = tmp_path / "state" / "decisions" / "journal-run-1.jsonl"
    assert f"decisions log: {expected}" in result.out and len(records(expected)) == 2
