"""Roboflow inference JSON (``{"image": {"width", "height"}, "predictions": [...]}``): the shape
a :class:`~alpolicy.policy.prediction.Prediction` already has, so both directions are thin."""

from __future__ import annotations

from typing import Any, Mapping

from ..policy.prediction import Prediction


def document(prediction: Prediction) -> dict[str, Any]:
    """The inference JSON Roboflow answers (and its upload API takes as an annotation)."""
    return prediction.to_json()


def prediction(document: Mapping[str, Any]) -> Prediction:
    """The prediction a document holds, checked (a :class:`PredictionFormatError` when it is not one)."""
    return Prediction.from_json(document, check=True)
