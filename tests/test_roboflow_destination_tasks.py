"""The Roboflow destination's pre-label for every task type (issue #14), against the loopback API.

What Roboflow Inference's active learning registers for the same prediction
(``inference/core/active_learning/post_processing.py: encode_prediction``, uploaded by
``core.py: register_datapoint_at_roboflow`` as ``name=<image id>.<file type>``) is written out by
hand below, since inference is not installed: the inference JSON as ``.json`` for every box task
(with ``points`` for segmentation, ``keypoints`` for pose), the top class as ``.txt`` for a
single-label classifier. For multi-label (Inference raises) the Roboflow SDK's upload of a
multi-label label: ``json.dumps(labels)`` as the annotation text and its name
(``Workspace.upload_dataset`` of a ``_classes.csv``). The server parses each kind
(``tests/servers/roboflow.py: _annotation_kind``) and counts every request.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.destinations import DestinationOptions, PermanentError
from alpolicy.destinations.roboflow import RoboflowDestination
from alpolicy.formats.roboflow import scaled
from alpolicy.policy.prediction import Prediction
from alpolicy.testing import SEND_EVERYTHING, make_delivery

IMAGE = {"width": 400, "height": 200}
BOX = {"x": 80, "y": 60, "width": 80, "height": 80, "confidence": 0.8, "class": "car", "class_id": 0,
       "detection_id": "d1"}
DETECTION = {"image": IMAGE, "predictions": [BOX], "model_id": "zoo/1"}
SEGMENTATION = {"image": IMAGE, "predictions": [dict(BOX, points=[{"x": 40, "y": 20}, {"x": 120, "y": 20},
                                                                  {"x": 120, "y": 100}, {"x": 40, "y": 100}])],
                "model_id": "zoo/1"}
KEYPOINTS = {"image": IMAGE, "predictions": [dict(BOX, keypoints=[
    {"x": 60, "y": 40, "confidence": 0.9, "class_id": 0, "class": "nose"},
    {"x": 100, "y": 80, "confidence": 0.3, "class_id": 1, "class": "tail"}])], "model_id": "zoo/1"}
SINGLE_LABEL = {"image": IMAGE, "predictions": [{"class": "dog", "class_id": 1, "confidence": 0.7},
                                                {"class": "cat", "class_id": 0, "confidence": 0.3}],
                "top": "dog", "confidence": 0.7, "model_id": "zoo/1"}
MULTI_LABEL = {"image": IMAGE, "predictions": {"cat": {"confidence": 0.9, "class_id": 0},
                                               "dog": {"confidence": 0.6, "class_id": 1},
                                               "bird": {"confidence": 0.1, "class_id": 2}},
               "predicted_classes": ["cat", "dog"], "model_id": "zoo/1"}

#: task -> (stored prediction, the annotate request's name, its annotation file, the server's kind)
EXPECTED: dict[str, tuple[dict[str, Any], str, Any, str]] = {
    "object-detection": (DETECTION, "frame_00000.json", DETECTION, "roboflow-json"),
    "instance-segmentation": (SEGMENTATION, "frame_00000.json", SEGMENTATION, "roboflow-json"),
    "keypoint-detection": (KEYPOINTS, "frame_00000.json", KEYPOINTS, "roboflow-json"),
    "classification": (SINGLE_LABEL, "frame_00000.txt", "dog", "class"),
    "multi-label-classification": (MULTI_LABEL, '["cat", "dog"]', '["cat", "dog"]', "classes"),
}


def stored_run(tmp_path: Path, document: dict[str, Any], **extra: Any) -> alpolicy.RunReport:
    """One 400x200 image with ``document`` stored as its prediction, replayed into ``roboflow:tasks``."""
    frames, predictions = tmp_path / "frames", tmp_path / "predictions"
    frames.mkdir()
    predictions.mkdir()
    Image.effect_noise((400, 200), 40).convert("RGB").save(frames / "frame_00000.png")
    (predictions / "frame_00000.json").write_text(json.dumps(document))
    options = RunOptions(journal=None, progress=False, decisions_log="")
    options.destination_options.extra.update(extra)
    return alpolicy.run(str(frames), Policy.from_dict(SEND_EVERYTHING), model=f"replay:{predictions}",
                        destination="roboflow:tasks", options=options)


def the_annotation(roboflow) -> dict[str, Any]:
    (image,) = roboflow.images("tasks")
    (record,) = roboflow.annotations("tasks")[image["id"]]
    return record


@pytest.mark.parametrize("task", list(EXPECTED))
def test_each_task_sends_the_annotation_roboflow_inference_registers(roboflow, env, tmp_path, task):
    document, name, annotation_file, kind = EXPECTED[task]
    report = stored_run(tmp_path, document)
    assert (report.sent, report.failed) == (1, 0), report.failures
    record = the_annotation(roboflow)
    assert (record["name"], record["kind"], record["prediction"]) == (name, kind, True)
    sent = json.loads(record["annotation_file"]) if kind == "roboflow-json" else record["annotation_file"]
    assert sent == annotation_file
    assert record["body"] == {"annotationFile": record["annotation_file"], "labelmap": None}
    expected_classes = {"classification": ["dog"], "multi-label-classification": ["cat", "dog"]}.get(task, ["car"])
    assert record["classes"] == expected_classes
    assert roboflow.requests["upload"].total == roboflow.requests["annotate"].total == 1


@pytest.mark.parametrize("document", [
    {"image": IMAGE, "predictions": [], "task": "classification"},
    dict(MULTI_LABEL, predicted_classes=[]),
], ids=["single-label", "multi-label"])
def test_a_classifier_that_predicted_no_class_is_uploaded_without_an_annotation(roboflow, env, tmp_path, document):
    report = stored_run(tmp_path, document)
    assert report.sent == 1 and len(roboflow.images("tasks")) == 1
    assert roboflow.requests["annotate"].total == 0  # nothing to pre-label (nor does Inference register one)


# ---------------------------------------------------------------------- downscaled uploads
#: 400x200 downscaled to --max-size 100: 100x50, every coordinate a quarter (computed by hand).
SMALL_BOX = {"x": 20.0, "y": 15.0, "width": 20.0, "height": 20.0}
SMALL_POLYGON = [{"x": 10.0, "y": 5.0}, {"x": 30.0, "y": 5.0}, {"x": 30.0, "y": 25.0}, {"x": 10.0, "y": 25.0}]
SMALL_KEYPOINTS = [{"x": 15.0, "y": 10.0, "confidence": 0.9, "class_id": 0, "class": "nose"},
                   {"x": 25.0, "y": 20.0, "confidence": 0.3, "class_id": 1, "class": "tail"}]


@pytest.mark.parametrize("task, key, expected", [
    ("instance-segmentation", "points", SMALL_POLYGON),
    ("keypoint-detection", "keypoints", SMALL_KEYPOINTS),
])
def test_downscaled_uploads_carry_rescaled_polygons_and_keypoints(roboflow, env, tmp_path, task, key, expected):
    document = EXPECTED[task][0]
    report = stored_run(tmp_path, document, max_size=100)
    assert report.sent == 1
    (image,) = roboflow.images("tasks")
    assert Image.open(io.BytesIO(roboflow.image_bytes("tasks", image["id"]))).size == (100, 50)
    record = the_annotation(roboflow)
    assert record["name"] == "frame_00000.json"
    sent = json.loads(record["annotation_file"])
    assert sent["image"] == {"width": 100, "height": 50}
    (detection,) = sent["predictions"]
    assert {k: detection[k] for k in SMALL_BOX} == SMALL_BOX
    assert detection[key] == expected
    assert {k: v for k, v in detection.items() if k not in (*SMALL_BOX, key)} == {
        k: v for k, v in BOX.items() if k not in SMALL_BOX}


def test_a_downscaled_classifier_keeps_its_label(roboflow, env, tmp_path):
    stored_run(tmp_path, SINGLE_LABEL, max_size=100)
    record = the_annotation(roboflow)
    assert (record["name"], record["annotation_file"]) == ("frame_00000.txt", "dog")


def test_scaling_is_per_axis_and_leaves_the_prediction_alone():
    """300x200 to 100x67 (a side rounded): x by 1/3, y by 67/200; the caller's prediction unchanged."""
    document = copy.deepcopy(SEGMENTATION)
    document["image"] = {"width": 300, "height": 200}
    document["predictions"][0]["keypoints"] = [{"x": 30, "y": 100, "confidence": 0.5, "class": "k"}]
    document["predictions"][0]["rle"] = {"size": [200, 300], "counts": "PPYo1"}
    prediction = Prediction.from_json(document)
    before = copy.deepcopy(prediction.to_json())
    small = scaled(prediction, 100, 67)
    assert prediction.to_json() == before
    (detection,) = small.detections
    assert (small.width, small.height, small.task) == (100, 67, "instance-segmentation")
    assert detection["x"] == pytest.approx(80 / 3) and detection["y"] == pytest.approx(60 * 67 / 200)
    assert detection["width"] == pytest.approx(80 / 3) and detection["height"] == pytest.approx(80 * 67 / 200)
    assert [c for p in detection["points"] for c in (p["x"], p["y"])] == pytest.approx(
        [40 / 3, 20 * 0.335, 40.0, 20 * 0.335, 40.0, 100 * 0.335, 40 / 3, 100 * 0.335])
    assert detection["keypoints"] == [{"x": pytest.approx(10.0), "y": pytest.approx(33.5), "confidence": 0.5, "class": "k"}]
    assert "rle" not in detection  # a mask at the original size would no longer fit the image
    assert scaled(prediction, 300, 200) is prediction


