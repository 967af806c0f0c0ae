"""The replay backend: stored predictions per image (folder, sidecar) or in a COCO file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import alpolicy
from alpolicy import UsageError
from alpolicy.backends import ImageError, InferenceBackend, ModelOptions
from alpolicy.backends.replay import ReplayBackend, make_backend
from alpolicy.destinations import Delivery, DestinationOptions
from alpolicy.destinations.folder import make_destination
from alpolicy.io.images import ImageFile
from alpolicy.policy.prediction import Prediction

from .helpers import det, pred


def make_jpeg(path: Path, color: tuple[int, int, int] = (200, 10, 10)) -> ImageFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path, "JPEG")
    return ImageFile.from_path(path)


def write_json(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def replay(target: str | Path) -> ReplayBackend:
    return make_backend(str(target), ModelOptions())


# -- one JSON per image ----------------------------------------------------------------------


def test_a_folder_is_looked_up_by_stem_then_by_file_name(tmp_path: Path) -> None:
    stored = tmp_path / "preds"
    write_json(stored / "a.json", pred(det("car", 0.4), width=64, height=48))
    write_json(stored / "b.jpg.json", pred(det("bus", 0.8), det("bus", 0.3), width=64, height=48))
    backend = replay(stored)
    assert isinstance(backend, InferenceBackend) and backend.model_id == f"replay:{stored}"

    a = backend.predict(make_jpeg(tmp_path / "img" / "a.jpg"))
    assert (a.width, a.height, [d["class"] for d in a.detections]) == (64, 48, ["car"])
    assert a.model_id == f"replay:{stored}"
    b = backend.predict(make_jpeg(tmp_path / "img" / "b.jpg"))
    assert [d["confidence"] for d in b.detections] == [0.8, 0.3]


def test_the_stem_file_wins_over_the_name_file(tmp_path: Path) -> None:
    write_json(tmp_path / "p" / "a.json", pred(det("stem"), width=64, height=48))
    write_json(tmp_path / "p" / "a.jpg.json", pred(det("name"), width=64, height=48))
    assert replay(tmp_path / "p").predict(make_jpeg(tmp_path / "a.jpg")).detections[0]["class"] == "stem"


def test_a_stored_model_id_is_kept(tmp_path: Path) -> None:
    write_json(tmp_path / "p" / "a.json", {**pred(det()), "model_id": "cars/7", "inference_id": "x1"})
    prediction = replay(tmp_path / "p").predict(make_jpeg(tmp_path / "a.jpg"))
    assert prediction.model_id == "cars/7" and prediction.extra == {"inference_id": "x1"}


def test_sidecar_looks_beside_each_image(tmp_path: Path) -> None:
    write_json(tmp_path / "one" / "a.json", pred(det("car")))
    write_json(tmp_path / "two" / "a.jpg.json", pred(det("bus")))
    backend = replay("sidecar")
    assert backend.model_id == "replay:sidecar"
    assert backend.predict(make_jpeg(tmp_path / "one" / "a.jpg")).detections[0]["class"] == "car"
    assert backend.predict(make_jpeg(tmp_path / "two" / "a.jpg")).detections[0]["class"] == "bus"
    with pytest.raises(ImageError, match=r"no stored prediction for c\.jpg in .*beside the image"):
        backend.predict(make_jpeg(tmp_path / "one" / "c.jpg"))


def test_a_relative_folder_is_resolved_against_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(tmp_path / "a.json", pred(det("car")))
    monkeypatch.chdir(tmp_path)
    backend = replay(".")
    monkeypatch.chdir("/")  # resolved once, when built
    assert backend.model_id == "replay:."
    assert backend.predict(make_jpeg(tmp_path / "img" / "a.jpg")).detections[0]["class"] == "car"


def test_a_missing_prediction_names_the_image_and_the_folder(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    with pytest.raises(ImageError) as caught:
        replay(tmp_path / "p").predict(make_jpeg(tmp_path / "zz.jpg"))
    assert str(caught.value) == f"no stored prediction for zz.jpg in {tmp_path / 'p'}"


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"image": {"width": 64', "not valid JSON"),
        ('{"predictions": []}', '"image": {"width": W, "height": H}'),
        ('{"image": {"width": 64, "height": 48}, "predictions": [{"x": 1}]}', "predictions[0] lacks"),
        ('[1, 2]', "must be a JSON object"),
    ],
)
def test_a_malformed_prediction_is_an_image_error_naming_the_file(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.json").write_text(content)
    with pytest.raises(ImageError) as caught:
        replay(tmp_path / "p").predict(make_jpeg(tmp_path / "a.jpg"))
    message = str(caught.value)
    assert str(tmp_path / "p" / "a.json") in message and problem in message and "\n" not in message


def test_a_missing_folder_or_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        replay(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="does not exist"):
        replay(tmp_path / "nowhere.json")


# -- COCO ------------------------------------------------------------------------------------

COCO = {
    "images": [
        {"id": 1, "file_name": "train/a.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50},
        {"id": 3, "file_name": "empty.jpg", "width": 10, "height": 10},
    ],
    "categories": [{"id": 1, "name": "car"}, {"id": 5, "name": "person"}],
    "annotations": [
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "area": 1200, "score": 0.42},
        {"id": 12, "image_id": 1, "category_id": 5, "bbox": [100.5, 0, 9, 10], "area": 90},
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [0, 0, 100, 50], "score": 0.9},
    ],
}


def test_coco_maps_corner_boxes_to_roboflow_centres(tmp_path: Path) -> None:
    backend = replay(write_json(tmp_path / "coco.json", COCO))
    a = backend.predict(make_jpeg(tmp_path / "img" / "a.jpg"))
    assert (a.width, a.height, a.model_id) == (640, 480, f"replay:{tmp_path / 'coco.json'}")
    assert a.detections == [
        {"x": 25, "y": 40, "width": 30, "height": 40, "confidence": 0.42, "class": "car", "class_id": 1, "detection_id": "11"},
        {"x": 105, "y": 5, "width": 9, "height": 10, "confidence": 1.0, "class": "person", "class_id": 5, "detection_id": "12"},
    ]
    assert backend.predict(make_jpeg(tmp_path / "b.jpg")).detections[0]["confidence"] == 0.9
    assert backend.predict(make_jpeg(tmp_path / "empty.jpg")).detections == []  # stored: nothing found
    with pytest.raises(ImageError, match=r"no stored prediction for c\.jpg in .*coco\.json"):
        backend.predict(make_jpeg(tmp_path / "c.jpg"))
    # A prediction is fresh each time: a caller changing one does not change the next.
    a.detections.clear()
    assert len(backend.predict(make_jpeg(tmp_path / "img" / "a.jpg")).detections) == 2


def test_coco_images_of_the_same_name_are_told_apart_by_their_path(tmp_path: Path) -> None:
    coco = {
        "images": [
            {"id": 1, "file_name": "day/a.jpg", "width": 8, "height": 8},
            {"id": 2, "file_name": "night/a.jpg", "width": 9, "height": 9},
        ],
        "categories": [], "annotations": [],
    }
    backend = replay(write_json(tmp_path / "coco.json", coco))
    assert backend.predict(make_jpeg(tmp_path / "night" / "a.jpg")).width == 9
    with pytest.raises(ImageError, match="2 images named a.jpg"):
        backend.predict(make_jpeg(tmp_path / "other" / "a.jpg"))


def test_a_bad_coco_annotation_fails_its_image_only(tmp_path: Path) -> None:
    coco = json.loads(json.dumps(COCO))
    coco["annotations"][2]["bbox"] = [1, 2, 3]
    coco["annotations"].append({"id": 14, "image_id": 3, "category_id": 99, "bbox": [0, 0, 1, 1]})
    backend = replay(write_json(tmp_path / "coco.json", coco))
    assert len(backend.predict(make_jpeg(tmp_path / "a.jpg")).detections) == 2
    with pytest.raises(ImageError, match=r"annotation 13 of b\.jpg: bbox must be"):
        backend.predict(make_jpeg(tmp_path / "b.jpg"))
    with pytest.raises(ImageError, match="category_id 99 is not in categories"):
        backend.predict(make_jpeg(tmp_path / "empty.jpg"))


@pytest.mark.parametrize(
    "document, problem",
    [
        ("{broken", "is not valid JSON"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "COCO results"),
        (pred(det()), "one Roboflow prediction"),
        ({"images": [{"id": 1, "file_name": "a.jpg"}]}, "images[0] needs id, file_name, width and height"),
        ({"annotations": []}, "not a COCO file"),
    ],
)
def test_a_file_that_is_not_a_coco_dataset_is_a_usage_error(tmp_path: Path, document: Any, problem: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(UsageError, match=re.escape(problem)) as caught:
        replay(path)
    assert "\n" not in str(caught.value)


# -- together with the folder destination ----------------------------------------------------


def test_a_folder_destination_replays_through_its_predictions_and_its_coco(tmp_path: Path) -> None:
    """What ``folder:`` writes, ``replay:`` reads back: boxes survive both round trips."""
    image = make_jpeg(tmp_path / "src" / "frame.jpg")
    boxes = [det("car", 0.6, width=20, height=10, x=30, y=20), det("bus", 0.3, width=4, height=6, x=5, y=5)]
    document = {**pred(*boxes, width=64, height=48), "model_id": "m/1"}
    prediction = Prediction.from_json(document)
    destination = make_destination(str(tmp_path / "out"), DestinationOptions())
    destination.check()
    decision = alpolicy.Policy.from_dict({"version": 1}).evaluate(prediction)
    destination.send(Delivery(image, prediction, decision, image.sha256(), [], {}))
    destination.close()

    again = replay(tmp_path / "out" / "predictions").predict(image)
    assert again.detections == prediction.detections and again.model_id == "m/1"
    from_coco = replay(tmp_path / "out" / "annotations.coco.json").predict(image)
    assert as_tuples(from_coco) == as_tuples(prediction)


def as_tuples(prediction: Prediction) -> list[tuple[Any, ...]]:
    return sorted((d["class"], d["x"], d["y"], d["width"], d["height"], d["confidence"]) for d in prediction.detections)


def test_registered_through_the_registry(tmp_path: Path) -> None:
    spec = alpolicy.get_registry().backends["replay"]
    assert spec.plugin == "alpolicy.backends.replay"
    assert isinstance(spec.factory(str(tmp_path), ModelOptions()), ReplayBackend)


# -- the fingerprint: a changed prediction file is read again -------------------------------


def test_the_fingerprint_follows_the_prediction_files(tmp_path: Path) -> None:
    stored = tmp_path / "preds"
    write_json(stored / "a.json", pred(det("car", 0.4), width=64, height=48))
    first = replay(stored).fingerprint
    assert first.startswith(f"replay:{stored}@") and first == replay(stored).fingerprint
    write_json(stored / "b.json", pred(det("bus", 0.4), width=64, height=48))
    second = replay(stored).fingerprint
    write_json(stored / "a.json", pred(det("car", 0.45), width=64, height=48))  # rewritten in place
    third = replay(stored).fingerprint
    (stored / "notes.txt").write_text("not a prediction")
    assert len({first, second, third}) == 3 and replay(stored).fingerprint == third
    (stored / "loop.json").symlink_to(stored / "loop.json")  # listed, not a reason to stop the run
    (stored / "gone.json").symlink_to(tmp_path / "nowhere.json")
    assert replay(stored).fingerprint != third

    coco = write_json(tmp_path / "c.json", {"images": [], "categories": [], "annotations": []})
    before = replay(coco)
    assert before.fingerprint_settings["sha256"] == alpolicy.io.images.sha256_file(coco)
    write_json(coco, {"images": [], "categories": [{"id": 1, "name": "car"}], "annotations": []})
    assert replay(coco).fingerprint != before.fingerprint
    assert replay("sidecar").fingerprint == replay("sidecar").fingerprint


def test_a_rerun_after_a_prediction_file_changed_decides_on_the_new_file(tmp_path: Path) -> None:
    stored = tmp_path / "preds"
    make_jpeg(tmp_path / "img" / "a.jpg")
    write_json(stored / "a.json", pred(det("car", 0.4), width=64, height=48))
    options = alpolicy.RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True)
    seen: list[str] = []
    policy = alpolicy.Policy.from_conditionals({})
    on_result = lambda image, prediction: seen.append(prediction.detections[0]["class"])  # noqa: E731
    first = alpolicy.run(str(tmp_path / "img"), policy, model=f"replay:{stored}", options=options, on_result=on_result)
    write_json(stored / "a.json", pred(det("truck", 0.4), width=64, height=48))
    again = alpolicy.run(str(tmp_path / "img"), policy, model=f"replay:{stored}", options=options, on_result=on_result)
    assert seen == ["car", "truck"] and (first.inferred, again.inferred, again.reused) == (1, 1, 0)
