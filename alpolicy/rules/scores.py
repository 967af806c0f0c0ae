"""Uncertainty scores (modAL / baal style), as an image rule, for every task type.

Each measure maps what the model said to 0 (the model is sure) .. 1 (it is not); the image's
score is their max, mean or sum. The rule gates on ``min_score``/``max_score`` and its score
becomes the decision's priority (``Decision.score``), which destinations record and top-K budgets
rank by. Images without (scored) detections score 0.

What is measured depends on the task (``p`` a confidence, ``t`` the ``threshold``):

* detections (object detection, segmentation, keypoints), per detection:
  ``least_confidence`` 1 - p; ``entropy`` the binary entropy of p (bits);
  ``margin`` 1 - |p - t| / max(t, 1 - t); ``class_margin`` / ``class_entropy`` over the
  detection's class probabilities when the backend returns them (``class_confidences``).
* single-label classification, one score per image from the class probabilities p1 >= p2 >= ...
  (a softmax): ``least_confidence`` 1 - p1; ``margin`` and ``class_margin`` 1 - (p1 - p2);
  ``entropy`` and ``class_entropy`` the Shannon entropy of the scores (normalised to sum 1)
  divided by log(number of classes), 0..1. ``threshold`` and ``reduce`` play no part.
* multi-label classification, per class (each an independent yes/no at threshold t):
  ``least_confidence`` 1 - p for a predicted class, p for one not predicted (1 - the
  confidence of the decision taken); ``entropy`` the binary entropy of p; ``margin``
  1 - |p - t| / max(t, 1 - t); reduced over every class (``of: detections``: a class at 0.45
  left out is as uncertain as one at 0.55 kept) or the witnesses. ``class_margin`` /
  ``class_entropy`` are one score per image, as for single-label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..hookspecs import hookimpl
from ..policy.prediction import CLASSIFICATION, MULTI_LABEL_CLASSIFICATION, Detection, Prediction
from ..policy.rule import ImageRule
from ..registry import RuleSpec, Stage
from .base import builtin_schema, check_bounds


def _binary_entropy(p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _class_probabilities(detection: Detection) -> list[float] | None:
    """A detection's class probabilities, if the backend returned them (``class_confidences``)."""
    values = detection.get("class_confidences")  # type: ignore[typeddict-item]
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, list) or len(values) < 2:
        return None
    return sorted((float(v) for v in values), reverse=True)


def least_confidence(detection: Detection, threshold: float) -> float | None:
    return 1.0 - detection["confidence"]


def entropy(detection: Detection, threshold: float) -> float | None:
    return _binary_entropy(detection["confidence"])


def margin(detection: Detection, threshold: float) -> float | None:
    return 1.0 - abs(detection["confidence"] - threshold) / max(threshold, 1.0 - threshold)


def class_margin(detection: Detection, threshold: float) -> float | None:
    probabilities = _class_probabilities(detection)
    return None if probabilities is None else 1.0 - (probabilities[0] - probabilities[1])


def class_entropy(detection: Detection, threshold: float) -> float | None:
    probabilities = _class_probabilities(detection)
    return None if probabilities is None else normalised_entropy(probabilities)


def normalised_entropy(probabilities: Sequence[float]) -> float:
    """Shannon entropy of the scores (normalised to sum 1) / log(number of scores): 0..1."""
    if len(probabilities) < 2:
        return 0.0
    total = sum(probabilities) or 1.0
    h = -sum(p / total * math.log(p / total) for p in probabilities if p > 0)
    return h / math.log(len(probabilities))


def _top_margin(probabilities: Sequence[float]) -> float:
    """1 - (p1 - p2) of scores best first (one score: 1 - p1)."""
    return 1.0 - (probabilities[0] - (probabilities[1] if len(probabilities) > 1 else 0.0))


#: Single-label classification: each measure of the image's class probabilities, best first.
DISTRIBUTION_MEASURES: dict[str, Callable[[Sequence[float]], float]] = {
    "least_confidence": lambda probabilities: 1.0 - probabilities[0],
    "margin": _top_margin,
    "class_margin": _top_margin,
    "entropy": normalised_entropy,
    "class_entropy": normalised_entropy,
}


