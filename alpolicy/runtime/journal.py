"""The run journal: SQLite (WAL) recording every image's progress, so runs resume exactly-once.

One row per (image version ``path|size|mtime``, model fingerprint) holds a stored prediction
(see :func:`alpolicy.backends.fingerprint`: the same model at another confidence is another
fingerprint, so its predictions are never taken for this one's); one row per fingerprint the
settings that went into it; one row per (image, destination) its delivery state::

    (none) --mark_sending--> sending --checkpoint--> uploaded --mark_sent--> sent
                                 \\------------------------------------------^
    sending/uploaded --retryable failure--> pending      any --permanent failure--> failed

The intent (``sending``) is committed *before* the destination is called. After a crash, a
delivery left in ``sending`` or ``uploaded`` is sent again; destinations are idempotent (content
hash names, "duplicate" answers), so the retry completes the delivery instead of repeating it.
Every delivery state change commits at once: with WAL and ``synchronous=NORMAL`` a committed
transaction survives ``kill -9`` of the process. Records a crash may lose because a resume
redoes them (stored predictions, decisions, failures, sampling charges and hashes) are written
in a group: they commit with the next delivery change, or after :data:`GROUP_COMMIT_SECONDS` /
:data:`GROUP_COMMIT_WRITES`, whichever comes first. A commit thus always holds a prefix of
the writes, in order: a charge is never durable without the decision before it, and a
``sending`` intent never without what led to it (benchmarks/bench_remote.py: about a third of
the coordinating thread went to SQLite when each of them was its own transaction).

One writer at a time: a run holds the journal's OS lock (:mod:`alpolicy.runtime.journal_lock`) while it
writes; readers need none (WAL). ``Journal`` itself takes no lock, so any number may read.

Schema 1 (alpolicy 0.1) keyed predictions by model id alone, with no record of the settings.
Opening such a journal migrates it: its predictions get the fingerprint ``MODEL@unknown``, which
no backend produces, so a run with a model infers again rather than trusting them, while
``--reuse-predictions`` (the latest prediction of each image, whatever its fingerprint) still
decides from them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import UsageError
from ..io.images import ImageFile, display_path
from ..io.jsonsafe import JsonError, loads
from ..policy.prediction import Prediction, PredictionFormatError

log = logging.getLogger("alpolicy.journal")

SCHEMA_VERSION = 2

#: Fingerprint suffix of predictions migrated from schema 1, whose settings were never recorded.
UNKNOWN_SETTINGS = "unknown"

#: Stored predictions, by image version and model fingerprint (the schema and its migration share it).
_PREDICTIONS = """(
    image_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    model TEXT NOT NULL,
    path TEXT NOT NULL,
    prediction TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (image_key, fingerprint)
)"""
#: Sampling usage: the journal's tables, and a dry run's scratch copies of them (TEMP tables).
_CHARGES = """(
    rule TEXT NOT NULL,
    image_key TEXT NOT NULL,
    class TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (rule, image_key, class)
)"""
_HASHES = """(
    rule TEXT NOT NULL,
    image_key TEXT NOT NULL,
    hash INTEGER NOT NULL,
    PRIMARY KEY (rule, image_key)
)"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL DEFAULT 'running',
    source TEXT, model TEXT, destination TEXT, policy TEXT, options TEXT, summary TEXT, fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS predictions {_PREDICTIONS};
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    settings TEXT,
    first_seen REAL NOT NULL
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
CREATE TABLE IF NOT EXISTS sampling_charges {_CHARGES};
CREATE INDEX IF NOT EXISTS sampling_charges_by_time ON sampling_charges (rule, class, at);
CREATE TABLE IF NOT EXISTS sampled_hashes {_HASHES};
"""


#: Schema 1 -> 2: predictions re-keyed by fingerprint (the old rows get ``MODEL@unknown``), and
#: runs record the fingerprint they used. One transaction: a crash leaves schema 1 intact.
_MIGRATE_1_TO_2 = f"""
ALTER TABLE predictions RENAME TO predictions_schema_1;
CREATE TABLE predictions {_PREDICTIONS};
INSERT INTO predictions (image_key, fingerprint, model, path, prediction, created_at)
    SELECT image_key, model || '@{UNKNOWN_SETTINGS}', model, path, prediction, created_at
    FROM predictions_schema_1 ORDER BY rowid;
