"""Stored predictions are keyed by a model fingerprint (issue #11, item 1).

A prediction made at ``--confidence 15`` is not the prediction of the same model at
``--confidence 70``: a run whose fingerprint (backend, model, every setting that changes the
output) differs from the stored one infers again; ``--reuse-predictions`` decides from what is
stored and names the fingerprints it used. Everything runs the real CLI against the loopback
Roboflow server, and the inference requests are counted at the server.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.backends import ModelOptions
from alpolicy.report.html import load_run
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import SCHEMA_VERSION, Journal
from alpolicy.policy.prediction import Prediction

from .cli import alpolicy as alpolicy_cli

#: Qualifies when some detection has a confidence in 10..50 %: at --confidence 15 most frames
#: do, at --confidence 70 the server returns nothing below 0.7 and none can.
LOW_CONFIDENCE = json.dumps({"confidence_interval": [10, 50]})


def run_cli(frames: Path, journal: Path, *extra: str) -> dict:
    result = alpolicy_cli("run", str(frames), "--conditionals", LOW_CONFIDENCE, "--dry-run", "--json",
                          "--journal", str(journal), *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def decisions(journal: Path, run_id: int) -> dict[str, bool]:
    """image file name -> qualifies, as the journal recorded the run's decisions."""
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT path, qualifies FROM decisions WHERE run_id = ?", (run_id,)).fetchall()
    return {Path(path).name: bool(qualifies) for path, qualifies in rows}


def test_a_run_at_another_confidence_infers_again_and_decides_like_a_fresh_journal(roboflow, env, tmp_path, frames):
    journal = tmp_path / "j.sqlite"
    low = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "15")
    assert low["inferred"] == 30 and low["qualified"] > 0
    assert roboflow.requests["infer"].total == 30

    high = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "70")
    assert roboflow.requests["infer"].total == 60, "a changed confidence must ask the model again"
    assert high["inferred"] == 30 and high["reused"] == 0

    fresh = run_cli(frames, tmp_path / "fresh.sqlite", "--model", "roboflow:vehicles/3", "--confidence", "70")
    assert high["qualified"] == fresh["qualified"] == 0
    assert decisions(journal, high["run_id"]) == decisions(tmp_path / "fresh.sqlite", fresh["run_id"])
    assert high["fingerprint"] == fresh["fingerprint"] != low["fingerprint"]
    assert high["fingerprint"].startswith("roboflow:vehicles/3@")


def test_the_same_settings_twice_ask_the_model_once(roboflow, env, tmp_path, frames):
    journal = tmp_path / "j.sqlite"
    first = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "15")
    calls = roboflow.requests["infer"].total
    again = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "15.0", "--overlap", "30")
    assert roboflow.requests["infer"].total == calls == 30
    assert again["reused"] == 30 and again["inferred"] == 0
    assert again["qualified"] == first["qualified"] and again["fingerprint"] == first["fingerprint"]
    assert decisions(journal, again["run_id"]) == decisions(journal, first["run_id"])


def test_reuse_predictions_names_the_fingerprints_it_used(roboflow, env, tmp_path, frames):
    journal = tmp_path / "j.sqlite"
    low = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "15")
    # ten of the frames again at 70: the journal now holds two fingerprints for those ten
    first_ten = sorted(frames.iterdir())[:10]
    options = RunOptions(journal=str(journal), progress=False, dry_run=True,
                         model_options=ModelOptions(confidence=70))
    high = alpolicy.run([str(p) for p in first_ten], Policy.from_conditionals({}), model="roboflow:vehicles/3", options=options)
    assert high.inferred == 10
    calls = roboflow.requests["infer"].total

    result = alpolicy_cli("run", str(frames), "--reuse-predictions", "--conditionals", LOW_CONFIDENCE, "--dry-run",
                          "--journal", str(journal))
    assert result.code == 0, result.err
    assert roboflow.requests["infer"].total == calls
    assert "reused predictions of 2 model fingerprints" in result.out, result.out
    assert f"{low['fingerprint']} (confidence 15, overlap 30)" in result.out
    assert f"{high.fingerprint} (confidence 70, overlap 30)" in result.out
    lines = {line.split(None, 1)[1]: int(line.split(None, 1)[0]) for line in result.out.splitlines()
             if "roboflow:vehicles/3@" in line}
    assert lines == {f"{low['fingerprint']} (confidence 15, overlap 30)": 20,
                     f"{high.fingerprint} (confidence 70, overlap 30)": 10}, result.out

    as_json = run_cli(frames, journal, "--reuse-predictions")
    assert {(r["fingerprint"], r["count"]) for r in as_json["reused_from"]} == {(low["fingerprint"], 20), (high.fingerprint, 10)}
    assert as_json["fingerprint"] is None  # no model was run

    # with --model, the predictions of that model's fingerprint: all thirty at 15, no request
    chosen = alpolicy_cli("run", str(frames), "--reuse-predictions", "--model", "roboflow:vehicles/3", "--confidence", "15",
                          "--conditionals", LOW_CONFIDENCE, "--dry-run", "--journal", str(journal))
    assert chosen.code == 0, chosen.err
    assert roboflow.requests["infer"].total == calls
    assert f"reused predictions of {low['fingerprint']} (confidence 15, overlap 30)" in chosen.out, chosen.out
    with sqlite3.connect(journal) as db:
        recorded = dict(db.execute("SELECT id, fingerprint FROM runs").fetchall())
    assert recorded[low["run_id"]] == low["fingerprint"] and recorded[high.run_id] == high.fingerprint
    assert recorded[as_json["run_id"]] == ", ".join(sorted((low["fingerprint"], high.fingerprint)))


