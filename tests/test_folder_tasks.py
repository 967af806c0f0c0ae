"""The folder destination per task (issue #14), read back by each format's own loaders.

Every case goes through the real ``alpolicy run`` (``replay:sidecar`` over stored Roboflow
inference JSON of each shape) into ``--to folder:DIR``, then DIR is opened by the tools a user
would open it with: pycocotools (``COCO``, ``annToMask``, ``COCOeval``), supervision
(``DetectionDataset.from_coco``/``from_yolo``, ``ClassificationDataset.from_folder_structure``)
and, when its benchmark venv is there, Ultralytics' own label checker. Expected numbers (areas,
keypoints, one-hot rows) are worked out by hand here, not by alpolicy's code.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import pycocotools  # noqa: E402  (the test extra: a missing one fails, never skips)
import supervision as sv  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from alpolicy import Policy, RunOptions, UsageError  # noqa: E402
from alpolicy.destinations import DestinationOptions  # noqa: E402
from alpolicy.destinations.folder import make_destination  # noqa: E402
from alpolicy.policy import geometry
from alpolicy.formats import classification, shapes, yolo  # noqa: E402
from alpolicy.policy.prediction import CLASSIFICATION  # noqa: E402
from alpolicy.testing import SEND_EVERYTHING, StaticBackend, make_classification, run_one  # noqa: E402

from .cli import alpolicy as alpolicy_cli  # noqa: E402

W, H = 200, 100
ULTRALYTICS_PYTHON = Path(__file__).resolve().parents[1] / ".venv-ultralytics" / "bin" / "python"
if not ULTRALYTICS_PYTHON.exists():
    ULTRALYTICS_PYTHON = Path("/work/main/.venv-ultralytics/bin/python")


def box(cls: str, x: float, y: float, w: float, h: float, confidence: float = 0.8, **extra: Any) -> dict[str, Any]:
    return {"x": x, "y": y, "width": w, "height": h, "confidence": confidence, "class": cls, "class_id": 0,
            "detection_id": f"{cls}-{x}-{y}", **extra}


def points(*xy: tuple[float, float]) -> list[dict[str, float]]:
    return [{"x": x, "y": y} for x, y in xy]


def frames(folder: Path, documents: dict[str, dict[str, Any]]) -> Path:
    """Distinct W x H images with their stored prediction beside each (``replay:sidecar``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, document) in enumerate(documents.items()):
        colour = (20 + 30 * index, 200 - 20 * index, zlib.crc32(name.encode()) % 256)
        Image.new("RGB", (W, H), colour).save(folder / name)
        (folder / f"{Path(name).stem}.json").write_text(json.dumps({"image": {"width": W, "height": H}, **document}))
    return folder


def run(tmp_path: Path, source: Path, out: Path, *extra: str, code: int = 0, journal: Path | None = None) -> Any:
    """``alpolicy run SOURCE --model replay:sidecar --to folder:OUT``, sending every image (a new
    journal each time unless one is given)."""
    policy = tmp_path / "everything.json"
    policy.write_text(json.dumps(SEND_EVERYTHING))
    journal = journal or tmp_path / f"j{len(list(tmp_path.glob('j*.sqlite')))}.sqlite"
    result = alpolicy_cli("run", str(source), "--model", "replay:sidecar", "--to", f"folder:{out}", "--no-progress",
                          "--policy", str(policy), "--journal", str(journal), *extra)
    assert result.code == code, result.err
    return result


def no_temp_files(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.startswith(".alp-")], "a temp file was left behind"


# -- instance segmentation -------------------------------------------------------------------

#: A right triangle inside the image: legs 40 and 20, area 400.
TRIANGLE = points((20, 10), (60, 10), (20, 30))
#: A 40 x 40 square over the right edge (180..220 x 40..80): 20 x 40 = 800 inside the image.
OVER_THE_EDGE = points((180, 40), (220, 40), (220, 80), (180, 80))


def rle_square() -> tuple[dict[str, Any], np.ndarray]:
    """A 10 x 5 block as pycocotools encodes it (its compressed string), and the mask."""
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[50:55, 100:110] = 1
    encoded = mask_utils.encode(mask)
    return {"size": [H, W], "counts": encoded["counts"].decode("ascii")}, mask


