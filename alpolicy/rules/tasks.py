"""Built-in rules for one task type each: masks (instance segmentation), keypoints (pose) and a
classifier's class scores (classification, single- and multi-label).

Each is registered with the tasks it applies to (:attr:`RuleSpec.tasks`): a policy holding
``mask_area`` is refused for a detector whose task is known, and a prediction of another task is
rejected saying ``mask_area does not apply to object-detection predictions`` (see
:mod:`alpolicy.policy.engine`). Within its task a rule still meets entries without what it reads
(a segmentation model's detection without a polygon, a pose without keypoints): such an entry is
turned down, and ``explain`` says why.

* ``mask_area``: the mask's area, ``min < area < max`` (strict, as ``box_area``), in pixels or
  as a fraction of the image. The area of a polygon (``points``) by the shoelace formula; of a
  COCO run-length mask (``rle``, when a detection has no polygon) the pixels it covers.
* ``mask_fill``: mask area / box area in ``[min, max]``: a mask filling little of its box is a
  thin or broken mask (or a loose box).
* ``keypoints_visible``: how many keypoints have ``confidence >= threshold``, in ``[min, max]``.
* ``keypoint_confidence``: the ``min`` / ``mean`` / ``max`` keypoint confidence in ``[min, max]``.
* ``top_margin`` (image rule): top-1 minus top-2 class score in ``[min, max]``; a small margin is
  a classifier torn between two classes.
* ``predicted_classes`` (image rule): how many classes the classifier predicted (multi-label),
  or scored at least ``threshold``, in ``[min, max]``.

A ratio, mean or difference these rules compute from the model's numbers is rounded to
:data:`DIGITS` decimals before it meets the bounds: 0.55 - 0.45 is 0.10000000000000003 in
floating point, and a policy saying ``"max": 0.1`` means 0.1 to take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..hookspecs import hookimpl
from ..policy import geometry
from ..policy.prediction import (
    CLASSIFICATION_TASKS, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, Detection, Prediction,
)
from ..policy.rule import DetectionRule, ImageRule
from ..registry import RuleSpec, Stage
from .base import builtin_schema, check_bounds, format_number

INF = float("inf")
#: Decimals a computed ratio, mean or difference keeps (far below any model's precision).
DIGITS = 9
#: Stand-in for "no upper bound" on counts (a count can never reach it).
NO_LIMIT = 2**63


# ---------------------------------------------------------------------- masks
def polygon_area(points: Sequence[Mapping[str, float]]) -> float:
    """The area of a prediction's polygon (``[{x, y}, ...]``), by :func:`alpolicy.policy.geometry.polygon_area`."""
    return geometry.polygon_area(geometry.vertices(points))


def rle_area(rle: Mapping[str, Any]) -> float:
    """The pixels of a COCO RLE mask, by :func:`alpolicy.policy.geometry.rle_area` (its counts
    were checked where the prediction entered)."""
    return float(geometry.rle_area(rle))


def mask_area(detection: Detection) -> float | None:
    """A detection's mask area in pixels: its polygon's, else its RLE's; ``None`` without a mask."""
    points = detection.get("points")
    if points:
        return polygon_area(points)
    rle = detection.get("rle")  # type: ignore[typeddict-item]
    if isinstance(rle, Mapping):
        return rle_area(rle)
    return None


def _no_mask(detection: Detection) -> str:
    return "no mask (the detection has neither points nor rle)"


@dataclass(frozen=True, slots=True)
class MaskAreaRule(DetectionRule):
    """``low < mask area < high`` (strict, as ``box_area``); optionally relative to the image area."""

    low: float
    high: float
    relative: bool

    def area(self, detection: Detection, prediction: Prediction) -> float | None:
        area = mask_area(detection)
        if area is None or not self.relative:
            return area
        return area / (prediction.width * prediction.height or 1)

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        area = self.area(detection, prediction)
        return area is not None and self.low < area < self.high

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        area = self.area(detection, prediction)
        if area is None:
            return _no_mask(detection)
        shown = f"{area:.4f} of the image" if self.relative else f"{area:.0f} px²"
        where = "within" if accepted else "outside"
        return f"mask area {shown} {where} ({format_number(self.low)}, {format_number(self.high)})"


