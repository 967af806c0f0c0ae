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
import importlib.util
import io
import json
import os
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

import alpolicy
from alpolicy import Policy, PolicyError, RunOptions
from alpolicy.cli import main as cli_main
from alpolicy.io.images import DEFAULT_EXTENSIONS, ImageDecodeError, ImageFile, display_path
from alpolicy.runtime.journal import Journal
from alpolicy.policy.policy_json import loads as load_policy_text
from alpolicy.policy.prediction import PredictionFormatError, parse_prediction
from alpolicy.io.secrets import register

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
FILE_KINDS = ("images", "names", "folders")  # the kinds in the one source folder


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
    good_once: int = 0  # of them, those the destination counted exactly once over both runs
    by_route: dict[str, Counter[str]] = field(default_factory=dict)  # generated inputs: verdicts per route

    def to_json(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "routes": sorted("{} > {}".format(*route) for route in self.routes),
                "verdicts": dict(sorted(self.verdicts.items())), "runs": self.runs, "reruns": self.reruns,
                "good_sent": self.good_sent, "good_sent_exactly_once": self.good_once,
                "by_route": {route: dict(sorted(counts.items())) for route, counts in self.by_route.items()}}


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
def escapes_recorded(request: pytest.FixtureRequest, entries: Iterable[Entry], route: tuple[str, str]) -> Iterator[None]:
    """An exception escaping alpolicy is recorded as ``escaped`` for every entry of the run, then
    fails the test (the tally line shows it even if the test is read no further)."""
    try:
        yield
    except Exception:
        for entry in entries:
            observe(request, entry.kind, entry.id, route, "escaped")
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


def _write_prediction(folder: Path, name: bytes, document: dict[str, Any]) -> None:
    """``<name>.json``, else ``<stem>.json`` (replay looks up both), when either fits NAME_MAX."""
    for candidate in (name + b".json", name.rsplit(b".", 1)[0] + b".json"):
        if len(candidate) <= names.NAME_MAX:
            with open(os.fsencode(folder) + b"/" + candidate, "w", encoding="utf-8") as handle:
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


def check_outcomes(request, report, expected: dict[str, Outcome], entries: dict[str, Entry], route: tuple[str, str],
                   *, first: bool) -> list[str]:
    """Each file's outcome on this route, from the journal and the decisions log (recorded for the
    tally on a first run), and the run's counts; returns the names that must have been sent."""
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
        if first and name in entries:
            observe(request, entries[name].kind, entries[name].id, route, verdict)
    unexpected = sorted(set(failures) - set(expected))
    assert not unexpected, f"failures of files that are not inputs: {unexpected}"
    assert not wrong, "{} into {}:\n".format(*route) + "\n".join(wrong)
    accepted = [name for name, outcome in expected.items() if outcome.verdict == "accepted"]
    assert report.status == "completed" and "running" not in statuses, (report.status, statuses)
    assert (report.failed, report.pending) == (len(expected) - len(accepted), 0), report.failures
    assert (report.sent, report.already_sent) == ((len(accepted), 0) if first else (0, len(accepted)))
    assert report.seen == len(expected)
    return accepted


def check_run(request, source: Source, report, backend: str, destination: str, *, first: bool) -> list[str]:
    """:func:`check_outcomes` for the corpus source, and its folder entries: never an input (no
    failure, no decision), each skipped and counted, or ignored, as it says."""
    route = (backend, destination)
    skipped = Counter(entry.outcome().reason for entry in source.folder_entries if entry.outcome().verdict == "skipped")
    folder_ok = dict(report.skipped) == dict(skipped)
    if first:
        for entry in source.folder_entries:
            observe(request, "folders", entry.id, route, entry.outcome().verdict if folder_ok else "wrong")
    assert folder_ok, (route, dict(report.skipped), dict(skipped))
    return check_outcomes(request, report, source.expected(backend, destination), source.files, route, first=first)


