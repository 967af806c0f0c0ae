"""Roboflow Inference's active-learning configuration, read as-is and mapped onto a policy.

Inference samples every prediction it serves: each strategy of ``sampling_strategies`` is a
sampling rule here with the same parameters (renamed to alpolicy's words), its ``tags`` and its
``limits``; the configuration's global ``tags`` become the policy's. The image stage accepts every
image, as Inference does. Keys about *uploading* rather than deciding (``max_image_size``,
``jpeg_compression_level``, ``batching_strategy``, ``persist_predictions``, ``enabled``) are
accepted and left to the destination's options (``--max-size``, ``--jpeg-quality``, ``--batch``,
``--batch-recreation``). ``classes_based`` is a classification strategy: refused with a clear error.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import PolicyError, Problem
from ..registry import did_you_mean
from .policy_json import document_problems

STRATEGY_TYPES = ("random", "close_to_threshold", "detections_number_based")
UPLOAD_KEYS = ("enabled", "max_image_size", "jpeg_compression_level", "persist_predictions", "batching_strategy")
#: Inference parameter name -> alpolicy parameter name, per strategy type.
_RENAMES: dict[str, dict[str, str]] = {
    "random": {"traffic_percentage": "rate"},
    "close_to_threshold": {
        "threshold": "threshold", "epsilon": "epsilon", "selected_class_names": "classes",
        "minimum_objects_close_to_threshold": "minimum", "probability": "probability",
    },
    "detections_number_based": {
        "more_than": "more_than", "less_than": "less_than", "selected_class_names": "classes", "probability": "probability",
    },
}
_IGNORED = {"close_to_threshold": {"only_top_classes"}}  # classification-only knobs


def looks_like_inference_config(document: Any) -> bool:
    return isinstance(document, Mapping) and "sampling_strategies" in document and "version" not in document


def inference_config_to_document(config: Mapping[str, Any]) -> dict[str, Any]:
    """The policy document (version 1) making Inference's sampling decisions for ``config``."""
    problems = document_problems(config)  # NaN, huge or too deeply nested values first
    if problems:
        raise PolicyError(problems, "inference configuration")
    known = {"sampling_strategies", "tags", *UPLOAD_KEYS}
    for key in config:
        if key not in known:
            problems.append(Problem(f"$.{key}", f"unknown key {key!r}{did_you_mean(key, known)} in an Inference active-learning configuration"))
    strategies = config.get("sampling_strategies")
    if not isinstance(strategies, list) or not strategies:
        problems.append(Problem("$.sampling_strategies", "expected a non-empty list of sampling strategies"))
        strategies = []
    sampling: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, strategy in enumerate(strategies):
        where = f"$.sampling_strategies[{index}]"
        if not isinstance(strategy, Mapping):
            problems.append(Problem(where, "expected an object"))
            continue
        kind, name = strategy.get("type"), strategy.get("name")
        if kind == "classes_based":
            problems.append(Problem(f"{where}.type", "'classes_based' samples classification output; alpolicy triages detections"))
            continue
        if kind not in STRATEGY_TYPES:
            problems.append(Problem(f"{where}.type", f"unknown strategy type {kind!r}{did_you_mean(kind, STRATEGY_TYPES)}; types: {', '.join(STRATEGY_TYPES)}"))
            continue
        if not isinstance(name, str) or not name:
            problems.append(Problem(f"{where}.name", "every strategy needs a name"))
            continue
        if name in names:
            problems.append(Problem(f"{where}.name", f"duplicate strategy name {name!r}"))
        names.add(name)
        rule: dict[str, Any] = {"rule": kind, "name": name}
        renames = _RENAMES[kind]
        for key, value in strategy.items():
            if key in ("type", "name", "tags", "limits") or key in _IGNORED.get(kind, set()):
                continue
            if key not in renames:
                problems.append(Problem(f"{where}.{key}", f"unknown parameter {key!r} for a {kind} strategy{did_you_mean(key, renames)}"))
                continue
            if value is not None:
                rule[renames[key]] = value
        if kind == "close_to_threshold":
            rule.setdefault("probability", 1.0)
        for key in ("tags", "limits"):
            if strategy.get(key):
                rule[key] = strategy[key]
        sampling.append(rule)
    if problems:
        raise PolicyError(problems, "inference configuration")
    document: dict[str, Any] = {
        "version": 1,
        "name": "roboflow-inference-active-learning",
        "description": "Translated from a Roboflow Inference active-learning configuration.",
        "image": {"rule": "detection_count", "min": 0},
        "sampling": sampling,
    }
    if config.get("tags"):
        document["tags"] = list(config["tags"])
    return document