def make_mask_area(params: dict[str, Any]) -> MaskAreaRule:
    low, high = float(params.get("min", -INF)), float(params.get("max", INF))
    check_bounds(low, high)
    return MaskAreaRule(low, high, params.get("unit", "pixels") == "fraction")


@dataclass(frozen=True, slots=True)
class MaskFillRule(DetectionRule):
    """``low <= mask area / box area <= high``; a box of no area has a fill of 0."""

    low: float
    high: float

    @staticmethod
    def fill(detection: Detection) -> float | None:
        area = mask_area(detection)
        if area is None:
            return None
        box = detection["width"] * detection["height"]
        return round(area / box, DIGITS) if box > 0 else 0.0

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        fill = self.fill(detection)
        return fill is not None and self.low <= fill <= self.high

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        fill = self.fill(detection)
        if fill is None:
            return _no_mask(detection)
        where = "within" if accepted else "outside"
        return f"mask fills {fill:.3f} of its box, {where} [{format_number(self.low)}, {format_number(self.high)}]"


def make_mask_fill(params: dict[str, Any]) -> MaskFillRule:
    low, high = float(params.get("min", 0.0)), float(params.get("max", INF))
    check_bounds(low, high)
    return MaskFillRule(low, high)


# ---------------------------------------------------------------------- keypoints
def _count_bounds(params: dict[str, Any], default_min: int) -> tuple[int, int]:
    low, high = int(params.get("min", default_min)), int(params.get("max", NO_LIMIT))
    check_bounds(low, high)
    return low, high


def _count_requirement(low: int, high: int) -> str:
    if high == NO_LIMIT:
        return f"at least {low} required"
    if low == 0:
        return f"at most {high} allowed"
    return f"between {low} and {high} required"


@dataclass(frozen=True, slots=True)
class KeypointsVisibleRule(DetectionRule):
    """``low <= number of keypoints with confidence >= threshold <= high``."""

    low: int
    high: int
    threshold: float

    def visible(self, detection: Detection) -> int:
        threshold = self.threshold
        return sum(1 for point in detection.get("keypoints") or () if point.get("confidence", 1.0) >= threshold)

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        return self.low <= self.visible(detection) <= self.high

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        count, total = self.visible(detection), len(detection.get("keypoints") or ())
        return (f"{count} of {total} keypoints visible (confidence ≥ {format_number(self.threshold)}), "
                f"{_count_requirement(self.low, self.high)}")


def make_keypoints_visible(params: dict[str, Any]) -> KeypointsVisibleRule:
    low, high = _count_bounds(params, 1)
    return KeypointsVisibleRule(low, high, float(params.get("threshold", 0.5)))


_STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "mean": lambda values: sum(values) / len(values),
    "max": max,
}


@dataclass(frozen=True, slots=True)
class KeypointConfidenceRule(DetectionRule):
    """``low <= min / mean / max of the keypoints' confidences <= high``; no keypoints: turned down."""

    low: float
    high: float
    reduction: str

    def value(self, detection: Detection) -> float | None:
        values = [float(point.get("confidence", 1.0)) for point in detection.get("keypoints") or ()]
        return round(_STATISTICS[self.reduction](values), DIGITS) if values else None

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        value = self.value(detection)
        return value is not None and self.low <= value <= self.high

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        value = self.value(detection)
        if value is None:
            return "no keypoints"
        where = "within" if accepted else "outside"
        return f"{self.reduction} keypoint confidence {value:.2f} {where} [{self.low:.2f}, {self.high:.2f}]"


def make_keypoint_confidence(params: dict[str, Any]) -> KeypointConfidenceRule:
    low, high = float(params.get("min", 0.0)), float(params.get("max", 1.0))
    check_bounds(low, high)
    return KeypointConfidenceRule(low, high, params.get("reduce", "mean"))


