"""alpolicy.formats: each format's documents have its published shape, and read back to the prediction.

No reference reader is installed (pycocotools, supervision, Ultralytics and Label Studio's SDK are
not dependencies), so every document is checked against the format's published definition by hand:

* COCO ``bbox``: ``[x_min, y_min, width, height]`` of the top-left corner, in pixels
  (https://cocodataset.org/#format-data); category ids start at 1.
* YOLO txt: ``class_index cx cy w h``, the centre and size normalised to 0..1
  (https://docs.ultralytics.com/datasets/detect/).
* Label Studio ``rectanglelabels``: ``value.x``/``y`` the top-left corner, ``width``/``height``,
  all in percent of ``original_width``/``original_height``
  (https://labelstud.io/guide/predictions). The real Label Studio imports these in test_labelstudio.py.

Round trips: prediction -> document -> prediction gives the same boxes, within float tolerance,
for boxes inside the image (a box over the edge is clipped on the way out, as every format needs).
"""

from __future__ import annotations

from datetime import datetime, timezone
from xml.etree import ElementTree

import pytest

from alpolicy.formats import coco, labelstudio, roboflow, yolo
from alpolicy.policy.prediction import Prediction

from .helpers import det, pred

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
#: 200 x 100: a car whose top-left corner is (30, 20), 40 x 20; a person at (145, 45), 10 x 30.
TWO = Prediction.from_json(pred(
    det("car", 0.9, width=40, height=20, x=50, y=30),
    det("person", 0.35, width=10, height=30, x=150, y=60),
    width=200, height=100,
))
#: Over the right and bottom edges: (190, 90) to (210, 110) clipped to (190, 90) to (200, 100).
EDGE = Prediction.from_json(pred(det("car", 0.5, width=20, height=20, x=200, y=100), width=200, height=100))
#: Boxes at awkward places and sizes, inside a 333 x 211 image.
ODD = Prediction.from_json(pred(
    det("a", 0.123, width=21.1, height=3.3, x=10.6, y=7.7),
    det("b \"q\" <x>", 1.0, width=333, height=211, x=166.5, y=105.5),
    det("a", 0.5, width=0.5, height=0.25, x=300.25, y=200.125),
    width=333, height=211,
))


def boxes(prediction: Prediction) -> list[tuple[str, float, float, float, float, float]]:
    return [(d["class"], d["x"], d["y"], d["width"], d["height"], d["confidence"]) for d in prediction.detections]


def assert_same_boxes(got: Prediction, expected: Prediction, abs: float = 1e-9) -> None:
    assert (got.width, got.height) == (expected.width, expected.height)
    assert len(got.detections) == len(expected.detections)
    for a, b in zip(boxes(got), boxes(expected)):
        assert a[0] == b[0]
        assert a[1:] == pytest.approx(b[1:], abs=abs)


# -- COCO ------------------------------------------------------------------------------------


def test_coco_bbox_is_the_top_left_corner_and_size_in_pixels():
    assert coco.box(TWO.detections[0], 200, 100) == (30.0, 20.0, 40.0, 20.0)
    assert coco.box(TWO.detections[1], 200, 100) == (145.0, 45.0, 10.0, 30.0)
    assert coco.box(EDGE.detections[0], 200, 100) == (190.0, 90.0, 10.0, 10.0)  # clipped to the image


def test_coco_document_has_the_published_shape():
    document = coco.document([("images/a.jpg", TWO)], ["car", "person"], CREATED)
    assert document["categories"] == [{"id": 1, "name": "car", "supercategory": "none"},
                                      {"id": 2, "name": "person", "supercategory": "none"}]
    assert document["images"] == [{"id": 1, "file_name": "images/a.jpg", "width": 200, "height": 100}]
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"], a["area"], a["score"], a["iscrowd"])
            for a in document["annotations"]] == [
        (1, 1, 1, [30.0, 20.0, 40.0, 20.0], 800.0, 0.9, 0),
        (2, 1, 2, [145.0, 45.0, 10.0, 30.0], 300.0, 0.35, 0),
    ]
    assert document["info"]["date_created"] == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize("prediction", [TWO, ODD, Prediction(width=64, height=48)], ids=["two", "odd", "empty"])
def test_coco_round_trip(prediction: Prediction):
    classes = sorted({d["class"] for d in prediction.detections})
    document = coco.document([("x/one.png", prediction), ("two.png", prediction)], classes, CREATED)
    back = coco.predictions(document)
    assert list(back) == ["x/one.png", "two.png"]
    for got in back.values():
        assert_same_boxes(got, prediction)
        assert [d["class_id"] for d in got.detections] == [classes.index(d["class"]) + 1 for d in prediction.detections]


def test_coco_detection_explains_what_is_wrong():
    with pytest.raises(coco.CocoFormatError, match=r"bbox must be \[x_min, y_min, width, height\], not \[1, 2\]"):
        coco.detection({"bbox": [1, 2], "category_id": 1}, {1: "car"})
    with pytest.raises(coco.CocoFormatError, match="category_id 7 is not in categories"):
        coco.detection({"bbox": [1, 2, 3, 4], "category_id": 7}, {1: "car"})
    with pytest.raises(coco.CocoFormatError, match="needs id, file_name, width and height"):
        coco.image_entry({"id": 1, "file_name": "a.jpg"})


# -- YOLO ------------------------------------------------------------------------------------


