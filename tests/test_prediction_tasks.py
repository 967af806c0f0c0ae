"""Every task type's Roboflow inference shape read, validated and written back (issue #14).

The shapes are Roboflow Inference's own (see alpolicy.policy.prediction): a prediction knows its
task from its shape, or from its backend when the shape cannot tell (an empty answer)."""

from __future__ import annotations

import copy
import json

import pytest

from alpolicy.policy.prediction import (
    CLASSIFICATION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, MULTI_LABEL_CLASSIFICATION, OBJECT_DETECTION,
    Prediction, PredictionFormatError, parse_prediction, task_of,
)
from alpolicy.testing import evaluate, make_classification, make_detection, make_prediction

IMAGE = {"width": 200, "height": 100}
BOX = {"x": 50, "y": 40, "width": 20, "height": 10, "confidence": 0.6, "class": "car", "class_id": 0, "detection_id": "d1"}
SEGMENTATION = {"image": IMAGE, "predictions": [dict(BOX, points=[{"x": 40, "y": 35}, {"x": 60, "y": 35}, {"x": 50, "y": 45}])]}
KEYPOINTS = {"image": IMAGE, "predictions": [dict(BOX, keypoints=[
    {"x": 45, "y": 38, "confidence": 0.9, "class_id": 0, "class": "nose"},
    {"x": 55, "y": 42, "confidence": 0.2, "class_id": 1, "class": "tail"}])]}
SINGLE_LABEL = {"image": IMAGE, "predictions": [{"class": "dog", "class_id": 1, "confidence": 0.7},
                                                {"class": "cat", "class_id": 0, "confidence": 0.3}],
                "top": "dog", "confidence": 0.7, "inference_id": "abc", "time": 0.01}
MULTI_LABEL = {"image": IMAGE, "predictions": {"cat": {"confidence": 0.9, "class_id": 0},
                                               "dog": {"confidence": 0.6, "class_id": 1},
                                               "bird": {"confidence": 0.1, "class_id": 2}},
               "predicted_classes": ["cat", "dog"]}
RLE = {"image": IMAGE, "predictions": [dict(BOX, rle={"size": [100, 200], "counts": "PPYo1"})]}


@pytest.mark.parametrize("document, task", [
    ({"image": IMAGE, "predictions": [BOX]}, OBJECT_DETECTION),
    (SEGMENTATION, INSTANCE_SEGMENTATION),
    (RLE, INSTANCE_SEGMENTATION),
    (KEYPOINTS, KEYPOINT_DETECTION),
    (SINGLE_LABEL, CLASSIFICATION),
    (MULTI_LABEL, MULTI_LABEL_CLASSIFICATION),
])
def test_each_shape_is_told_and_written_back_unchanged(document, task):
    before = copy.deepcopy(document)
    prediction = Prediction.from_json(document, check=True)
    assert prediction.task == task == task_of(document)
    assert prediction.to_json() == before
    assert document == before, "reading must not change the caller's document"
    again = parse_prediction(json.dumps(prediction.to_json()))
    assert (again.task, again.detections, again.class_scores) == (task, prediction.detections, prediction.class_scores)


def test_a_classifier_s_detections_are_its_predicted_classes_and_its_scores_every_class():
    single = Prediction.from_json(SINGLE_LABEL)
    assert single.is_classification and not single.has_boxes
    assert single.top == "dog"
    assert [d["class"] for d in single.detections] == ["dog"]
    assert [c["class"] for c in single.class_scores] == ["dog", "cat"]
    multi = Prediction.from_json(MULTI_LABEL)
    assert multi.top is None
    assert [d["class"] for d in multi.detections] == ["cat", "dog"]
    assert [c["class"] for c in multi.class_scores] == ["cat", "dog", "bird"]
    assert multi.classes == ["cat", "dog"]


def test_an_unsorted_single_label_list_is_ranked_best_first():
    document = dict(SINGLE_LABEL, predictions=list(reversed(SINGLE_LABEL["predictions"])))
    assert [c["class"] for c in Prediction.from_json(document).class_scores] == ["dog", "cat"]


def test_confidence_and_classes_rules_read_a_classifier_s_predicted_classes():
    window = {"version": 1, "detection": [{"rule": "confidence", "min": 0.4, "max": 0.6}]}
    assert evaluate(window, make_classification({"cat": 0.55, "dog": 0.45})).qualifies
    assert not evaluate(window, make_classification({"cat": 0.9, "dog": 0.1})).qualifies
    # the second class's 0.45 is inside the window, but only the top class is predicted
    assert not evaluate(window, make_classification({"cat": 0.8, "dog": 0.45})).qualifies
    # a multi-label model predicting both: the second is a witness
    decision = evaluate(window, make_classification({"cat": 0.8, "dog": 0.45}, multi_label=True, predicted=["cat", "dog"]))
    assert decision.qualifies and [w["class"] for w in decision.witnesses] == ["dog"]
    classes = {"version": 1, "detection": [{"rule": "classes", "include": ["dog"]}]}
    assert evaluate(classes, make_classification({"cat": 0.3, "dog": 0.7})).qualifies
    assert not evaluate(classes, make_classification({"cat": 0.7, "dog": 0.3})).qualifies


