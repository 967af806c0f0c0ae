"""The SDK's conditionals: every key at and beside its bounds, randomised parity, strict checking."""

from __future__ import annotations

import math
import random

import pytest

from alpolicy import Policy, PolicyError

from .helpers import det, pred
from .sdk_reference import sdk_would_upload


def alpolicy_deviation(predictions: list[dict], conditionals: dict) -> bool:
    """alpolicy's one deliberate departure from the SDK's decision: ``required_class_variance_count``.

    The SDK fills in a default of 1 for it (workspace.py:781-783) and never reads it again, so it
    uploads an image whatever the key says. alpolicy checks it (an image rule
    ``distinct_classes``): at least that many distinct classes among the image's detections, as
    the server returned them. The SDK already needs one qualifying detection, so with the default
    1 (or 0) the check changes nothing; the two differ only for 2 or more.
    """
    return len({p["class"] for p in predictions}) >= conditionals.get("required_class_variance_count", 1)


def expected_decision(predictions: list[dict], conditionals: dict) -> bool:
    """What alpolicy must decide: the verbatim SDK oracle, and the stated deviation."""
    return sdk_would_upload(predictions, conditionals) and alpolicy_deviation(predictions, conditionals)


def decide(conditionals: dict, prediction: dict) -> bool:
    ours = Policy.from_conditionals(conditionals).evaluate(prediction).qualifies
    assert ours == expected_decision(prediction["predictions"], conditionals), "diverged from the SDK (beyond the stated deviation)"
    return ours


# ---------------------------------------------------------------- each key at and beside its bounds
@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.30, True), (0.299, False), (0.99, True), (0.991, False), (0.5, True), (1.0, False), (0.05, False)],
)
def test_default_confidence_interval_is_30_to_99_inclusive(confidence, expected):
    assert decide({}, pred(det(confidence=confidence))) is expected


@pytest.mark.parametrize(
    ("interval", "confidence", "expected"),
    [([40, 60], 0.4, True), ([40, 60], 0.399, False), ([40, 60], 0.6, True), ([40, 60], 0.601, False),
     ([0, 100], 0.0, True), ([0, 100], 1.0, True), ([57, 58], 0.57, False), ([29, 30], 0.29, False), ([50, 50], 0.5, True)],
)
def test_confidence_interval(interval, confidence, expected):
    assert decide({"confidence_interval": interval}, pred(det(confidence=confidence))) is expected


@pytest.mark.parametrize(("area_side", "expected"), [(10, False), (10.001, True), (9.9, False)])
def test_minimum_size_requirement_is_strict(area_side, expected):
    assert decide({"minimum_size_requirement": 100}, pred(det(width=area_side, height=area_side))) is expected


@pytest.mark.parametrize(("area_side", "expected"), [(10, False), (9.999, True), (10.1, False)])
def test_maximum_size_requirement_is_strict(area_side, expected):
    assert decide({"maximum_size_requirement": 100}, pred(det(width=area_side, height=area_side))) is expected


@pytest.mark.parametrize(("count", "expected"), [(0, False), (1, False), (2, True), (3, True)])
def test_required_objects_count(count, expected):
    assert decide({"required_objects_count": 2}, pred(*[det() for _ in range(count)])) is expected


def test_required_objects_count_zero_still_needs_one_witness():
    assert decide({"required_objects_count": 0}, pred()) is False


@pytest.mark.parametrize(("cars", "expected"), [(1, False), (2, True), (3, True)])
def test_required_class_count_counts_target_classes(cars, expected):
    conditionals = {"target_classes": ["car"], "required_class_count": 2}
    assert decide(conditionals, pred(*[det("car") for _ in range(cars)], det("person"))) is expected


def test_required_class_count_without_target_classes_is_ignored():
    assert decide({"required_class_count": 5}, pred(det())) is True


def test_target_classes_choose_the_witness():
    conditionals = {"target_classes": ["car"]}
    assert decide(conditionals, pred(det("person", 0.5), det("car", 0.5))) is True
    assert decide(conditionals, pred(det("person", 0.5), det("car", 0.1))) is False
    assert decide({"target_classes": []}, pred(det("person", 0.5))) is True