def test_segmentation_polygons_and_rle_read_back_by_pycocotools_supervision_and_ultralytics(tmp_path: Path) -> None:
    rle, mask = rle_square()
    out = tmp_path / "out"
    source = frames(tmp_path / "src", {
        "a.jpg": {"predictions": [box("car", 40, 20, 40, 20, 0.9, points=TRIANGLE),
                                  box("car", 195, 60, 30, 40, 0.7, points=OVER_THE_EDGE)]},
        "b.jpg": {"predictions": [box("dog", 105, 52.5, 10, 5, 0.6, rle=rle)]},
        "c.jpg": {"predictions": [], "task": "instance-segmentation"},
    })
    run(tmp_path, source, out)
    no_temp_files(out)
    ground = COCO(str(out / "annotations.coco.json"))
    anns = {(ground.imgs[a["image_id"]]["file_name"], a["bbox"][0]): a for a in ground.dataset["annotations"]}
    assert len(anns) == 3 and len(ground.imgs) == 3
    triangle, edge = anns[("images/a.jpg", 20.0)], anns[("images/a.jpg", 180.0)]
    assert triangle["segmentation"] == [[20.0, 10.0, 60.0, 10.0, 20.0, 30.0]] and triangle["area"] == 400.0
    assert edge["area"] == 800.0 and max(edge["segmentation"][0][0::2]) == W  # clipped at the right edge
    assert edge["bbox"] == [180.0, 40.0, 20.0, 40.0]
    # pycocotools rasterises each polygon to its area, give or take the pixels its edges cross
    # (at most its perimeter: 40 + 20 + 44.7 for the triangle), and the RLE exactly
    assert abs(int(ground.annToMask(triangle).sum()) - 400) <= 105
    assert abs(int(ground.annToMask(edge).sum()) - 800) <= 120
    blob = anns[("images/b.jpg", 100.0)]
    assert blob["segmentation"] == rle and blob["area"] == 50 == int(mask_utils.area(ground.annToRLE(blob)))
    assert (ground.annToMask(blob) == mask).all()
    # COCOeval takes the file as ground truth: its own annotations as results score a perfect AP
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": ground.annToRLE(a),
                "score": a["score"]} for a in ground.dataset["annotations"]]
    evaluation = COCOeval(ground, ground.loadRes(results), "segm")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)

    dataset = sv.DetectionDataset.from_coco(str(out), str(out / "annotations.coco.json"), force_masks=True)
    assert len(dataset) == 3 and dataset.classes == ["car", "dog"]
    by_name = {Path(path).name: detections for path, _, detections in dataset}
    assert len(by_name["a.jpg"]) == 2 and by_name["a.jpg"].mask is not None
    assert int(by_name["b.jpg"].mask[0].sum()) == 50 and len(by_name["c.jpg"]) == 0

    labels = (out / "labels" / "a.txt").read_text().splitlines()
    assert labels[0] == "0 0.100000 0.100000 0.300000 0.100000 0.100000 0.300000"  # normalised triangle
    assert (out / "labels" / "c.txt").read_text() == ""
    yolo_set = sv.DetectionDataset.from_yolo(str(out / "images"), str(out / "labels"), str(out / "data.yaml"),
                                             force_masks=True)
    yolo_by_name = {Path(path).name: detections for path, _, detections in yolo_set}
    assert yolo_set.classes == ["car", "dog"] and len(yolo_by_name["a.jpg"]) == 2
    assert yolo_by_name["a.jpg"].mask is not None and abs(int(yolo_by_name["a.jpg"].mask[0].sum()) - 400) <= 105
    # the RLE-only mask is its box's corners in YOLO-seg (no polygon to trace)
    assert (out / "labels" / "b.txt").read_text() == "1 0.500000 0.500000 0.550000 0.500000 0.550000 0.550000 0.500000 0.550000\n"
    ultralytics_check(out, "segment")

    # reading back: replay of the COCO file gives the same polygons, so the same files again
    again = tmp_path / "again"
    result = alpolicy_cli("run", str(source), "--model", f"replay:{out / 'annotations.coco.json'}", "--to",
                          f"folder:{again}", "--no-progress", "--journal", str(tmp_path / "again.sqlite"),
                          "--policy", str(tmp_path / "everything.json"))
    assert result.code == 0, result.err
    first = json.loads((out / "annotations.coco.json").read_text())
    second = json.loads((again / "annotations.coco.json").read_text())
    assert [a["segmentation"] for a in second["annotations"]] == [a["segmentation"] for a in first["annotations"]]
    assert [a["area"] for a in second["annotations"]] == [a["area"] for a in first["annotations"]]
    replayed = json.loads((again / "predictions" / "c.json").read_text())
    assert replayed == {"image": {"width": W, "height": H}, "predictions": [], "task": "instance-segmentation",
                        "model_id": f"replay:{out / 'annotations.coco.json'}"}