def check_sent_once(expected: dict[str, Outcome], entries: dict[str, Entry], sha: dict[str, str], counts: dict[str, int],
                    route: tuple[str, str], kinds: tuple[str, ...]) -> None:
    """Each accepted image was sent exactly once over both runs (``counts``: upload requests, or
    stored copies, per content sha256); each that failed, never (all fail before the destination).
    Tallied first."""
    for kind in kinds:
        TALLY[kind].runs += 1
        TALLY[kind].reruns += 1
    accepted = [name for name, outcome in expected.items() if outcome.verdict == "accepted"]
    for name in accepted:
        tally = TALLY[entries[name].kind if name in entries else kinds[0]]
        tally.good_sent += 1
        tally.good_once += counts.get(sha[name], 0) == 1
    for name in accepted:
        assert counts.get(sha[name], 0) == 1, (route, name, counts.get(sha[name]))
    for name, outcome in expected.items():
        if outcome.verdict == "fails":
            assert counts.get(sha[name], 0) == 0, (route, name, "a failed image reached the destination")


def stored_copies(folder: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in (folder / "images").iterdir():
        counts[hashlib.sha256(path.read_bytes()).hexdigest()] += 1
    return dict(counts)


def upload_requests(server) -> dict[str, int]:
    return {sha: counts.requests for sha, counts in server.requests["upload"].images.items()}


# ---------------------------------------------------------------------------------- images, names, folders
def skip_unless_onnx(request) -> None:
    """``onnx:demo`` needs the plugin (``plugins/alpolicy-onnx``); a skip is noted for the tally."""
    if importlib.util.find_spec("alpolicy_onnx") is None:
        RECORDED.add(request.node.name)
        pytest.skip("the alpolicy-onnx plugin is not installed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_into_a_folder(request, source, roboflow, env, tmp_path, backend):
    if backend == "onnx":
        skip_unless_onnx(request)
    out = tmp_path / "out"
    for first in (True, False):
        with escapes_recorded(request, source.files.values(), (backend, "folder")):
            report = triage(source, backend, f"folder:{out}", run_options(tmp_path / "journal.sqlite"))
        accepted = check_run(request, source, report, backend, "folder", first=first)
    check_sent_once(source.expected(backend, "folder"), source.files, source.sha, stored_copies(out), (backend, "folder"),
                    FILE_KINDS)
    coco = json.loads((out / "annotations.coco.json").read_text(encoding="utf-8"))
    assert len(coco["images"]) == len(accepted)
    outside = {hashlib.sha256(path.read_bytes()).hexdigest() for path in source.outside.rglob("*.jpg")}
    assert not outside & set(stored_copies(out)), "a file outside the source folder was sent"


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_into_roboflow(request, source, roboflow, env, tmp_path, backend):
    if backend == "onnx":
        skip_unless_onnx(request)
    for first in (True, False):
        with escapes_recorded(request, source.files.values(), (backend, "roboflow")):
            report = triage(source, backend, "roboflow:corpus", run_options(tmp_path / "journal.sqlite"))
        accepted = check_run(request, source, report, backend, "roboflow", first=first)
    check_sent_once(source.expected(backend, "roboflow"), source.files, source.sha, upload_requests(roboflow),
                    (backend, "roboflow"), FILE_KINDS)
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


# ---------------------------------------------------------------------------------- predictions
def prediction_frames(folder: Path) -> tuple[dict[str, Entry], dict[str, Outcome], dict[str, str]]:
    """One frame per prediction entry, then GOOD frames: ``{frame: entry}``, the expected outcome
    of every frame, and every frame's sha256."""
    entries = predictions.entries()
    paths = make_frames(folder, len(entries) + GOOD, seed=5)
    by_frame = {path.name: entry for path, entry in zip(paths, entries)}
    expected = {path.name: by_frame[path.name].outcome() if path.name in by_frame else ACCEPTED for path in paths}
    return by_frame, expected, {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def test_predictions_answered_by_the_inference_server(request, roboflow, env, tmp_path):
    src = tmp_path / "src"
    by_frame, expected, sha = prediction_frames(src)
    answers = {sha[name]: entry.make() for name, entry in by_frame.items()}
    roboflow.add_model("vehicles", 3, answer=lambda image: answers.get(hashlib.sha256(image).hexdigest()))
    route = ("roboflow", "roboflow")
    for first in (True, False):
        with escapes_recorded(request, by_frame.values(), route):
            report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model="roboflow:vehicles/3",
                                  destination="roboflow:answers", options=run_options(tmp_path / "journal.sqlite"))
        check_outcomes(request, report, expected, by_frame, route, first=first)
    check_sent_once(expected, by_frame, sha, upload_requests(roboflow), route, ("predictions",))
    received = json.dumps([roboflow.images("answers"), roboflow.annotations("answers")])
    assert API_KEY not in received and "***" in received  # the echoed key arrived masked


def test_predictions_stored_in_files(request, tmp_path):
    src, stored, out = tmp_path / "src", tmp_path / "stored", tmp_path / "out"
    by_frame, expected, sha = prediction_frames(src)
    stored.mkdir()
    for name in expected:
        raw = by_frame[name].make() if name in by_frame else predictions.GOOD
        (stored / f"{Path(name).stem}.json").write_bytes(raw)
    route = ("replay", "folder")
    for first in (True, False):
        with escapes_recorded(request, by_frame.values(), route):
            report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}",
                                  destination=f"folder:{out}", options=run_options(tmp_path / "journal.sqlite"))
        check_outcomes(request, report, expected, by_frame, route, first=first)
    check_sent_once(expected, by_frame, sha, stored_copies(out), route, ("predictions",))
    written = [path for path in out.rglob("*") if path.is_file()] + list(tmp_path.glob("journal.sqlite*"))  # + its WAL
    assert not [path for path in written if API_KEY.encode() in path.read_bytes()]