@pytest.mark.parametrize("task", [INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, CLASSIFICATION, MULTI_LABEL_CLASSIFICATION])
def test_an_empty_answer_keeps_the_task_its_backend_names_through_storage(task):
    document = {"image": IMAGE, "predictions": {} if task == MULTI_LABEL_CLASSIFICATION else []}
    if task == MULTI_LABEL_CLASSIFICATION:
        document["predicted_classes"] = []
    prediction = Prediction.from_json(document, task=task)
    assert prediction.task == task
    stored = json.loads(json.dumps(prediction.to_json()))
    assert Prediction.from_json(stored).task == task


def test_boxes_of_a_segmentation_model_keep_its_task_and_a_richer_shape_beats_a_detector_hint():
    boxes = {"image": IMAGE, "predictions": [BOX]}
    prediction = Prediction.from_json(boxes, task=INSTANCE_SEGMENTATION)
    assert prediction.task == INSTANCE_SEGMENTATION
    assert prediction.to_json()["task"] == INSTANCE_SEGMENTATION
    assert Prediction.from_json(SEGMENTATION, task=OBJECT_DETECTION).task == INSTANCE_SEGMENTATION
    assert "task" not in Prediction.from_json(SEGMENTATION).to_json()


@pytest.mark.parametrize("document, task", [
    ({"image": IMAGE, "predictions": [BOX]}, CLASSIFICATION),
    (SINGLE_LABEL, OBJECT_DETECTION),
    (MULTI_LABEL, CLASSIFICATION),
    (KEYPOINTS, INSTANCE_SEGMENTATION),
])
def test_an_answer_of_another_task_than_the_model_s_is_one_line(document, task):
    with pytest.raises(PredictionFormatError, match=rf"^the model's task is {task}, but the prediction has the shape of ") as caught:
        Prediction.from_json(document, task=task)
    assert "\n" not in str(caught.value)


def _with(document, path, value):
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize("document, message", [
    (_with(SINGLE_LABEL, ("predictions", 0, "confidence"), 1.5), r"^predictions\[0\]\.confidence: 1\.5 is outside 0\.\.1$"),
    (_with(SINGLE_LABEL, ("predictions", 1, "class"), 7), r"^predictions\[1\]\.class must be a string, not 7$"),
    (_with(SINGLE_LABEL, ("predictions", 0, "confidence"), float("nan")), r"^predictions\[0\]\.confidence: NaN is not a finite number$"),
    (_with(SINGLE_LABEL, ("predictions", 0, "class_id"), "1"), r"^predictions\[0\]\.class_id must be a 64-bit integer"),
    (_with(SINGLE_LABEL, ("top",), "horse"), r'^top: "horse" is not among the predictions\' classes$'),
    (_with(SINGLE_LABEL, ("top",), 3), r"^top must be a class name, not 3$"),
    (_with(MULTI_LABEL, ("predictions", "dog", "confidence"), True), r"^predictions\.dog\.confidence must be a number, not true$"),
    (_with(MULTI_LABEL, ("predictions", "dog"), 0.6), r"^predictions\.dog must be an object, not 0\.6$"),
    (_with(MULTI_LABEL, ("predicted_classes",), ["cat", "horse"]), r'^predicted_classes\[1\]: "horse" is not in predictions$'),
    (_with(MULTI_LABEL, ("predicted_classes",), "cat"), r'^predicted_classes must be a list of class names, not "cat"$'),
    (_with(SEGMENTATION, ("predictions", 0, "points", 1, "y"), "35"), r'^predictions\[0\]\.points\[1\]\.y must be a number, not "35"$'),
    (_with(SEGMENTATION, ("predictions", 0, "points", 2), [50, 45]), r"^predictions\[0\]\.points\[2\] must be an object \{x, y\}"),
    (_with(SEGMENTATION, ("predictions", 0, "points", 0, "x"), 1e9), r"^predictions\[0\]\.points\[0\]\.x: 1000000000\.0 is too far outside the image$"),
    (_with(SEGMENTATION, ("predictions", 0, "points"), {"x": 1}), r"^predictions\[0\]\.points must be a list"),
    (_with(RLE, ("predictions", 0, "rle", "size"), [100]), r"^predictions\[0\]\.rle\.size must be \[height, width\]"),
    (_with(RLE, ("predictions", 0, "rle", "counts"), [3, -1]), r"^predictions\[0\]\.rle\.counts must hold run lengths"),
    (_with(RLE, ("predictions", 0, "rle", "counts"), "PPYo"), r"^predictions\[0\]\.rle\.counts: the RLE counts string ends inside a run$"),
    (_with(KEYPOINTS, ("predictions", 0, "keypoints", 1, "confidence"), 3), r"^predictions\[0\]\.keypoints\[1\]\.confidence: 3 is not a number in 0\.\.1$"),
    (_with(KEYPOINTS, ("predictions", 0, "keypoints", 0, "class"), None), r"^predictions\[0\]\.keypoints\[0\]\.class must be a string, not null$"),
    (_with(KEYPOINTS, ("predictions", 0, "keypoints", 0, "x"), float("inf")), r"^predictions\[0\]\.keypoints\[0\]\.x: Infinity is not a finite number$"),
    (dict(SINGLE_LABEL, task="pose"), r"^task must be one of object-detection, "),
])
def test_malformed_input_of_each_shape_is_a_located_line(document, message):
    with pytest.raises(PredictionFormatError, match=message) as caught:
        Prediction.from_json(document, check=True)
    assert "\n" not in str(caught.value)


