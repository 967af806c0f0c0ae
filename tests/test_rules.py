"""Every built-in rule at and beside its bounds, evaluated through real policies."""

from __future__ import annotations

import pytest

from alpolicy import Policy

from .helpers import det, pred


def qualifies(policy: dict, prediction: dict) -> bool:
    return Policy.from_dict({"version": 1, **policy}).evaluate(prediction).qualifies


def detection_policy(rule: dict) -> dict:
    return {"detection": [rule]}


# ---------------------------------------------------------------- detection rules
@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.3, True), (0.2999, False), (0.6, True), (0.6001, False), (0.45, True), (0.0, False)],
)
def test_confidence_fraction_is_inclusive(confidence, expected):
    rule = {"rule": "confidence", "min": 0.3, "max": 0.6}
    assert qualifies(detection_policy(rule), pred(det(confidence=confidence))) is expected


@pytest.mark.parametrize(
    ("confidence", "low", "high", "expected"),
    [
        (0.30, 30, 99, True),  # 0.3 * 100 == 30.000000000000004
        (0.29, 29, 99, False),  # 0.29 * 100 == 28.999999999999996: the SDK says no, so do we
        (0.57, 57, 99, False),  # 0.57 * 100 == 56.99999999999999: the SDK says no
        (0.99, 30, 99, True),
        (0.991, 30, 99, False),
        (1.0, 30, 100, True),
    ],
)
def test_confidence_percent_uses_the_sdk_arithmetic(confidence, low, high, expected):
    rule = {"rule": "confidence", "min": low, "max": high, "unit": "percent"}
    assert qualifies(detection_policy(rule), pred(det(confidence=confidence))) is expected


def test_confidence_defaults_accept_everything():
    rule = {"rule": "confidence"}
    assert qualifies(detection_policy(rule), pred(det(confidence=0.0)))
    assert qualifies(detection_policy(rule), pred(det(confidence=1.0)))


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(10, 10, False), (10, 10.01, True), (20, 20, False), (19.99, 20, True), (5, 5, False), (30, 30, False)],
)
def test_box_area_is_strict_in_pixels(width, height, expected):
    rule = {"rule": "box_area", "min": 100, "max": 400}
    assert qualifies(detection_policy(rule), pred(det(width=width, height=height))) is expected


def test_box_area_fraction_of_the_image():
    rule = {"rule": "box_area", "max": 0.01, "unit": "fraction"}  # image 100x100 -> area < 100 px
    assert qualifies(detection_policy(rule), pred(det(width=9, height=11), width=100, height=100))
    assert not qualifies(detection_policy(rule), pred(det(width=10, height=10), width=100, height=100))


def test_box_area_one_sided_bounds():
    assert qualifies(detection_policy({"rule": "box_area", "min": 99}), pred(det(width=10, height=10)))
    assert not qualifies(detection_policy({"rule": "box_area", "min": 100}), pred(det(width=10, height=10)))
    assert qualifies(detection_policy({"rule": "box_area", "max": 101}), pred(det(width=10, height=10)))
    assert not qualifies(detection_policy({"rule": "box_area", "max": 100}), pred(det(width=10, height=10)))


def test_classes_include_and_exclude():
    include = detection_policy({"rule": "classes", "include": ["car", "bus"]})
    assert qualifies(include, pred(det("bus")))
    assert not qualifies(include, pred(det("person")))
    exclude = detection_policy({"rule": "classes", "exclude": ["person"]})
    assert qualifies(exclude, pred(det("car")))
    assert not qualifies(exclude, pred(det("person")))
    both = detection_policy({"rule": "classes", "include": ["car", "person"], "exclude": ["person"]})
    assert qualifies(both, pred(det("car")))
    assert not qualifies(both, pred(det("person")))


def test_a_witness_must_pass_every_detection_rule_at_once():
    policy = {"detection": [{"rule": "confidence", "min": 0.5}, {"rule": "classes", "include": ["car"]}]}
    # One detection passes confidence, the other the class: no single witness.
    assert not qualifies(policy, pred(det("person", 0.9), det("car", 0.1)))
    assert qualifies(policy, pred(det("person", 0.9), det("car", 0.6)))


# ---------------------------------------------------------------- image rules
@pytest.mark.parametrize(("count", "expected"), [(1, False), (2, True), (3, True), (4, False)])
def test_detection_count_min_and_max(count, expected):
    policy = {"image": {"rule": "detection_count", "min": 2, "max": 3}}
    assert qualifies(policy, pred(*[det() for _ in range(count)])) is expected


def test_detection_count_of_classes_counts_only_those():
    policy = {"image": {"rule": "detection_count", "min": 2, "classes": ["car"]}}
    assert not qualifies(policy, pred(det("car"), det("person"), det("person")))
    assert qualifies(policy, pred(det("car"), det("car"), det("person")))


def test_detection_count_counts_detections_that_are_not_witnesses():
    policy = {
        "detection": [{"rule": "confidence", "min": 0.9}],
        "image": {"rule": "detection_count", "min": 2},
    }
    assert qualifies(policy, pred(det(confidence=0.1), det(confidence=0.2)))


@pytest.mark.parametrize(("classes", "expected"), [(["a"], False), (["a", "b"], True), (["a", "b", "a"], True), (["a", "b", "c"], False)])
def test_distinct_classes(classes, expected):
    policy = {"image": {"rule": "distinct_classes", "min": 2, "max": 2}}
    assert qualifies(policy, pred(*[det(c) for c in classes])) is expected


