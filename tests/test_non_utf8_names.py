r"""A file name that is not valid UTF-8 (issue #12): processed like any other, through the real CLI.

On Linux a name is bytes; Python hands ``bad\xff.jpg`` over as ``'bad\udcff.jpg'`` (a lone
surrogate, ``surrogateescape``), which SQLite, ``json.dumps(ensure_ascii=False)`` and a UTF-8 file
all refuse. Such an image must be inferred, decided and sent (a folder destination stores it under
a valid UTF-8 name), and every record of it -- the journal, the decisions log, the summary, the
folder's indexes -- must read back as text; a rerun recognises it (its identity is stable).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from PIL import Image

from alpolicy.io.images import ImageFile, display_path

from .cli import alpolicy
from .corpus.names import NON_UTF8_NAMES

pytestmark = pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="names must be bytes (Linux file systems)")

TAKE_ALL = {"version": 1, "name": "take-all", "image": {"rule": "detection_count", "min": 0}}

NAMES = NON_UTF8_NAMES
BAD = 2


def make_source(src: Path, *, sidecars: bool = False) -> None:
    src.mkdir(parents=True)
    for index, name in enumerate(NAMES):
        path = os.fsencode(src) + b"/" + name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as error:  # a file system that insists on UTF-8 names
            pytest.skip(f"cannot create a non-UTF-8 name here: {error}")
        with os.fdopen(fd, "wb") as handle:
            Image.effect_noise((40 + index, 30), 60).convert("RGB").save(handle, "JPEG")
        if sidecars:
            stem = name.rsplit(b".", 1)[0]
            detection = {"class": "car", "confidence": 0.9, "x": 10, "y": 10, "width": 6, "height": 6}
            with open(os.fsencode(src) + b"/" + stem + b".json", "w", encoding="utf-8") as handle:
                json.dump({"image": {"width": 40 + index, "height": 30}, "predictions": [detection]}, handle)


def run_cli(src: Path, tmp_path: Path, model: str, to: str, env: dict[str, str] | None = None, *, as_json: bool = True):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(TAKE_ALL))
    args = ["run", str(src), "--model", model, "--policy", str(policy), "--to", to, "--no-progress",
            "--journal", str(tmp_path / "journal.sqlite")]
    result = alpolicy(*args, *(["--json"] if as_json else []), env=env)
    assert "Traceback" not in result.err, result.err
    return result


def check_records(tmp_path: Path, runs: int) -> None:
    """The journal and every decisions log read back as UTF-8 text, one image per name."""
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:  # str columns decode strictly
        for table in ("predictions", "deliveries", "decisions"):
            paths = [row[0] for row in db.execute(f"SELECT path FROM {table}")]
            assert paths and all(isinstance(path, str) for path in paths), table
        assert db.execute("SELECT COUNT(DISTINCT image_key) FROM deliveries").fetchone()[0] == len(NAMES)
        assert {row[0] for row in db.execute("SELECT state FROM deliveries")} == {"sent"}
        assert not db.execute("SELECT * FROM failures").fetchall()
    logs = sorted((tmp_path / "decisions").iterdir())
    assert len(logs) == runs
    records = [json.loads(line) for log in logs for line in log.read_bytes().decode("utf-8").splitlines()]
    assert len(records) == len(NAMES)  # the first run decided each image; the rerun had all sent
    shown = sorted(os.path.basename(record["image"]) for record in records)
    assert shown == sorted(display_path(os.fsdecode(name)) for name in NAMES)
    assert r"bad\xff.jpg" in shown and r"caf\xe9.jpg" in shown
    assert all(record["remote_id"] for record in records)


def test_the_key_is_lossless_and_text(tmp_path):
    good, bad, literal = (ImageFile(os.fsdecode(name), 10, 20) for name in (b"a.jpg", b"bad\xff.jpg", b"bad\\xff.jpg"))
    assert good.key == "a.jpg|10|20"  # unchanged: journals written before still resume
    assert bad.display_path == literal.path == r"bad\xff.jpg"
    assert bad.key != literal.key  # a real backslash name is another image
    for image in (good, bad, literal):
        image.key.encode("utf-8")
        image.display_path.encode("utf-8")


def test_replay_into_a_folder(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    make_source(src, sidecars=True)
    first = run_cli(src, tmp_path, "replay:sidecar", f"folder:{out}")
    report = json.loads(first.out)
    assert (first.code, report["sent"], report["failed"]) == (0, len(NAMES), 0), first.out + first.err

    stored = [name.decode("utf-8") for name in os.listdir(os.fsencode(out / "images"))]  # all valid UTF-8
    assert len(stored) == len(NAMES)
    renamed = sorted(name for name in stored if name not in ("a_1.jpg", "c_2.jpg", "d_3.jpg"))
    assert len(renamed) == 2 and renamed[0].startswith("bad\\xff-") and renamed[1].startswith("caf\\xe9-"), stored
    for name in stored:
        assert (out / "predictions" / f"{Path(name).stem}.json").is_file()
    coco = json.loads((out / "annotations.coco.json").read_text(encoding="utf-8"))
    assert sorted(image["file_name"] for image in coco["images"]) == sorted(f"images/{name}" for name in stored)
    tasks = json.loads((out / "labelstudio-tasks.json").read_text(encoding="utf-8"))
    assert sorted(os.path.basename(task["data"]["source"]) for task in tasks) == sorted(
        display_path(os.fsdecode(name)) for name in NAMES)
    bad_copy = os.fsencode(src) + b"/" + NAMES[1]
    with open(bad_copy, "rb") as handle:
        assert (out / "images" / renamed[0]).read_bytes() == handle.read()

    summary = run_cli(src, tmp_path, "replay:sidecar", f"folder:{out}", as_json=False)  # the human summary
    assert summary.code == 0 and "already sent" in summary.out, summary.out + summary.err
    assert sorted(os.listdir(out / "images")) == sorted(stored)  # nothing stored twice
    check_records(tmp_path, runs=2)


def test_roboflow_model_and_destination(tmp_path, roboflow, env):
    src = tmp_path / "src"
    make_source(src)
    for run in (1, 2):
        result = run_cli(src, tmp_path, "roboflow:vehicles/3", "roboflow:queue", env)
        report = json.loads(result.out)
        assert (result.code, report["failed"], report["failures"]) == (0, 0, []), result.out + result.err
        assert report["sent" if run == 1 else "already_sent"] == len(NAMES), result.out
    assert roboflow.requests["infer"].total == len(NAMES)  # the rerun recognised every image
    assert roboflow.requests["upload"].total == len(NAMES)
    uploaded = roboflow.images("queue")
    assert sorted(image["name"] for image in uploaded) == sorted(display_path(os.fsdecode(name)) for name in NAMES)
    assert all(image["upload_count"] == 1 for image in uploaded)
    assert len(roboflow.annotations("queue")) == len(NAMES)
    check_records(tmp_path, runs=2)