def ultralytics_check(out: Path, task: str) -> None:
    """Ultralytics' own label checker (``verify_image_label``) over every label file, when its
    benchmark venv is installed; a corrupt label is an assertion."""
    if not ULTRALYTICS_PYTHON.exists():
        return
    script = """
import json, sys, yaml
from pathlib import Path
from ultralytics.data.utils import verify_image_label
out, task = Path(sys.argv[1]), sys.argv[2]
data = yaml.safe_load((out / "data.yaml").read_text())
nkpt, ndim = data.get("kpt_shape", (0, 0))
found = []
for image in sorted((out / "images").iterdir()):
    if image.suffix != ".jpg":
        continue
    result = verify_image_label((str(image), str(out / "labels" / (image.stem + ".txt")), "", task == "pose",
                                 len(data["names"]), nkpt, ndim, False))
    found.append({"name": image.name, "corrupt": result[8], "msg": result[9], "boxes": len(result[1]),
                  "segments": len(result[3]), "keypoints": None if result[4] is None else result[4].tolist()})
print(json.dumps({"data": {k: data.get(k) for k in ("kpt_shape", "flip_idx", "kpt_names", "names")}, "labels": found}))
"""
    process = subprocess.run([str(ULTRALYTICS_PYTHON), "-c", script, str(out), task], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": ""})
    assert process.returncode == 0, process.stderr[-2000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert all(label["corrupt"] == 0 for label in report["labels"]), report
    ULTRALYTICS_REPORTS[task] = report


ULTRALYTICS_REPORTS: dict[str, Any] = {}


# -- keypoints -------------------------------------------------------------------------------


def keypoint(name: str, index: int, x: float, y: float, confidence: float) -> dict[str, Any]:
    return {"x": x, "y": y, "confidence": confidence, "class_id": index, "class": name}


def test_keypoints_read_back_by_pycocotools_and_ultralytics_with_their_names_and_visibility(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = frames(tmp_path / "src", {
        "p.jpg": {"predictions": [
            box("person", 50, 50, 40, 60, 0.9, keypoints=[keypoint("nose", 0, 50, 30, 0.95),
                                                          keypoint("left_eye", 1, 45, 28, 0.3),
                                                          keypoint("right_eye", 2, 55, 28, 0.7)]),
            # the third keypoint not answered; one past the right edge
            box("person", 150, 50, 40, 60, 0.8, keypoints=[keypoint("nose", 0, 150, 30, 0.9),
                                                           keypoint("left_eye", 1, 210, 28, 0.6)]),
        ]},
        "q.jpg": {"predictions": [], "task": "keypoint-detection"},
    })
    run(tmp_path, source, out)
    no_temp_files(out)
    ground = COCO(str(out / "annotations.coco.json"))
    category, = ground.loadCats(ground.getCatIds())
    assert (category["name"], category["keypoints"], category["skeleton"]) == ("person", ["nose", "left_eye", "right_eye"], [])
    first, second = sorted(ground.dataset["annotations"], key=lambda a: a["bbox"][0])
    # v: 2 at confidence >= 0.5 (visible), 1 below (placed, doubtful), 0 for a keypoint not answered
    assert first["keypoints"] == [50.0, 30.0, 2, 45.0, 28.0, 1, 55.0, 28.0, 2] and first["num_keypoints"] == 3
    assert second["keypoints"] == [150.0, 30.0, 2, 200.0, 28.0, 2, 0.0, 0.0, 0] and second["num_keypoints"] == 2
    assert first["area"] == 40 * 60
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                "score": a["score"]} for a in ground.dataset["annotations"]]
    evaluation = COCOeval(ground, ground.loadRes(results), "keypoints")
    evaluation.params.kpt_oks_sigmas = np.full(3, 0.05)
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)

    data_yaml = (out / "data.yaml").read_text()
    assert "kpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\n" in data_yaml
    assert 'kpt_names:\n  0: ["nose", "left_eye", "right_eye"]\n' in data_yaml
    lines = (out / "labels" / "p.txt").read_text().splitlines()
    assert lines[1] == "0 0.750000 0.500000 0.200000 0.600000 0.750000 0.300000 2 1.000000 0.280000 2 0.000000 0.000000 0"
    back = yolo.prediction(lines, ["person"], W, H, kpt_shape=(3, 3), kpt_names={0: ["nose", "left_eye", "right_eye"]})
    assert [(k["class"], round(k["x"], 3), round(k["y"], 3)) for k in back.detections[0]["keypoints"]] == [
        ("nose", 50.0, 30.0), ("left_eye", 45.0, 28.0), ("right_eye", 55.0, 28.0)]
    assert back.task == "keypoint-detection"
    ultralytics_check(out, "pose")
    if "pose" in ULTRALYTICS_REPORTS:
        report = ULTRALYTICS_REPORTS["pose"]
        assert report["data"]["kpt_shape"] == [3, 3] and report["data"]["flip_idx"] == [0, 2, 1]
        assert report["data"]["kpt_names"] == {"0": ["nose", "left_eye", "right_eye"]} or \
            report["data"]["kpt_names"] == {0: ["nose", "left_eye", "right_eye"]}
        labelled = {label["name"]: label for label in report["labels"]}
        assert labelled["p.jpg"]["boxes"] == 2 and labelled["q.jpg"]["boxes"] == 0
        assert labelled["p.jpg"]["keypoints"][0][1] == pytest.approx([0.225, 0.28, 1.0])

    # replay of the COCO file reads the keypoints back, named by the category
    again = tmp_path / "again"
    result = alpolicy_cli("run", str(source), "--model", f"replay:{out / 'annotations.coco.json'}", "--to",
                          f"folder:{again}", "--no-progress", "--journal", str(tmp_path / "again.sqlite"),
                          "--policy", str(tmp_path / "everything.json"))
    assert result.code == 0, result.err
    replayed = json.loads((again / "predictions" / "p.json").read_text())
    assert [k["class"] for k in replayed["predictions"][0]["keypoints"]] == ["nose", "left_eye", "right_eye"]
    assert json.loads((again / "predictions" / "q.json").read_text())["task"] == "keypoint-detection"


