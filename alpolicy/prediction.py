"""The canonical prediction shape every backend produces and every rule reads.

A detection is a plain ``dict`` in the Roboflow inference JSON shape (centre ``x``/``y``, ``width``,
``height`` in pixels of the original image, ``confidence`` in 0..1, ``class``, ``class_id``,
``detection_id``). We keep dicts rather than wrapping each detection in an object because
(1) it is the format users already know and store, so predictions round-trip unchanged, and
(2) the policy hot loop then reads fields without converting anything: wrapping every detection
in a dataclass cost ~10x the whole decision in ``benchmarks/bench_policy.py``.
``Detection`` is a ``TypedDict`` so type checkers still see the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, TypedDict

Detection = TypedDict(
    "Detection",
    {
        "x": float,
        "y": float,
        "width": float,
        "height": float,
        "confidence": float,
        "class": str,
        "class_id": int,
        "detection_id": str,
    },
    total=False,
)

_REQUIRED_DETECTION_KEYS = ("x", "y", "width", "height", "confidence", "class")
_OWN_KEYS = frozenset({"image", "predictions", "model_id"})


class PredictionFormatError(ValueError):
    """A prediction document does not have the Roboflow inference shape."""


@dataclass(slots=True)
class Prediction:
    """One image's model output: its size, the model that produced it and its detections."""

    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    model_id: str | None = None
    #: Extra fields of the backend's response (``inference_id``, ``time``...), kept for the record.
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: Mapping[str, Any], *, check: bool = True) -> "Prediction":
        """Read the Roboflow inference JSON (``{"image": {...}, "predictions": [...]}``).

        ``check`` verifies each detection's keys and types once, so that rules can index them
        without guarding; backends that build detections themselves may pass ``check=False``.
        """
        if type(document) is not dict:  # a parsed JSON object skips both checks (this runs once per image)
            if isinstance(document, Prediction):
                return document
            if not isinstance(document, Mapping):
                raise PredictionFormatError(f"a prediction must be a JSON object, not {type(document).__name__}")
        image = document.get("image")
        try:
            width, height = image["width"], image["height"]  # type: ignore[index]
            if type(width) is not int or type(height) is not int:  # int() only when needed (hot path)
                width, height = int(width), int(height)
        except (TypeError, KeyError, ValueError):
            raise PredictionFormatError('a prediction needs "image": {"width": W, "height": H}') from None
        detections = document.get("predictions", [])
        if type(detections) is not list:
            raise PredictionFormatError('"predictions" must be a list of detections')
        if check:
            for index, detection in enumerate(detections):
                _check_detection(detection, index)
        # Only the common two keys? Skip building `extra` (this runs once per image).
        extra = (
            {k: v for k, v in document.items() if k not in _OWN_KEYS} if len(document) > 2 else {}
        )
        return cls(width, height, detections, document.get("model_id"), extra)

    def to_json(self) -> dict[str, Any]:
        """The Roboflow inference JSON for this prediction (what destinations store as pre-labels)."""
        document: dict[str, Any] = dict(self.extra)
        document["image"] = {"width": self.width, "height": self.height}
        document["predictions"] = list(self.detections)
        if self.model_id is not None:
            document["model_id"] = self.model_id
        return document

    @property
    def classes(self) -> list[str]:
        """Class names in order of first appearance."""
        return list(dict.fromkeys(d["class"] for d in self.detections))


def _check_detection(detection: Any, index: int) -> None:
    where = f"predictions[{index}]"
    if not isinstance(detection, Mapping):
        raise PredictionFormatError(f"{where} must be an object")
    missing = [key for key in _REQUIRED_DETECTION_KEYS if key not in detection]
    if missing:
        raise PredictionFormatError(f"{where} lacks {', '.join(missing)}")
    for key in ("x", "y", "width", "height", "confidence"):
        value = detection[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PredictionFormatError(f"{where}.{key} must be a number, not {value!r}")
    if not isinstance(detection["class"], str):
        raise PredictionFormatError(f"{where}.class must be a string, not {detection['class']!r}")


def detections_summary(detections: Sequence[Detection]) -> str:
    """A short human description of detections, for reasons and logs."""
    if not detections:
        return "no detections"
    parts = [detection_label(d) for d in detections[:5]]
    more = f" and {len(detections) - 5} more" if len(detections) > 5 else ""
    return ", ".join(parts) + more


def detection_label(detection: Detection) -> str:
    """``car 0.412``: class and confidence to three significant digits."""
    return f"{detection['class']} {detection['confidence']:.3g}"