def _decision_doubt(p: float, predicted: bool) -> float:
    return 1.0 - p if predicted else p


#: Multi-label classification: each per-class measure of (confidence, predicted, threshold).
LABEL_MEASURES: dict[str, Callable[[float, bool, float], float]] = {
    "least_confidence": lambda p, predicted, threshold: _decision_doubt(p, predicted),
    "entropy": lambda p, predicted, threshold: _binary_entropy(p),
    "margin": lambda p, predicted, threshold: 1.0 - abs(p - threshold) / max(threshold, 1.0 - threshold),
}


MEASURES: dict[str, Callable[[Detection, float], float | None]] = {
    "least_confidence": least_confidence,
    "entropy": entropy,
    "margin": margin,
    "class_margin": class_margin,
    "class_entropy": class_entropy,
}
REDUCTIONS: dict[str, Callable[[list[float]], float]] = {
    "max": max,
    "mean": lambda values: sum(values) / len(values),
    "sum": sum,
}


@dataclass(frozen=True, slots=True)
class UncertaintyRule(ImageRule):
    measure: str
    reduction: str
    threshold: float
    witnesses_only: bool
    low: float
    high: float

    def image_score(self, prediction: Prediction, witnesses: Sequence[Detection]) -> float:
        if prediction.task in (CLASSIFICATION, MULTI_LABEL_CLASSIFICATION):
            return self.classifier_score(prediction, witnesses)
        measure = MEASURES[self.measure]
        detections = witnesses if self.witnesses_only else prediction.detections
        values = [v for d in detections if (v := measure(d, self.threshold)) is not None]
        return REDUCTIONS[self.reduction](values) if values else 0.0

    def classifier_score(self, prediction: Prediction, witnesses: Sequence[Detection]) -> float:
        """A classifier's score from its class probabilities (see the module docstring); 0 when
        nothing is scored (no class; ``of: witnesses`` and no witness)."""
        scores = prediction.class_scores
        if not scores or (self.witnesses_only and not witnesses):
            return 0.0
        label_measure = LABEL_MEASURES.get(self.measure)
        if prediction.task == CLASSIFICATION or label_measure is None:
            return DISTRIBUTION_MEASURES[self.measure]([entry["confidence"] for entry in scores])
        predicted = {entry["class"] for entry in prediction.detections}
        entries = witnesses if self.witnesses_only else scores
        threshold = self.threshold
        values = [label_measure(entry["confidence"], entry["class"] in predicted, threshold) for entry in entries]
        return REDUCTIONS[self.reduction](values)

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        return self.low <= self.image_score(prediction, witnesses) <= self.high

    def score(self, prediction: Prediction, witnesses: Sequence[Detection]) -> float | None:
        return self.image_score(prediction, witnesses)

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        value = self.image_score(prediction, witnesses)
        bounds = f"at least {self.low:g}" if self.high == math.inf else f"within [{self.low:g}, {self.high:g}]"
        how = f"({self.reduction})"
        if prediction.task == CLASSIFICATION or (prediction.is_classification and self.measure not in LABEL_MEASURES):
            how = "of the class probabilities"
        elif prediction.is_classification:
            how = f"({self.reduction} over the {'witnesses' if self.witnesses_only else 'classes'})"
        return f"{self.measure} {how} score {value:.3f}, {bounds}{'' if passed else ': no'}"


def make_uncertainty(params: dict[str, Any]) -> UncertaintyRule:
    low, high = float(params.get("min_score", 0.0)), float(params.get("max_score", math.inf))
    check_bounds(low, high, low_key="min_score", high_key="max_score")
    return UncertaintyRule(
        params.get("measure", "least_confidence"), params.get("reduce", "max"), float(params.get("threshold", 0.5)),
        params.get("of", "detections") == "witnesses", low, high,
    )


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    register(RuleSpec("uncertainty", Stage.IMAGE, builtin_schema("uncertainty"), make_uncertainty,
                      "Score how unsure the model is (least confidence, entropy, margin...); gate and rank by it."))