# -- classification --------------------------------------------------------------------------


def single(top: str, scores: dict[str, float]) -> dict[str, Any]:
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    return {"predictions": [{"class": name, "class_id": i, "confidence": c} for i, (name, c) in enumerate(ranked)],
            "top": top, "confidence": scores[top]}


def read_classes_csv(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """An independent reader of Roboflow's one-hot CSV (``filename, A, B`` / ``name, 0, 1``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, skipinitialspace=True))
    return rows[0], {row[0]: [int(v) for v in row[1:]] for row in rows[1:]}


def test_single_label_classes_are_folders_supervision_reads_and_a_one_hot_csv(tmp_path: Path) -> None:
    out = tmp_path / "out"
    documents = {
        "a.jpg": single("cat", {"cat": 0.8, "dog": 0.2}),
        "b.jpg": single("dog", {"cat": 0.4, "dog": 0.6}),
        "c.jpg": single("cat", {"cat": 0.55, "dog": 0.45}),
        "d.jpg": {"predictions": [], "task": "classification"},
    }
    source = frames(tmp_path / "src", documents)
    run(tmp_path, source, out)
    no_temp_files(out)
    dataset = sv.ClassificationDataset.from_folder_structure(str(out / "classes"))
    assert dataset.classes == ["cat", "dog"]
    found = {Path(path).name: dataset.classes[int(c.class_id[0])] for path, _, c in dataset}
    assert found == {"a.jpg": "cat", "b.jpg": "dog", "c.jpg": "cat"}
    # hard links: the class folder's image is the stored image itself, not a second copy
    assert os.path.samefile(out / "classes" / "cat" / "a.jpg", out / "images" / "a.jpg")
    header, rows = read_classes_csv(out / "images" / "_classes.csv")
    assert (out / "images" / "_classes.csv").read_text().splitlines()[0] == "filename, cat, dog"
    assert header == ["filename", "cat", "dog"]
    assert rows == {"a.jpg": [1, 0], "b.jpg": [0, 1], "c.jpg": [1, 0], "d.jpg": [0, 0]}
    # a classifier has no objects: no COCO or YOLO file saying "nothing here"
    assert not (out / "annotations.coco.json").exists() and not (out / "data.yaml").exists()
    assert not (out / "labels").exists() or not list((out / "labels").iterdir())
    assert (out / "labelstudio-tasks.json").exists()

    # the same run again: no image stored or linked again (a link changes its image's ctime);
    # the index files are rebuilt, the same
    images = sorted(p for p in (out / "images").iterdir() if p.suffix == ".jpg")
    before = {p: os.stat(p).st_ctime_ns for p in images}
    csv_before = (out / "images" / "_classes.csv").read_bytes()
    run(tmp_path, source, out, journal=tmp_path / "j0.sqlite")  # the same journal: a resume, nothing to send
    run(tmp_path, source, out)  # a new journal: every image sent again, each a duplicate
    assert {p: os.stat(p).st_ctime_ns for p in images} == before
    assert (out / "images" / "_classes.csv").read_bytes() == csv_before
    assert sorted(p.name for p in (out / "images").iterdir()) == ["_classes.csv", "a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    # a changed prediction moves the image to its new class folder, and empties the old one
    (source / "c.json").write_text(json.dumps({"image": {"width": W, "height": H}, **single("dog", {"cat": 0.3, "dog": 0.7})}))
    run(tmp_path, source, out)
    assert sorted(p.name for p in (out / "classes" / "dog").iterdir()) == ["b.jpg", "c.jpg"]
    assert sorted(p.name for p in (out / "classes" / "cat").iterdir()) == ["a.jpg"]
    assert read_classes_csv(out / "images" / "_classes.csv")[1]["c.jpg"] == [0, 1]


def test_multi_label_classes_are_roboflow_s_one_hot_csv(tmp_path: Path) -> None:
    out = tmp_path / "out"
    multi = {"predictions": {"cat": {"confidence": 0.9, "class_id": 0}, "dog": {"confidence": 0.7, "class_id": 1},
                             "bird": {"confidence": 0.1, "class_id": 2}}, "predicted_classes": ["cat", "dog"]}
    none = {"predictions": {"cat": {"confidence": 0.2, "class_id": 0}}, "predicted_classes": []}
    source = frames(tmp_path / "src", {"m.jpg": multi, "n.jpg": none})
    run(tmp_path, source, out)
    text = (out / "images" / "_classes.csv").read_text()
    assert text == "filename, bird, cat, dog\nm.jpg, 0, 1, 1\nn.jpg, 0, 0, 0\n"  # Roboflow's export, byte for byte
    assert classification.read_csv(text) == (["bird", "cat", "dog"], {"m.jpg": ["cat", "dog"], "n.jpg": []})
    assert not (out / "classes").exists()  # folders cannot say "cat and dog"
    assert not (out / "annotations.coco.json").exists()


def test_class_names_that_are_no_folder_names_are_encoded() -> None:
    assert classification.folder_name("cat") == "cat"
    assert classification.folder_name("a/b") == "a%2Fb"
    assert classification.folder_name(".hidden") == "%2Ehidden"
    assert classification.folder_name("") == "%"
    long = classification.folder_name("x" * 300)
    assert len(long.encode()) == 255 and long.startswith("x" * 200)
    text = classification.rows_text([("a, b.jpg", ["x,y"]), (" c.jpg", [])], ["x,y", '"q"'])
    assert classification.read_csv(text) == (["x,y", '"q"'], {"a, b.jpg": ["x,y"], " c.jpg": []})


# -- one task per folder ---------------------------------------------------------------------


def test_another_task_into_a_folder_is_one_line_and_the_same_task_adds_to_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    boxes = frames(tmp_path / "boxes", {"a.jpg": {"predictions": [box("car", 50, 50, 20, 20)]}})
    run(tmp_path, boxes, out)
    classes = frames(tmp_path / "classes", {"k.jpg": single("cat", {"cat": 0.9, "dog": 0.1})})
    result = run(tmp_path, classes, out, code=2)
    assert result.err == (f"alpolicy: error: folder {out} holds object-detection pre-labels; these are classification: "
                          "send them to another folder (one task per folder)\n")
    assert not (out / "images" / "k.jpg").exists() and not (out / "classes").exists()
    more = frames(tmp_path / "more", {"b.jpg": {"predictions": [box("bus", 60, 50, 20, 20)]},
                                      "e.jpg": {"predictions": []}})
    run(tmp_path, more, out)
    dataset = sv.DetectionDataset.from_coco(str(out), str(out / "annotations.coco.json"))
    assert len(dataset) == 3 and dataset.classes == ["bus", "car"]  # a, b, e: the refused k.jpg is not there
    # a backend that names its task is refused at check(), before any image
    destination = make_destination(str(out), DestinationOptions())
    destination.prepare_task(CLASSIFICATION)
    with pytest.raises(UsageError, match=r"holds object-detection pre-labels; these are classification"):
        destination.check()
    image = tmp_path / "one.jpg"
    Image.new("RGB", (W, H), (9, 9, 9)).save(image)
    backend = StaticBackend(make_classification({"cat": 0.9, "dog": 0.1}, width=W, height=H))
    backend.task = CLASSIFICATION
    with pytest.raises(UsageError, match="these are classification"):
        run_one(image, backend=backend, destination=make_destination(str(out), DestinationOptions()))


def test_a_user_s_box_dataset_refuses_a_classifier_and_a_class_csv_is_merged(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    (theirs / "images").mkdir(parents=True)
    (theirs / "data.yaml").write_text("names:\n  0: car\n")
    classes = frames(tmp_path / "classes", {"k.jpg": single("cat", {"cat": 0.9, "dog": 0.1})})
    result = run(tmp_path, classes, theirs, "--to-opt", "merge=true", code=2)
    assert result.err == (f"alpolicy: error: folder {theirs} holds a dataset of boxes; these are classification "
                          "pre-labels: send them to another folder\n")
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    Image.new("RGB", (W, H), (1, 2, 3)).save(mine / "images" / "old.jpg")
    (mine / "images" / "_classes.csv").write_text("filename, bird, cat\nold.jpg, 1, 0\n")
    run(tmp_path, classes, mine, "--to-opt", "merge=true")
    header, rows = read_classes_csv(mine / "images" / "_classes.csv")
    assert header == ["filename", "bird", "cat", "dog"]
    assert rows == {"old.jpg": [1, 0, 0], "k.jpg": [0, 1, 0]}
    dataset = sv.ClassificationDataset.from_folder_structure(str(mine / "classes"))
    assert [Path(path).name for path, _, _ in dataset] == ["k.jpg"]


# -- the shared geometry ---------------------------------------------------------------------


def test_polygon_clipping_and_area_by_hand() -> None:
    assert geometry.polygon_area(shapes.clip_polygon(TRIANGLE, W, H)) == 400.0
    assert geometry.polygon_area(shapes.clip_polygon(OVER_THE_EDGE, W, H)) == 800.0
    # a diamond centred on the top-left corner: only its quarter inside, a right triangle of legs 10
    diamond = points((-10, 0), (0, -10), (10, 0), (0, 10))
    assert geometry.polygon_area(shapes.clip_polygon(diamond, W, H)) == 50.0
    assert shapes.clip_polygon(points((-30, -30), (-20, -30), (-20, -20)), W, H) == []
    assert shapes.flip_index(["nose", "left_eye", "right_eye", "Left_Ear", "Right_Ear"]) == [0, 2, 1, 4, 3]
    assert shapes.flip_index(["nose", "left_eye"]) is None and shapes.flip_index(["a", "b"]) is None


def test_rle_area_agrees_with_pycocotools_without_it() -> None:
    generator = np.random.default_rng(14)
    for _ in range(20):
        mask = np.asfortranarray((generator.random((37, 53)) > 0.6).astype(np.uint8))
        encoded = mask_utils.encode(mask)
        counts = encoded["counts"].decode("ascii")
        assert geometry.rle_area({"size": [37, 53], "counts": counts}) == int(mask_utils.area(encoded)) == int(mask.sum())
        runs = geometry.rle_counts(counts)
        assert sum(runs) == 37 * 53
        assert geometry.rle_area({"size": [37, 53], "counts": runs}) == int(mask.sum())


def test_a_user_s_classification_config_is_merged_into_its_choices():
    """A classifier's labels join a user's <Choices> (before: refused for lacking <RectangleLabels>)."""
    from alpolicy.destinations.folder_merge import merge_labelstudio_config

    config = (b'<View>\n  <Image name="image" value="$image"/>\n  <Choices name="class" toName="image">\n'
              b'    <Choice value="cat"/>\n  </Choices>\n</View>\n')
    merged, labels = merge_labelstudio_config(config, ["cat", "dog"], "label")
    assert labels == ["cat", "dog"]
    assert b'<Choice value="dog" />' in merged and b"<Label" not in merged
    polygons = b'<View><Image name="i" value="$image"/><PolygonLabels name="p" toName="i"><Label value="a"/></PolygonLabels></View>'
    assert merge_labelstudio_config(polygons, ["a"], "label") == (None, ["a"])
