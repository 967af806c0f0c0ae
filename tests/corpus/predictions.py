"""Hostile model answers and stored prediction files (issue #12, items 5 and 6), as raw bytes.

Written as bytes: ``json.dumps`` would refuse some of them, a hostile server does not. Each fails
its one image with one located line, through the loopback Roboflow server (``add_model(...,
answer=fn)``) and ``replay:`` (files); the answer echoing the API key is accepted, masked.
``tests/test_hostile_predictions.py`` and ``tests/test_security.py`` take theirs from here, and
the Hypothesis strategy :func:`hostile_documents` generates more.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from hypothesis import strategies as st

from ..conftest import API_KEY
from . import ACCEPTED, Entry, expect, fails

W, H = 96, 72  # the size of make_frames' images

GOOD_BOX = {"x": 40, "y": 30, "width": 20, "height": 10, "confidence": 0.9, "class": "car", "class_id": 0}


def document(*, width: Any = W, height: Any = H, box: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"image": {"width": width, "height": height}, "predictions": [box or GOOD_BOX], **extra}


def text(value: Any) -> bytes:
    return json.dumps(value).encode()


def with_box(**changes: Any) -> bytes:
    return text(document(box={**GOOD_BOX, **changes}))


NESTED = b"[" * 100_000 + b"]" * 100_000
HUGE = b'{"image": {"width": 96, "height": 72}, "predictions": [], "padding": "' + b"x" * 40_000_000 + b'"}'
ONE = b'{"x": 40, "y": 30, "width": 2, "height": 2, "confidence": 0.5, "class": "car"}'
MANY = b'{"image": {"width": 96, "height": 72}, "predictions": [' + b",".join([ONE] * 100_001) + b"]}"

#: name -> (raw answer, regex of the located reason). Written as raw bytes: json.dumps would
#: refuse some of them, a hostile server does not.
HOSTILE: dict[str, tuple[bytes, str]] = {
    "infinity": (b'{"image": {"width": Infinity, "height": 72}, "predictions": []}',
                 r"image\.width: Infinity is not a finite number"),
    "overflow": (b'{"image": {"width": 1e400, "height": 72}, "predictions": []}',
                 r"image\.width: Infinity is not a finite number"),
    "nan_confidence": (with_box(confidence=0.5).replace(b"0.5", b"NaN"),
                       r"predictions\[0\]\.confidence: NaN is not a finite number"),
    "nan_box": (with_box(x=41).replace(b'"x": 41', b'"x": NaN'), r"predictions\[0\]\.x: NaN is not a finite number"),
    "nested": (b'{"image": {"width": 96, "height": 72}, "predictions": [], "debug": ' + NESTED + b"}",
               r"nested too deeply"),
    "zero_width": (text(document(width=0)), r"image\.width: 0 is not a positive number of pixels"),
    "negative_width": (text(document(width=-5)), r"image\.width: -5 is not a positive number of pixels"),
    "true_width": (text(document(width=True)), r"image\.width must be a whole number of pixels, not true"),
    "confidence_57": (with_box(confidence=57.0), r"predictions\[0\]\.confidence: 57\.0 is outside 0\.\.1"),
    "negative_box": (with_box(width=-3), r"predictions\[0\]\.width: -3 is negative"),
    "box_far_away": (with_box(x=1e9), r"predictions\[0\]\.x: the box spans .* too far outside the image's width"),
    "huge": (HUGE, r"above the limit of 32 MiB|larger than the limit of 32 MiB"),
    "too_many": (MANY, r"100,001 detections, above the limit of 10,000 \(max_detections\)"),
}


def echoing_answer(image_bytes: bytes) -> bytes:
    """A server that echoes the request, key included, inside a successful prediction (issue #12, item 6)."""
    url = f"https://serverless.roboflow.com/vehicles/3?api_key={API_KEY}&confidence=40"
    detection = {"x": 40, "y": 30, "width": 20, "height": 10, "confidence": 0.9, "class": "car", "class_id": 0,
                 "detection_id": f"d-{API_KEY}", "debug": {"request": url, "headers": [f"Authorization: Bearer {API_KEY}"]}}
    return json.dumps({"inference_id": "i-1", "debug_request": f"POST {url}", "image": {"width": 96, "height": 72},
                       "predictions": [detection]}).encode()


# -- Hypothesis: more hostile documents ----------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
HOSTILE_NUMBERS = (
    st.floats() | st.integers() | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 57.0, 2**63, 10**30])
    | st.booleans() | st.none() | st.text(max_size=3) | st.lists(st.floats(), max_size=2)
)
NUMBER = FINITE | HOSTILE_NUMBERS


@st.composite
def hostile_documents(draw) -> Any:
    if draw(st.booleans()):  # a valid box with one or two values replaced: near the boundary
        detection = dict(GOOD_BOX)
        for key in draw(st.lists(st.sampled_from(["x", "y", "width", "height", "confidence"]), max_size=2)):
            detection[key] = draw(NUMBER | st.floats(-200, 300))
        return {"image": {"width": W, "height": H}, "predictions": [detection]}
    detection = {key: draw(NUMBER) for key in ("x", "y", "width", "height", "confidence")}
    detection["class"] = draw(st.text(max_size=4) | NUMBER)
    if draw(st.booleans()):
        detection["class_id"] = draw(st.integers(0, 5) | NUMBER)
    if draw(st.booleans()):
        detection["points"] = draw(st.lists(st.dictionaries(st.sampled_from("xy"), NUMBER), max_size=3) | NUMBER)
    document_ = {"image": {"width": draw(st.integers(1, 4000) | NUMBER), "height": draw(st.integers(1, 4000) | NUMBER)},
                 "predictions": draw(st.lists(st.just(detection) | NUMBER, max_size=3))}
    if draw(st.booleans()):
        document_["extra"] = draw(st.lists(NUMBER, max_size=3))
    return document_


#: A good answer and a good box, for the images around the hostile ones.
GOOD = text(document())


def entries() -> list[Entry]:
    """One entry per hostile answer, then two odd but good ones."""
    made = [Entry(f"answer-{case.replace('_', '-')}", "predictions", functools.partial(lambda raw: raw, raw),
                  expect(fails("inference", reason))) for case, (raw, reason) in HOSTILE.items()]
    made.append(Entry("answer-echoing-the-api-key", "predictions", functools.partial(echoing_answer, b""),
                      expect(ACCEPTED), notes="accepted, the key masked where the prediction enters",
                      extra={"secret": API_KEY}))
    made.append(Entry("answer-with-unknown-fields", "predictions",
                      lambda: text(document(debug={"trace": [1, 2, {"deep": None}]}, inference_id="i-9", time=0.01)),
                      expect(ACCEPTED)))
    return made
