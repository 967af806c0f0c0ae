r"""Bad input corpus (issue #8, item 3), generated here (the pictures by ``tests/corpus/images.py``), run through the real pipeline three times.

Figures: 36 corpus entries, 17 of them bad inputs. The lister yields 31 files (``report.seen``):

* 19 good images: plain JPEG, CMYK JPEG, 16-bit grey PNG (``I;16``), palette PNG, RGBA PNG, an
  upper-case ``.JPG``, EXIF orientations 1-8 of one asymmetric picture (in ``sub/``), names with
  unicode (``é漢字.jpg``), a space, a newline (``a\nb.jpg``) and ``..`` (``weird..jpg``, ``x..y.png``);
* 12 bad files: zero-byte ``.jpg`` and ``.png``, text saved as ``.jpg`` and ``.png``, a JPEG and a
  PNG cut in half (header intact), a JPEG cut inside its header, a 12000x10000 decompression bomb,
  a mode-000 file (as root, where permissions do not bind, it is simply a good image), a symlink
  to ``/proc/self/mem`` (stat says 0 bytes and every read fails with EIO, even as root: the
  unreadable file CI can make), and for replay: an image with no sidecar whose name holds a
  newline, and an image whose sidecar is not JSON (both good images to the other backends).

5 more bad inputs are not files to the lister, and must be neither counted nor opened nor block:
a dangling symlink ``gone.jpg``, a FIFO ``pipe.jpg``, a directory ``folder.jpg``, the loop
``sub/loop -> ..`` (the source folder is visited once) and the hidden ``..weird..jpg``.

Per backend, 9 files fail (10 when not root), each with its stage and a one-line reason: roboflow
and onnx at inference; replay never reads pixels, so the non-images, the bomb and the two
half-cut files (headers intact: "the image is truncated") are refused at send, never stored.

Each backend (``roboflow:vehicles/3`` on the loopback server, ``onnx:demo`` decoding locally with
EXIF, ``replay:sidecar``) sends to a ``folder:`` destination. Every image listed is either inferred
and, when it qualifies (the policy takes everything), stored byte for byte and decodable in the
destination, or recorded as failed with a one-line human reason, in the report, the journal and
the decisions log. Non-regular files (dangling symlink, FIFO, directory) and hidden files are not
images to the lister: they are not counted, never opened, never block. The run always goes on,
nothing is written outside the destination, journal and decisions-log folders (the working
directory is an empty folder of ``tmp_path``, so a stray relative write would show).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.io.images import DEFAULT_EXTENSIONS, ImageFile, iter_folder
from alpolicy.runtime.journal import Journal

from .corpus.images import BOMB, INVERSE as _INVERSE, NOT_AN_IMAGE, UPRIGHT, noise as _noise, upright as _upright

#: Takes every image with a prediction, so every inferred image must reach the destination.
TAKE_ALL = {"version": 1, "name": "take-all", "image": {"rule": "detection_count", "min": 0}}

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_PROC_MEM = os.path.exists("/proc/self/mem")

BACKENDS = ("roboflow", "onnx", "replay")

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@dataclass
class Entry:
    """One corpus file and what each backend must make of it: ``None`` = inferred and stored,
    else ``(stage, regex of the one-line reason)``."""

    name: str
    outcome: dict[str, tuple[str, str] | None]
    mode: str | None = None  # the Pillow mode the stored copy must decode to
    sidecar: bool = True


def ok() -> dict[str, None]:
    return {backend: None for backend in BACKENDS}


def fails(stage: str, reason: str, **per_backend: tuple[str, str] | None) -> dict[str, tuple[str, str] | None]:
    outcome: dict[str, tuple[str, str] | None] = {backend: (stage, reason) for backend in BACKENDS}
    outcome.update(per_backend)
    return outcome


def build_corpus(src: Path) -> list[Entry]:
    src.mkdir()
    sub = src / "sub"
    sub.mkdir()
    entries: list[Entry] = []

    def image(name: str, picture: Image.Image, mode: str | None = None, sidecar: bool = True, **save) -> None:
        picture.save(src / name, **save)
        entries.append(Entry(name, ok(), mode or picture.mode, sidecar))

    # -- good, odd formats and names
    image("plain.jpg", _noise((64, 48)), quality=90)
    image("cmyk.jpg", _noise((64, 48)).convert("CMYK"), quality=90)
    deep = Image.linear_gradient("L").resize((64, 48)).convert("I")
    image("deep16.png", deep.point(lambda v: v * 257).convert("I;16"), mode="I;16")
    image("palette.png", _noise((64, 48)).quantize(16))
    image("rgba.png", _noise((64, 48)).convert("RGBA"))
    image("UPPER.JPG", _noise((32, 32)), format="JPEG")
    image("é漢字.jpg", _noise((40, 30)))
    image("with space.jpg", _noise((41, 30)))
    image("a\nb.jpg", _noise((42, 30)))
    image("weird..jpg", _noise((43, 30)))
    image("x..y.png", _noise((44, 30)))
    upright = _upright()
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = upright.transpose(_INVERSE[orientation]) if orientation in _INVERSE else upright
        image(f"sub/orient-{orientation}.jpg", stored, exif=exif, quality=95)

    # -- bad
    (src / "empty.jpg").write_bytes(b"")
    entries.append(Entry("empty.jpg", fails("inference", r"^the file is empty$", replay=("send", r"^the file is empty$"))))
    (src / "empty.png").write_bytes(b"")
    entries.append(Entry("empty.png", fails("inference", r"^the file is empty$", replay=("send", r"^the file is empty$"))))
    (src / "notes.jpg").write_text("not an image\nat all\n")
    entries.append(Entry("notes.jpg", fails("inference", NOT_AN_IMAGE, replay=("send", NOT_AN_IMAGE))))
    (src / "notes.png").write_text("PNG? no")
    entries.append(Entry("notes.png", fails("inference", NOT_AN_IMAGE, replay=("send", NOT_AN_IMAGE))))
    big = src.parent / "big.jpg"
    _noise((320, 240)).save(big, quality=95)
    good = big.read_bytes()
    big.unlink()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 2])
    entries.append(Entry("truncated.jpg", fails("inference", r"rejected the image \(HTTP 400\)",
                                                onnx=("inference", r"cannot decode the image: image file is truncated"),
                                                replay=("send", r"^the image is truncated \(no JPEG end-of-image marker\)$"))))
    (src / "stub.jpg").write_bytes(good[:40])
    entries.append(Entry("stub.jpg", fails("inference", r"^cannot open the image: ",
                                           replay=("send", r"^the image is truncated \(no JPEG end-of-image marker\)$"))))
    png = src.parent / "big.png"
    _noise((320, 240)).save(png)
    data = png.read_bytes()
    png.unlink()
    (src / "truncated.png").write_bytes(data[: len(data) // 2])
    entries.append(Entry("truncated.png", fails("inference", r"rejected the image \(HTTP 400\)",
                                                onnx=("inference", r"^cannot decode the image"),
                                                replay=("send", r"^the image is truncated \(no PNG IEND chunk\)$"))))
    Image.new("1", (12000, 10000)).save(src / "bomb.png")
    entries.append(Entry("bomb.png", fails("inference", BOMB, replay=("send", BOMB))))
    _noise((45, 30)).save(src / "locked.jpg")
    os.chmod(src / "locked.jpg", 0)
    # Root reads a mode-000 file anyway: then it is simply a good image.
    entries.append(Entry("locked.jpg", ok() if IS_ROOT else fails(
        "inference", r"^cannot open the image: Permission denied$",
        replay=("send", r"^cannot read the file: Permission denied$")), "RGB"))
    if HAS_PROC_MEM:
        # A regular file (size 0 to stat) whose every read fails with EIO, even for root.
        os.symlink("/proc/self/mem", src / "mem.jpg")
        entries.append(Entry("mem.jpg", fails("inference", r"^the file is empty$",  # stat says 0 bytes
                                              replay=("send", r"^cannot read the file: Input/output error$"))))
    _noise((46, 30)).save(src / "no\nsidecar.jpg")
    entries.append(Entry("no\nsidecar.jpg", {"roboflow": None, "onnx": None,
                                             "replay": ("inference", r"^no stored prediction for no\\nsidecar\.jpg in ")}, "RGB", sidecar=False))
    _noise((47, 30)).save(src / "badjson.jpg")
    entries.append(Entry("badjson.jpg", {"roboflow": None, "onnx": None,
                                         "replay": ("inference", r"not valid JSON")}, "RGB", sidecar=False))
    (src / "badjson.jpg.json").write_text("{\"image\": ")

    # -- not images to the lister: never opened, never counted
    os.symlink("missing.jpg", src / "gone.jpg")  # dangling
    os.mkfifo(src / "pipe.jpg")  # opening it would block: it must never be opened
    (src / "folder.jpg").mkdir()  # a directory with an image name: searched, empty
    os.symlink("..", sub / "loop")  # sub/loop -> src: visited once
    _noise((20, 20)).save(src / "..weird..jpg")  # hidden (leading dot): not listed

    for entry in entries:
        if entry.sidecar:
            (src / f"{entry.name}.json").write_text(json.dumps(_sidecar(src / entry.name)))
    return entries


def _sidecar(path: Path) -> dict:
    """A stored Roboflow prediction: the displayed size when the file is an image, else a made-up one."""
    try:
        width, height = ImageFile.from_path(path).load().size
    except Exception:
        width, height = 100, 80
    box = {"x": width / 2, "y": height / 2, "width": width / 4, "height": height / 4,
           "confidence": 0.9, "class": "car", "class_id": 0}
    return {"image": {"width": width, "height": height}, "predictions": [box]}


# ---------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root (symlinks not followed): lstat size, mtime and mode."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            found[path] = (info.st_size, info.st_mtime_ns, info.st_mode)
    return found


def triage(src: Path, tmp_path: Path, backend: str, model: str, seen: list):
    options = RunOptions(journal=str(tmp_path / f"state-{backend}" / "journal.sqlite"), progress=False)
    return alpolicy.run(
        str(src), Policy.from_dict(TAKE_ALL), model=model, destination=f"folder:{tmp_path / f'out-{backend}'}",
        options=options, recursive=True, on_result=lambda image, prediction: seen.append((image.path, prediction)),
        follow_symlinks=True,  # mem.jpg leads out of the folder (tests/test_symlinks.py: skipped by default)
    )


def check_run(backend: str, report, entries: list[Entry], src: Path, tmp_path: Path) -> None:
    names = {entry.name for entry in entries}
    listed = {os.path.relpath(image.path, src)
              for image in iter_folder(str(src), DEFAULT_EXTENSIONS, recursive=True, follow_symlinks=True)}
    assert listed == names, "the lister missed or added files"
    assert report.status == "completed"
    assert report.seen == len(entries), "the symlink loop or a non-file changed the count"
    assert report.skipped == {"symlink_broken": 1}  # gone.jpg; the loop is visited once, not skipped

    journal = Journal(tmp_path / f"state-{backend}" / "journal.sqlite")
    try:
        failures = {os.path.relpath(f["path"], src): f for f in journal.failures(report.run_id)}
    finally:
        journal.close()
    expected_failures = {e.name: e.outcome[backend] for e in entries if e.outcome[backend] is not None}
    assert set(failures) == set(expected_failures), backend
    listed_failures = {os.path.relpath(f["path"], src): f for f in report.failures}
    assert listed_failures == {name: {k: failures[name][k] for k in ("path", "stage", "error")} for name in failures}
    for name, (stage, reason) in expected_failures.items():
        failure = failures[name]
        error = failure["error"]
        assert failure["stage"] == stage, (backend, name, failure)
        assert re.search(reason, error), (backend, name, error)
        assert "\n" not in error and "\r" not in error, (backend, name, error)
        assert "Traceback" not in error and len(error) < 300, (backend, name, error)
    assert report.failed == len(expected_failures)
    good = [e for e in entries if e.outcome[backend] is None]
    inferred_then_failed = sum(1 for stage, _ in expected_failures.values() if stage == "send")
    assert report.inferred == len(good) + inferred_then_failed
    assert report.sent == report.qualified - inferred_then_failed == len(good)
    assert report.exit_code == 1 and report.pending == 0

    # The decisions log names every image exactly once; sent ones carry their stored name.
    log = Path(report.decisions_log)
    assert log.parent == tmp_path / f"state-{backend}" / "decisions"
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    by_name = {}
    for record in records:
        name = os.path.relpath(record["image"], src)
        assert name not in by_name, f"{name!r} logged twice"
        by_name[name] = record
    assert set(by_name) == names
    out = tmp_path / f"out-{backend}"
    for entry in entries:
        record = by_name[entry.name]
        if entry.outcome[backend] is not None:
            assert record["failed"] == entry.outcome[backend][0]
            assert "\n" not in record["error"]
            continue
        assert "failed" not in record and record["qualifies"] is True, record
        stored = out / "images" / record["remote_id"]
        assert stored.parent == out / "images"
        assert stored.read_bytes() == (src / entry.name).read_bytes(), entry.name
        with Image.open(stored) as picture:
            assert picture.mode == entry.mode, entry.name
            picture.load()  # whole: a truncated file never reaches a destination
        stored_prediction = json.loads((out / "predictions" / f"{Path(record['remote_id']).stem}.json").read_text())
        assert stored_prediction["predictions"] is not None
    coco = json.loads((out / "annotations.coco.json").read_text(encoding="utf-8"))
    assert len(coco["images"]) == len(good)


# ---------------------------------------------------------------------- the test


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative write anywhere would land here and be caught
    src = tmp_path / "src"
    entries = build_corpus(src)
    yield src, entries
    os.chmod(src / "locked.jpg", stat.S_IRUSR | stat.S_IWUSR)  # let pytest clean up


def test_bad_inputs_are_processed_or_recorded_and_nothing_escapes(roboflow, env, tmp_path, corpus):
    src, entries = corpus
    before = snapshot(tmp_path)
    predictions: dict[str, dict[str, object]] = {}
    for backend, model in (("roboflow", "roboflow:vehicles/3"), ("onnx", "onnx:demo"), ("replay", "replay:sidecar")):
        seen: list = []
        report = triage(src, tmp_path, backend, model, seen)
        check_run(backend, report, entries, src, tmp_path)
        predictions[backend] = {os.path.relpath(path, src): prediction for path, prediction in seen}

    # EXIF orientation: the displayed size, and boxes in displayed pixels.
    stored_sizes = {o: ImageFile.from_path(src / f"sub/orient-{o}.jpg").check() for o in range(1, 9)}
    for orientation, size in stored_sizes.items():
        assert size == (UPRIGHT if orientation <= 4 else UPRIGHT[::-1]), orientation
    for backend in ("roboflow", "onnx"):
        for orientation in range(1, 9):
            prediction = predictions[backend][f"sub/orient-{orientation}.jpg"]
            assert (prediction.width, prediction.height) == UPRIGHT, (backend, orientation)
    reference = _confident(predictions["onnx"]["sub/orient-1.jpg"])
    assert len(reference) >= 2
    for orientation in range(2, 9):
        boxes = _confident(predictions["onnx"][f"sub/orient-{orientation}.jpg"])
        assert len(boxes) == len(reference), orientation
        for (cls, x, y, w, h), (ref_cls, rx, ry, rw, rh) in zip(boxes, reference):
            assert cls == ref_cls, orientation
            assert max(abs(x - rx), abs(y - ry), abs(w - rw), abs(h - rh)) <= 1.0, (orientation, boxes, reference)

    # Nothing written outside the destinations, the journals and their decisions logs.
    after = snapshot(tmp_path)
    allowed = tuple(str(tmp_path / f"{kind}-{backend}") + os.sep for kind in ("out", "state") for backend in BACKENDS)
    for path, info in after.items():
        if path in before:
            assert info == before[path], f"{path!r} was changed"
        else:
            assert (path + os.sep).startswith(allowed), f"{path!r} was written outside the destination and the journal"
    assert set(before) <= set(after), "a file disappeared"
    assert not any(os.scandir(tmp_path / "cwd"))


def _confident(prediction) -> list[tuple[str, float, float, float, float]]:
    return sorted(
        (d["class"], d["x"], d["y"], d["width"], d["height"]) for d in prediction.detections if d["confidence"] >= 0.8
    )
