"""The hostile-input corpus (``tests/corpus/``) through every backend and every destination.

Every image, name and folder entry, mixed with good images in one source folder, goes through
each backend -- ``replay:`` (a predictions folder), the loopback Roboflow model, ``onnx:demo`` --
into each destination -- ``folder:``, ``roboflow:`` (loopback) and, once (it is slow to start),
a real Label Studio -- and each run is run again. For every entry the test asserts its expected
outcome on that route (:class:`tests.corpus.Outcome`): accepted (sent, exactly once: upload
requests are counted at the server), failed alone with one line, or skipped and counted; that
the run completes (no exception escapes, no journal run left ``running``) and that the rerun
finishes, sending nothing again. Prediction entries go through the Roboflow backend (raw answers)
and replay (files); policy entries through ``alpolicy validate``, ``Policy.from_dict`` and
``alpolicy run --dry-run``; destination entries (hostile answers and files) through the
Roboflow and folder destinations. Hypothesis then generates more policies, prediction documents
and file bytes (mutations of a valid JPEG and PNG) in a bounded number of examples, each held to
the same invariant -- a one-line failure of that input, or acceptance; never an exception.

Every figure is observed, never written down: each test records what it saw per entry and
route (:func:`observe`); the last test, ``test_zz_write_the_corpus_tally``, prints one line per
corpus kind and writes ``test-artifacts/corpus-tally.json``, quoted in RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

import alpolicy
from alpolicy import Policy, PolicyError, RunOptions
from alpolicy.cli import main as cli_main
from alpolicy.images import DEFAULT_EXTENSIONS, ImageDecodeError, ImageFile, display_path
from alpolicy.journal import Journal
from alpolicy.policy_json import loads as load_policy_text
from alpolicy.prediction import PredictionFormatError, parse_prediction
from alpolicy.secrets import register

from . import corpus
from .cli import alpolicy as alpolicy_subprocess
from .conftest import API_KEY, make_frames
from .corpus import ACCEPTED, KINDS, Entry, Outcome, destinations, folders, images, names, policies, predictions
from .servers.labelstudio import LEGACY_TOKEN, LabelStudio, LabelStudioMissing

register(LEGACY_TOKEN)
pytestmark = [pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
              pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")]  # the corpus holds both

TAKE_ALL = {"version": 1, "name": "take-all", "image": {"rule": "detection_count", "min": 0}}
GOOD = 4  # good images around the hostile ones
BACKENDS = ("replay", "roboflow", "onnx")
MODEL = {"roboflow": "roboflow:vehicles/3", "onnx": "onnx:demo"}  # replay: the predictions folder
EXTENSIONS = (*DEFAULT_EXTENSIONS, ".gif")  # the corpus has GIFs


# ---------------------------------------------------------------------------------- the tally
@dataclass
class Tally:
    """What the tests saw of one corpus kind: verdicts per (entry, route), from first runs."""

    entries: set[str] = field(default_factory=set)
    routes: set[tuple[str, str]] = field(default_factory=set)
    verdicts: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    reruns: int = 0
    good_sent: int = 0  # good images (and accepted entries) sent by first runs
    good_requests: int = 0  # the upload requests (or stored copies) the destinations counted for them

    def to_json(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "routes": sorted("{} > {}".format(*route) for route in self.routes),
                "verdicts": dict(sorted(self.verdicts.items())), "runs": self.runs, "reruns": self.reruns,
                "good_sent": self.good_sent, "good_requests": self.good_requests}


TALLY: dict[str, Tally] = defaultdict(Tally)
#: The tests that recorded an observation (the tally test checks every test of the file did).
RECORDED: set[str] = set()


def observe(request: pytest.FixtureRequest, kind: str, entry_id: str, route: tuple[str, str], verdict: str) -> None:
    tally = TALLY[kind]
    tally.entries.add(entry_id)
    tally.routes.add(route)
    tally.verdicts[verdict] += 1
    RECORDED.add(request.node.name)


@contextlib.contextmanager
def escapes_recorded(request: pytest.FixtureRequest, kind: str, ids: list[str], route: tuple[str, str]) -> Iterator[None]:
    """An exception escaping alpolicy is recorded as ``escaped`` for every entry of the run, then
    fails the test (the tally line shows it even if the test is read no further)."""
    try:
        yield
    except Exception:
        for entry_id in ids:
            observe(request, kind, entry_id, route, "escaped")
        raise


def one_line(error: str) -> bool:
    """One line, no traceback, short -- but it may quote two 255-byte names."""
    return "\n" not in error and "\r" not in error and "Traceback" not in error and len(error) < 1000


# ---------------------------------------------------------------------------------- the source folder
@dataclass
class Source:
    """One source folder holding every image, name and folder entry and GOOD good images."""

    src: Path
    outside: Path
    predictions: Path
    files: dict[str, Entry]  # shown base name -> image or name entry
    folder_entries: list[Entry]
    good: list[str]  # shown base names
    sha: dict[str, str]  # shown base name -> sha256 of the content

    def expected(self, backend: str, destination: str) -> dict[str, Outcome]:
        table = {name: entry.outcome(backend, destination) for name, entry in self.files.items()}
        table.update({name: ACCEPTED for name in self.good})
        return table


def _write(folder: Path, name: str | bytes, data: bytes) -> str:
    """Write the file (a name that is not UTF-8 through bytes); its shown base name."""
    path = os.fsencode(folder) + b"/" + (name if isinstance(name, bytes) else os.fsencode(name))
    with open(path, "wb") as handle:
        handle.write(data)
    return display_path(os.fsdecode(path)).rsplit("/", 1)[-1]


def _replay_prediction(path: bytes, size: tuple[int, int] | None) -> dict[str, Any]:
    """One confident car in the middle, in the displayed size (or the size the entry declares)."""
    if size is None:
        with Image.open(path) as picture:
            size = ImageOps.exif_transpose(picture).size
    width, height = size
    box = {"x": width / 2, "y": height / 2, "width": width / 4, "height": height / 4,
           "confidence": 0.9, "class": "car", "class_id": 0}
    return {"image": {"width": width, "height": height}, "predictions": [box]}


def _write_prediction(predictions: Path, name: bytes, document: dict[str, Any]) -> None:
    """``<name>.json``, else ``<stem>.json`` (replay looks up both), when either fits NAME_MAX."""
    for candidate in (name + b".json", name.rsplit(b".", 1)[0] + b".json"):
        if len(candidate) <= names.NAME_MAX:
            with open(os.fsencode(predictions) + b"/" + candidate, "w", encoding="utf-8") as handle:
                json.dump(document, handle)
            return


def build_source(root: Path) -> Source:
    src, outside, stored = root / "src", root / "outside", root / "predictions"
    for folder in (src, outside, stored):
        folder.mkdir(parents=True)
    files: dict[str, Entry] = {}
    sha: dict[str, str] = {}
    for entry in [*images.entries(), *names.entries()]:
        data = entry.make()
        shown = _write(src, entry.name, data)
        assert shown not in files, f"two entries named {shown}"
        files[shown], sha[shown] = entry, hashlib.sha256(data).hexdigest()
    good = []
    for path in make_frames(src, GOOD, seed=77):
        good.append(path.name)
        sha[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    folder_entries = folders.entries()
    for entry in folder_entries:
        entry.make()(src, outside)
    for shown, entry in [*files.items(), *((name, None) for name in good)]:
        name = os.fsencode(entry.name) if entry is not None and entry.name is not None else os.fsencode(shown)
        try:
            document = _replay_prediction(os.fsencode(src) + b"/" + name, entry.size if entry else None)
        except Exception:  # not an image: a made-up size, as a stored prediction could say anything
            document = _replay_prediction(b"", (32, 32))
        _write_prediction(stored, name, document)
    return Source(src, outside, stored, files, folder_entries, good, sha)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    return build_source(tmp_path_factory.mktemp("corpus"))


# ---------------------------------------------------------------------------------- one run, checked
def run_options(journal: Path, **extra: Any) -> RunOptions:
    options = RunOptions(journal=str(journal), progress=False, concurrency=4)
    options.destination_options.extra.update(extra)
    options.destination_options.retry_backoff = 0.05
    return options


def triage(source: Source, backend: str, destination: str, options: RunOptions) -> alpolicy.RunReport:
    model = f"replay:{source.predictions}" if backend == "replay" else MODEL[backend]
    return alpolicy.run(str(source.src), Policy.from_dict(TAKE_ALL), model=model, destination=destination,
                        options=options, recursive=True, extensions=EXTENSIONS)


def journal_view(report: alpolicy.RunReport) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The run's failures by shown base name, and the status of every run of the journal."""
    journal = Journal(report.journal)
    try:
        failures = {f["path"].rsplit("/", 1)[-1]: f for f in journal.failures(report.run_id)}
        statuses = [run["status"] for run in journal.runs()]
    finally:
        journal.close()
    return failures, statuses


