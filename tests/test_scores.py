"""Uncertainty scores: each measure and reduction, gating at and beside min_score, ranking."""

from __future__ import annotations

import math

import pytest

from alpolicy import Policy, PolicyError

from .helpers import det, pred


def score(rule: dict, prediction: dict) -> float | None:
    policy = Policy.from_dict({"version": 1, "image": {"rule": "uncertainty", **rule}})
    return policy.evaluate(prediction).score


@pytest.mark.parametrize(
    ("measure", "confidence", "expected"),
    [
        ("least_confidence", 0.9, 0.1),
        ("least_confidence", 0.3, 0.7),
        ("entropy", 0.5, 1.0),
        ("entropy", 0.9, -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))),
        ("entropy", 1.0, 0.0),
        ("margin", 0.5, 1.0),
        ("margin", 1.0, 0.0),
        ("margin", 0.25, 0.5),
    ],
)
def test_each_measure_on_one_detection(measure, confidence, expected):
    assert score({"measure": measure}, pred(det(confidence=confidence))) == pytest.approx(expected)


def test_reductions_over_detections():
    prediction = pred(det(confidence=0.9), det(confidence=0.6), det(confidence=0.3))  # 0.1, 0.4, 0.7
    assert score({"reduce": "max"}, prediction) == pytest.approx(0.7)
    assert score({"reduce": "mean"}, prediction) == pytest.approx(0.4)
    assert score({"reduce": "sum"}, prediction) == pytest.approx(1.2)


def test_class_probability_measures_use_class_confidences_when_present():
    sure = {**det(confidence=0.9), "class_confidences": {"car": 0.9, "bus": 0.05, "van": 0.05}}
    torn = {**det(confidence=0.5), "class_confidences": [0.5, 0.48, 0.02]}
    assert score({"measure": "class_margin"}, pred(sure)) == pytest.approx(0.15)
    assert score({"measure": "class_margin"}, pred(torn)) == pytest.approx(0.98)
    assert score({"measure": "class_entropy"}, pred(torn)) > score({"measure": "class_entropy"}, pred(sure))
    assert score({"measure": "class_margin"}, pred(det())) == 0.0  # no class probabilities: nothing to score


@pytest.mark.parametrize(("confidence", "qualifies"), [(0.4, True), (0.39, True), (0.41, False)])
def test_min_score_gates_at_its_bound(confidence, qualifies):
    policy = Policy.from_dict({"version": 1, "image": {"rule": "uncertainty", "min_score": 0.6}})
    decision = policy.evaluate(pred(det(confidence=confidence)))
    assert decision.qualifies is qualifies
    if not qualifies:
        assert decision.rejected_by == "uncertainty"
        assert "least_confidence (max) score 0.590, at least 0.6: no" in decision.reasons


def test_scores_rank_images_and_witnesses_only():
    policy = Policy.from_dict({"version": 1, "detection": [{"rule": "classes", "include": ["car"]}],
                               "image": {"rule": "uncertainty", "of": "witnesses"}})
    ranked = sorted(
        [pred(det("car", 0.9)), pred(det("car", 0.4)), pred(det("dog", 0.1), det("car", 0.8))],
        key=lambda p: policy.evaluate(p).score, reverse=True,
    )
    assert [p["predictions"][-1]["confidence"] for p in ranked] == [0.4, 0.8, 0.9]


def test_bad_score_parameters():
    with pytest.raises(PolicyError, match=r"\$\.image\.min_score: 0\.9 is greater than max_score 0\.5"):
        Policy.from_dict({"version": 1, "image": {"rule": "uncertainty", "min_score": 0.9, "max_score": 0.5}})
    with pytest.raises(PolicyError, match="'variance' is not one of"):
        Policy.from_dict({"version": 1, "image": {"rule": "uncertainty", "measure": "variance"}})