@pytest.mark.parametrize(
    ("classes", "sdk_uploads", "alpolicy_qualifies"),
    [(["a"], True, False), (["a", "a"], True, False), (["a", "b"], True, True), (["a", "b", "c"], True, True)],
)
def test_required_class_variance_count_is_where_alpolicy_deviates_from_the_sdk(classes, sdk_uploads, alpolicy_qualifies):
    """The two behaviours side by side, for ``required_class_variance_count: 2``.

    The SDK (verbatim oracle) uploads an image of one class although two distinct classes were
    asked for: it never reads the key. alpolicy refuses it: it checks the key, as its name and
    the SDK's documentation of the conditionals say it should. This is the only place where
    alpolicy's decision differs from the SDK's (``alpolicy_deviation``); every other test of this
    file holds alpolicy to the oracle exactly.
    """
    conditionals = {"required_class_variance_count": 2}
    prediction = pred(*[det(c) for c in classes])
    assert sdk_would_upload(prediction["predictions"], conditionals) is sdk_uploads
    assert Policy.from_conditionals(conditionals).evaluate(prediction).qualifies is alpolicy_qualifies
    assert decide(conditionals, prediction) is alpolicy_qualifies


@pytest.mark.parametrize("count", [0, 1])
def test_required_class_variance_count_up_to_one_agrees_with_the_sdk(count):
    conditionals = {"required_class_variance_count": count}
    for prediction in (pred(), pred(det()), pred(det(confidence=0.1)), pred(det("a"), det("b"))):
        ours = Policy.from_conditionals(conditionals).evaluate(prediction).qualifies
        assert ours == sdk_would_upload(prediction["predictions"], conditionals)


def test_one_single_detection_must_satisfy_size_confidence_and_class():
    conditionals = {"target_classes": ["car"], "minimum_size_requirement": 50}
    # big low-confidence car + small confident car + big confident person: nobody qualifies alone
    prediction = pred(det("car", 0.1, 10, 10), det("car", 0.8, 5, 5), det("person", 0.8, 10, 10))
    assert decide(conditionals, prediction) is False
    assert decide(conditionals, pred(*prediction["predictions"], det("car", 0.8, 10, 10))) is True


def test_sdk_defaults_spelt_out_are_accepted():
    conditionals = {
        "confidence_interval": (30, 99),
        "minimum_size_requirement": float("-inf"),
        "maximum_size_requirement": float("inf"),
        "required_objects_count": 1,
        "required_class_count": 0,
        "target_classes": (),
        "required_class_variance_count": 1,
    }
    assert decide(conditionals, pred(det(confidence=0.5))) is True


# ---------------------------------------------------------------- randomised parity with the SDK
def random_conditionals(rng: random.Random) -> dict:
    classes = ["car", "person", "bike"]
    c: dict = {}
    if rng.random() < 0.6:
        low = rng.choice([0, 20, 29, 30, 41, 50, 57, 60])
        c["confidence_interval"] = [low, rng.choice([h for h in (40, 57, 60, 80, 99, 100) if h >= low] or [100])]
    if rng.random() < 0.4:
        c["minimum_size_requirement"] = rng.choice([0, 100, 400, 2500])
    if rng.random() < 0.4:
        c["maximum_size_requirement"] = rng.choice([400, 2500, 10000, 90000])
        if c.get("minimum_size_requirement", 0) > c["maximum_size_requirement"]:
            del c["maximum_size_requirement"]
    if rng.random() < 0.5:
        c["required_objects_count"] = rng.randint(0, 4)
    if rng.random() < 0.5:
        c["target_classes"] = rng.sample(classes, rng.randint(0, 2))
    if rng.random() < 0.5:
        c["required_class_count"] = rng.randint(0, 3)
    if rng.random() < 0.4:
        c["required_class_variance_count"] = rng.randint(0, 3)
    return c


def random_prediction(rng: random.Random) -> dict:
    detections = []
    for _ in range(rng.randint(0, 6)):
        side = rng.choice([10, 20, 50, 100, rng.uniform(1, 300)])
        confidence = rng.choice([rng.randint(0, 100) / 100, rng.randint(0, 1000) / 1000, rng.random()])
        detections.append(det(rng.choice(["car", "person", "bike", "dog"]), confidence, side, side * rng.choice([1, 0.5, 2])))
    return pred(*detections)


def test_randomised_parity_with_the_sdk():
    rng = random.Random(20261127)
    agreements = {True: 0, False: 0}
    deviations = 0
    for _ in range(300):
        conditionals = random_conditionals(rng)
        policy = Policy.from_conditionals(conditionals)
        for _ in range(20):
            prediction = random_prediction(rng)
            ours = policy.evaluate(prediction).qualifies
            sdk = sdk_would_upload(prediction["predictions"], conditionals)
            if ours != sdk:  # only the stated deviation may explain a difference
                assert conditionals.get("required_class_variance_count", 1) >= 2, (conditionals, prediction)
                assert sdk and not alpolicy_deviation(prediction["predictions"], conditionals), (conditionals, prediction)
                deviations += 1
            agreements[ours] += 1
    # The corpus exercises both answers substantially, and the deviation too, so parity is not vacuous.
    assert min(agreements.values()) > 1000 and deviations > 0