# ---------------------------------------------------------------------------------- policies
def in_process_cli(*args: str) -> tuple[int, str, str]:
    """The real CLI's ``main`` in this process (what the subprocess runs, without its start-up)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[Path, Path]:
    """Three frames and their stored predictions, for dry runs of the policies."""
    root = tmp_path_factory.mktemp("replayed")
    frames = make_frames(root / "frames", 3)
    (root / "predictions").mkdir()
    for frame in frames:
        (root / "predictions" / f"{frame.stem}.json").write_bytes(predictions.GOOD)
    return root / "frames", root / "predictions"


def _policy_verdict(outcome: Outcome, code: int, lines: list[str], head: str) -> str:
    """``refused`` / ``accepted`` when the command did what ``outcome`` says, else ``wrong``."""
    if outcome.verdict == "accepted":
        return "accepted" if code == 0 else "wrong"
    refused = code == 2 and len(lines) == 2 and lines[0] == head and outcome.matches("policy", lines[1].strip())
    return "refused in one line" if refused else "wrong"


def test_policies_through_validate_from_dict_and_a_dry_run(request, tmp_path, replayed):
    frames, stored = replayed
    wrong = []
    for entry in policies.entries():
        text, outcome = entry.make(), entry.outcome()
        path = tmp_path / f"{entry.id}.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with escapes_recorded(request, [entry], ("alpolicy validate", "-")):
            code, _, err = in_process_cli("validate", str(path))
        verdict = _policy_verdict(outcome, code, err.splitlines(), f"{path}: 1 problem")
        observe(request, "policies", entry.id, ("alpolicy validate", "-"), verdict)
        wrong += [f"validate {entry.id}: {err[:300]}"] if verdict == "wrong" else []

        with escapes_recorded(request, [entry], ("alpolicy run --dry-run", "-")):
            code, out, err = in_process_cli("run", str(frames), "--model", f"replay:{stored}", "--policy", str(path),
                                            "--dry-run", "--json", "--no-progress", "--journal", str(tmp_path / f"{entry.id}.sqlite"))
        verdict = _policy_verdict(outcome, code, err.splitlines(), f"alpolicy: error: {path}: invalid policy (1 problem)")
        if verdict == "accepted":
            verdict = "accepted" if json.loads(out)["qualified"] == 3 else "wrong"
        observe(request, "policies", entry.id, ("alpolicy run --dry-run", "-"), verdict)
        wrong += [f"run {entry.id}: {err[:300]}"] if verdict == "wrong" else []

        # What Python's json makes of the text (duplicates dropped, NaN a float), as a dict:
        # located problems or a policy, never anything else -- and the same problem where the text's
        # refusal is not one only the strict reader sees.
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            continue  # not a document Python can hold: nothing to give from_dict
        with escapes_recorded(request, [entry], ("Policy.from_dict", "-")):
            try:
                Policy.from_dict(document)
                verdict, line = "accepted", ""
            except PolicyError as error:
                verdict, line = "refused in one line", error.messages[0]
                policies.check(document)  # every problem with a JSON path, on one line
        if not entry.extra.get("text_only"):  # the same verdict, the problem at the same place
            place = entry.extra.get("line", "").split(": ", 1)[0]
            if outcome.verdict != verdict.split(" ")[0] or (line and line.split(": ", 1)[0] != place):
                verdict = "wrong"
        observe(request, "policies", entry.id, ("Policy.from_dict", "-"), verdict)
        wrong += [f"from_dict {entry.id}: {line[:300]}"] if verdict == "wrong" else []
    assert not wrong, "\n".join(wrong)


def test_every_policy_file_in_one_real_validate(request, tmp_path):
    """The subprocess: every hostile file is one located line, and nothing else is printed."""
    paths = []
    for entry in policies.entries():
        path = tmp_path / f"{entry.id}.json"
        path.write_text(entry.make(), encoding="utf-8", errors="surrogatepass")
        paths.append((path, entry.outcome()))
    result = alpolicy_subprocess("validate", *(str(path) for path, _ in paths))
    assert result.code == 2 and "Traceback" not in result.err, result.err[-3000:]
    for path, outcome in paths:
        if outcome.verdict == "accepted":
            assert f"{path}: ok" in result.out
        else:
            at = result.err.index(f"{path}: 1 problem\n")
            line = result.err[at:].splitlines()[1]
            assert outcome.matches("policy", line.strip()), (path, line[:300])
    RECORDED.add(request.node.name)


# ---------------------------------------------------------------------------------- destinations
def test_hostile_answers_of_the_roboflow_api(request, roboflow, env, tmp_path):
    """An upload or a pre-label answered with 100,000 brackets, an HTML page or NaN: that image
    fails at the send, in one line (``response.json()`` raised RecursionError, reported as a crash
    of the destination); the others are sent once."""
    entries = [entry for entry in destinations.entries() if entry.extra["destination"] == "roboflow"]
    src, stored = tmp_path / "src", tmp_path / "stored"
    paths = make_frames(src, len(entries) + GOOD, seed=13)
    stored.mkdir()
    for path in paths:
        (stored / f"{path.stem}.json").write_bytes(predictions.GOOD)
    by_frame = {path.name: entry for path, entry in zip(paths, entries)}
    sha = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    expected = {path.name: by_frame[path.name].outcome() if path.name in by_frame else ACCEPTED for path in paths}
    uploads = {sha[name]: entry.make().body for name, entry in by_frame.items() if entry.make().place == "upload"}
    labels = {sha[name]: entry.make().body for name, entry in by_frame.items() if entry.make().place == "annotate"}

    def label_answer(image_id: bytes) -> bytes | None:
        stored_image = next((image for image in roboflow.images("answers") if image["id"] == image_id.decode()), None)
        return labels.get(stored_image["sha256"]) if stored_image else None

    roboflow.answer_uploads(lambda data: uploads.get(hashlib.sha256(data).hexdigest()))
    roboflow.answer_annotations(label_answer)
    route = ("replay", "roboflow")
    for first in (True, False):
        with escapes_recorded(request, entries, route):
            report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}",
                                  destination="roboflow:answers", options=run_options(tmp_path / "journal.sqlite"))
        check_outcomes(request, report, expected, by_frame, route, first=first)
    good = {name: outcome for name, outcome in expected.items() if outcome.verdict == "accepted"}
    check_sent_once(good, by_frame, sha, upload_requests(roboflow), route, ("destinations",))
    assert all(len(calls) == 1 for calls in roboflow.annotations("answers").values())


def _folder_run(src: Path, stored: Path, out: Path, journal: Path, *extra: str) -> tuple[int, str, str]:
    return in_process_cli("run", str(src), "--model", f"replay:{stored}", "--conditionals", "{}", "--to", f"folder:{out}",
                          "--json", "--no-progress", "--journal", str(journal), *extra)


def test_hostile_files_of_a_folder_destination(request, tmp_path):
    """Its record, its marker, the user's index files (merge=true) holding 100,000 brackets."""
    entries = [entry for entry in destinations.entries() if entry.extra["destination"] == "folder"]
    src, stored = tmp_path / "src", tmp_path / "stored"
    paths = make_frames(src, GOOD, seed=17)
    stored.mkdir()
    for path in paths:
        (stored / f"{path.stem}.json").write_bytes(predictions.GOOD)
    wrong = []
    for entry in entries:
        case, outcome = entry.make(), entry.outcome()
        out, route = tmp_path / entry.id, ("replay", "folder")
        if case.place in ("record", "marker"):  # a folder alpolicy wrote, then broken
            code, _, err = _folder_run(src, stored, out, tmp_path / f"{entry.id}-1.sqlite")
            assert code == 0, err
            target = (sorted((out / ".alpolicy" / "records").iterdir())[0] if case.place == "record"
                      else out / ".alpolicy" / "folder.json")
            target.write_bytes(case.body)
        else:  # the user's dataset, added to
            (out / "images").mkdir(parents=True)
            make_frames(out / "images", 1, seed=19)
            (out / ("annotations.coco.json" if case.place == "coco" else "labelstudio-tasks.json")).write_bytes(case.body)
        with escapes_recorded(request, [entry], route):
            code, report_text, err = _folder_run(src, stored, out, tmp_path / f"{entry.id}-2.sqlite",
                                                 *(["--to-opt", "merge=true"] if case.place in ("coco", "tasks") else []))
        if outcome.verdict == "accepted":
            report = json.loads(report_text) if code == 0 else {}
            copies = stored_copies(out)
            records = [json.loads(path.read_bytes()) for path in (out / ".alpolicy" / "records").iterdir()]
            ok = (code == 0 and report.get("failed") == 0 and report.get("sent") == GOOD  # duplicates among them
                  and sorted(copies.values()) == [1] * GOOD and len(records) == GOOD  # the broken record written anew
                  and len(json.loads((out / "annotations.coco.json").read_text())["images"]) == GOOD)
        else:
            ok = code == 2 and outcome.matches("destination", err)
        observe(request, "destinations", entry.id, route, ("accepted" if outcome.verdict == "accepted" else "refused in one line")
                if ok else "wrong")
        wrong += [] if ok else [f"{entry.id}: code {code}: {err[:300]}"]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------- Hypothesis: more of each kind
