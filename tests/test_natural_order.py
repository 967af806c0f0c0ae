"""Folders are processed in natural order (``frame_2`` before ``frame_10``), the same on every file
system: ``os.scandir`` order differs between them (hash order on ext4), and the order decides
``limit``, ``top_k`` ties, ``near_duplicate`` and ``against: previous``."""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from pathlib import Path

from hypothesis import given, strategies as st
from PIL import Image

import alpolicy
from alpolicy.io.images import iter_folder, natural_key

from .cli import alpolicy as alpolicy_cli
from .helpers import det, pred

#: Created in this order, which is neither their natural order nor plain sorted() order.
SCRAMBLED = ["frame_10", "a10b10", "frame_2", "img", "frame_1", "Frame_3", "a10b2", "frame_02", "a2b1", "IMG", "frame_3"]
NATURAL = ["a2b1", "a10b2", "a10b10", "frame_1", "frame_02", "frame_2", "Frame_3", "frame_3", "frame_10", "IMG", "img"]


def test_the_expected_order_is_not_an_accident():
    """The fixture itself: creation order, its reverse and code-point order all differ from it."""
    assert NATURAL not in (SCRAMBLED, SCRAMBLED[::-1], sorted(SCRAMBLED), sorted(SCRAMBLED, key=str.lower))
    assert sorted(SCRAMBLED) == sorted(NATURAL)


def test_natural_key_compares_digit_runs_as_numbers_and_breaks_ties_on_the_name():
    assert sorted(SCRAMBLED, key=natural_key) == NATURAL
    assert sorted(["x.jpg", "x1.jpg", "x", "x01", "x1"], key=natural_key) == ["x", "x01", "x1", "x1.jpg", "x.jpg"]
    assert sorted(["b", "10", "9", "a", "_1", "-1"], key=natural_key) == ["9", "10", "-1", "_1", "a", "b"]
    assert sorted(["v1.10", "v1.9", "v1.9.1", "v10"], key=natural_key) == ["v1.9", "v1.9.1", "v1.10", "v10"]
    assert sorted(["f" + "9" * 40, "f1" + "0" * 40], key=natural_key) == ["f" + "9" * 40, "f1" + "0" * 40]  # no float rounding


def reference_key(name: str) -> tuple:
    """The definition, spelled out: casefolded text runs and numeric digit runs, then the exact name."""
    parts = re.split(r"([0-9]+)", name)
    return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts)), name


# Any file name (no "/", no NUL; control characters below U+0002 left out: the key uses them as markers).
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00\x01"), min_size=1, max_size=12)
DIGITY = st.text(st.sampled_from("aAb0123456789_.-ßİ"), min_size=1, max_size=10)


@given(st.lists(NAMES | DIGITY, max_size=30))
def test_natural_key_is_the_definition_and_a_total_order(names):
    assert sorted(names, key=natural_key) == sorted(names, key=reference_key)
    assert len({natural_key(name) for name in names}) == len(set(names))  # different names never tie


_colours = itertools.count()


def make_images(folder: Path, stems: list[str]) -> None:
    """Tiny JPEGs, each of its own colour (and a sidecar prediction each), created in the order given."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        colour = next(_colours)
        rgb = (colour % 6 * 40, colour // 6 % 6 * 40, colour // 36 % 6 * 40)  # steps JPEG cannot blur together
        Image.new("RGB", (16, 12), rgb).save(folder / f"{stem}.jpg")
        (folder / f"{stem}.json").write_text(json.dumps(pred(det(confidence=0.5))))


def test_iter_folder_yields_a_folder_in_natural_order(tmp_path):
    make_images(tmp_path, SCRAMBLED)
    assert [Path(image.path).stem for image in iter_folder(str(tmp_path))] == NATURAL


def make_tree(root: Path) -> list[str]:
    """A tree whose folders are created out of natural order; returns its images in natural order."""
    make_images(root / "part10", ["b2", "b1"])
    make_images(root / "part2" / "sub10", ["c1"])
    make_images(root / "part2", ["a10", "a9"])
    make_images(root / "Part1", ["z"])
    make_images(root / "part2" / "sub9", ["d3", "d20"])
    make_images(root, ["top10", "top2"])
    return ["top2", "top10", "Part1/z", "part2/a9", "part2/a10", "part2/sub9/d3", "part2/sub9/d20",
            "part2/sub10/c1", "part10/b1", "part10/b2"]


def test_recursive_folders_are_visited_depth_first_in_natural_order(tmp_path):
    expected = make_tree(tmp_path / "root")
    found = [Path(image.path).relative_to(tmp_path / "root").with_suffix("").as_posix()
             for image in iter_folder(str(tmp_path / "root"), recursive=True)]
    assert found == expected


def test_alpolicy_run_recursive_decides_in_natural_order(tmp_path):
    expected = make_tree(tmp_path / "root")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "sampling": [{"rule": "limit", "max": 4}]}))
    journal = tmp_path / "journal.sqlite"
    result = alpolicy_cli("run", str(tmp_path / "root"), "--recursive", "--model", "replay:sidecar", "--policy", str(policy),
                          "--to", f"folder:{tmp_path / 'out'}", "--journal", str(journal), "--concurrency", "3")
    assert result.code == 0, result.err
    with sqlite3.connect(journal) as db:  # the run's own record of its decisions, in stream order
        paths = [row[0] for row in db.execute("SELECT path FROM decisions ORDER BY seq")]
    assert [Path(path).relative_to(tmp_path / "root").with_suffix("").as_posix() for path in paths] == expected
    # the budget goes to the first four in natural order
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["a9.jpg", "top10.jpg", "top2.jpg", "z.jpg"]


def test_the_drop_in_infers_and_returns_in_natural_order_unlike_the_sdks_glob(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_images(folder, SCRAMBLED)
    names_by_bytes = {(folder / f"{stem}.jpg").read_bytes(): stem for stem in SCRAMBLED}
    assert len(names_by_bytes) == len(SCRAMBLED)  # the server can tell the images apart
    received: list[str] = []

    def predict(_image, image_bytes):
        received.append(names_by_bytes[image_bytes])
        return [{"x": 8, "y": 6, "width": 4, "height": 4, "confidence": 0.9, "class": "car"}]

    roboflow.add_model("ordered", 1, predict=predict)
    results = alpolicy.active_learning(
        raw_data_location=str(folder), raw_data_extension=".jpg", inference_endpoint=["ordered", 1],
        upload_destination="queue", conditionals={}, journal=None, progress=False, concurrency=1,
    )
    assert [Path(r["image"]).stem for r in results] == NATURAL
    assert received == NATURAL  # one inference at a time: the server sees the run's order
    assert sorted(image["name"] for image in roboflow.images("queue")) == sorted(f"{stem}.jpg" for stem in SCRAMBLED)