def test_yolo_lines_are_class_and_normalised_centre_and_size():
    index = yolo.class_index(["car", "person"])
    assert yolo.label_lines(TWO, index) == ["0 0.250000 0.300000 0.200000 0.200000",
                                            "1 0.750000 0.600000 0.050000 0.300000"]
    assert yolo.label_lines(EDGE, index) == ["0 0.975000 0.950000 0.050000 0.100000"]  # clipped first
    assert yolo.labels_text(Prediction(width=5, height=5), index) == ""


def test_yolo_class_index_keeps_a_repeated_names_first_index():
    assert yolo.class_index(["car", "person", "car"]) == {"car": 0, "person": 1}


@pytest.mark.parametrize("prediction", [TWO, ODD, Prediction(width=64, height=48)], ids=["two", "odd", "empty"])
def test_yolo_round_trip(prediction: Prediction):
    names = sorted({d["class"] for d in prediction.detections})
    text = yolo.labels_text(prediction, yolo.class_index(names))
    back = yolo.prediction(text.splitlines(), names, prediction.width, prediction.height)
    # six decimals of a fraction: within a millionth of the side, in pixels
    for got, expected in zip(boxes(back), boxes(prediction)):
        assert got[0] == expected[0]
        assert got[1:5] == pytest.approx(expected[1:5], abs=1e-6 * max(prediction.width, prediction.height))
    assert len(back.detections) == len(prediction.detections)
    assert all(d["confidence"] == 1.0 for d in back.detections)  # YOLO labels carry none


def test_yolo_reads_a_confidence_column_and_refuses_other_lines():
    back = yolo.prediction(["0 0.5 0.5 0.1 0.2 0.75", ""], ["car"], 100, 50)
    assert boxes(back) == [("car", 50.0, 25.0, 10.0, 10.0, 0.75)]
    with pytest.raises(ValueError, match="line 1: class 3 is not in names"):
        yolo.prediction(["3 0.5 0.5 0.1 0.1"], ["car"], 10, 10)
    with pytest.raises(ValueError, match="line 1: expected 'class cx cy w h'"):
        yolo.prediction(["0 0.5 0.5"], ["car"], 10, 10)


def test_yolo_data_yaml_names_the_classes_by_index():
    text = yolo.data_yaml(["car", "b \"q\""])
    assert "nc: 2\nnames:\n  0: \"car\"\n  1: \"b \\\"q\\\"\"\n" in text
    assert "train: images\n" in text


# -- Label Studio ----------------------------------------------------------------------------


def test_labelstudio_rectangles_are_top_left_percent_of_the_original():
    results = labelstudio.results(TWO, "label", "image", "seed")
    assert [r["value"] for r in results] == [
        {"x": 15.0, "y": 20.0, "width": 20.0, "height": 20.0, "rotation": 0, "rectanglelabels": ["car"]},
        {"x": 72.5, "y": 45.0, "width": 5.0, "height": 30.0, "rotation": 0, "rectanglelabels": ["person"]},
    ]
    assert {(r["type"], r["from_name"], r["to_name"], r["original_width"], r["original_height"]) for r in results} == {
        ("rectanglelabels", "label", "image", 200, 100)}
    assert [r["score"] for r in results] == [0.9, 0.35]
    assert [r["id"] for r in results] == [labelstudio.region_id("seed", 0), labelstudio.region_id("seed", 1)]
    assert len({r["id"] for r in results}) == 2
    assert labelstudio.results(Prediction(width=0, height=0, detections=TWO.detections), "l", "i") == []


@pytest.mark.parametrize("prediction", [TWO, ODD, Prediction(width=64, height=48)], ids=["two", "odd", "empty"])
def test_labelstudio_round_trip(prediction: Prediction):
    results = labelstudio.results(prediction, "label", "image")
    assert_same_boxes(labelstudio.prediction(results, prediction.width, prediction.height), prediction, abs=1e-9)


def test_labelstudio_task_scores_and_data():
    task = labelstudio.task(TWO, "images/a.jpg", "label", "image", score=None, reasons=["r1", "r2"], tags=["t"], source="/s/a.jpg")
    assert task["data"] == {"image": "images/a.jpg", "alpolicy_score": None, "alpolicy_reasons": "r1; r2",
                            "alpolicy_tags": "t", "source": "/s/a.jpg"}
    assert task["predictions"][0]["score"] == 0.9  # no decision score: the best box's confidence
    assert task["predictions"][0]["model_version"] == "alpolicy"
    scored = labelstudio.task(TWO, "u", "label", "image", score=0.25)
    assert (scored["data"]["alpolicy_score"], scored["predictions"][0]["score"]) == (0.25, 0.25)
    assert "score" not in labelstudio.task(Prediction(width=1, height=1), "u", "l", "i")["predictions"][0]


def test_labelstudio_config_names_every_class_and_the_region_names():
    root = ElementTree.fromstring(labelstudio.config(["car", "b \"q\" <x>"], "lbl", "img"))
    image, = root.iter("Image")
    control, = root.iter("RectangleLabels")
    assert (image.get("name"), image.get("value")) == ("img", "$image")
    assert (control.get("name"), control.get("toName")) == ("lbl", "img")
    assert [label.get("value") for label in control.iter("Label")] == ["car", "b \"q\" <x>"]


# -- Roboflow --------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", [TWO, ODD, Prediction(width=64, height=48, model_id="m/1")], ids=["two", "odd", "empty"])
def test_roboflow_round_trip(prediction: Prediction):
    document = roboflow.document(prediction)
    assert document["image"] == {"width": prediction.width, "height": prediction.height}
    back = roboflow.prediction(document)
    assert back == prediction
