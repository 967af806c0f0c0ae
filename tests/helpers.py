"""Small builders shared by the tests (no behaviour of alpolicy is re-implemented here)."""

from __future__ import annotations

from typing import Any


def det(cls: str = "car", confidence: float = 0.5, width: float = 10, height: float = 10, x: float = 50, y: float = 50) -> dict[str, Any]:
    return {"x": x, "y": y, "width": width, "height": height, "confidence": confidence, "class": cls, "class_id": 0, "detection_id": f"{cls}-{confidence}"}


def pred(*detections: dict[str, Any], width: int = 640, height: int = 480) -> dict[str, Any]:
    return {"image": {"width": width, "height": height}, "predictions": list(detections)}