#: Bounded: the examples of each kind take seconds, and the whole file stays near a minute.
EXAMPLES = {"policies": 150, "predictions": 200, "image bytes": 150}
#: Generated inputs kept for one pipeline run each at the end (the invariant, end to end).
GENERATED: dict[str, list[Any]] = {"predictions": [], "image bytes": []}
KEEP = 40


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


def _tally_generated(request, kind: str, verdict: str, route: str) -> None:
    """A generated input's verdict on one route (the examples' own checks first, then the runs)."""
    tally = TALLY[f"generated {kind}"]
    tally.verdicts[verdict] += 1
    tally.by_route.setdefault(route, Counter())[verdict] += 1
    tally.routes.add((route, "-"))
    RECORDED.add(request.node.name)


@settings(max_examples=EXAMPLES["policies"], deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(policies.json_values, st.dictionaries(policies.words, policies.hostile_values, max_size=4),
                 st.tuples(st.sampled_from(policies.VALID), st.data()).map(lambda pair: policies.mutate(*pair))))
def test_generated_policies_are_a_policy_or_located_problems(request, document):
    """From a dict (``Policy.from_dict``) and from its text (the strict reader): a policy, or
    problems each with a JSON path and one line; never another exception."""
    if isinstance(document, dict):
        document = {"version": 1, **document}
    verdict = "accepted"
    try:
        Policy.from_dict(document)
    except PolicyError as error:
        assert error.problems and all(policies.PATH.match(problem.path) and "\n" not in problem.message
                                      for problem in error.problems), error.messages
        verdict = "refused in one line"
    except Exception:
        _tally_generated(request, "policies", "escaped", "Policy.from_dict")
        raise
    _tally_generated(request, "policies", verdict, "Policy.from_dict")
    try:
        text = json.dumps(document)  # NaN / Infinity spelt as Python writes them: hostile text
    except (ValueError, RecursionError):
        return
    try:
        load_policy_text(text)
        verdict = "accepted"
    except PolicyError as error:
        assert error.problems and all(policies.PATH.match(problem.path) and "\n" not in problem.message
                                      for problem in error.problems), error.messages
        verdict = "refused in one line"
    except json.JSONDecodeError:
        verdict = "refused in one line"
    except Exception:
        _tally_generated(request, "policies", "escaped", "the policy reader (as JSON text)")
        raise
    _tally_generated(request, "policies", verdict, "the policy reader (as JSON text)")