# ---------------------------------------------------------------- strict checking
@pytest.mark.parametrize(
    ("conditionals", "message"),
    [
        ({"confidence_interval": [50, 20]}, "$.confidence_interval: lower bound 50 is greater than upper bound 20"),
        ({"confidence_interval": [-1, 20]}, "$.confidence_interval[0]: -1 is less than the minimum of 0"),
        ({"confidence_interval": [10, 101]}, "$.confidence_interval[1]: 101 is greater than the maximum of 100"),
        ({"confidence_interval": [10]}, "$.confidence_interval: [10] is too short"),
        ({"confidence_interval": "30-99"}, "$.confidence_interval: '30-99' is not of type 'array'"),
        ({"minimum_size_requirement": -5}, "$.minimum_size_requirement: -5 is less than the minimum of 0"),
        ({"maximum_size_requirement": "big"}, "$.maximum_size_requirement: 'big' is not of type 'number'"),
        ({"minimum_size_requirement": 10, "maximum_size_requirement": 5}, "$.minimum_size_requirement: 10 is greater than maximum_size_requirement 5"),
        ({"required_objects_count": -1}, "$.required_objects_count: -1 is less than the minimum of 0"),
        ({"required_objects_count": 1.5}, "$.required_objects_count: 1.5 is not of type 'integer'"),
        ({"required_class_count": True}, "$.required_class_count: True is not of type 'integer'"),
        ({"required_class_variance_count": -2}, "$.required_class_variance_count: -2 is less than the minimum of 0"),
        ({"target_classes": "car"}, "$.target_classes: 'car' is not of type 'array'"),
        ({"target_classes": ["car", 3]}, "$.target_classes[1]: 3 is not of type 'string'"),
        ({"taget_classes": ["car"]}, "$.taget_classes: unknown conditionals key 'taget_classes' (did you mean 'target_classes'?)"),
        ({"similarity_confidence_threshold": 1.5}, "$.similarity_confidence_threshold: 1.5 is greater than the maximum of 1"),
        ({"similarity_timeout_limit": 3}, "$.similarity_timeout_limit: only applies with similarity_confidence_threshold"),
    ],
)
def test_invalid_conditionals_name_the_key(conditionals, message):
    with pytest.raises(PolicyError) as caught:
        Policy.from_conditionals(conditionals)
    assert any(m.startswith(message) for m in caught.value.messages), caught.value.messages


def test_every_conditionals_problem_is_reported_at_once():
    with pytest.raises(PolicyError) as caught:
        Policy.from_conditionals({"confidence_interval": [90, 10], "required_objects_count": -1, "colour": "red"})
    assert len(caught.value.problems) == 3


def test_conditionals_must_be_a_dict():
    with pytest.raises(PolicyError, match="conditionals must be a dict"):
        Policy.from_conditionals([1, 2])


def test_translation_is_a_readable_policy():
    policy = Policy.from_conditionals({"target_classes": ["car"], "minimum_size_requirement": 100})
    document = policy.document
    assert document["detection"] == [
        {"rule": "confidence", "min": 30, "max": 99, "unit": "percent"},
        {"rule": "box_area", "min": 100},
        {"rule": "classes", "include": ["car"]},
    ]
    assert {"rule": "witnesses", "min": 1} in document["image"]["all"]
    # ...and it round-trips through JSON as an ordinary policy with the same decisions.
    again = Policy.from_dict(document)
    prediction = pred(det("car", 0.5, 20, 20))
    assert again.evaluate(prediction).qualifies is policy.evaluate(prediction).qualifies is True
    assert not math.isinf(document["detection"][1]["min"])


def test_the_sdk_similarity_keys_map_to_local_near_duplicate_suppression():
    policy = Policy.from_conditionals({"similarity_confidence_threshold": 0.9, "similarity_timeout_limit": 5})
    assert policy.document["sampling"] == [{
        "rule": "near_duplicate", "against": "previous", "max_distance": 6, "timeout": 5,
        "note": "from the SDK's similarity_confidence_threshold 0.9",
    }]