INSERT OR IGNORE INTO fingerprints (fingerprint, model, settings, first_seen)
    SELECT model || '@{UNKNOWN_SETTINGS}', model, NULL, MIN(created_at) FROM predictions_schema_1 GROUP BY model;
DROP TABLE predictions_schema_1;
ALTER TABLE runs ADD COLUMN fingerprint TEXT;
"""


@dataclass(frozen=True)
class StoredPrediction:
    """A prediction read back from the journal, with what produced it."""

    fingerprint: str
    model: str
    prediction: Prediction


@dataclass(frozen=True)
class DeliveryRecord:
    state: str
    remote_id: str | None
    attempts: int
    error: str | None


#: How long a group of redoable writes (see the module docstring) may wait for its commit.
GROUP_COMMIT_SECONDS = 0.25
#: How many redoable writes a group may hold before it commits.
GROUP_COMMIT_WRITES = 256


class Journal:
    """Thread-safe (one connection behind a lock); pass ``":memory:"`` for a throwaway journal."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UsageError(f"cannot create the journal folder for {self.path}: {error.strerror}") from None
        self._lock = threading.RLock()
        self._group_started = 0.0
        self._group_writes = 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._check_version()
        except sqlite3.DatabaseError as error:
            raise UsageError(f"{self.path} is not a usable alpolicy journal ({error}); pass another --journal") from None

    def _check_version(self) -> None:
        """Create a new journal, or migrate an older one, under one write lock (``BEGIN IMMEDIATE``):
        two processes opening the same old journal at once migrate it once."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row is not None else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise UsageError(f"journal {self.path} was written by a newer alpolicy (schema {row[0]}); upgrade alpolicy")
            # Creates what is missing; on a schema-1 journal it leaves the old tables as they are
            # (so _SCHEMA must never index a column that schema 1 lacks), then the migration runs.
            _run_script(self._db, _SCHEMA)
            if version == 1:
                _run_script(self._db, _MIGRATE_1_TO_2)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """A durable write: committed before this returns, with any group waiting before it."""
        with self._lock:
            self._db.execute(sql, params)
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _write_soon(self, sql: str, params: tuple[Any, ...]) -> None:
        """A redoable write (see the module docstring): joins the open group, committed with the
        next durable write or once the group is old or large enough."""
        with self._lock:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
                self._group_started, self._group_writes = time.monotonic(), 0
            self._db.execute(sql, params)
            self._group_writes += 1
            if (self._group_writes >= GROUP_COMMIT_WRITES
                    or time.monotonic() - self._group_started >= GROUP_COMMIT_SECONDS):
                self._db.execute("COMMIT")

    def flush(self) -> None:
        """Commit the open group of redoable writes (the end of a run, a reader about to look)."""
        with self._lock:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ runs
    def start_run(self, *, source: str, model: str | None, destination: str | None, policy: str, options: dict[str, Any],
                  fingerprint: str | None = None) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, source, model, destination, policy, options, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), display_path(source), model, destination, policy, json.dumps(options, default=str), fingerprint),
            )
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            return int(cursor.lastrowid)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        """A run without a model records, as its fingerprint, those it reused (``summary["reused_from"]``)."""
        reused = ", ".join(sorted(str(entry["fingerprint"]) for entry in summary.get("reused_from") or ()))
        self._write(
            "UPDATE runs SET finished_at = ?, status = ?, summary = ?, fingerprint = COALESCE(fingerprint, NULLIF(?, '')) WHERE id = ?",
            (time.time(), status, json.dumps(summary, default=str), reused, run_id),
        )

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT id, started_at, finished_at, status, source, model, fingerprint, destination, summary FROM runs ORDER BY id"
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ predictions
    def record_fingerprint(self, fingerprint: str, model: str, settings: Mapping[str, Any] | None) -> None:
        """Remember what went into a fingerprint, so that a later run without the model can say it."""
        self._write(
            """INSERT INTO fingerprints VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET
               settings = COALESCE(fingerprints.settings, excluded.settings)""",
            (fingerprint, model, json.dumps(settings) if settings is not None else None, time.time()),
        )

    def fingerprint_settings(self, fingerprint: str) -> dict[str, Any] | None:
        """The settings recorded for a fingerprint; ``None`` when never recorded (schema 1, a 0.1 backend)."""
        row = self._one("SELECT settings FROM fingerprints WHERE fingerprint = ?", (fingerprint,))
        return json.loads(row[0]) if row and row[0] else None

    def prediction(self, image: ImageFile, fingerprint: str) -> Prediction | None:
        """This image's prediction by exactly this fingerprint (model and settings); ``None`` also
        when the stored one is no longer valid (``NaN`` written by alpolicy 0.1): the model can
        infer it again, and the new prediction replaces the bad row."""
        row = self._one("SELECT prediction FROM predictions WHERE image_key = ? AND fingerprint = ?", (image.key, fingerprint))
        if row is None:
            return None
        try:
            return read_stored_prediction(row[0])
        except PredictionFormatError as error:
            log.warning("the stored prediction of %s is not valid (%s): inferring it again", image.path, error)
            return None

    def latest_prediction(self, image: ImageFile) -> StoredPrediction | None:
        """The latest stored prediction of this image, whatever produced it (``--reuse-predictions``).

        Raises :class:`~alpolicy.policy.prediction.PredictionFormatError` when it is no longer valid
        (``NaN`` written by alpolicy 0.1): without a model, that image cannot be decided.
        """
        row = self._one(
            "SELECT fingerprint, model, prediction FROM predictions WHERE image_key = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (image.key,),
        )
        return StoredPrediction(row[0], row[1], read_stored_prediction(row[2])) if row else None

    def any_prediction(self, image: ImageFile) -> tuple[str, Prediction] | None:
        """(model, prediction): :meth:`latest_prediction` without its fingerprint (the 0.1 API)."""
        stored = self.latest_prediction(image)
        return (stored.model, stored.prediction) if stored is not None else None

    def save_prediction(self, image: ImageFile, model: str, prediction: Prediction, *, fingerprint: str | None = None) -> None:
        """Store under ``fingerprint`` (default: ``model``, as for a backend without a fingerprint)."""
        self._write_soon(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
            (image.key, fingerprint or model, model, image.display_path, json.dumps(prediction.to_json(), separators=(",", ":")),
             time.time()),
        )

    def iter_predictions(self, model: str | None = None) -> Iterator[tuple[str, str, Prediction]]:
        """(path, model, prediction) for every stored prediction, in the order written (what-if
        reports, re-triage); a model stored at several fingerprints yields all of them, the latest last.
        A prediction that is no longer valid (``NaN`` written by alpolicy 0.1) is skipped, with a warning."""
        sql = "SELECT path, model, prediction FROM predictions"
        params: tuple[Any, ...] = ()
        if model is not None:
            sql, params = sql + " WHERE model = ?", (model,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY rowid", params).fetchall()
        for path, model_id, text in rows:
            try:
                yield path, model_id, read_stored_prediction(text)
            except PredictionFormatError as error:
                log.warning("skipping the stored prediction of %s: %s", path, error)

    # ------------------------------------------------------------------ deliveries
    def delivery(self, image: ImageFile, destination: str) -> DeliveryRecord | None:
        row = self._one(
            "SELECT state, remote_id, attempts, error FROM deliveries WHERE image_key = ? AND destination = ?",
            (image.key, destination),
        )
        return DeliveryRecord(*row) if row else None

    def mark_sending(self, image: ImageFile, destination: str, run_id: int) -> None:
        """Commit the intent to send, before the destination is called."""
        self._write(
            """INSERT INTO deliveries (image_key, destination, path, state, attempts, updated_at, run_id)
               VALUES (?, ?, ?, 'sending', 1, ?, ?)
               ON CONFLICT (image_key, destination) DO UPDATE SET
                 state = CASE WHEN state = 'uploaded' THEN 'uploaded' ELSE 'sending' END,
                 attempts = attempts + 1, error = NULL, updated_at = excluded.updated_at, run_id = excluded.run_id""",
            (image.key, destination, image.display_path, time.time(), run_id),
        )

    def mark_uploaded(self, image: ImageFile, destination: str, remote_id: str) -> None:
        """Checkpoint: the item exists remotely; a resume only finishes the remaining steps."""
        self._write(
            "UPDATE deliveries SET state = 'uploaded', remote_id = ?, updated_at = ? WHERE image_key = ? AND destination = ?",
            (remote_id, time.time(), image.key, destination),
        )

    def mark_sent(self, image: ImageFile, destination: str, remote_id: str, url: str | None, duplicate: bool) -> None:
        self._write(
            """UPDATE deliveries SET state = 'sent', remote_id = ?, url = ?, duplicate = ?, error = NULL, updated_at = ?
               WHERE image_key = ? AND destination = ?""",
            (remote_id, url, int(duplicate), time.time(), image.key, destination),
        )

    def mark_unsent(self, image: ImageFile, destination: str, error: str, *, permanent: bool) -> None:
        """A failed send: ``failed`` (never retried automatically) or ``pending`` (the next run retries)."""
        self._write(
            """UPDATE deliveries SET state = CASE WHEN ? THEN 'failed'
                                              WHEN state = 'uploaded' THEN 'uploaded' ELSE 'pending' END,
                                     error = ?, updated_at = ?
               WHERE image_key = ? AND destination = ?""",
            (int(permanent), error, time.time(), image.key, destination),
        )

    def delivery_counts(self, destination: str | None = None) -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM deliveries"
        params: tuple[Any, ...] = ()
        if destination is not None:
            sql, params = sql + " WHERE destination = ?", (destination,)
        with self._lock:
            return dict(self._db.execute(sql + " GROUP BY state", params).fetchall())

    # ------------------------------------------------------------------ decisions and failures
    def save_decision(self, run_id: int, seq: int, image: ImageFile, record: dict[str, Any]) -> None:
        self._write_soon(
            "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id, seq, image.key, image.display_path, _flag(record.get("qualifies")), int(record.get("sampled", False)),
                record.get("rejected_by"), record.get("score"), json.dumps(record, default=str, ensure_ascii=False),
            ),
        )

    def record_failure(self, run_id: int, image: ImageFile, stage: str, error: str) -> None:
        self._write_soon(
            "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)", (run_id, image.key, image.display_path, stage, error, time.time())
        )

    def failures(self, run_id: int | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT run_id, path, stage, error FROM failures", ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        with self._lock:
            return [dict(zip(("run_id", "path", "stage", "error"), row)) for row in self._db.execute(sql, params)]

    # ------------------------------------------------------------------ sampling usage
    def sampling_ledger(self, *, scratch: bool = False) -> "SamplingLedger":
        """The sampling usage a run reads and records: the journal's own, or (``scratch``, a dry
        run) a layer over it that a later run never sees. See :class:`SamplingLedger`."""
        return SamplingLedger(self, scratch)

    def close(self) -> None:
        with self._lock:
            if self._db.in_transaction:
                self._db.execute("COMMIT")
            self._db.close()


_scratch_ids = itertools.count(1)


class SamplingLedger:
    """Sampling usage: which images each rule took (charges, per class) and the perceptual hashes
    of sampled images (``near_duplicate`` with ``scope: all``).

    A real run's ledger reads and writes the journal's tables. A *scratch* ledger (a dry run)
    reads them as well -- it decides as a real run would, given the usage real runs recorded --
    but records its own charges and hashes in TEMP tables of the journal's connection. SQLite
    keeps TEMP tables out of the journal file and drops them with the connection, so nothing a
    dry run took is read back by a later run (nor by another dry run: each ledger has its own).
    """

    def __init__(self, journal: Journal, scratch: bool) -> None:
        self._journal, self.scratch = journal, scratch
        charges, hashes = "main.sampling_charges", "main.sampled_hashes"
        self._charges = self._own_charges = charges
        self._hashes = self._own_hashes = hashes
        if scratch:
            n = next(_scratch_ids)  # identifiers made here, never from user input
            self._own_charges, self._own_hashes = f"temp.scratch_charges_{n}", f"temp.scratch_hashes_{n}"
            with journal._lock:
                journal._db.executescript(
                    f"CREATE TEMP TABLE scratch_charges_{n} {_CHARGES};"
                    f"CREATE INDEX temp.scratch_charges_{n}_by_time ON scratch_charges_{n} (rule, class, at);"
                    f"CREATE TEMP TABLE scratch_hashes_{n} {_HASHES};"
                )
            self._charges = f"(SELECT * FROM {charges} UNION ALL SELECT * FROM {self._own_charges})"
            self._hashes = f"(SELECT * FROM {hashes} UNION ALL SELECT * FROM {self._own_hashes})"

    def charge(self, rule: str, image: ImageFile, cls: str, run_id: int, at: float) -> None:
        """Count one sampled image against a rule (once per image: a resume does not pay twice)."""
        self._journal._write_soon(
            f"""INSERT OR IGNORE INTO {self._own_charges} SELECT ?, ?, ?, ?, ?
                WHERE NOT EXISTS (SELECT 1 FROM {self._charges} WHERE rule = ? AND image_key = ? AND class = ?)""",
            (rule, image.key, cls, run_id, at, rule, image.key, cls),
        )

    def holds(self, rule: str, image: ImageFile, cls: str = "") -> bool:
        """True when this image already holds a place in this rule's usage (it was sampled before)."""
        sql = f"SELECT 1 FROM {self._charges} WHERE rule = ? AND image_key = ? AND class = ? LIMIT 1"
        return self._journal._one(sql, (rule, image.key, cls)) is not None

    def count(self, rule: str, cls: str = "", *, run_id: int | None = None, since: float | None = None) -> int:
        sql, params = f"SELECT COUNT(*) FROM {self._charges} WHERE rule = ? AND class = ?", [rule, cls]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        row = self._journal._one(sql, tuple(params))
        return int(row[0]) if row else 0

    def add_hash(self, rule: str, image_key: str, value: int) -> None:
        """Keep a sampled image's perceptual hash (64-bit, stored signed) for later runs."""
        signed = value - (1 << 64) if value >= 1 << 63 else value
        self._journal._write_soon(
            f"""INSERT OR IGNORE INTO {self._own_hashes} SELECT ?, ?, ?
                WHERE NOT EXISTS (SELECT 1 FROM {self._hashes} WHERE rule = ? AND image_key = ?)""",
            (rule, image_key, signed, rule, image_key),
        )

    def hashes(self, rule: str) -> list[tuple[str, int]]:
        rows = self._journal._all(f"SELECT image_key, hash FROM {self._hashes} WHERE rule = ?", (rule,))
        return [(key, value + (1 << 64) if value < 0 else value) for key, value in rows]


def read_stored_prediction(text: str) -> Prediction:
    """A prediction row read back, checked as a model's answer is (alpolicy 0.1 stored ``NaN``
    and ``Infinity`` as it got them; such a row raises
    :class:`~alpolicy.policy.prediction.PredictionFormatError` instead of reaching a rule or a chart).
    Its number of detections is not bounded again: the limit was the run's that stored it."""
    try:
        document = loads(text, max_bytes=None, finite=False)
    except JsonError as error:
        raise PredictionFormatError(f"stored prediction: {error}") from None
    return Prediction.from_json(document, check=True, max_detections=None)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement, inside the caller's transaction (``executescript`` would commit it)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _flag(value: bool | None) -> int | None:
    """Booleans as 0/1, ``None`` (not decided: the image failed) as NULL."""
    return None if value is None else int(value)