@settings(max_examples=EXAMPLES["predictions"], deadline=None, suppress_health_check=list(HealthCheck))
@given(predictions.hostile_documents())
def test_generated_predictions_are_valid_or_fail_in_one_line(request, document):
    raw = json.dumps(document).encode()
    try:
        parse_prediction(raw)
        verdict = "accepted"
    except PredictionFormatError as error:
        assert str(error) and "\n" not in str(error)
        verdict = "failed alone"
    except Exception:
        _tally_generated(request, "predictions", "escaped", "parse_prediction")
        raise
    _tally_generated(request, "predictions", verdict, "parse_prediction")
    if len(GENERATED["predictions"]) < KEEP:
        GENERATED["predictions"].append((raw, verdict))


@settings(max_examples=EXAMPLES["image bytes"], deadline=None, suppress_health_check=list(HealthCheck))
@given(images.mutated_image_bytes())
def test_generated_image_bytes_are_an_image_or_fail_in_one_line(request, scratch, mutated):
    """A mutated JPEG or PNG: each check of the guarded open (header, completeness, decoding)
    passes or refuses in one line; never another exception."""
    fmt, data = mutated
    path = scratch / f"mutated.{'jpg' if fmt == 'JPEG' else 'png'}"
    path.write_bytes(data)
    verdict = "accepted"
    for check in (ImageFile.check, ImageFile.check_complete, ImageFile.load):
        try:
            check(ImageFile.from_path(path))
        except ImageDecodeError as error:
            assert one_line(str(error)), str(error)
            verdict = "failed alone"
        except Exception:
            _tally_generated(request, "image bytes", "escaped", "ImageFile checks")
            raise
    _tally_generated(request, "image bytes", verdict, "ImageFile checks")
    if len(GENERATED["image bytes"]) < KEEP:
        GENERATED["image bytes"].append((fmt, data))


