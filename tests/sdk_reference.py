"""The Roboflow SDK's active-learning decision, transcribed as the oracle for parity tests.

This is a line-by-line transcription of ``Workspace.active_learning()``'s loop and of
``roboflow.util.active_learning_utils`` (roboflow 1.7.3), minus printing and I/O, plus the one
documented check the SDK skips (``required_class_variance_count``, see issue #2). It is kept
independent of alpolicy's code on purpose: parity tests compare alpolicy against it.
"""

from __future__ import annotations

from typing import Any


def count_class_occurances(predictions, target_class):
    count = 0
    for prediction in predictions:
        if prediction["class"] in target_class:
            count += 1
    return count


def count_comparisons(predictions, required_objects_count, required_class_count, target_class):
    if (
        len(predictions) < required_objects_count
        or target_class
        and count_class_occurances(predictions, target_class) < required_class_count
    ):
        return False
    return True


def check_box_size(prediction, minimum_size_requirement, maximum_size_requirement):
    return maximum_size_requirement > prediction["height"] * prediction["width"] > minimum_size_requirement


def sdk_would_upload(predictions: list[dict[str, Any]], conditionals: dict[str, Any]) -> bool:
    conditionals = dict(conditionals)
    conditionals.setdefault("target_classes", [])
    conditionals.setdefault("confidence_interval", [30, 99])
    conditionals.setdefault("required_class_variance_count", 1)
    conditionals.setdefault("required_objects_count", 1)
    conditionals.setdefault("required_class_count", 0)
    conditionals.setdefault("minimum_size_requirement", float("-inf"))
    conditionals.setdefault("maximum_size_requirement", float("inf"))

    if not count_comparisons(
        predictions,
        conditionals["required_objects_count"],
        conditionals["required_class_count"],
        conditionals["target_classes"],
    ):
        return False
    # Documented by the SDK ("minimum distinct classes required") but never checked there.
    if len({p["class"] for p in predictions}) < conditionals["required_class_variance_count"]:
        return False
    for prediction in predictions:
        if not check_box_size(
            prediction, conditionals["minimum_size_requirement"], conditionals["maximum_size_requirement"]
        ):
            continue
        if (
            prediction["confidence"] * 100 >= conditionals["confidence_interval"][0]
            and prediction["confidence"] * 100 <= conditionals["confidence_interval"][1]
        ):
            if len(conditionals["target_classes"]) > 0 and prediction["class"] not in conditionals["target_classes"]:
                continue
            return True
    return False
