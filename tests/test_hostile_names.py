r"""Hostile file names into ``folder:`` (issue #12, item 4), through the real CLI.

A backslash is an ordinary character on POSIX, a newline too, and a name may be up to 255 bytes
(``NAME_MAX``): each such image, once accepted, must be stored and appear in every index --
``annotations.coco.json``, ``labels/<stem>.txt`` (+ ``data.yaml``), ``labelstudio-tasks.json`` --
and no temporary name may be what makes a legal name fail. Read back with the json module,
each index holds exactly the images sent, under the name each was stored as.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path, PurePath

import pytest
from PIL import Image

from alpolicy.destinations.folder import _atomic_write

from .cli import alpolicy
from .corpus.names import NAME_MAX, NAMES, long_name as _long

pytestmark = pytest.mark.skipif(os.name == "nt", reason="backslashes and newlines are POSIX file name characters")

TAKE_ALL = {"version": 1, "name": "take-all", "image": {"rule": "detection_count", "min": 0}}

def _bytes(name: str) -> int:
    return len(os.fsencode(name))


def make_source(src: Path) -> None:
    src.mkdir()
    for index, name in enumerate(NAMES):
        assert _bytes(name) <= NAME_MAX
        Image.effect_noise((40 + index, 30), 50).convert("RGB").save(src / name, "PNG" if name.endswith(".png") else "JPEG")


def run(src: Path, tmp_path: Path, env: dict[str, str]):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(TAKE_ALL))
    return alpolicy("run", str(src), "--model", "roboflow:vehicles/3", "--policy", str(policy),
                    "--to", f"folder:{tmp_path / 'out'}", "--json", "--no-progress",
                    "--journal", str(tmp_path / "journal.sqlite"), env=env)


def _stored_names(tmp_path: Path, src: Path) -> dict[str, str]:
    """Source name -> stored name, from the decisions log next to the journal."""
    stored = {}
    for log in (tmp_path / "decisions").iterdir():
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("remote_id"):
                stored[os.path.relpath(record["image"], src)] = record["remote_id"]
    return stored


def check_indexes(out: Path, stored: dict[str, str], src: Path) -> None:
    names = set(stored.values())
    assert len(names) == len(NAMES)
    for source_name, name in stored.items():
        assert (out / "images" / name).read_bytes() == (src / source_name).read_bytes(), source_name
        assert _bytes(name) <= NAME_MAX and "/" not in name
        assert json.loads((out / "predictions" / f"{PurePath(name).stem}.json").read_text())["predictions"] is not None

    coco = json.loads((out / "annotations.coco.json").read_text(encoding="utf-8"))
    assert sorted(image["file_name"] for image in coco["images"]) == sorted(f"images/{n}" for n in names)

    labels = {entry.name for entry in (out / "labels").iterdir()}
    assert labels == {f"{PurePath(n).stem}.txt" for n in names}
    assert "nc: " in (out / "data.yaml").read_text(encoding="utf-8")

    tasks = json.loads((out / "labelstudio-tasks.json").read_text(encoding="utf-8"))
    urls = [task["data"]["image"] for task in tasks]
    assert all("\n" not in url and "\\" not in url and "#" not in url and "?" not in url for url in urls), urls
    assert sorted(urllib.parse.unquote(url) for url in urls) == sorted(f"images/{n}" for n in names)

    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left"


def test_every_legal_name_is_stored_and_in_every_index(tmp_path, roboflow, env):
    src = tmp_path / "src"
    make_source(src)
    for first in (True, False):
        result = run(src, tmp_path, env)
        assert "Traceback" not in result.err, result.err
        report = json.loads(result.out)
        assert (result.code, report["failed"], report["failures"]) == (0, 0, []), result.out
        assert report["sent" if first else "already_sent"] == len(NAMES)
        stored = _stored_names(tmp_path, src)
        assert set(stored) == set(NAMES)
        check_indexes(tmp_path / "out", stored, src)
    assert roboflow.requests["infer"].total == len(NAMES)  # the rerun had every prediction stored

    short = {name: stored[name] for name in NAMES if _bytes(name) + 1 <= NAME_MAX}
    assert all(kept == name for name, kept in short.items()), "a name that fits everywhere was changed"


def test_temporary_names_are_short_and_fixed(tmp_path):
    """A 255-byte target name is written; its temp file was name + 14 bytes before."""
    target = tmp_path / _long("t", 255)
    seen = []
    _atomic_write(str(target), lambda handle: seen.extend(os.listdir(tmp_path)) or handle.write(b"x"))
    assert target.read_bytes() == b"x"
    (temp,) = seen
    assert temp.startswith(".") and temp.endswith(".tmp") and len(temp) <= 32, temp
    assert os.listdir(tmp_path) == [target.name]
