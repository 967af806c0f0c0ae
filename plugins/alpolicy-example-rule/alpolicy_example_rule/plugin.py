"""The plugin module named by the ``alpolicy`` entry point in pyproject.toml.

A rule plugin does three things: write the rule (an object with ``accepts`` and ``explain``
for a detection rule, ``check`` and ``explain`` for an image rule), describe its parameters with
a JSON Schema, and register both in the ``alpolicy_rules`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import alpolicy


@dataclass(frozen=True)
class AspectRatioRule(alpolicy.DetectionRule):
    """``low <= width / height <= high``."""

    low: float
    high: float

    def accepts(self, detection: alpolicy.Detection, prediction: alpolicy.Prediction) -> bool:
        height = detection["height"]
        return height > 0 and self.low <= detection["width"] / height <= self.high

    def explain(self, detection: alpolicy.Detection, prediction: alpolicy.Prediction, accepted: bool) -> str:
        ratio = detection["width"] / detection["height"] if detection["height"] else float("inf")
        where = "within" if accepted else "outside"
        return f"aspect ratio {ratio:.2f} {where} [{self.low:g}, {self.high:g}]"


def make_aspect_ratio(params: dict[str, Any]) -> AspectRatioRule:
    """Parameters arrive validated against the schema; check what a schema cannot express."""
    low, high = params.get("min", 0.0), params.get("max", float("inf"))
    if low > high:
        raise alpolicy.ParameterError("min", f"{low} is greater than max {high}")
    return AspectRatioRule(low, high)


@alpolicy.hookimpl
def alpolicy_rules(register: Callable[[alpolicy.RuleSpec], None]) -> None:
    register(
        alpolicy.RuleSpec(
            name="aspect_ratio",
            stage=alpolicy.Stage.DETECTION,
            schema=alpolicy.load_schema("alpolicy_example_rule", "aspect_ratio.schema.json"),
            factory=make_aspect_ratio,
            summary="Detections whose box width/height lies within [min, max].",
            # It reads boxes: a classifier's answer has none, so the rule does not judge one.
            tasks={"object-detection", "instance-segmentation", "keypoint-detection"},
        )
    )
