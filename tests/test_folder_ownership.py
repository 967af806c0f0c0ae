"""``--to folder:DIR`` owns only what it wrote: a folder holding someone's dataset is refused in
one line (and left byte for byte), or with ``--to-opt merge=true`` added to, keeping every entry
of theirs -- their YOLO labels still point at the right classes."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image

import alpolicy
from alpolicy import Policy, RunOptions, UsageError
from alpolicy.destinations import DestinationOptions
from alpolicy.destinations.folder import make_destination

from .cli import alpolicy as alpolicy_cli
from .helpers import det, pred

USER_YAML = """\
# my dataset
path: /data/pets
train: images
val: images
nc: 2
names:
  0: dog   # good boys
  1: 'car'
download: https://example.invalid/pets.zip
"""
USER_LABEL = b"0 0.500000 0.500000 0.200000 0.300000\n1 0.1 0.1 0.05 0.05\n"
USER_CONFIG = b"""<View>
  <Image name="image" value="$image"/>
  <!-- my classes -->
  <RectangleLabels name="label" toName="image">
    <Label value="dog" background="red"/>
    <Label value="car"/>
  </RectangleLabels>
</View>
"""
USER_COCO = {
    "info": {"description": "my pets"},
    "images": [{"id": 7, "file_name": "images/x.jpg", "width": 64, "height": 48},
               {"id": 8, "file_name": "images/gone.jpg", "width": 64, "height": 48}],
    "annotations": [{"id": 3, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}],
    "categories": [{"id": 5, "name": "dog", "supercategory": "animal"}, {"id": 9, "name": "car", "supercategory": "none"}],
}
USER_TASKS = [{"data": {"image": "images/x.jpg"}, "annotations": []}]


def user_dataset(root: Path) -> dict[str, bytes]:
    """A YOLO + COCO + Label Studio dataset of someone's; returns every file's bytes."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(root / "images" / "x.jpg")
    (root / "labels" / "x.txt").write_bytes(USER_LABEL)
    (root / "labels" / "y.txt").write_bytes(b"1 0.5 0.5 0.1 0.1\n")  # its image is elsewhere
    (root / "data.yaml").write_text(USER_YAML)
    (root / "annotations.coco.json").write_text(json.dumps(USER_COCO, indent=1))
    (root / "labelstudio-config.xml").write_bytes(USER_CONFIG)
    (root / "labelstudio-tasks.json").write_text(json.dumps(USER_TASKS))
    return snapshot(root)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def frames_with_sidecars(folder: Path, named: dict[str, list[dict[str, Any]]]) -> None:
    """Images (distinct contents) with their predictions beside them, for ``replay:sidecar``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, detections) in enumerate(named.items()):
        color = (10 + 20 * index, 200 - 10 * index, zlib.crc32(folder.name.encode()) % 256)  # distinct per folder too
        Image.new("RGB", (200, 100), color).save(folder / name)
        (folder / f"{Path(name).stem}.json").write_text(json.dumps(pred(*detections, width=200, height=100)))


FRAMES = {
    "x.jpg": [det("car", 0.9, 40, 20, 50, 30), det("person", 0.6, 10, 30, 150, 60)],  # the user's name
    "y.jpg": [det("bicycle", 0.7, 20, 20, 100, 50)],  # the user has labels/y.txt
    "z.jpg": [det("dog", 0.8, 30, 30, 60, 60)],
}


def run_cli(tmp_path: Path, frames: Path, out: Path, *extra: str) -> Any:
    return alpolicy_cli("run", str(frames), "--model", "replay:sidecar", "--to", f"folder:{out}", "--no-progress",
                        "--journal", str(tmp_path / f"j{len(list(tmp_path.glob('j*.sqlite')))}.sqlite"), *extra)


def yaml_names(text: str) -> list[str]:
    """The ``names:`` block mapping alpolicy writes (an independent reader: index -> JSON string)."""
    block = text.split("names:\n", 1)[1]
    names = {}
    for line in block.splitlines():
        if not line.startswith("  "):
            break
        key, value = line.strip().split(":", 1)
        names[int(key)] = json.loads(value.strip())
    assert sorted(names) == list(range(len(names)))
    return [names[i] for i in range(len(names))]


def test_a_folder_holding_someone_s_dataset_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "pets"
    before = user_dataset(out)
    frames_with_sidecars(tmp_path / "frames", FRAMES)
    for extra in ((), ("--dry-run",)):
        result = run_cli(tmp_path, tmp_path / "frames", out, *extra)
        assert result.code == 2, result.err
        assert result.err == (f"alpolicy: error: folder {out} holds files alpolicy did not write (annotations.coco.json, "
                              "data.yaml, images/, labels/, ...); choose an empty folder, or pass --to-opt merge=true "
                              "(extra={'merge': True}) to add to it keeping its entries\n"), result.err
        assert snapshot(out) == before
        assert sorted(p.name for p in out.iterdir()) == sorted(["images", "labels", "data.yaml", "annotations.coco.json",
                                                                "labelstudio-config.xml", "labelstudio-tasks.json"])
    # the library refuses the same, and closing the refused destination writes nothing
    destination = make_destination(str(out), DestinationOptions())
    with pytest.raises(UsageError, match="holds files alpolicy did not write"):
        destination.check()
    destination.close()
    assert snapshot(out) == before


def test_merge_keeps_every_entry_of_the_user_s_and_the_label_indices_stay_right(tmp_path: Path) -> None:
    out = tmp_path / "pets"
    before = user_dataset(out)
    frames_with_sidecars(tmp_path / "frames", FRAMES)
    result = run_cli(tmp_path, tmp_path / "frames", out, "--to-opt", "merge=true")
    assert result.code == 0, result.err
    after = snapshot(out)
    for name in ("images/x.jpg", "labels/x.txt", "labels/y.txt"):  # the user's files, untouched
        assert after[name] == before[name], name

    # data.yaml: the user's names at their indices, ours appended; every other line kept
    text = (out / "data.yaml").read_text()
    names = yaml_names(text)
    assert names[:2] == ["dog", "car"] and sorted(names[2:]) == ["bicycle", "person"] and len(names) == 4
    assert "nc: 4\n" in text and "nc: 2" not in text
    for line in ("# my dataset", "path: /data/pets", "train: images", "download: https://example.invalid/pets.zip"):
        assert line in text.splitlines()

    # our images: renamed away from the user's names (x.jpg, and y whose labels/y.txt is theirs)
    stored = sorted(os.listdir(out / "images"))
    assert "x.jpg" in stored and "z.jpg" in stored and len(stored) == 4
    ours = {name: name.split("-")[0].split(".")[0] for name in stored if name != "x.jpg"}
    assert sorted(ours.values()) == ["x", "y", "z"] and all(n != "y.jpg" for n in ours)
    # each YOLO label of ours points at the right name in the merged data.yaml
    for name, source in ours.items():
        rows = (out / "labels" / f"{Path(name).stem}.txt").read_text().splitlines()
        assert sorted(names[int(row.split()[0])] for row in rows) == sorted(d["class"] for d in FRAMES[f"{source}.jpg"])

    # COCO: the user's ids kept (images, annotations, categories), ours appended with fresh ids
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert coco["info"] == USER_COCO["info"]
    for key in ("images", "annotations", "categories"):
        for entry in USER_COCO[key]:
            assert entry in coco[key], (key, entry)
        ids = [entry["id"] for entry in coco[key]]
        assert len(set(ids)) == len(ids), key
    category = {c["id"]: c["name"] for c in coco["categories"]}
    assert category[5] == "dog" and category[9] == "car" and sorted(category.values()) == ["bicycle", "car", "dog", "person"]
    file_of = {i["id"]: i["file_name"] for i in coco["images"]}
    got = sorted((file_of[a["image_id"]], category[a["category_id"]]) for a in coco["annotations"] if a["id"] != 3)
    assert got == sorted((f"images/{name}", d["class"]) for name, source in ours.items() for d in FRAMES[f"{source}.jpg"])

    # Label Studio: the union of the labels, the user's attributes and comment kept; their task kept
    view = ElementTree.parse(out / "labelstudio-config.xml").getroot()
    labels = view.find("RectangleLabels")
    assert labels is not None and [label.get("value") for label in labels.iter("Label")][:2] == ["dog", "car"]
    assert sorted(label.get("value") for label in labels.iter("Label")) == ["bicycle", "car", "dog", "person"]
    assert labels.find("Label").get("background") == "red" and b"<!-- my classes -->" in (out / "labelstudio-config.xml").read_bytes()
    tasks = json.loads((out / "labelstudio-tasks.json").read_text())
    assert USER_TASKS[0] in tasks and len(tasks) == 4

    marker = json.loads((out / ".alpolicy" / "folder.json").read_text())
    assert marker["merged"] is True and "labels/x.txt" in marker["user_files"] and "data.yaml" in marker["user_files"]

    # a second run, without merge=true (the marker says how): stable indices, the user's still there
    frames_with_sidecars(tmp_path / "more", {"w.jpg": [det("truck", 0.5, 10, 10, 20, 20), det("dog", 0.5, 10, 10, 80, 80)]})
    again = run_cli(tmp_path, tmp_path / "more", out)
    assert again.code == 0, again.err
    assert yaml_names((out / "data.yaml").read_text()) == names + ["truck"]
    assert (out / "labels" / "x.txt").read_bytes() == USER_LABEL and (out / "images" / "x.jpg").read_bytes() == before["images/x.jpg"]
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert all(entry in coco[key] for key in ("images", "annotations", "categories") for entry in USER_COCO[key])
    assert len(coco["images"]) == 2 + 4 and {c["id"]: c["name"] for c in coco["categories"]}[5] == "dog"
    rows = (out / "labels" / "w.txt").read_text().splitlines()
    assert sorted(yaml_names((out / "data.yaml").read_text())[int(r.split()[0])] for r in rows) == ["dog", "truck"]


def test_a_user_file_merging_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "pets"
    user_dataset(out)
    (out / "data.yaml").write_text("names: !!python/object:x {}\n")
    before = snapshot(out)
    frames_with_sidecars(tmp_path / "frames", {"a.jpg": [det("car", 0.9)]})
    result = run_cli(tmp_path, tmp_path / "frames", out, "--to-opt", "merge=true")
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert "data.yaml: cannot read names" in result.err and "merge it by hand" in result.err
    assert snapshot(out) == before


def test_a_folder_alpolicy_made_needs_no_merge_and_an_old_one_is_adopted(tmp_path: Path) -> None:
    frames_with_sidecars(tmp_path / "frames", {"a.jpg": [det("car", 0.9)], "b.jpg": [det("bus", 0.5)]})
    out = tmp_path / "queue"
    options = RunOptions(journal=None, progress=False)
    policy = Policy.from_conditionals({})
    report = alpolicy.run(tmp_path / "frames", policy, model="replay:sidecar", destination=f"folder:{out}", options=options)
    assert report.sent == 2
    marker = json.loads((out / ".alpolicy" / "folder.json").read_text())
    assert marker["written_by"] == "alpolicy folder destination" and marker["merged"] is False and marker["created_at"]
    frames_with_sidecars(tmp_path / "more", {"c.jpg": [det("car", 0.4)]})
    report = alpolicy.run(tmp_path / "more", policy, model="replay:sidecar", destination=f"folder:{out}", options=options)
    assert report.sent == 1 and len(os.listdir(out / "images")) == 3
    # a folder of an alpolicy from before the marker: its records prove it; adopted, marker written
    (out / ".alpolicy" / "folder.json").unlink()
    frames_with_sidecars(tmp_path / "later", {"d.jpg": [det("car", 0.35)]})
    report = alpolicy.run(tmp_path / "later", policy, model="replay:sidecar", destination=f"folder:{out}", options=options)
    assert report.sent == 1 and len(os.listdir(out / "images")) == 4
    assert "adopted" in json.loads((out / ".alpolicy" / "folder.json").read_text())
    assert len(json.loads((out / "annotations.coco.json").read_text())["images"]) == 4
    # a marker alpolicy did not write is not taken for one
    (out / ".alpolicy" / "folder.json").write_text('{"written_by": "someone else"}')
    with pytest.raises(UsageError, match=r"has a \.alpolicy/folder\.json that this alpolicy did not write"):
        alpolicy.run(tmp_path / "later", policy, model="replay:sidecar", destination=f"folder:{out}", options=options)


def test_to_opt_is_checked_in_one_line(tmp_path: Path) -> None:
    frames_with_sidecars(tmp_path / "frames", {"a.jpg": [det("car", 0.9)]})
    out = tmp_path / "out"
    cases = [
        (("--to-opt", "colour=red"), "alpolicy: error: --to-opt colour: unknown option; options of folder: "
                                      "image_url_prefix, labelstudio_from_name, labelstudio_to_name, merge"),
        (("--to-opt", "merge=maybe"), "alpolicy: error: --to-opt merge: 'maybe' is not of type 'boolean'"),
        (("--to-opt", "merge"), "argument --to-opt: should be KEY=VALUE, e.g. merge=true, got 'merge'"),
    ]
    for extra, expected in cases:
        result = run_cli(tmp_path, tmp_path / "frames", out, *extra)
        assert result.code == 2 and expected in result.err and len(result.err.splitlines()) == 1, (extra, result.err)
    assert not out.exists()
    # merge=true on an empty (or absent) folder is just a first run
    result = run_cli(tmp_path, tmp_path / "frames", out, "--to-opt", "merge=true", "--to-opt", "image_url_prefix=/x/")
    assert result.code == 0, result.err
    assert json.loads((out / "labelstudio-tasks.json").read_text())[0]["data"]["image"] == "/x/images/a.jpg"


def test_the_user_s_image_is_never_taken_for_ours_and_a_file_broken_later_is_left_alone(tmp_path: Path) -> None:
    from alpolicy.io.images import ImageFile

    from .test_folder_destination import delivery_for

    out = tmp_path / "pets"
    before = user_dataset(out)
    same = tmp_path / "src" / "x.jpg"  # the user's very image, under its very name
    same.parent.mkdir()
    same.write_bytes(before["images/x.jpg"])
    destination = make_destination(str(out), DestinationOptions(extra={"merge": True}))
    destination.check()
    receipt = destination.send(delivery_for(ImageFile.from_path(same), pred(det("cat", 0.9), width=64, height=48)))
    assert receipt.remote_id != "x.jpg" and not receipt.duplicate
    (out / "data.yaml").write_text("names: [unclosed\n")  # broken while the run went on
    destination.close()
    assert (out / "data.yaml").read_text() == "names: [unclosed\n"  # not overwritten ...
    assert not (out / "labels" / f"{Path(receipt.remote_id).stem}.txt").exists()  # ... and no label indexed against it
    after = snapshot(out)
    assert all(after[name] == before[name] for name in ("images/x.jpg", "labels/x.txt", "labels/y.txt"))
    coco = json.loads(after["annotations.coco.json"])
    assert [i["file_name"] for i in coco["images"]] == ["images/x.jpg", "images/gone.jpg", f"images/{receipt.remote_id}"]