def test_a_prediction_built_in_code_is_validated_for_its_task():
    built = Prediction(10, 10, [{"class": "cat", "confidence": 2.0}], task=CLASSIFICATION)
    with pytest.raises(PredictionFormatError, match=r"^class_scores\[0\]\.confidence: 2\.0 is outside 0\.\.1$"):
        built.validated()
    ok = Prediction(10, 10, [{"class": "cat", "confidence": 0.9}], task=CLASSIFICATION).validated()
    assert ok.class_scores == ok.detections and ok.to_json()["top"] == "cat"
    with pytest.raises(PredictionFormatError, match="^task must be one of"):
        Prediction(10, 10, [], task="segmentation").validated()


def test_make_prediction_tells_the_task_from_the_detections():
    polygon = [{"x": 45, "y": 45}, {"x": 55, "y": 45}, {"x": 50, "y": 55}]
    assert make_prediction(make_detection(points=polygon)).task == INSTANCE_SEGMENTATION
    assert make_prediction(make_detection(keypoints=[{"x": 50, "y": 50, "confidence": 0.5}])).task == KEYPOINT_DETECTION
    assert make_prediction().task == OBJECT_DETECTION
    assert make_prediction(task=INSTANCE_SEGMENTATION).task == INSTANCE_SEGMENTATION


# ---------------------------------------------------------------------- fuzzing every task's shape

import math  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from alpolicy.io.jsonsafe import check_tree  # noqa: E402
from tests.corpus.predictions import NUMBER  # noqa: E402

NAME = st.text(max_size=4) | NUMBER | st.none()


@st.composite
def hostile_task_documents(draw):
    """Documents of the four new shapes, each near-valid with a few values made hostile."""
    kind = draw(st.sampled_from(["segmentation", "rle", "keypoints", "single", "multi"]))
    value = lambda: draw(st.floats(-300, 400) | NUMBER)  # noqa: E731
    if kind in ("segmentation", "rle", "keypoints"):
        detection = dict(BOX)
        if kind == "segmentation":
            detection["points"] = draw(st.lists(st.fixed_dictionaries({"x": st.floats(-300, 400) | NUMBER,
                                                                       "y": st.floats(-300, 400) | NUMBER}), max_size=4)
                                       | NUMBER)
        elif kind == "rle":
            detection["rle"] = {"size": draw(st.lists(st.integers(-2, 300) | NUMBER, max_size=3)),
                                "counts": draw(st.text(max_size=5) | st.lists(st.integers(-3, 50), max_size=4) | NUMBER)}
        else:
            detection["keypoints"] = draw(st.lists(st.fixed_dictionaries(
                {"x": st.floats(-300, 400) | NUMBER, "y": st.floats(-300, 400) | NUMBER,
                 "confidence": st.floats(-1, 2) | NUMBER, "class": NAME}), max_size=4))
        return {"image": IMAGE, "predictions": [detection]}
    entries = draw(st.lists(st.fixed_dictionaries({"class": NAME, "confidence": st.floats(-1, 2) | NUMBER},
                                                  optional={"class_id": st.integers(-3, 3) | NUMBER}), max_size=4))
    if kind == "single":
        document = {"image": IMAGE, "predictions": entries}
        if draw(st.booleans()):
            document["top"] = draw(NAME)
        if draw(st.booleans()):
            document["confidence"] = value()
        return document
    table = {str(entry["class"]): {k: v for k, v in entry.items() if k != "class"} for entry in entries}
    return {"image": IMAGE, "predictions": table,
            "predicted_classes": draw(st.lists(st.sampled_from(sorted(table)) | NAME, max_size=3) if table else st.just([]))}


def assert_safe(prediction):
    for entry in [*prediction.detections, *prediction.class_scores]:
        assert isinstance(entry["class"], str) and 0 <= entry["confidence"] <= 1
        for point in [*entry.get("points", []), *entry.get("keypoints", [])]:
            assert math.isfinite(point["x"]) and math.isfinite(point["y"])
            assert 0 <= point.get("confidence", 1) <= 1
    check_tree(prediction.to_json(), "$")
    again = Prediction.from_json(json.loads(json.dumps(prediction.to_json(), allow_nan=False)))
    assert (again.task, again.detections, again.class_scores) == (prediction.task, prediction.detections,
                                                                  prediction.class_scores)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_task_documents())
def test_fuzz_every_task_shape_is_safe_and_round_trips_or_is_refused_in_one_line(document):
    try:
        prediction = Prediction.from_json(document)
    except PredictionFormatError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert_safe(prediction)
