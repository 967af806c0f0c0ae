"""Roboflow inference JSON (``{"image": {"width", "height"}, "predictions": [...]}``): the shape
a :class:`~alpolicy.policy.prediction.Prediction` already has, so both directions are thin.

Two things more, each with one implementation here because several callers need them:

* :func:`scaled` -- a prediction moved to another image size (boxes, polygons and keypoints),
  for a downscaled upload (the Roboflow destination's ``max_size``) and for the report's
  thumbnails. Roboflow Inference does the same in ``adjust_prediction_to_client_scaling_factor``
  (active learning), for boxes and segmentation polygons; keypoints are scaled here too (Inference
  leaves a pose model's keypoints at the original size, which no longer match the image it uploads).
* :func:`annotation` -- the annotation file each task uploads as a pre-label, as Roboflow
  Inference's active learning registers it (``encode_prediction`` in
  ``inference/core/active_learning/post_processing.py``): every box task (detection,
  segmentation with ``points``, pose with ``keypoints``) sends its inference JSON as
  ``<stem>.json``; a single-label classifier sends its top class as ``<stem>.txt``. For a
  multi-label classifier Inference has no encoding (``encode_prediction`` raises
  ``PredictionFormatNotSupported``); the Roboflow SDK does have one, in its dataset upload of a
  multi-label ``_classes.csv`` (``roboflow/util/folderparser.py`` reads the labels of an image,
  ``Workspace.upload_dataset`` saves them with ``json.dumps(labels)`` as the annotation text,
  which ``Project._annotation_params`` also uses as the annotation's name in a classification
  project). That is the one multi-label upload known to work, so it is what is sent: the
  predicted classes as a JSON list, named by that same text.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..policy.prediction import (
    BOX_TASKS, CLASSIFICATION, MULTI_LABEL_CLASSIFICATION, Detection, Prediction,
)


def document(prediction: Prediction) -> dict[str, Any]:
    """The inference JSON Roboflow answers (and its upload API takes as an annotation)."""
    return prediction.to_json()


def prediction(document: Mapping[str, Any]) -> Prediction:
    """The prediction a document holds, checked (a :class:`PredictionFormatError` when it is not one)."""
    return Prediction.from_json(document, check=True)


def scaled(prediction: Prediction, width: int, height: int) -> Prediction:
    """``prediction`` for the same picture at ``width`` x ``height`` px: every box (centre and
    size), polygon point and keypoint multiplied by ``width / prediction.width`` across and
    ``height / prediction.height`` down (the two factors of a resize that rounds each side);
    confidences, classes and a classifier's scores unchanged. A copy: the caller's prediction is
    not touched.

    An ``rle`` mask cannot be rescaled without decoding it; it is left out of a scaled detection
    (its box and, where the model gave one, its polygon still outline the object).
    """
    if (width, height) == (prediction.width, prediction.height):
        return prediction
    fx, fy = width / prediction.width, height / prediction.height
    detections = prediction.detections
    if prediction.task in BOX_TASKS:
        detections = [_scaled_detection(detection, fx, fy) for detection in detections]
    return dataclasses.replace(prediction, width=width, height=height, detections=detections,
                               extra=dict(prediction.extra), class_scores=list(prediction.class_scores))


def _scaled_detection(detection: Detection, fx: float, fy: float) -> Detection:
    moved: dict[str, Any] = {key: value for key, value in detection.items() if key != "rle"}
    moved.update(x=detection["x"] * fx, y=detection["y"] * fy,
                 width=detection["width"] * fx, height=detection["height"] * fy)
    for key in ("points", "keypoints"):
        points = detection.get(key)
        if isinstance(points, list):
            moved[key] = [{**point, "x": point["x"] * fx, "y": point["y"] * fy} for point in points]
    return moved  # type: ignore[return-value]


@dataclass(frozen=True)
class Annotation:
    """An annotation file to upload: its text and how it is named (see :meth:`name`)."""

    text: str
    #: ``"json"`` or ``"txt"`` (the name is ``<stem>.<type>``); ``None``: named by its text (multi-label).
    file_type: str | None

    def name(self, stem: str) -> str:
        """The ``name`` parameter of the upload: ``frame.json`` / ``frame.txt``, or for multi-label
        the text itself, as the Roboflow SDK names a classification project's label."""
        return f"{stem}.{self.file_type}" if self.file_type else self.text


def annotation(prediction: Prediction) -> Annotation | None:
    """The pre-label of ``prediction`` as Roboflow's annotation upload takes it (see the module
    docstring); ``None`` for a classifier that predicted no class (nothing to label: Roboflow
    Inference registers no annotation for an answer without predictions and without ``top``)."""
    if prediction.task in BOX_TASKS:
        return Annotation(json.dumps(document(prediction)), "json")
    if prediction.task == CLASSIFICATION:
        top = prediction.top
        return Annotation(top, "txt") if top is not None else None
    if prediction.task == MULTI_LABEL_CLASSIFICATION and prediction.detections:
        return Annotation(json.dumps([entry["class"] for entry in prediction.detections]), None)
    return None
