"""The Roboflow SDK's ``conditionals`` dict, translated to a policy with exactly the SDK's decisions.

Given the model's detections ``P`` (the server already dropped those under its ``confidence``
parameter), ``Workspace.active_learning()`` uploads an image when:

* ``len(P) >= required_objects_count`` (default 1), and
* when ``target_classes`` is non-empty, at least ``required_class_count`` (default 0) detections are
  of those classes, and
* (alpolicy only) at least ``required_class_variance_count`` (default 1) distinct classes appear in
  ``P`` -- the SDK documents this key but never checks it, and
* one single detection has ``minimum < width * height < maximum`` (strict, pixels; default no
  bounds), ``confidence * 100`` within ``confidence_interval`` (default [30, 99], inclusive), and a
  target class when targets are given.

The translation keeps the SDK's arithmetic (``confidence * 100`` compared in percent) so decisions
agree at the bounds, float rounding included.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any, Mapping

from jsonschema import Draft202012Validator

from ..errors import PolicyError, Problem
from ..registry import did_you_mean
from .policy_json import document_problems
from .validation import json_path

DEFAULTS: dict[str, Any] = {
    "confidence_interval": [30, 99],
    "minimum_size_requirement": float("-inf"),
    "maximum_size_requirement": float("inf"),
    "required_objects_count": 1,
    "required_class_count": 0,
    "target_classes": [],
    "required_class_variance_count": 1,
}
#: SDK keys that call a hosted CLIP endpoint there; here they map to local near-duplicate suppression.
SIMILARITY_KEYS = ("similarity_confidence_threshold", "similarity_timeout_limit")


def _schema() -> dict[str, Any]:
    text = resources.files("alpolicy.schemas").joinpath("conditionals.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


_validator = Draft202012Validator(_schema())


def _normalise(conditionals: Mapping[str, Any]) -> dict[str, Any]:
    """Accept what the SDK accepts from Python callers: tuples and sets for lists, and the
    SDK's own defaults (-inf / +inf sizes) spelt out explicitly."""
    values: dict[str, Any] = {}
    for key, value in conditionals.items():
        if isinstance(value, (tuple, set, frozenset)):
            value = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        if key == "minimum_size_requirement" and value == float("-inf"):
            continue
        if key == "maximum_size_requirement" and value == float("inf"):
            continue
        values[key] = value
    return values


def check_conditionals(conditionals: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a conditionals dict; return it with defaults filled in. Raises :class:`PolicyError`."""
    if conditionals is None:
        conditionals = {}
    if not isinstance(conditionals, Mapping):
        raise PolicyError([Problem("$", f"conditionals must be a dict, not {type(conditionals).__name__}")], "conditionals")
    values = _normalise(conditionals)
    problems = document_problems(values)  # NaN, huge or too deeply nested values: nothing else is checked
    if problems:
        raise PolicyError(problems, "conditionals")
    for error in _validator.iter_errors(values):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            known = list(_schema()["properties"])
            for key in values:
                if key not in known:
                    problems.append(
                        Problem(json_path((key,)), f"unknown conditionals key {key!r}{did_you_mean(key, known)}; "
                                f"known keys: {', '.join(known)}")
                    )
        else:
            problems.append(Problem(json_path(path), error.message))
    if "similarity_timeout_limit" in values and "similarity_confidence_threshold" not in values:
        problems.append(Problem("$.similarity_timeout_limit", "only applies with similarity_confidence_threshold"))
    interval = values.get("confidence_interval")
    if _is_interval(interval) and interval[0] > interval[1]:
        problems.append(
            Problem("$.confidence_interval", f"lower bound {interval[0]} is greater than upper bound {interval[1]}")
        )
    low, high = values.get("minimum_size_requirement"), values.get("maximum_size_requirement")
    if _is_number(low) and _is_number(high) and low > high:
        problems.append(Problem("$.minimum_size_requirement", f"{low} is greater than maximum_size_requirement {high}"))
    if problems:
        raise PolicyError(problems, "conditionals")
    return {**DEFAULTS, **values}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)


def conditionals_to_document(conditionals: Mapping[str, Any] | None) -> dict[str, Any]:
    """The policy document (version 1) equivalent to an SDK conditionals dict."""
    c = check_conditionals(conditionals)
    low, high = c["confidence_interval"]
    detection: list[dict[str, Any]] = [{"rule": "confidence", "min": low, "max": high, "unit": "percent"}]
    box_area: dict[str, Any] = {"rule": "box_area"}
    if not math.isinf(c["minimum_size_requirement"]):
        box_area["min"] = c["minimum_size_requirement"]
    if not math.isinf(c["maximum_size_requirement"]):
        box_area["max"] = c["maximum_size_requirement"]
    if len(box_area) > 1:
        detection.append(box_area)
    targets = list(dict.fromkeys(c["target_classes"]))
    image: list[dict[str, Any]] = [{"rule": "detection_count", "min": c["required_objects_count"]}]
    if targets:
        detection.append({"rule": "classes", "include": targets})
        image.append({"rule": "detection_count", "min": c["required_class_count"], "classes": targets})
    image.append({"rule": "distinct_classes", "min": c["required_class_variance_count"]})
    image.append({"rule": "witnesses", "min": 1})
    document: dict[str, Any] = {
        "version": 1,
        "name": "sdk-conditionals",
        "description": "Translated from Roboflow SDK conditionals: " + json.dumps(_json_safe(conditionals or {}), sort_keys=True),
        "detection": detection,
        "image": {"all": image},
    }
    if "similarity_confidence_threshold" in c:
        document["sampling"] = [similarity_rule(c["similarity_confidence_threshold"], c.get("similarity_timeout_limit"))]
    return document


def similarity_rule(threshold: float, timeout: int | None) -> dict[str, Any]:
    """The SDK's CLIP-similarity skip, done locally: a frame is skipped while it stays within
    ``max_distance`` bits (perceptual hash) of the previous reference frame; after ``timeout``
    frames one is taken anyway. CLIP cosine similarity s maps to ``round((1 - s) * 64)`` bits
    (capped to 0..32): 0.95 -> 3, 0.90 -> 6, 0.80 -> 13 -- an approximation, since the measures differ."""
    rule: dict[str, Any] = {
        "rule": "near_duplicate", "against": "previous",
        "max_distance": max(0, min(32, round((1 - threshold) * 64))),
        "note": f"from the SDK's similarity_confidence_threshold {threshold}",
    }
    if timeout:
        rule["timeout"] = int(timeout)
    return rule


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