def sent_names(report: alpolicy.RunReport) -> dict[str, str]:
    """Shown base name -> remote id, of the images this run sent (its decisions log)."""
    if not report.decisions_log or not os.path.exists(report.decisions_log):
        return {}
    sent = {}
    for line in Path(report.decisions_log).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("remote_id"):
            sent[record["image"].rsplit("/", 1)[-1]] = record["remote_id"]
    return sent


def check_run(request, source: Source, report, backend: str, destination: str, *, first: bool) -> list[str]:
    """Every file's outcome on this route (recorded on a first run), the skipped links, the
    counts; returns the names that must have been sent."""
    route = (backend, destination)
    expected = source.expected(backend, destination)
    failures, statuses = journal_view(report)
    sent = sent_names(report)
    wrong = []
    for name, outcome in expected.items():
        failure = failures.get(name)
        if outcome.verdict == "accepted":
            ok = failure is None and (name in sent if first else name not in sent)
            verdict = "accepted" if ok else "wrong"
        else:
            ok = failure is not None and outcome.matches(failure["stage"], failure["error"]) and one_line(failure["error"])
            verdict = "failed alone" if ok else "wrong"
        if not ok:
            wrong.append(f"{name!r}: expected {outcome}, saw {failure or ('sent' if name in sent else 'nothing')}")
        entry = source.files.get(name)
        if first and entry is not None:
            observe(request, entry.kind, entry.id, route, verdict)
    unexpected = sorted(set(failures) - set(expected))
    assert not unexpected, f"failures of files that are not corpus inputs: {unexpected}"

    # The folder entries: never an input (no failure, no decision), each counted where it says.
    skipped = Counter(entry.outcome().reason for entry in source.folder_entries if entry.outcome().verdict == "skipped")
    folder_ok = dict(report.skipped) == dict(skipped)
    if not folder_ok:
        wrong.append(f"skipped {dict(report.skipped)}, expected {dict(skipped)}")
    if first:
        for entry in source.folder_entries:
            observe(request, "folders", entry.id, route, entry.outcome().verdict if folder_ok else "wrong")
    assert not wrong, f"{backend} into {destination}:\n" + "\n".join(wrong)

    accepted = [name for name, outcome in expected.items() if outcome.verdict == "accepted"]
    failing = [name for name in expected if name not in accepted]
    assert report.status == "completed" and "running" not in statuses, (report.status, statuses)
    assert (report.failed, report.pending) == (len(failing), 0), report.failures
    assert (report.sent, report.already_sent) == ((len(accepted), 0) if first else (0, len(accepted)))
    assert report.seen == len(expected)
    return accepted