# ---------------------------------------------------------------------- idempotent resume
def destination() -> RoboflowDestination:
    return RoboflowDestination("tasks", DestinationOptions(attempts=1))


@pytest.mark.parametrize("task", list(EXPECTED))
def test_a_resume_after_the_upload_only_annotates_each_task(roboflow, env, tmp_path, task):
    document, name, annotation_file, kind = EXPECTED[task]
    image = tmp_path / "frame_00000.png"
    Image.effect_noise((400, 200), 40).convert("RGB").save(image)
    prediction = Prediction.from_json(document)
    checkpoints: list[str] = []
    roboflow.set_faults("annotate", error_every=1, error_status=400, max_faults=1)  # the first annotation fails
    sender = destination()
    try:
        with pytest.raises(PermanentError, match="annotation refused"):
            sender.send(make_delivery(image, prediction, checkpoint=checkpoints.append))
        (remote_id,) = checkpoints  # the upload was checkpointed before the annotation
        for _ in range(2):  # the resume, then a resume whose answer was taken already: 409, success
            receipt = sender.send(make_delivery(image, prediction, remote_id=remote_id, checkpoint=checkpoints.append))
            assert receipt.remote_id == remote_id
    finally:
        sender.close()
    assert checkpoints == [remote_id]
    assert roboflow.requests["upload"].total == 1
    assert roboflow.requests["annotate"].by_status == {400: 1, 200: 1, 409: 1}
    (record,) = roboflow.annotations("tasks")[remote_id]
    assert (record["name"], record["kind"]) == (name, kind)
    assert (json.loads(record["annotation_file"]) if kind == "roboflow-json" else record["annotation_file"]) == annotation_file


