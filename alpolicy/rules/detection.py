"""Built-in detection rules: which detections count as witnesses.

Registered through the ``alpolicy_rules`` hook like any third-party plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..hookspecs import hookimpl
from ..policy.prediction import BOX_TASKS, Detection, Prediction
from ..policy.rule import DetectionRule, ParameterError
from ..registry import RuleSpec, Stage
from .base import builtin_schema, check_bounds, format_names, format_number

INF = float("inf")


@dataclass(frozen=True, slots=True)
class ConfidenceRule(DetectionRule):
    """``low <= confidence <= high``; in percent mode ``confidence * 100`` is compared, as the SDK does,
    so that float rounding gives exactly the SDK's answer at the bounds."""

    low: float
    high: float
    percent: bool

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        value = detection["confidence"] * 100 if self.percent else detection["confidence"]
        return self.low <= value <= self.high

    def select(self, detections: Sequence[Detection], prediction: Prediction) -> list[Detection]:
        low, high = self.low, self.high
        if self.percent:
            return [d for d in detections if low <= d["confidence"] * 100 <= high]
        return [d for d in detections if low <= d["confidence"] <= high]

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        where = "within" if accepted else "outside"
        if self.percent:
            return (
                f"confidence {detection['confidence'] * 100:.1f}% {where} "
                f"[{format_number(self.low)}%, {format_number(self.high)}%]"
            )
        return f"confidence {detection['confidence']:.2f} {where} [{self.low:.2f}, {self.high:.2f}]"


def make_confidence(params: dict[str, Any]) -> ConfidenceRule:
    percent = params.get("unit", "fraction") == "percent"
    top = 100.0 if percent else 1.0
    low, high = float(params.get("min", 0.0)), float(params.get("max", top))
    check_bounds(low, high)
    return ConfidenceRule(low, high, percent)


@dataclass(frozen=True, slots=True)
class BoxAreaRule(DetectionRule):
    """``low < width * height < high`` (strict, as the SDK); optionally relative to the image area."""

    low: float
    high: float
    relative: bool

    def area(self, detection: Detection, prediction: Prediction) -> float:
        area = detection["height"] * detection["width"]
        if self.relative:
            return area / (prediction.width * prediction.height or 1)
        return area

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        return self.high > self.area(detection, prediction) > self.low

    def select(self, detections: Sequence[Detection], prediction: Prediction) -> list[Detection]:
        low, high = self.low, self.high
        if self.relative:
            image_area = prediction.width * prediction.height or 1
            return [d for d in detections if high > d["height"] * d["width"] / image_area > low]
        return [d for d in detections if high > d["height"] * d["width"] > low]

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        area = self.area(detection, prediction)
        shown = f"{area:.4f} of the image" if self.relative else f"{area:.0f} px²"
        where = "within" if accepted else "outside"
        return f"box area {shown} {where} ({format_number(self.low)}, {format_number(self.high)})"


def make_box_area(params: dict[str, Any]) -> BoxAreaRule:
    low, high = float(params.get("min", -INF)), float(params.get("max", INF))
    check_bounds(low, high)
    return BoxAreaRule(low, high, params.get("unit", "pixels") == "fraction")


@dataclass(frozen=True, slots=True)
class ClassesRule(DetectionRule):
    """Class in ``include`` (when given) and not in ``exclude``."""

    include: frozenset[str] | None
    exclude: frozenset[str]

    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        name = detection["class"]
        return (self.include is None or name in self.include) and name not in self.exclude

    def select(self, detections: Sequence[Detection], prediction: Prediction) -> list[Detection]:
        include, exclude = self.include, self.exclude
        if include is None:
            return [d for d in detections if d["class"] not in exclude]
        return [d for d in detections if d["class"] in include and d["class"] not in exclude]

    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        name = detection["class"]
        if name in self.exclude:
            return f"class {name!r} is excluded"
        if self.include is not None:
            return f"class {name!r} {'in' if accepted else 'not in'} {format_names(self.include)}"
        return f"class {name!r} not excluded"


def make_classes(params: dict[str, Any]) -> ClassesRule:
    include = frozenset(params["include"]) if "include" in params else None
    exclude = frozenset(params.get("exclude", ()))
    if include is not None and include <= exclude:
        raise ParameterError("exclude", f"excludes every included class {sorted(include)}: no detection could count")
    return ClassesRule(include, exclude)


_RULES: list[tuple[str, Callable[[dict[str, Any]], DetectionRule], str]] = [
    ("confidence", make_confidence, "Detections whose confidence lies within [min, max]."),
    ("box_area", make_box_area, "Detections whose box area lies strictly between min and max."),
    ("classes", make_classes, "Detections of the target classes (include / exclude)."),
]


#: The rules that read a box: a classifier's class entries have none (``confidence`` and
#: ``classes`` read only what every task's entries have).
_TASKS = {"box_area": BOX_TASKS}


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    for name, factory, summary in _RULES:
        register(RuleSpec(name, Stage.DETECTION, builtin_schema(name), factory, summary, tasks=_TASKS.get(name)))