def check_sent_once(request, source: Source, accepted: list[str], counts: dict[str, int], backend: str, destination: str) -> None:
    """Each accepted image was sent exactly once over both runs (``counts``: upload requests, or
    stored copies, per content sha256), each failed before the send never at all."""
    for name in accepted:
        assert counts.get(source.sha[name], 0) == 1, (backend, destination, name, counts.get(source.sha[name]))
    expected = source.expected(backend, destination)
    for name, outcome in expected.items():
        if outcome.verdict == "fails" and outcome.stage == "inference":
            assert counts.get(source.sha[name], 0) == 0, (backend, destination, name)
    for kind in {source.files[name].kind for name in accepted if name in source.files} | {"images"}:
        tally = TALLY[kind]
        mine = [name for name in accepted if (source.files[name].kind if name in source.files else "images") == kind]
        tally.good_sent += len(mine)
        tally.good_requests += sum(counts.get(source.sha[name], 0) for name in mine)
        tally.runs += 1
        tally.reruns += 1


def stored_copies(folder: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in (folder / "images").iterdir():
        counts[hashlib.sha256(path.read_bytes()).hexdigest()] += 1
    return dict(counts)


def upload_requests(server) -> dict[str, int]:
    return {sha: counts.requests for sha, counts in server.requests["upload"].images.items()}


# ---------------------------------------------------------------------------------- images, names, folders
@pytest.mark.parametrize("backend", BACKENDS)
def test_files_into_a_folder(request, source, roboflow, env, tmp_path, backend):
    if backend == "onnx":
        pytest.importorskip("alpolicy_onnx")
    out = tmp_path / "out"
    ids = [entry.id for entry in source.files.values()]
    reports = []
    for first in (True, False):
        with escapes_recorded(request, "images", ids, (backend, "folder")):
            report = triage(source, backend, f"folder:{out}", run_options(tmp_path / "journal.sqlite"))
        reports.append(report)
        accepted = check_run(request, source, report, backend, "folder", first=first)
    check_sent_once(request, source, accepted, stored_copies(out), backend, "folder")
    coco = json.loads((out / "annotations.coco.json").read_text(encoding="utf-8"))
    assert len(coco["images"]) == len(accepted)
    outside = {hashlib.sha256(path.read_bytes()).hexdigest() for path in source.outside.rglob("*.jpg")}
    assert not outside & set(stored_copies(out)), "a file outside the source folder was sent"


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_into_roboflow(request, source, roboflow, env, tmp_path, backend):
    if backend == "onnx":
        pytest.importorskip("alpolicy_onnx")
    ids = [entry.id for entry in source.files.values()]
    for first in (True, False):
        with escapes_recorded(request, "images", ids, (backend, "roboflow")):
            report = triage(source, backend, "roboflow:corpus", run_options(tmp_path / "journal.sqlite"))
        accepted = check_run(request, source, report, backend, "roboflow", first=first)
    check_sent_once(request, source, accepted, upload_requests(roboflow), backend, "roboflow")
    stored = {image["sha256"] for image in roboflow.images("corpus")}
    assert stored == {source.sha[name] for name in accepted}
    assert all(len(calls) == 1 for calls in roboflow.annotations("corpus").values())


def test_the_real_cli_over_the_whole_source(request, source, tmp_path):
    """The same corpus through the command a user types: exit 1, a JSON report, no traceback."""
    policy = tmp_path / "take-all.json"
    policy.write_text(json.dumps(TAKE_ALL))
    out = tmp_path / "out"
    for first in (True, False):
        result = alpolicy_subprocess("run", str(source.src), "--recursive", *(f"--extension={ext}" for ext in EXTENSIONS),
                                     "--model", f"replay:{source.predictions}",
                                     "--policy", str(policy), "--to", f"folder:{out}", "--json", "--no-progress",
                                     "--journal", str(tmp_path / "journal.sqlite"), timeout=300)
        assert result.code == 1 and "Traceback" not in result.err, result.err[-3000:]
        report = json.loads(result.out)
        expected = source.expected("replay", "folder")
        accepted = sum(1 for outcome in expected.values() if outcome.verdict == "accepted")
        assert report["status"] == "completed" and report["failed"] == len(expected) - accepted
        assert (report["sent"], report["already_sent"]) == ((accepted, 0) if first else (0, accepted))
    RECORDED.add(request.node.name)
