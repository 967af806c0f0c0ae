"""The Roboflow SDK's active-learning decision, transcribed verbatim as the oracle for parity tests.

Source: roboflow 1.7.3 (the wheel on PyPI): ``roboflow/util/active_learning_utils.py`` lines
10-38, and ``Workspace.active_learning()`` in ``roboflow/core/workspace.py`` lines 776-797 (the
defaults) and 853-894 (the decision for one image). The text is copied, comments and ``print``
calls included; it is kept independent of alpolicy's code on purpose.

Adapted, and only this, to run one image's decision without the network:

* The decision is a function of one image's ``predictions`` (the SDK gets them from
  ``inference_model.predict(image).json()["predictions"]``, workspace.py:849) returning whether
  the SDK would upload that image. Its body is the SDK's text dedented (the method body by 4
  spaces, the loop body by 8). The lines marked ``ADAPTED`` replace the SDK's ``continue``
  (workspace.py:862: next image, this one not uploaded) with ``return False``, its
  ``upload_project.upload(image, num_retry_uploads=3)`` and ``break`` (893-894) with
  ``return True``, and add the final ``return False`` (no detection qualified).
* ``conditionals = dict(conditionals)`` first: the SDK fills its defaults into the caller's dict,
  and the tests reuse their dict for alpolicy.
* ``print`` is a no-op in this module (the SDK prints per detection; a benchmark calls this).
* Not transcribed: workspace.py:833-847, the ``similarity_confidence_threshold`` block (it calls a
  hosted CLIP endpoint; alpolicy maps those keys to local near-duplicate suppression, tested
  apart), and the I/O around the loop (model lookup, glob, collecting the results).

Where alpolicy deliberately decides otherwise, ``required_class_variance_count`` (the SDK fills it
in at workspace.py:781-783 and never reads it), the tests state the difference as a separate
assertion (``tests/test_conditionals.py``: ``alpolicy_deviation``); nothing here checks it.
"""

from __future__ import annotations

from typing import Any


def print(*args: Any, **kwargs: Any) -> None:  # noqa: A001 - ADAPTED: silences the SDK's prints below
    """The SDK's ``print`` calls stay as written; here they print nothing."""


# ---- verbatim: roboflow/util/active_learning_utils.py lines 10-38 ----
# a for loop that counts the number of occurances within an array
def count_class_occurances(predictions, target_class):
    count = 0

    for prediction in predictions:
        if prediction["class"] in target_class:
            count += 1

    return count


# compares counts and returns False if counts below requirement
def count_comparisons(predictions, required_objects_count, required_class_count, target_class):
    if (
        len(predictions) < required_objects_count
        or target_class
        and count_class_occurances(predictions, target_class) < required_class_count
    ):
        return False
    else:
        return True


# checks box size and returns False if not within requirements
def check_box_size(prediction, minimum_size_requirement, maximum_size_requirement):
    if maximum_size_requirement > prediction["height"] * prediction["width"] > minimum_size_requirement:
        return True
    else:
        return False


# ---- Workspace.active_learning(), for one image ----
def sdk_would_upload(predictions: list[dict[str, Any]], conditionals: dict[str, Any]) -> bool:  # ADAPTED: one image
    conditionals = dict(conditionals)  # ADAPTED: the SDK fills defaults into the caller's dict
    # ---- verbatim: workspace.py lines 776-797 ----
    # ensure that all fields of conditionals have a key:value pair
    conditionals["target_classes"] = [] if "target_classes" not in conditionals else conditionals["target_classes"]
    conditionals["confidence_interval"] = (
        [30, 99] if "confidence_interval" not in conditionals else conditionals["confidence_interval"]
    )
    conditionals["required_class_variance_count"] = (
        1 if "required_class_variance_count" not in conditionals else conditionals["required_class_variance_count"]
    )
    conditionals["required_objects_count"] = (
        1 if "required_objects_count" not in conditionals else conditionals["required_objects_count"]
    )
    conditionals["required_class_count"] = (
        0 if "required_class_count" not in conditionals else conditionals["required_class_count"]
    )
    conditionals["minimum_size_requirement"] = (
        float("-inf")
        if "minimum_size_requirement" not in conditionals
        else conditionals["minimum_size_requirement"]
    )
    conditionals["maximum_size_requirement"] = (
        float("inf") if "maximum_size_requirement" not in conditionals else conditionals["maximum_size_requirement"]
    )

    # ---- verbatim: workspace.py lines 853-894, in `for index, image in enumerate(globbed_files):` ----
    # compare object and class count of predictions if enabled,
    # continue if not enough occurrences
    if not count_comparisons(
        predictions,
        conditionals["required_objects_count"],
        conditionals["required_class_count"],
        conditionals["target_classes"],
    ):
        print(" [X] image failed count cases")
        return False  # ADAPTED (workspace.py:862): was `continue`, on to the next image

    # iterate through all predictions
    for i, prediction in enumerate(predictions):
        print(i)

        # check if box size of detection fits requirements
        if not check_box_size(
            prediction,
            conditionals["minimum_size_requirement"],
            conditionals["maximum_size_requirement"],
        ):
            print(" [X] prediction failed box size cases")
            continue

        # compare confidence of detected object to confidence thresholds
        # confidence comes in as a .XXX instead of XXX%
        if (
            prediction["confidence"] * 100 >= conditionals["confidence_interval"][0]
            and prediction["confidence"] * 100 <= conditionals["confidence_interval"][1]
        ):
            # filter out non-target_class uploads if enabled
            if (
                len(conditionals["target_classes"]) > 0
                and prediction["class"] not in conditionals["target_classes"]
            ):
                print(" [X] prediction failed target_classes")
                continue

            # upload on success!
            print(" >> image uploaded!")
            return True  # ADAPTED (workspace.py:893-894): was `upload_project.upload(image, num_retry_uploads=3)`, `break`
    return False  # ADAPTED: the loop over the detections ended without an upload
