"""Built-in image rules: judge an image by all its detections and by its witnesses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..hookspecs import hookimpl
from ..policy.prediction import Detection, Prediction, detections_summary
from ..policy.rule import ImageRule
from ..registry import RuleSpec, Stage
from .base import builtin_schema, check_bounds, format_names

#: Stand-in for "no upper bound" on counts (a count can never reach it).
NO_LIMIT = 2**63


def _bounds(params: dict[str, Any], default_min: int) -> tuple[int, int]:
    low, high = int(params.get("min", default_min)), int(params.get("max", NO_LIMIT))
    check_bounds(low, high)
    return low, high


def _requirement(count: int, low: int, high: int) -> str:
    if high == NO_LIMIT:
        return f"at least {low} required"
    if low == 0:
        return f"at most {high} allowed"
    return f"between {low} and {high} required"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 'es' if word.endswith('s') else 's'}"


@dataclass(frozen=True, slots=True)
class DetectionCountRule(ImageRule):
    """``min <= number of detections (of classes, when given) <= max`` over all detections."""

    low: int
    high: int
    classes: frozenset[str] | None

    def count(self, prediction: Prediction) -> int:
        if self.classes is None:
            return len(prediction.detections)
        classes = self.classes
        return sum(1 for d in prediction.detections if d["class"] in classes)

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        # Without classes (the common case) the count is a len(): no call to count() on the hot path.
        count = len(prediction.detections) if self.classes is None else self.count(prediction)
        return self.low <= count <= self.high

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        count = self.count(prediction)
        of = f" of {format_names(self.classes)}" if self.classes is not None else ""
        return f"{_plural(count, 'detection')}{of}, {_requirement(count, self.low, self.high)}"


def make_detection_count(params: dict[str, Any]) -> DetectionCountRule:
    low, high = _bounds(params, 1)
    classes = frozenset(params["classes"]) if "classes" in params else None
    return DetectionCountRule(low, high, classes)


@dataclass(frozen=True, slots=True)
class DistinctClassesRule(ImageRule):
    """``min <= number of distinct classes among all detections <= max``."""

    low: int
    high: int

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        return self.low <= len({d["class"] for d in prediction.detections}) <= self.high

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        classes = {d["class"] for d in prediction.detections}
        listed = f" {format_names(classes)}" if classes else ""
        return f"{_plural(len(classes), 'distinct class')}{listed}, {_requirement(len(classes), self.low, self.high)}"


def make_distinct_classes(params: dict[str, Any]) -> DistinctClassesRule:
    return DistinctClassesRule(*_bounds(params, 1))


@dataclass(frozen=True, slots=True)
class WitnessesRule(ImageRule):
    """``min <= number of witnesses <= max``: how many detections passed every detection rule."""

    low: int
    high: int

    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        return self.low <= len(witnesses) <= self.high

    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        count = len(witnesses)
        who = f" ({detections_summary(witnesses)})" if witnesses else ""
        return (
            f"{_plural(count, 'detection')} passed every detection rule{who}, "
            f"{_requirement(count, self.low, self.high)}"
        )


def make_witnesses(params: dict[str, Any]) -> WitnessesRule:
    return WitnessesRule(*_bounds(params, 1))


_RULES: list[tuple[str, Callable[[dict[str, Any]], ImageRule], str]] = [
    ("detection_count", make_detection_count, "Images with min..max detections (optionally of given classes)."),
    ("distinct_classes", make_distinct_classes, "Images whose detections span min..max distinct classes."),
    ("witnesses", make_witnesses, "Images with min..max detections that pass every detection rule."),
]


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    for name, factory, summary in _RULES:
        register(RuleSpec(name, Stage.IMAGE, builtin_schema(name), factory, summary))