# ---------------------------------------------------------------------- the loopback API's parsing
@pytest.mark.parametrize("name, text, message", [
    ("a.json", json.dumps({"image": IMAGE, "predictions": [dict(BOX, points=[{"x": 1, "y": 2}, {"x": 3, "y": 4}])]}),
     "predictions[0].points must be a polygon of at least 3 {x, y}"),
    ("a.json", json.dumps({"image": IMAGE, "predictions": [dict(BOX, keypoints=[{"x": "1", "y": 2}])]}),
     "predictions[0].keypoints must be a list of {x, y, class}"),
    ("a.json", json.dumps({"image": IMAGE, "predictions": [{"class": "dog", "confidence": 0.5}]}),
     "predictions[0] needs a box: x, y, width, height"),
    ("a.txt", "dog\ncat", "a classification label is one class name"),
    ('["cat", 3]', '["cat", 3]', "a multi-label label is a JSON list of class names"),
])
def test_the_loopback_api_refuses_an_annotation_it_cannot_read(roboflow, tmp_path, name, text, message):
    import requests

    from .conftest import API_KEY

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (9, 9, 9)).save(buffer, "PNG")
    uploaded = requests.post(f"{roboflow.url}/dataset/tasks/upload", params={"api_key": API_KEY},
                             files={"name": (None, "a.png"), "file": ("a.png", buffer.getvalue())}, timeout=10).json()
    answer = requests.post(f"{roboflow.url}/dataset/tasks/annotate/{uploaded['id']}", params={"api_key": API_KEY, "name": name},
                           json={"annotationFile": text, "labelmap": None}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["message"] == f"{name}: {message}"
    assert roboflow.annotations("tasks") == {} and roboflow.requests["annotate"].by_status == {400: 1}
