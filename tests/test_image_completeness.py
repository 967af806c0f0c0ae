"""A truncated or corrupt image never reaches a destination.

A model that does not decode the file (``replay:``, a server that accepts what it gets) lets a
JPEG cut in half through to the labeling queue. Right before every send the pipeline checks the
file's structure cheaply (JPEG end-of-image marker, PNG ``IEND``, GIF trailer, the RIFF / BMP
declared size), decoding only when that is inconclusive, and records a failure with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.io.images import ImageDecodeError, ImageFile
from alpolicy.runtime.journal import Journal

from .cli import alpolicy as alpolicy_cli
from .corpus.images import encoded, half
from .helpers import det, pred
from .test_replay_backend import write_json


def write(path: Path, data: bytes) -> ImageFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ImageFile.from_path(path)


@pytest.mark.parametrize(
    "fmt, name, reason",
    [
        ("JPEG", "a.jpg", "no JPEG end-of-image marker"),
        ("PNG", "a.png", "no PNG IEND chunk"),
        ("GIF", "a.gif", "no GIF trailer"),
        ("BMP", "a.bmp", "BMP header declares"),
        ("WEBP", "a.webp", "WEBP header declares"),
        ("TIFF", "a.tif", "cannot decode"),
        ("PNG", "png-named.jpg", "no PNG IEND chunk"),  # the format is read from the bytes, not the name
    ],
)
def test_a_truncated_image_is_refused_with_one_line(tmp_path, fmt, name, reason):
    image = write(tmp_path / name, half(encoded(fmt)))
    with pytest.raises(ImageDecodeError) as caught:
        image.check_complete()
    message = str(caught.value)
    assert message.startswith("the image is truncated") and reason in message and "\n" not in message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_a_complete_image_passes(tmp_path, fmt):
    write(tmp_path / f"ok.{fmt.lower()}", encoded(fmt)).check_complete()


def test_padding_or_data_after_the_end_of_a_jpeg_is_fine(tmp_path):
    write(tmp_path / "nuls.jpg", encoded("JPEG") + b"\0" * 16).check_complete()
    # A motion photo appends a video after the JPEG: no marker at the end, so the file is decoded.
    write(tmp_path / "motion.jpg", encoded("JPEG") + bytes(range(256)) * 40).check_complete()


def test_an_empty_file_or_junk_is_refused(tmp_path):
    with pytest.raises(ImageDecodeError, match="empty"):
        write(tmp_path / "empty.jpg", b"").check_complete()
    with pytest.raises(ImageDecodeError, match="not an image"):
        write(tmp_path / "junk.jpg", b"hello, not an image at all").check_complete()


# -- through the pipeline ----------------------------------------------------------------------


GOOD = 4


def triage_folder(tmp_path: Path) -> tuple[Path, Path]:
    """GOOD complete images and six truncated ones in a row, each with a qualifying prediction."""
    images, stored = tmp_path / "frames", tmp_path / "preds"
    for index in range(GOOD):
        write(images / f"good{index}.jpg", encoded("JPEG", seed=index))
    write(images / "good_padded.jpg", encoded("JPEG", seed=9) + b"\0" * 8)
    for index in range(3):
        write(images / f"t{index}_cut.jpg", half(encoded("JPEG", seed=20 + index)))
        write(images / f"t{index}_cut.png", half(encoded("PNG", seed=30 + index)))
    for path in images.iterdir():
        write_json(stored / f"{path.stem}.json", pred(det("car", 0.5), width=64, height=48))
    return images, stored


def assert_the_truncated_failed_in_one_line(report: alpolicy.RunReport) -> None:
    failures = {Path(f["path"]).name: f for f in report.failures}
    assert sorted(failures) == sorted(f"t{i}_cut.{ext}" for i in range(3) for ext in ("jpg", "png"))
    assert all(f["stage"] == "send" and f["error"].startswith("the image is truncated") for f in failures.values())
    assert report.sent == GOOD + 1 and report.failed == 6 and report.status == "completed"


def test_the_replay_backend_into_a_folder_sends_no_truncated_file(tmp_path):
    images, stored = triage_folder(tmp_path)
    out = tmp_path / "queue"
    # Six broken files in a row are the files' fault, not the destination's: the breaker stays calm.
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, max_consecutive_failures=3, concurrency=1)
    report = alpolicy.run(str(images), Policy.from_conditionals({}), model=f"replay:{stored}",
                          destination=f"folder:{out}", options=options)
    assert_the_truncated_failed_in_one_line(report)
    written = sorted(path.name for path in (out / "images").iterdir())
    assert len(written) == GOOD + 1 and not any("cut" in name for name in written)
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert not any("cut" in image["file_name"] for image in coco["images"])
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts(f"folder:{out.resolve()}") == {"sent": GOOD + 1, "failed": 6}
    journal.close()


def test_the_replay_backend_into_roboflow_uploads_no_truncated_file(roboflow, env, tmp_path):
    images, stored = triage_folder(tmp_path)
    result = alpolicy_cli("run", str(images), "--model", f"replay:{stored}", "--to", "roboflow:queue",
                          "--journal", str(tmp_path / "journal.sqlite"), "--json", env=env)
    assert result.code == 1, result.err
    assert_the_truncated_failed_in_one_line(alpolicy.RunReport(**{**json.loads(result.out), "rejected_by": {}}))
    assert roboflow.requests["upload"].total == GOOD + 1  # the truncated files were never sent
    assert not any("cut" in image["name"] for image in roboflow.images("queue"))