def _generated_source(root: Path, files: list[tuple[str, bytes]]) -> tuple[Path, Path, dict[str, str]]:
    src, stored = root / "src", root / "stored"
    src.mkdir(parents=True)
    stored.mkdir()
    sha = {}
    for index, (fmt, data) in enumerate(files):
        name = f"g{index:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        (src / name).write_bytes(data)
        (stored / f"g{index:03d}.json").write_bytes(json.dumps(_replay_prediction(b"", (24, 18))).encode())
        sha[name] = hashlib.sha256(data).hexdigest()
    return src, stored, sha


def _sent_or_failed_alone(request, kind: str, report, sha: dict[str, str], counts: dict[str, int], route: str) -> None:
    """Every generated file failed alone in one line, or was sent exactly once."""
    failures, statuses = journal_view(report)
    sent = sent_names(report)
    assert report.status == "completed" and "running" not in statuses
    for name in sha:
        if name in failures:
            ok, verdict = one_line(failures[name]["error"]), "failed alone"
        else:
            ok, verdict = name in sent and counts.get(sha[name], 0) >= 1, "accepted"
        _tally_generated(request, kind, verdict if ok else "wrong", route)
        assert ok, (name, failures.get(name), name in sent)
    assert report.failed + report.sent == len(sha) and report.pending == 0