@pytest.mark.parametrize(("witnesses", "expected"), [(0, False), (1, False), (2, True), (3, False)])
def test_witnesses_min_and_max(witnesses, expected):
    policy = {
        "detection": [{"rule": "confidence", "max": 0.5}],
        "image": {"rule": "witnesses", "min": 2, "max": 2},
    }
    detections = [det(confidence=0.4) for _ in range(witnesses)] + [det(confidence=0.9)]
    assert qualifies(policy, pred(*detections)) is expected


def test_without_an_image_stage_one_witness_is_enough():
    policy = {"detection": [{"rule": "confidence", "max": 0.5}]}
    assert qualifies(policy, pred(det(confidence=0.4)))
    assert not qualifies(policy, pred(det(confidence=0.6)))
    assert not qualifies(policy, pred())


def test_count_rules_at_zero_accept_an_empty_image():
    policy = {"image": {"all": [{"rule": "detection_count", "min": 0}, {"rule": "witnesses", "min": 0}]}}
    assert qualifies(policy, pred())


# ---------------------------------------------------------------- composition
def test_all_any_not_compose():
    rare = {"rule": "detection_count", "min": 1, "classes": ["bicycle"]}
    crowded = {"rule": "detection_count", "min": 5}
    policy = {"image": {"any": [rare, {"all": [crowded, {"not": {"rule": "distinct_classes", "min": 2}}]}]}}
    assert qualifies(policy, pred(det("bicycle")))
    assert qualifies(policy, pred(*[det("car") for _ in range(5)]))
    assert not qualifies(policy, pred(*[det("car") for _ in range(4)] + [det("person")]))
    assert not qualifies(policy, pred(det("car")))


def test_not_inverts_and_names_what_rejected():
    policy = Policy.from_dict({"version": 1, "image": {"not": {"rule": "detection_count", "min": 1}}})
    assert policy.evaluate(pred()).qualifies
    decision = policy.evaluate(pred(det()))
    assert not decision.qualifies
    assert decision.rejected_by == "not(detection_count)"


# ---------------------------------------------------------------- decisions explain themselves
def test_reasons_say_each_verdict_in_words():
    policy = Policy.from_dict({"version": 1, "detection": [{"rule": "confidence", "min": 0.0, "max": 0.6}]})
    decision = policy.evaluate(pred(det("car", 0.41)))
    assert decision.qualifies
    assert "confidence 0.41 within [0.00, 0.60]" in decision.reasons
    assert decision.witnesses == [det("car", 0.41)]


def test_rejection_reasons_say_which_rule_turned_each_detection_down():
    policy = Policy.from_dict(
        {"version": 1, "detection": [{"rule": "confidence", "max": 0.6}, {"rule": "box_area", "min": 50}]}
    )
    decision = policy.evaluate(pred(det("car", 0.9), det("dog", 0.2, width=5, height=5)))
    assert not decision.qualifies
    assert decision.rejected_by == "witnesses"
    assert "car 0.9: confidence 0.90 outside [0.00, 0.60]" in decision.reasons
    assert "dog 0.2: box area 25 px² outside (50, ∞)" in decision.reasons


def test_tags_come_from_the_policy_and_the_rules_that_fired():
    policy = Policy.from_dict(
        {
            "version": 1,
            "tags": ["al"],
            "detection": [{"rule": "confidence", "max": 0.5, "tag": "al:low-confidence"}],
            "image": {"any": [{"rule": "witnesses", "tag": "al:uncertain"}, {"rule": "detection_count", "min": 9, "tag": "al:crowded"}]},
        }
    )
    assert policy.evaluate(pred(det(confidence=0.4))).tags == ["al", "al:uncertain", "al:low-confidence"]
    assert policy.evaluate(pred(det(confidence=0.9))).tags == []


def test_duplicate_rule_names_get_labels_with_their_path():
    policy = Policy.from_conditionals({"target_classes": ["car"], "required_class_count": 2})
    decision = policy.evaluate(pred(det("car"), det("person")))
    assert decision.rejected_by == "detection_count at $.image.all[1]"


def test_evaluate_accepts_json_and_typed_predictions_alike():
    from alpolicy import Prediction

    policy = Policy.from_conditionals({})
    document = pred(det(confidence=0.5))
    assert policy.evaluate(document).qualifies == policy.evaluate(Prediction.from_json(document)).qualifies


def test_a_malformed_prediction_is_named_not_a_keyerror():
    from alpolicy import PredictionFormatError

    policy = Policy.from_conditionals({})
    with pytest.raises(PredictionFormatError, match=r"predictions\[0\] lacks confidence"):
        policy.evaluate({"image": {"width": 1, "height": 1}, "predictions": [{"x": 1, "y": 1, "width": 1, "height": 1, "class": "a"}]})
    with pytest.raises(PredictionFormatError, match="image"):
        policy.evaluate({"predictions": []})


def test_rejected_by_names_the_failing_branch_or_the_whole_alternative():
    policy = Policy.from_dict({"version": 1, "image": {"all": [
        {"rule": "detection_count", "min": 1},
        {"any": [{"rule": "distinct_classes", "min": 3}, {"rule": "witnesses", "min": 4}]},
    ]}})
    assert policy.evaluate(pred()).rejected_by == "detection_count"
    assert policy.evaluate(pred(det())).rejected_by == "any(distinct_classes, witnesses)"
    assert policy.evaluate(pred(det("a"), det("b"), det("c"))).rejected_by is None