# ---------------------------------------------------------------------- class scores
def top_margin(prediction: Prediction) -> float | None:
    """Top-1 minus top-2 class score (one class: its score); ``None`` without class scores."""
    scores = prediction.class_scores
    if not scores:
        return None
    second = scores[1]["confidence"] if len(scores) > 1 else 0.0
    return round(scores[0]["confidence"] - second, DIGITS)


@dataclass(frozen=True, slots=True)
class TopMarginRule(ImageRule):
    """``low <= top1 - top2 <= high`` over the classifier's class scores."""

    low: float
    high: float

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        margin = top_margin(prediction)
        return margin is not None and self.low <= margin <= self.high

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        margin = top_margin(prediction)
        if margin is None:
            return "no class scores"
        scores = prediction.class_scores
        between = f"{scores[0]['class']} {scores[0]['confidence']:.3g}"
        if len(scores) > 1:
            between += f" - {scores[1]['class']} {scores[1]['confidence']:.3g}"
        where = "within" if passed else "outside"
        return f"top-class margin {margin:.3f} ({between}) {where} [{format_number(self.low)}, {format_number(self.high)}]"


def make_top_margin(params: dict[str, Any]) -> TopMarginRule:
    low, high = float(params.get("min", 0.0)), float(params.get("max", 1.0))
    check_bounds(low, high)
    return TopMarginRule(low, high)


@dataclass(frozen=True, slots=True)
class PredictedClassesRule(ImageRule):
    """``low <= number of predicted classes <= high``: the classes the model predicted, or, with a
    ``threshold``, those whose score is at least it."""

    low: int
    high: int
    threshold: float | None

    def classes(self, prediction: Prediction) -> list[str]:
        if self.threshold is None:
            return [entry["class"] for entry in prediction.detections]
        threshold = self.threshold
        return [entry["class"] for entry in prediction.class_scores if entry["confidence"] >= threshold]

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        return self.low <= len(self.classes(prediction)) <= self.high

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        classes = self.classes(prediction)
        how = "predicted" if self.threshold is None else f"scored ≥ {format_number(self.threshold)}"
        listed = f" [{', '.join(classes)}]" if classes else ""
        count = len(classes)
        return f"{count} class{'' if count == 1 else 'es'} {how}{listed}, {_count_requirement(self.low, self.high)}"


def make_predicted_classes(params: dict[str, Any]) -> PredictedClassesRule:
    low, high = _count_bounds(params, 1)
    threshold = params.get("threshold")
    return PredictedClassesRule(low, high, None if threshold is None else float(threshold))


_SEGMENTATION = frozenset({INSTANCE_SEGMENTATION})
_KEYPOINTS = frozenset({KEYPOINT_DETECTION})
_RULES: list[tuple[str, Stage, Callable[[dict[str, Any]], Any], frozenset[str], str]] = [
    ("mask_area", Stage.DETECTION, make_mask_area, _SEGMENTATION,
     "Instance masks whose area lies strictly between min and max (pixels or a fraction of the image)."),
    ("mask_fill", Stage.DETECTION, make_mask_fill, _SEGMENTATION,
     "Instance masks filling between min and max of their box (mask area / box area)."),
    ("keypoints_visible", Stage.DETECTION, make_keypoints_visible, _KEYPOINTS,
     "Poses with min..max keypoints at or above a confidence threshold."),
    ("keypoint_confidence", Stage.DETECTION, make_keypoint_confidence, _KEYPOINTS,
     "Poses whose min / mean / max keypoint confidence lies within [min, max]."),
    ("top_margin", Stage.IMAGE, make_top_margin, CLASSIFICATION_TASKS,
     "Classifications whose top-1 minus top-2 class score lies within [min, max] (small: a confused model)."),
    ("predicted_classes", Stage.IMAGE, make_predicted_classes, CLASSIFICATION_TASKS,
     "Classifications with min..max predicted classes (multi-label), or classes scoring at least a threshold."),
]


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    for name, stage, factory, tasks, summary in _RULES:
        register(RuleSpec(name, stage, builtin_schema(name), factory, summary, tasks=tasks))