# ---------------------------------------------------------------------- a journal of schema 1
#: The journal DDL of alpolicy 0.1 (schema_version 1), as ``git show 8ef30d3:alpolicy/journal.py`` has it.
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL DEFAULT 'running',
    source TEXT, model TEXT, destination TEXT, policy TEXT, options TEXT, summary TEXT
);
CREATE TABLE IF NOT EXISTS predictions (
    image_key TEXT NOT NULL,
    model TEXT NOT NULL,
    path TEXT NOT NULL,
    prediction TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (image_key, model)
);
CREATE TABLE IF NOT EXISTS deliveries (
    image_key TEXT NOT NULL,
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    remote_id TEXT,
    url TEXT,
    duplicate INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated_at REAL NOT NULL,
    run_id INTEGER,
    PRIMARY KEY (image_key, destination)
);
CREATE TABLE IF NOT EXISTS decisions (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    image_key TEXT NOT NULL,
    path TEXT NOT NULL,
    qualifies INTEGER,
    sampled INTEGER NOT NULL,
    rejected_by TEXT,
    score REAL,
    decision TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER NOT NULL,
    image_key TEXT NOT NULL,
    path TEXT NOT NULL,
    stage TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_run ON failures (run_id);
CREATE TABLE IF NOT EXISTS sampling_charges (
    rule TEXT NOT NULL,
    image_key TEXT NOT NULL,
    class TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (rule, image_key, class)
);
CREATE INDEX IF NOT EXISTS sampling_charges_by_time ON sampling_charges (rule, class, at);
CREATE TABLE IF NOT EXISTS sampled_hashes (
    rule TEXT NOT NULL,
    image_key TEXT NOT NULL,
    hash INTEGER NOT NULL,
    PRIMARY KEY (rule, image_key)
);
"""


def old_journal(path: Path, frames: Path) -> None:
    """A schema-1 journal as alpolicy 0.1 left it: one run of ``vehicles/3`` that stored, for every
    frame, one low-confidence car (it qualifies under LOW_CONFIDENCE) and decided on it."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO runs (id, started_at, finished_at, status, source, model, policy, options, summary) "
               "VALUES (1, 1.0, 2.0, 'completed', ?, 'vehicles/3', ?, '{}', '{}')",
               (str(frames), json.dumps(Policy.from_conditionals(json.loads(LOW_CONFIDENCE)).document)))
    for seq, path_ in enumerate(sorted(frames.iterdir()), start=1):
        image = ImageFile.from_path(path_)
        car = {"x": 40, "y": 30, "width": 20, "height": 10, "confidence": 0.2, "class": "car", "class_id": 0}
        stored = Prediction(96, 72, [car], "vehicles/3").to_json()
        db.execute("INSERT INTO predictions VALUES (?, 'vehicles/3', ?, ?, ?)",
                   (image.key, image.path, json.dumps(stored), 1.5))
        record = {"seq": seq, "image": image.path, "model": "vehicles/3", "qualifies": True, "sampled": True}
        db.execute("INSERT INTO decisions VALUES (1, ?, ?, ?, 1, 1, NULL, NULL, ?)",
                   (seq, image.key, image.path, json.dumps(record)))
    db.commit()
    db.close()