def test_generated_image_bytes_through_onnx_and_replay(request, roboflow, env, tmp_path):
    files = GENERATED["image bytes"]
    if not files:
        RECORDED.add(request.node.name)
        pytest.skip("run with the Hypothesis test above")
    distinct = list({data: (fmt, data) for fmt, data in files}.values())  # equal bytes are one image
    src, stored, sha = _generated_source(tmp_path, distinct)
    if importlib.util.find_spec("alpolicy_onnx") is not None:
        report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model="onnx:demo", destination=f"folder:{tmp_path / 'out'}",
                              options=run_options(tmp_path / "onnx.sqlite"))
        _sent_or_failed_alone(request, "image bytes", report, sha, stored_copies(tmp_path / "out"), "onnx > folder")
    report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}", destination="roboflow:generated",
                          options=run_options(tmp_path / "replay.sqlite"))
    _sent_or_failed_alone(request, "image bytes", report, sha, upload_requests(roboflow), "replay > roboflow")
    assert all(count == 1 for count in upload_requests(roboflow).values())


def test_generated_predictions_through_replay(request, tmp_path):
    kept = GENERATED["predictions"]
    if not kept:
        RECORDED.add(request.node.name)
        pytest.skip("run with the Hypothesis test above")
    src, stored, out = tmp_path / "src", tmp_path / "stored", tmp_path / "out"
    paths = make_frames(src, len(kept), seed=23)
    stored.mkdir()
    for path, (raw, _) in zip(paths, kept):
        (stored / f"{path.stem}.json").write_bytes(raw)
    report = alpolicy.run(str(src), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}", destination=f"folder:{out}",
                          options=run_options(tmp_path / "journal.sqlite"))
    sha = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    _sent_or_failed_alone(request, "predictions", report, sha, stored_copies(out), "replay > folder")
    failures, _ = journal_view(report)
    # The validator's verdict is the pipeline's: what parse_prediction refused failed, and only that.
    assert {path.name for path, (_, verdict) in zip(paths, kept) if verdict == "failed alone"} == set(failures)


# ---------------------------------------------------------------------------------- ... into a real Label Studio
class _StartingLabelStudio:
    """A Label Studio started on a thread as the module begins: its cold start (half a minute on a
    busy machine) overlaps the tests before the one that needs it."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.server: LabelStudio | None = None
        try:
            self.server = LabelStudio()
        except LabelStudioMissing as error:
            self.error = error
            return
        self.thread = threading.Thread(target=self._start, name="label-studio-start", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            assert self.server is not None
            self.server.start()
        except BaseException as error:  # reported by wait(), in the test that needs the server
            self.error = error

    def wait(self) -> LabelStudio:
        if self.server is not None:
            self.thread.join()
        if self.error is not None:
            pytest.fail(str(self.error), pytrace=False)
        assert self.server is not None
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.thread.join()
            self.server.stop()
            self.server.cleanup()


@pytest.fixture(scope="module", autouse=True)
def _label_studio_starting(request) -> Iterator[_StartingLabelStudio | None]:
    wanted = any("label_studio" in item.fixturenames for item in request.session.items if item.module is request.module)
    starting = _StartingLabelStudio() if wanted else None
    yield starting
    if starting is not None:
        starting.close()


@pytest.fixture(scope="module")
def label_studio(_label_studio_starting) -> LabelStudio:
    return _label_studio_starting.wait()


LABEL_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                '<Label value="car"/></RectangleLabels></View>')


@pytest.mark.slow
def test_files_into_label_studio(request, source, label_studio, tmp_path, monkeypatch):
    """One run (and its rerun) of the whole file corpus, replayed, into a real Label Studio."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY_TOKEN)
    project = label_studio.create_project("alpolicy corpus", LABEL_CONFIG)
    for first in (True, False):
        options = run_options(tmp_path / "journal.sqlite", labelstudio_url=label_studio.url)
        with escapes_recorded(request, source.files.values(), ("replay", "labelstudio")):
            report = triage(source, "replay", f"labelstudio:{project}", options)
        accepted = check_run(request, source, report, "replay", "labelstudio", first=first)
    tasks = label_studio.tasks(project)
    per_key = Counter(task["data"]["alpolicy_key"] for task in tasks)
    check_sent_once(source.expected("replay", "labelstudio"), source.files, source.sha, dict(per_key),
                    ("replay", "labelstudio"), FILE_KINDS)
    assert all(len(task["predictions"]) == 1 for task in tasks)
    uploads = label_studio.api("GET", f"/api/projects/{project}/file-uploads", params={"all": "true"})
    assert len(uploads) == len(accepted)  # one image upload per task: nothing uploaded twice, nothing refused sent


