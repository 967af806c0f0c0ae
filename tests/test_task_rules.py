"""Rules for every task type (issue #14): the new rules at and beside their bounds, which task
each rule applies to (at run time and when the model's task is known), and uncertainty on a
classifier's class probabilities. Values are computed by hand in the comments."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

import alpolicy
from alpolicy import Policy, PolicyError, RuleSpec, Stage
from alpolicy.errors import PluginError, UsageError
from alpolicy.plugins import DEFAULT_PLUGINS
from alpolicy.policy.prediction import (
    BOX_TASKS, CLASSIFICATION, CLASSIFICATION_TASKS, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION,
    MULTI_LABEL_CLASSIFICATION, OBJECT_DETECTION, TASKS,
)
from alpolicy.rules.tasks import polygon_area, rle_area
from alpolicy.testing import (
    CollectingDestination, StaticBackend, evaluate, image_folder, make_classification, make_detection, make_prediction,
    registry_with, run_one,
)


def policy(*detection: dict[str, Any], image: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"version": 1, "detection": list(detection)}
    if image is not None:
        document["image"] = image
    return document


def square(x0: float, y0: float, side: float) -> list[dict[str, float]]:
    return [{"x": x0, "y": y0}, {"x": x0 + side, "y": y0}, {"x": x0 + side, "y": y0 + side}, {"x": x0, "y": y0 + side}]


def segmented(points: list[dict[str, float]] | None = None, *, width: float = 20, height: float = 10,
              rle: dict[str, Any] | None = None, image: int = 100) -> alpolicy.Prediction:
    fields: dict[str, Any] = {}
    if points is not None:
        fields["points"] = points
    if rle is not None:
        fields["rle"] = rle
    box = make_detection("leaf", 0.8, x=50, y=50, width=width, height=height, **fields)
    return make_prediction(box, width=image, height=image, task=INSTANCE_SEGMENTATION)


def posed(*confidences: float) -> alpolicy.Prediction:
    keypoints = [{"x": 40 + i, "y": 40, "confidence": c, "class_id": i, "class": f"k{i}"} for i, c in enumerate(confidences)]
    return make_prediction(make_detection("person", 0.9, x=50, y=50, width=30, height=30, keypoints=keypoints),
                           width=100, height=100, task=KEYPOINT_DETECTION)


# ---------------------------------------------------------------------- masks
def test_the_shoelace_area_of_squares_triangles_and_degenerate_polygons():
    assert polygon_area(square(0, 0, 10)) == 100
    assert polygon_area(list(reversed(square(5, 5, 10)))) == 100  # clockwise: the same area
    assert polygon_area([{"x": 0, "y": 0}, {"x": 10, "y": 0}, {"x": 0, "y": 10}]) == 50
    assert polygon_area([{"x": 0, "y": 0}, {"x": 10, "y": 0}]) == 0  # two points enclose nothing


def test_an_rle_mask_s_area_is_the_pixels_it_covers():
    # [3 off, 7 on, 5 off, 2 on] in a 17-pixel mask: 9 pixels; compressed strings as pycocotools writes them:
    # a 50 x 60 mask all set (3000 pixels) and a 30 x 40 one with a 17 x 25 block and a 3 x 40 band (545)
    assert rle_area({"size": [1, 17], "counts": [3, 7, 5, 2]}) == 9
    assert rle_area({"size": [50, 60], "counts": "0hm2"}) == 3000
    band = "i03k00000000ZO>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0B0>0Bf00000000000000000000WO"
    assert rle_area({"size": [30, 40], "counts": band}) == 545
    assert rle_area({"size": [30, 40], "counts": band[:2]}) >= 0  # cut short: no crash


@pytest.mark.parametrize("params, accepted", [
    ({"min": 99}, True), ({"min": 100}, False),  # strict, as box_area: the 100 px² square is not > 100
    ({"max": 101}, True), ({"max": 100}, False),
    ({"min": 99, "max": 101}, True),
    # 100 px² of a 100 x 100 image is 0.01
    ({"min": 0.0099, "unit": "fraction"}, True), ({"min": 0.01, "unit": "fraction"}, False),
    ({"max": 0.0101, "unit": "fraction"}, True), ({"max": 0.01, "unit": "fraction"}, False),
])
def test_mask_area_at_and_beside_its_bounds(params, accepted):
    decision = evaluate(policy({"rule": "mask_area", **params}), segmented(square(40, 45, 10)))
    assert decision.qualifies is accepted
    assert ("within" if accepted else "outside") in " ".join(decision.reasons)


def test_mask_area_reads_an_rle_when_there_is_no_polygon_and_turns_down_a_detection_without_a_mask():
    rle = {"size": [50, 60], "counts": "0hm2"}  # 3000 pixels
    assert evaluate(policy({"rule": "mask_area", "min": 2999}), segmented(rle=rle, width=60, height=50)).qualifies
    assert not evaluate(policy({"rule": "mask_area", "min": 3000}), segmented(rle=rle, width=60, height=50)).qualifies
    decision = evaluate(policy({"rule": "mask_area", "min": 1}), segmented())
    assert not decision.qualifies and "no mask" in " ".join(decision.reasons)


@pytest.mark.parametrize("params, accepted", [
    # a 10 x 10 triangle (50 px²) in a 20 x 10 box (200 px²): fill 0.25
    ({"max": 0.25}, True), ({"max": 0.2499}, False),
    ({"min": 0.25}, True), ({"min": 0.2501}, False),
    ({"min": 0.2, "max": 0.3}, True),
])
def test_mask_fill_at_and_beside_its_bounds(params, accepted):
    triangle = [{"x": 40, "y": 45}, {"x": 50, "y": 45}, {"x": 40, "y": 55}]
    decision = evaluate(policy({"rule": "mask_fill", **params}), segmented(triangle))
    assert decision.qualifies is accepted
    assert "mask fills 0.250 of its box" in " ".join(decision.reasons)


def test_mask_fill_of_a_box_without_area_is_zero():
    flat = [{"x": 50, "y": 50}, {"x": 51, "y": 50}, {"x": 50, "y": 51}]
    assert evaluate(policy({"rule": "mask_fill", "max": 0}), segmented(flat, width=0, height=0)).qualifies


# ---------------------------------------------------------------------- keypoints
@pytest.mark.parametrize("params, accepted", [
    # confidences 0.9, 0.5, 0.49, 0.1 at threshold 0.5: 2 visible (0.5 counts: >=)
    ({"min": 2}, True), ({"min": 3}, False),
    ({"min": 0, "max": 2}, True), ({"min": 0, "max": 1}, False),
    ({"min": 3, "threshold": 0.49}, True), ({"min": 3, "threshold": 0.491}, False),
    ({}, True),  # default: at least one visible
])
def test_keypoints_visible_at_and_beside_its_bounds(params, accepted):
    decision = evaluate(policy({"rule": "keypoints_visible", **params}), posed(0.9, 0.5, 0.49, 0.1))
    assert decision.qualifies is accepted
    assert "of 4 keypoints visible" in " ".join(decision.reasons)


@pytest.mark.parametrize("params, accepted", [
    # confidences 0.75, 0.5, 0.25: mean 0.5, min 0.25, max 0.75 (exact in binary)
    ({"min": 0.5}, True), ({"min": 0.51}, False), ({"max": 0.5}, True), ({"max": 0.49}, False),
    ({"reduce": "min", "max": 0.25}, True), ({"reduce": "min", "max": 0.24}, False),
    ({"reduce": "max", "min": 0.75}, True), ({"reduce": "max", "min": 0.76}, False),
])
def test_keypoint_confidence_at_and_beside_its_bounds(params, accepted):
    decision = evaluate(policy({"rule": "keypoint_confidence", **params}), posed(0.75, 0.5, 0.25))
    assert decision.qualifies is accepted


def test_a_pose_without_keypoints_is_turned_down_by_keypoint_confidence():
    bare = make_prediction(make_detection("person", 0.9), task=KEYPOINT_DETECTION)
    decision = evaluate(policy({"rule": "keypoint_confidence"}), bare)
    assert not decision.qualifies and "no keypoints" in " ".join(decision.reasons)
    assert not evaluate(policy({"rule": "keypoints_visible"}), bare).qualifies  # 0 visible, 1 required


# ---------------------------------------------------------------------- class scores
@pytest.mark.parametrize("params, accepted", [
    # cat 0.75, dog 0.25: margin 0.5
    ({"max": 0.5}, True), ({"max": 0.49}, False), ({"min": 0.5}, True), ({"min": 0.51}, False),
])
def test_top_margin_at_and_beside_its_bounds(params, accepted):
    decision = evaluate(policy(image={"rule": "top_margin", **params}), make_classification({"cat": 0.75, "dog": 0.25}))
    assert decision.qualifies is accepted
    assert "top-class margin 0.500 (cat 0.75 - dog 0.25)" in " ".join(decision.reasons)


def test_top_margin_at_a_bound_written_as_the_hand_computed_difference():
    # 0.55 - 0.45 is 0.10000000000000003 in floating point: the rule rounds to 9 decimals
    confused = make_classification({"cat": 0.55, "dog": 0.45})
    assert evaluate(policy(image={"rule": "top_margin", "max": 0.1}), confused).qualifies
    assert not evaluate(policy(image={"rule": "top_margin", "max": 0.0999}), confused).qualifies
    # the same for a mean of keypoint confidences: (0.9 + 0.8 + 0.7) / 3 is 0.8000000000000002
    assert evaluate(policy({"rule": "keypoint_confidence", "max": 0.8}), posed(0.9, 0.8, 0.7)).qualifies


def test_top_margin_of_one_class_multi_label_and_no_class():
    assert evaluate(policy(image={"rule": "top_margin", "min": 0.75}), make_classification({"cat": 0.75})).qualifies
    multi = make_classification({"cat": 0.75, "dog": 0.5, "bird": 0.25}, multi_label=True)  # 0.75 - 0.5
    assert evaluate(policy(image={"rule": "top_margin", "max": 0.25}), multi).qualifies
    assert not evaluate(policy(image={"rule": "top_margin", "max": 0.24}), multi).qualifies
    empty = evaluate(policy(image={"rule": "top_margin"}), make_classification({}))
    assert not empty.qualifies and "no class scores" in empty.reasons[0]


@pytest.mark.parametrize("params, accepted", [
    # predicted: cat, dog (of cat 0.75, dog 0.5, bird 0.25)
    ({"min": 2}, True), ({"min": 3}, False), ({"min": 0, "max": 2}, True), ({"min": 0, "max": 1}, False),
    ({"min": 3, "threshold": 0.25}, True), ({"min": 3, "threshold": 0.2501}, False),
])
def test_predicted_classes_at_and_beside_its_bounds(params, accepted):
    multi = make_classification({"cat": 0.75, "dog": 0.5, "bird": 0.25}, multi_label=True, predicted=["cat", "dog"])
    assert evaluate(policy(image={"rule": "predicted_classes", **params}), multi).qualifies is accepted


def test_a_single_label_classifier_predicts_one_class():
    decision = evaluate(policy(image={"rule": "predicted_classes", "max": 1}), make_classification({"cat": 0.6, "dog": 0.4}))
    assert decision.qualifies and decision.reasons == ["1 class predicted [cat], between 1 and 1 required"]


@pytest.mark.parametrize("rule, stage", [
    ("mask_area", "detection"), ("mask_fill", "detection"), ("keypoints_visible", "detection"),
    ("keypoint_confidence", "detection"), ("top_margin", "image"), ("predicted_classes", "image"),
])
def test_min_above_max_is_a_located_problem(rule, stage):
    obj = {"rule": rule, "min": 1, "max": 0}
    document = policy(obj) if stage == "detection" else policy(image=obj)
    with pytest.raises(PolicyError) as error:
        Policy.from_dict(document)
    where = "$.detection[0].min" if stage == "detection" else "$.image.min"
    assert [str(p) for p in error.value.problems] == [f"{where}: 1 is greater than max 0"]


# ---------------------------------------------------------------------- which task each rule judges
EXPECTED_TASKS = {
    "box_area": BOX_TASKS,
    "mask_area": {INSTANCE_SEGMENTATION}, "mask_fill": {INSTANCE_SEGMENTATION},
    "keypoints_visible": {KEYPOINT_DETECTION}, "keypoint_confidence": {KEYPOINT_DETECTION},
    "top_margin": CLASSIFICATION_TASKS, "predicted_classes": CLASSIFICATION_TASKS,
}


def test_every_builtin_rule_names_the_tasks_it_applies_to():
    for spec in alpolicy.get_registry().rules.values():
        if spec.plugin in DEFAULT_PLUGINS:
            assert {task for task in TASKS if spec.applies_to(task)} == set(EXPECTED_TASKS.get(spec.name, TASKS)), spec.name


def test_a_box_rule_on_a_classifier_rejects_the_image_saying_why_instead_of_raising_key_error():
    # before: RuleError "$.detection[0]: rule 'box_area' ... raised KeyError: 'height'"
    decision = evaluate(policy({"rule": "confidence", "min": 0.1}, {"rule": "box_area", "min": 10}),
                        make_classification({"cat": 0.6, "dog": 0.4}))
    assert not decision.qualifies and decision.rejected_by == "box_area"
    assert decision.reasons == ["box_area does not apply to classification predictions "
                                "(only to object-detection, instance-segmentation and keypoint-detection)"]
    assert decision.to_json()["verdicts"][0] == {"rule": "box_area", "passed": False, "path": "$.detection[1]",
                                                 "reason": decision.reasons[0]}


@pytest.mark.parametrize("image", [
    {"any": [{"rule": "detection_count", "min": 0}, {"rule": "top_margin"}]},
    {"not": {"rule": "top_margin", "max": 0.1}},
    {"all": [{"rule": "detection_count", "min": 0}, {"not": {"rule": "predicted_classes"}}]},
])
def test_an_image_rule_that_cannot_judge_the_task_rejects_the_image_under_any_and_not_too(image):
    decision = evaluate(policy(image=image), make_prediction(make_detection()))
    assert not decision.qualifies
    assert decision.reasons[-1].endswith("does not apply to object-detection predictions "
                                         "(only to classification and multi-label-classification)")
    assert decision.rejected_by in {"top_margin", "predicted_classes"}


def test_each_task_rule_on_each_other_task_says_it_does_not_apply():
    predictions = {
        OBJECT_DETECTION: make_prediction(make_detection()),
        INSTANCE_SEGMENTATION: segmented(square(40, 45, 10)),
        KEYPOINT_DETECTION: posed(0.9),
        CLASSIFICATION: make_classification({"cat": 0.6, "dog": 0.4}),
        MULTI_LABEL_CLASSIFICATION: make_classification({"cat": 0.6, "dog": 0.4}, multi_label=True),
    }
    for name, tasks in EXPECTED_TASKS.items():
        obj = {"rule": name}
        document = policy(obj) if alpolicy.get_registry().rule(name).stage is Stage.DETECTION else policy(image=obj)
        for task, prediction in predictions.items():
            decision = evaluate(document, prediction)
            reasons = " ".join(decision.reasons)
            if task in tasks:
                assert "does not apply" not in reasons, (name, task)
            else:
                assert not decision.qualifies and decision.rejected_by == name
                assert reasons.startswith(f"{name} does not apply to {task} predictions"), (name, task)


def every_builtin_rule() -> list[tuple[str, Stage, dict[str, Any]]]:
    """(name, stage, a valid rule object) for every built-in rule: its schema's first example."""
    found = []
    for spec in alpolicy.get_registry().rules.values():
        if spec.plugin in DEFAULT_PLUGINS:
            example = dict(spec.schema.get("examples", [{"rule": spec.name}])[0])
            example.setdefault("rule", spec.name)
            found.append((spec.name, spec.stage, example))
    return found


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("name, stage, obj", every_builtin_rule(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_builtin_rule_on_a_classifier_decides_and_explains_without_crashing(name, stage, obj, multi_label, tmp_path):
    prediction = make_classification({"cat": 0.55, "dog": 0.45, "bird": 0.1}, multi_label=multi_label, predicted=["cat", "dog"])
    if stage is Stage.SAMPLING:  # sampling rules run in a real run, over images that passed
        (image,) = image_folder(tmp_path / "frames", 1)
        destination = CollectingDestination()
        report = run_one(image, backend=StaticBackend(prediction), destination=destination,
                         policy={"version": 1, "image": {"rule": "detection_count", "min": 0}, "sampling": [obj]})
        assert report.failed == 0 and report.inferred == 1
        return
    decision = evaluate(policy(obj) if stage is Stage.DETECTION else policy(image=obj), prediction)
    assert all(isinstance(reason, str) and reason for reason in decision.reasons)
    decision.score  # noqa: B018 - computed without raising
    applies = name not in EXPECTED_TASKS or prediction.task in EXPECTED_TASKS[name]
    assert ("does not apply" in " ".join(decision.reasons)) is not applies


# ---------------------------------------------------------------------- the model's task, known up front
def test_check_task_refuses_in_one_line_a_rule_that_cannot_judge_the_model_s_task():
    mixed = Policy.from_dict(policy({"rule": "box_area", "min": 1}, image={"rule": "top_margin", "max": 0.1}))
    with pytest.raises(UsageError) as error:
        mixed.check_task(CLASSIFICATION, model="onnx:x")
    assert str(error.value) == ("policy rule detection[0] box_area does not apply to classification models (the model "
                                "onnx:x is a classification model; box_area applies to object-detection, "
                                "instance-segmentation and keypoint-detection models)")
    with pytest.raises(UsageError) as error:
        mixed.check_task(KEYPOINT_DETECTION)
    assert str(error.value) == ("policy rule image top_margin does not apply to keypoint-detection models (checked for "
                                "keypoint-detection models; top_margin applies to classification and "
                                "multi-label-classification models)")
    both = Policy.from_dict(policy({"rule": "mask_area", "min": 1}, image={"rule": "top_margin"}))
    with pytest.raises(UsageError, match=r"^policy rules detection\[0\] mask_area, image top_margin do not apply to "
                                         r"object-detection models \(the model m is an object-detection model\)$"):
        both.check_task(OBJECT_DETECTION, model="m")
    mixed.check_task(None)  # unknown task: nothing to check
    Policy.from_dict(policy({"rule": "confidence"}, {"rule": "classes", "include": ["cat"]})).check_task(CLASSIFICATION)
    with pytest.raises(UsageError, match="the model's task 'segmentation' is not one of"):
        mixed.check_task("segmentation")


class KnownTaskBackend(StaticBackend):
    """A backend that knows its model's task, as an ONNX model's metadata tells it."""

    def __init__(self, task: str) -> None:
        classifier = make_classification({"cat": 0.6, "dog": 0.4}, multi_label=task == MULTI_LABEL_CLASSIFICATION)
        super().__init__(classifier if task in CLASSIFICATION_TASKS else None, model_id=f"known:{task}")
        self.task = task


def test_a_run_with_a_backend_that_knows_its_task_refuses_the_policy_before_any_image(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    backend = KnownTaskBackend(CLASSIFICATION)
    with pytest.raises(UsageError, match=r"^policy rule detection\[0\] box_area does not apply to classification models"):
        run_one(image, backend=backend, policy=policy({"rule": "box_area", "min": 1}))
    assert backend.seen == []  # refused before inferring anything
    report = run_one(image, backend=backend, policy=policy({"rule": "confidence", "min": 0.5}))
    assert report.sent == 1


# ---------------------------------------------------------------------- uncertainty on classifiers
def uncertainty(prediction: alpolicy.Prediction, *detection: dict[str, Any], **params: Any) -> float:
    decision = evaluate(policy(*detection, image={"rule": "uncertainty", **params}), prediction)
    assert decision.qualifies
    return decision.score


def test_uncertainty_of_a_single_label_classifier_uses_every_class_probability():
    prediction = make_classification({"cat": 0.5, "dog": 0.25, "bird": 0.25})
    assert uncertainty(prediction, measure="least_confidence") == 0.5  # 1 - 0.5
    assert uncertainty(prediction, measure="margin") == 0.75  # 1 - (0.5 - 0.25)
    assert uncertainty(prediction, measure="class_margin") == 0.75
    # -(0.5 ln 0.5 + 2 x 0.25 ln 0.25) / ln 3 = 1.5 ln 2 / ln 3
    expected = 1.5 * math.log(2) / math.log(3)
    assert uncertainty(prediction, measure="entropy") == pytest.approx(expected)  # before: binary entropy of 0.5, 1.0
    assert uncertainty(prediction, measure="class_entropy") == pytest.approx(expected)
    assert uncertainty(make_classification({"cat": 1.0}), measure="entropy") == 0.0  # one class: no doubt
    assert uncertainty(make_classification({"cat": 0.8}), measure="margin") == pytest.approx(0.2)  # 1 - (0.8 - 0)
    assert uncertainty(make_classification({}), measure="entropy") == 0.0


def test_uncertainty_of_a_multi_label_classifier_is_per_class_then_reduced():
    # cat 0.9 and dog 0.6 predicted, bird 0.1 not
    prediction = make_classification({"cat": 0.9, "dog": 0.6, "bird": 0.1}, multi_label=True, predicted=["cat", "dog"])
    # least confidence: 1 - 0.9, 1 - 0.6, 0.1 (bird: "absent" decided with 0.9)
    assert uncertainty(prediction, measure="least_confidence", reduce="max") == pytest.approx(0.4)
    assert uncertainty(prediction, measure="least_confidence", reduce="mean") == pytest.approx(0.2)
    assert uncertainty(prediction, measure="least_confidence", reduce="sum") == pytest.approx(0.6)

    def h(p: float) -> float:
        return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))

    assert uncertainty(prediction, measure="entropy", reduce="mean") == pytest.approx((h(0.9) + h(0.6) + h(0.1)) / 3)
    # margin at 0.5: 1 - |p - 0.5| / 0.5: 0.2, 0.8, 0.2; at 0.7: 1 - |p - 0.7| / 0.7
    assert uncertainty(prediction, measure="margin") == pytest.approx(0.8)
    assert uncertainty(prediction, measure="margin", threshold=0.7, reduce="sum") == pytest.approx(
        (1 - 0.2 / 0.7) + (1 - 0.1 / 0.7) + (1 - 0.6 / 0.7))
    # witnesses only: the predicted classes the detection rules keep (cat)
    assert uncertainty(prediction, {"rule": "classes", "include": ["cat"]}, measure="least_confidence",
                       of="witnesses") == pytest.approx(0.1)
    # class_margin over the scores: 1 - (0.9 - 0.6)
    assert uncertainty(prediction, measure="class_margin") == pytest.approx(0.7)


def test_uncertainty_gates_a_classifier_at_and_beside_its_bounds():
    prediction = make_classification({"cat": 0.5, "dog": 0.25, "bird": 0.25})  # margin score 0.75
    gate = {"rule": "uncertainty", "measure": "margin"}
    assert evaluate(policy(image={**gate, "min_score": 0.75}), prediction).qualifies
    assert not evaluate(policy(image={**gate, "min_score": 0.76}), prediction).qualifies
    assert evaluate(policy(image={**gate, "max_score": 0.75}), prediction).qualifies
    decision = evaluate(policy(image={**gate, "max_score": 0.74}), prediction)
    assert not decision.qualifies and decision.reasons == ["margin of the class probabilities score 0.750, within [0, 0.74]: no"]


def test_uncertainty_of_detections_is_unchanged():
    prediction = make_prediction(make_detection("car", 0.7), make_detection("car", 0.4))
    assert uncertainty(prediction, measure="least_confidence") == pytest.approx(0.6)
    assert uncertainty(prediction, measure="margin", reduce="mean") == pytest.approx(((1 - 0.2 / 0.5) + (1 - 0.1 / 0.5)) / 2)


# ---------------------------------------------------------------------- RuleSpec.tasks for plugins
class _Anything(alpolicy.ImageRule):
    def check(self, prediction, witnesses):
        return True

    def explain(self, prediction, witnesses, passed):
        return "fine"


def plugin_with(**spec: Any):
    class Plugin:
        @alpolicy.hookimpl
        def alpolicy_rules(self, register):
            register(RuleSpec("anything", Stage.IMAGE, {"type": "object"}, lambda params: _Anything(), "test", **spec))

    return Plugin()


def test_a_spec_built_positionally_as_in_0_1_applies_to_every_task():
    spec = RuleSpec("old", Stage.IMAGE, {"type": "object"}, lambda params: _Anything(), "0.1 style", "myplugin")
    assert spec.tasks is None and spec.plugin == "myplugin" and all(spec.applies_to(task) for task in TASKS)
    registry = registry_with(plugin_with())
    assert registry.rules["anything"].tasks is None


def test_a_plugin_rule_limited_to_classifiers_is_kept_so_by_the_registry():
    registry = registry_with(plugin_with(tasks=CLASSIFICATION))  # a single name: a set of one
    assert registry.rules["anything"].tasks == frozenset({CLASSIFICATION})
    assert registry.rules["anything"].plugin  # the registry still names its plugin
    document = policy(image={"rule": "anything"})
    assert evaluate(document, make_classification({"cat": 0.9}), registry=registry).qualifies
    decision = evaluate(document, make_prediction(make_detection()), registry=registry)
    assert decision.reasons == ["anything does not apply to object-detection predictions (only to classification)"]


@pytest.mark.parametrize("tasks, problem", [
    ({"clasification"}, "names unknown task 'clasification' (did you mean 'classification'?) in tasks"),
    (frozenset(), "names no task in tasks"),
])
def test_a_plugin_naming_a_task_that_does_not_exist_is_one_line(tasks, problem):
    with pytest.raises(PluginError, match=re.escape(problem)):
        registry_with(plugin_with(tasks=tasks))