def test_a_schema_1_journal_is_migrated_and_its_predictions_are_not_reused_for_a_model(roboflow, env, tmp_path, frames):
    journal = tmp_path / "old.sqlite"
    old_journal(journal, frames)
    ran = run_cli(frames, journal, "--model", "roboflow:vehicles/3", "--confidence", "70")
    assert roboflow.requests["infer"].total == 30, "predictions of unknown settings must not stand in for a fingerprint"
    assert ran["inferred"] == 30 and ran["reused"] == 0 and ran["qualified"] == 0
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        stored = dict(db.execute("SELECT fingerprint, COUNT(*) FROM predictions GROUP BY fingerprint").fetchall())
    assert stored == {"vehicles/3@unknown": 30, ran["fingerprint"]: 30}


def test_reuse_predictions_still_finds_the_predictions_of_a_schema_1_journal(roboflow, env, tmp_path, frames):
    journal = tmp_path / "old.sqlite"
    old_journal(journal, frames)
    result = alpolicy_cli("run", str(frames), "--reuse-predictions", "--conditionals", LOW_CONFIDENCE, "--dry-run",
                          "--journal", str(journal))
    assert result.code == 0, result.err
    assert roboflow.requests["infer"].total == 0
    assert "reused predictions of vehicles/3@unknown (settings not recorded: stored by an earlier alpolicy)" in result.out, result.out
    assert re.search(r"^  qualified +30$", result.out, re.M), result.out
    journal_ = Journal(journal)
    try:
        assert [model for _, model, _ in journal_.iter_predictions()] == ["vehicles/3"] * 30
        assert len(list(journal_.iter_predictions("vehicles/3"))) == 30
    finally:
        journal_.close()


def test_the_html_report_of_a_schema_1_run_still_finds_its_predictions(tmp_path, frames):
    journal = tmp_path / "old.sqlite"
    old_journal(journal, frames)
    before = load_run(journal)  # read-only: a report never migrates (or changes) a journal
    assert len(before.confidences) == 30
    Journal(journal).close()  # migrated
    after = load_run(journal)
    assert len(after.confidences) == 30 and after.counts == before.counts


# ---------------------------------------------------------------------- the shared helper
def test_the_fingerprint_is_stable_and_changes_with_every_setting():
    from alpolicy.backends import fingerprint

    base = fingerprint("roboflow", "vehicles/3", {"confidence": 15, "overlap": 30})
    assert base == fingerprint("roboflow", "vehicles/3", {"overlap": 30.0, "confidence": 15.0})
    assert base.startswith("roboflow:vehicles/3@") and len(base.rsplit("@", 1)[1]) == 12
    assert fingerprint("onnx", "onnx:demo-shapes", {}).startswith("onnx:demo-shapes@")
    others = {
        fingerprint("roboflow", "vehicles/3", {"confidence": 70, "overlap": 30}),
        fingerprint("roboflow", "vehicles/3", {"confidence": 15, "overlap": 50}),
        fingerprint("roboflow", "vehicles/4", {"confidence": 15, "overlap": 30}),
        fingerprint("other", "vehicles/3", {"confidence": 15, "overlap": 30}),
        fingerprint("roboflow", "vehicles/3", {"confidence": 15, "overlap": 30, "labels": ["car"]}),
    }
    assert base not in others and len(others) == 5


class OldStyleBackend:
    """A third-party backend written against 0.1: a ``model_id``, no ``fingerprint``."""

    model_id = "acme/1"

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, image: ImageFile) -> Prediction:
        self.calls += 1
        return Prediction(96, 72, [{"x": 40, "y": 30, "width": 20, "height": 10, "confidence": 0.3, "class": "car"}])

    def close(self) -> None:
        pass


def test_a_backend_without_a_fingerprint_is_keyed_by_its_model_id(tmp_path, frames):
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True)
    first, second = OldStyleBackend(), OldStyleBackend()
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model=first, options=options)
    assert first.calls == 30 and report.fingerprint == "acme/1"
    again = alpolicy.run(str(frames), Policy.from_conditionals({}), model=second, options=options)
    assert second.calls == 0 and again.reused == 30
    assert "reused predictions of acme/1 (settings not recorded)" in again.summary()


def test_processes_opening_a_schema_1_journal_at_once_migrate_it_once(tmp_path, frames):
    journal = tmp_path / "old.sqlite"
    old_journal(journal, frames)
    script = ("import sys; from alpolicy.runtime.journal import Journal; j = Journal(sys.argv[1]); "
              "print(sum(1 for _ in j.iter_predictions())); j.close()")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(journal)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [out.strip() for out, _ in outcomes] == ["30"] * 4, outcomes
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT fingerprint) FROM predictions").fetchone() == (30, 1)
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'predictions_schema_1'").fetchone() == (0,)