# ---------------------------------------------------------------------------------- the tally (runs last)
ORDER = ("escaped", "wrong", "failed alone", "refused in one line", "skipped", "ignored", "accepted")


def _counts(verdicts: Counter[str]) -> str:
    return ", ".join(f"{verdicts.get(verdict, 0)} {verdict}" for verdict in ORDER
                     if verdict in ("escaped", "wrong") or verdicts.get(verdict))


def _line(kind: str, tally: Tally) -> str:
    counts = _counts(tally.verdicts)
    backends = sorted({route[0] for route in tally.routes})
    destinations_ = sorted({route[1] for route in tally.routes})
    if kind.startswith("generated"):
        (first, examples), *runs = tally.by_route.items()  # the examples' own checks come first
        ran = "; then through " + "; ".join(f"{route}: {_counts(counts)}" for route, counts in runs) if runs else ""
        return f"corpus: {kind}: {sum(examples.values())} Hypothesis examples through {first}: {_counts(examples)}{ran}"
    if kind in FILE_KINDS:
        head = (f"corpus: {kind} {len(tally.entries)} entries x {len(backends)} backends x {len(destinations_)} destinations "
                f"({len(tally.routes)} routes, each run twice)")
    else:
        where = ", ".join(sorted("{} > {}".format(*r) if r[1] != "-" else r[0] for r in tally.routes))
        twice = ", each run twice" if tally.reruns >= len(tally.routes) else ""
        head = f"corpus: {kind} {len(tally.entries)} entries x {len(tally.routes)} routes ({where}{twice})"
    sent = f"; {tally.good_sent} images sent, {tally.good_once} of them exactly once" if tally.good_sent else ""
    return f"{head}: {counts}{sent}"


def test_zz_write_the_corpus_tally(request, capsys):
    """Runs last in this file: one line per corpus kind from what the tests above observed,
    written to test-artifacts/corpus-tally.json; RELIABILITY.md quotes the lines."""
    here = request.node.module
    ran = {item.name for item in request.session.items if item.module is here and item is not request.node}
    assert ran <= RECORDED, f"tests that recorded no observation: {sorted(ran - RECORDED)}"
    kinds = [kind for kind in (*KINDS, *(f"generated {k}" for k in EXAMPLES)) if kind in TALLY]
    lines = [_line(kind, TALLY[kind]) for kind in kinds]
    out = Path(__file__).resolve().parents[1] / "test-artifacts"
    out.mkdir(exist_ok=True)
    document = {"lines": lines, "kinds": {kind: TALLY[kind].to_json() for kind in kinds}}
    (out / "corpus-tally.json").write_text(json.dumps(document, indent=2))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    for kind in kinds:
        tally = TALLY[kind]
        assert (tally.verdicts["escaped"], tally.verdicts["wrong"]) == (0, 0), (kind, tally.verdicts)
        assert tally.good_once == tally.good_sent, kind
