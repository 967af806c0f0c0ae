"""Hostile images (issue #12, items 1 and 2): files Pillow refuses in ways other than ``OSError``.

Generated here, byte by byte (chunks written with zlib + crc32), each a few KB:

* ``ztxt.png`` / ``iccp.png`` / ``itxt.png``: a 32x32 PNG with, before its pixels, a compressed
  text or ICC profile chunk that inflates to 16 MB -- past Pillow's ``MAX_TEXT_CHUNK`` (1 MB), so
  ``Image.open`` itself raises ``ValueError("Decompressed data too large ...")``;
* ``ztxt-late.png``: the same chunk after the pixels: the header parses, ``load()`` raises it;
* ``tall.png``: an IHDR declaring 12000x12000 RGB (144 Mpx, a 432 MB bitmap) and 1 KB of data;
* ``dense.png``: a complete black 12000x12000 1-bit PNG of 17 KB: decoded and converted to RGB
  for ``--max-size``, it took 700 MB;
* ``huge.png``: an IHDR declaring 100000x100000 (10 gigapixels): ``Image.open`` raises
  ``DecompressionBombError``.

Every backend (replay, the loopback Roboflow inference, ONNX) into ``folder:``, and replay into
``roboflow:`` with ``--max-size`` (peak memory measured), through the real CLI and a policy whose
pixel gates (quality, near-duplicates) and HTML report decode every file too: each hostile file
is one failure with a one-line reason, the good images are sent, the exit is 1 without a
traceback, the journal's run is finished, and the same command run again finishes the same way,
sending nothing twice.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from alpolicy.io.images import ImageDecodeError, ImageFile
from alpolicy.runtime.journal import Journal

from .cli import Result, alpolicy

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

#: Everything with a prediction qualifies; the two pixel gates make every file be decoded.
POLICY = {
    "version": 1,
    "name": "take-all-decoded",
    "image": {"rule": "detection_count", "min": 0},
    "sampling": [{"rule": "quality", "min_sharpness": 0}, {"rule": "near_duplicate", "max_distance": 0}],
}

TOO_LARGE = r"^cannot (open|decode) the image: Decompressed data too large for PngImagePlugin\.MAX_TEXT_CHUNK$"
TALL = r"^image is 12000x12000 = 144 Mpx, above the 89 Mpx safety limit \(a possible decompression bomb\)$"
HUGE = r"^refused as a possible decompression bomb: Image size \(10000000000 pixels\) exceeds limit"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _inflates_to(size: int) -> bytes:
    """zlib data that inflates to ``size`` bytes of ``a``, compressed 1 MB at a time (a few KB)."""
    compressor = zlib.compressobj(9)
    block = b"a" * (1 << 20)
    return b"".join([compressor.compress(block) for _ in range(size >> 20)] + [compressor.flush()])


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _insert(png: bytes, chunk: bytes, before: bytes) -> bytes:
    at = png.index(before) - 4  # the chunk's length field
    return png[:at] + chunk + png[at:]


def _declared(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB, with 1 KB of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + _chunk(b"IEND", b""))


def _black(width: int, height: int) -> bytes:
    """A complete, valid black 1-bit PNG of ``width`` x ``height``: a few KB for 144 Mpx."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = (b"\0" * (1 + (width + 7) // 8)) * 1000  # filter byte 0, then the row's bits
    data = b"".join([compressor.compress(rows) for _ in range(height // 1000)] + [compressor.flush()])
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@functools.lru_cache(maxsize=1)
def hostile_files() -> dict[str, bytes]:
    inflating = _inflates_to(16 << 20)
    base = _png(Image.new("RGB", (32, 32), (200, 30, 30)))
    return {
        "ztxt.png": _insert(base, _chunk(b"zTXt", b"Comment\0\0" + inflating), b"IDAT"),
        "iccp.png": _insert(base, _chunk(b"iCCP", b"icc\0\0" + inflating), b"IDAT"),
        "itxt.png": _insert(base, _chunk(b"iTXt", b"Comment\0\1\0\0\0" + inflating), b"IDAT"),
        "ztxt-late.png": _insert(base, _chunk(b"zTXt", b"Comment\0\0" + inflating), b"IEND"),
        "tall.png": _declared(12000, 12000),
        "dense.png": _black(12000, 12000),
        "huge.png": _declared(100000, 100000),
    }


def _prediction(width: int, height: int) -> dict:
    box = {"x": width / 2, "y": height / 2, "width": width / 4, "height": height / 4,
           "confidence": 0.9, "class": "car", "class_id": 0}
    return {"image": {"width": width, "height": height}, "predictions": [box]}


def build_source(root: Path) -> tuple[Path, Path, list[str]]:
    """The source folder (3 good images, the hostile files) and the replay predictions folder."""
    src, predictions = root / "src", root / "predictions"
    src.mkdir()
    predictions.mkdir()
    good = []
    for index, (name, size) in enumerate((("good-1.jpg", (64, 48)), ("good-2.png", (48, 64)), ("good-3.jpg", (80, 60)))):
        Image.effect_noise(size, 40 + 10 * index).convert("RGB").save(src / name)
        good.append(name)
    hostile = hostile_files()
    for name, content in hostile.items():
        (src / name).write_bytes(content)
    sizes = {"tall.png": (12000, 12000), "dense.png": (12000, 12000), "huge.png": (100000, 100000)}
    for name in [*good, *hostile]:
        if name in good:
            with Image.open(src / name) as image:
                width, height = image.size
        else:
            width, height = sizes.get(name, (32, 32))
        (predictions / f"{Path(name).stem}.json").write_text(json.dumps(_prediction(width, height)))
    return src, predictions, good


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    return build_source(tmp_path_factory.mktemp("hostile"))


def test_the_guarded_open_turns_every_decoder_error_into_one_line(source):
    src, _, good = source
    for name in good:
        assert ImageFile.from_path(src / name).load().mode == "RGB"
    for name, pattern in (("ztxt.png", TOO_LARGE), ("iccp.png", TOO_LARGE), ("itxt.png", TOO_LARGE),
                          ("tall.png", TALL), ("dense.png", TALL), ("huge.png", HUGE)):
        for action in (ImageFile.check, ImageFile.load):
            with pytest.raises(ImageDecodeError) as caught:
                action(ImageFile.from_path(src / name))
            assert re.search(pattern, str(caught.value)), (name, action, caught.value)
    assert ImageFile.from_path(src / "ztxt-late.png").check() == (32, 32)  # the header is fine
    with pytest.raises(ImageDecodeError, match=TOO_LARGE):
        ImageFile.from_path(src / "ztxt-late.png").load()


def _run(src: Path, tmp_path: Path, model: str, to: str, *extra: str, env: dict[str, str] | None = None):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    return alpolicy("run", str(src), "--model", model, "--policy", str(policy), "--to", to, "--json", "--no-progress",
                    "--journal", str(tmp_path / "journal.sqlite"), "--report", str(tmp_path / "report"), *extra,
                    env=env, timeout=300)


def _check(result, expected: dict[str, tuple[str, str]], good: list[str], tmp_path: Path, *, first: bool) -> dict:
    assert "Traceback" not in result.err, result.err
    assert result.code == 1, (result.code, result.out, result.err)
    report = json.loads(result.out)
    assert report["status"] == "completed"
    failures = {Path(f["path"]).name: f for f in report["failures"]}
    assert set(failures) == set(expected), failures
    for name, (stage, pattern) in expected.items():
        failure = failures[name]
        assert failure["stage"] == stage and re.search(pattern, failure["error"]), (name, failure)
        assert "\n" not in failure["error"] and len(failure["error"]) < 300, failure
    assert report["failed"] == len(expected)
    assert report["sent"] == (len(good) if first else 0)
    assert report["already_sent"] == (0 if first else len(good))
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        assert [run["status"] for run in journal.runs()][-1] == "completed"
    finally:
        journal.close()
    assert (tmp_path / "report" / "index.html").is_file()
    return report


def _into_folder(src: Path, tmp_path: Path, model: str, expected: dict[str, tuple[str, str]], good: list[str],
                 env: dict[str, str] | None = None) -> None:
    out = tmp_path / "out"
    for first in (True, False):  # the same command again finishes too, and sends nothing twice
        _check(_run(src, tmp_path, model, f"folder:{out}", env=env), expected, good, tmp_path, first=first)
    assert sorted(path.name for path in (out / "images").iterdir()) == sorted(good)
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == len(good)


def test_replay_into_a_folder(source, tmp_path):
    src, predictions, good = source
    # replay never reads pixels: the folder destination's header check refuses them at send;
    # ztxt-late.png has an intact header, and is stored byte for byte, as any file with one
    expected = {"ztxt.png": ("send", TOO_LARGE), "iccp.png": ("send", TOO_LARGE), "itxt.png": ("send", TOO_LARGE),
                "tall.png": ("send", TALL), "dense.png": ("send", TALL), "huge.png": ("send", HUGE)}
    _into_folder(src, tmp_path, f"replay:{predictions}", expected, [*good, "ztxt-late.png"])


def test_roboflow_inference_into_a_folder(source, tmp_path, roboflow, env):
    src, _, good = source
    expected = {"ztxt.png": ("inference", TOO_LARGE), "iccp.png": ("inference", TOO_LARGE),
                "itxt.png": ("inference", TOO_LARGE), "tall.png": ("inference", TALL), "dense.png": ("inference", TALL),
                "huge.png": ("inference", HUGE),
                # the header is intact, so it is sent: the server cannot decode it either
                "ztxt-late.png": ("inference", r"rejected the image \(HTTP 400\)")}
    _into_folder(src, tmp_path, "roboflow:vehicles/3", expected, good, env=env)
    # nothing refused locally reached the server; the rerun asks again only about ztxt-late.png
    # (the good images' predictions are in the journal)
    assert roboflow.requests["infer"].total == len(good) + 2


def test_onnx_into_a_folder(source, tmp_path):
    pytest.importorskip("alpolicy_onnx")
    src, _, good = source
    expected = {"ztxt.png": ("inference", TOO_LARGE), "iccp.png": ("inference", TOO_LARGE),
                "itxt.png": ("inference", TOO_LARGE), "tall.png": ("inference", TALL), "dense.png": ("inference", TALL),
                "huge.png": ("inference", HUGE),
                "ztxt-late.png": ("inference", TOO_LARGE)}
    # predictions are stored in the journal: the second run decodes nothing for the model
    _into_folder(src, tmp_path, "onnx:demo", expected, good)


#: Runs the CLI as a child of a fresh interpreter: its peak RSS is the only child's.
_MEASURE = """
import json, resource, subprocess, sys
process = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": process.returncode, "out": process.stdout, "err": process.stderr,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def test_max_size_uploads_decode_through_the_guard_with_bounded_memory(source, tmp_path, roboflow, env):
    src, predictions, good = source
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    reasons = {"tall.png": TALL, "dense.png": TALL, "huge.png": HUGE}
    expected = {name: ("send", "^cannot prepare the image: " + reasons.get(name, TOO_LARGE)[1:])
                for name in hostile_files()}
    for first in (True, False):
        command = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "alpolicy", "run", str(src),
                   "--model", f"replay:{predictions}", "--policy", str(policy), "--to", "roboflow:small",
                   "--max-size", "64", "--json", "--no-progress", "--journal", str(tmp_path / "journal.sqlite"),
                   "--report", str(tmp_path / "report")]
        measured = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=300,
                                             env={**os.environ, **env}).stdout)
        result = Result(measured["code"], measured["out"], measured["err"])
        _check(result, expected, good, tmp_path, first=first)
        assert measured["maxrss_kb"] < 300 * 1024, f"peak RSS {measured['maxrss_kb'] / 1024:.0f} MB"
    stored = roboflow.images("small")
    assert sorted(image["name"] for image in stored) == sorted(f"{Path(name).stem}.jpg" for name in good)
    assert roboflow.requests["upload"].total == len(good)  # nothing sent twice
    for image in stored:
        with Image.open(io.BytesIO(roboflow.image_bytes("small", image["id"]))) as small:
            assert max(small.size) == 64
