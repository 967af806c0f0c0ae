"""Uncertainty scores for detection output (modAL / baal style), as an image rule.

Each measure maps one detection to 0 (the model is sure) .. 1 (it is not); the image's score is
their max, mean or sum. The rule gates on ``min_score``/``max_score`` and its score becomes the
decision's priority (``Decision.score``), which destinations record and top-K budgets rank by.
Images without (scored) detections score 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..hookspecs import hookimpl
from ..policy.prediction import Detection, Prediction
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
    if probabilities is None:
        return None
    total = sum(probabilities) or 1.0
    h = -sum(p / total * math.log(p / total) for p in probabilities if p > 0)
    return h / math.log(len(probabilities))


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
        measure = MEASURES[self.measure]
        detections = witnesses if self.witnesses_only else prediction.detections
        values = [v for d in detections if (v := measure(d, self.threshold)) is not None]
        return REDUCTIONS[self.reduction](values) if values else 0.0

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        return self.low <= self.image_score(prediction, witnesses) <= self.high

    def score(self, prediction: Prediction, witnesses: Sequence[Detection]) -> float | None:
        return self.image_score(prediction, witnesses)

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        value = self.image_score(prediction, witnesses)
        bounds = f"at least {self.low:g}" if self.high == math.inf else f"within [{self.low:g}, {self.high:g}]"
        return f"{self.measure} ({self.reduction}) score {value:.3f}, {bounds}{'' if passed else ': no'}"


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
