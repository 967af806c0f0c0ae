"""Small builders shared by the tests: thin aliases of :mod:`alpolicy.testing` (one implementation,
the one plugin authors use), in the argument order these tests were written with."""

from __future__ import annotations

from typing import Any

from alpolicy.testing import make_detection, make_prediction


def det(cls: str = "car", confidence: float = 0.5, width: float = 10, height: float = 10, x: float = 50, y: float = 50) -> dict[str, Any]:
    return dict(make_detection(cls, confidence, x=x, y=y, width=width, height=height))


def pred(*detections: dict[str, Any], width: int = 640, height: int = 480) -> dict[str, Any]:
    """The inference JSON of :func:`alpolicy.testing.make_prediction`, values unchecked (some tests
    hand rules what no validator would pass)."""
    return make_prediction(*detections, width=width, height=height, validate=False).to_json()
