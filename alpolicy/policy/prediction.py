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

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypedDict

from ..io.jsonsafe import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, JsonError, check_tree, is_finite_number, loads
from ..io.secrets import redact_value, secret_finder

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
_NUMBER_KEYS = ("x", "y", "width", "height", "confidence")
_KNOWN_DETECTION_KEYS = frozenset({*_REQUIRED_DETECTION_KEYS, "class_id", "detection_id"})
_OWN_KEYS = frozenset({"image", "predictions", "model_id"})
_INT_LIMIT = 1 << 64  # the integers JSON tools can hold (as :func:`alpolicy.io.jsonsafe.check_tree`)
#: Number types taken without a closer look (the fast path of the type check).
_PLAIN_NUMBERS = frozenset({int, float})

#: Most detections one prediction may hold (a response with more is refused, not truncated):
#: Roboflow caps at 300 by default, YOLO exports at 300; 10,000 leaves room for crowd models.
MAX_DETECTIONS = 10_000
#: Largest image side a prediction may claim (PNG's limit); beyond it a size is garbage.
MAX_IMAGE_SIDE = 2**31 - 1


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
    #: True once :meth:`validated` (or ``from_json(check=True)``) has checked every value.
    checked: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def from_json(cls, document: Mapping[str, Any], *, check: bool = True,
                  max_detections: int | None = MAX_DETECTIONS) -> "Prediction":
        """Read the Roboflow inference JSON (``{"image": {...}, "predictions": [...]}``).

        ``check`` validates everything once, where a prediction enters (see :meth:`validated`),
        so that rules can index and compare detections without guarding; it is for what comes
        from outside (a model's response, a file). ``check=False`` is for what alpolicy checked
        itself before (the policy engine's input, tests' dicts): only the shape is read.
        """
        if type(document) is not dict:  # a parsed JSON object skips both checks (this runs once per image)
            if isinstance(document, Prediction):
                return document
            if not isinstance(document, Mapping):
                raise PredictionFormatError(f"a prediction must be a JSON object, not {type(document).__name__}")
        image = document.get("image")
        if check:
            width, height = _image_size(image)
        else:
            try:
                width, height = image["width"], image["height"]  # type: ignore[index]
                if type(width) is not int or type(height) is not int:  # int() only when needed (hot path)
                    width, height = int(width), int(height)
            except (TypeError, KeyError, ValueError, OverflowError):
                raise PredictionFormatError('a prediction needs "image": {"width": W, "height": H}') from None
        detections = document.get("predictions", [])
        if type(detections) is not list:
            raise PredictionFormatError('"predictions" must be a list of detections')
        # Only the common two keys? Skip building `extra` (this runs once per image).
        extra = (
            {k: v for k, v in document.items() if k not in _OWN_KEYS} if len(document) > 2 else {}
        )
        prediction = cls(width, height, detections, document.get("model_id"), extra)
        return prediction._checked(max_detections) if check else prediction

    def validated(self, *, max_detections: int | None = MAX_DETECTIONS) -> "Prediction":
        """This prediction, its values checked and its strings cleared of registered secrets.

        The one validator every prediction from outside passes (:meth:`from_json` with ``check``;
        a backend that builds a :class:`Prediction` itself calls it, and the pipeline calls it on
        whatever a third-party backend returns). Each problem raises
        :class:`PredictionFormatError` naming its place, e.g. ``predictions[3].confidence: 57.0
        is outside 0..1``:

        * ``width``/``height``: integers (``640.0`` is read as 640; ``true``, ``640.5``, ``NaN``
          are refused) in ``1..2**31-1``;
        * at most ``max_detections`` detections (``None``: no bound); each an object with
          ``x``, ``y``, ``width``, ``height``, ``confidence`` numbers (not booleans) and a
          ``class`` string; ``class_id`` an integer and ``detection_id`` a string or integer
          when present; ``confidence`` in 0..1; ``width``/``height`` >= 0;
        * boxes may overshoot the image, by up to one image size beyond each edge (a box's
          corners within ``-W..2W`` x ``-H..2H``): models emit boxes a little outside, which are
          kept as they are (predictions round-trip unchanged); anything farther is garbage and
          refused. These bounds also refuse ``NaN`` and infinities;
        * ``points``/``keypoints`` (segmentation, pose) lists when present; these, other fields
          of a detection and the prediction's extra fields must be JSON-safe
          (:func:`alpolicy.io.jsonsafe.check_tree`: finite numbers, nesting within 64 levels).

        Registered secrets (:mod:`alpolicy.io.secrets`) are masked in every string kept: a server
        echoing the request (``"debug_request": "...?api_key=..."``) would otherwise have its
        key stored in the journal, the decisions log and the pre-labels. The detections are only
        copied when a string in them changes.
        """
        if self.checked:
            return self
        self.width, self.height = _image_size({"width": self.width, "height": self.height})
        return self._checked(max_detections)

    def _checked(self, max_detections: int | None) -> "Prediction":
        """:meth:`validated` once the image size is known to be good."""
        if self.model_id is not None and type(self.model_id) is not str:
            raise PredictionFormatError(f"model_id must be a string, not {_show(self.model_id)}")
        self.detections = _checked_detections(self.detections, self.width, self.height, max_detections)
        if self.extra:
            try:
                if check_tree(self.extra, "extra", max_depth=DEFAULT_MAX_DEPTH, find=secret_finder()):
                    self.extra = redact_value(self.extra)
            except JsonError as error:
                raise PredictionFormatError(str(error)) from None
        self.checked = True
        return self

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


def parse_prediction(data: bytes | str, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                     max_detections: int | None = MAX_DETECTIONS) -> Prediction:
    """A prediction from the raw JSON a model or a file gave: :func:`alpolicy.io.jsonsafe.loads`
    (size bound, no crash on deep nesting or a 5000-digit number), then :meth:`Prediction.from_json`
    with every check. ``NaN``, ``Infinity`` and ``1e400`` pass the parse so that the validator
    refuses them with their place (``predictions[2].x: nan is not a finite number``), which the
    parser cannot name. Any problem is one :class:`PredictionFormatError` line."""
    try:
        document = loads(data, max_bytes=max_bytes, finite=False)
    except JsonError as error:
        raise PredictionFormatError(str(error)) from None
    return Prediction.from_json(document, check=True, max_detections=max_detections)


def _image_size(image: Any) -> tuple[int, int]:
    if type(image) is not dict and not isinstance(image, Mapping):
        raise PredictionFormatError('a prediction needs "image": {"width": W, "height": H}')
    sides = []
    for key in ("width", "height"):
        if key not in image:
            raise PredictionFormatError('a prediction needs "image": {"width": W, "height": H}')
        value = image[key]
        kind = type(value)
        if kind is int and 0 < value <= MAX_IMAGE_SIDE:
            sides.append(value)
            continue
        if kind is bool or not isinstance(value, (int, float)):
            raise PredictionFormatError(f"image.{key} must be a whole number of pixels, not {_show(value)}")
        if not is_finite_number(value):
            raise PredictionFormatError(f"image.{key}: {_show(value)} is not a finite number")
        if isinstance(value, float) and not value.is_integer():
            raise PredictionFormatError(f"image.{key}: {_show(value)} is not a whole number of pixels")
        if value <= 0:
            raise PredictionFormatError(f"image.{key}: {_show(value)} is not a positive number of pixels")
        if value > MAX_IMAGE_SIDE:
            raise PredictionFormatError(f"image.{key}: {_show(value)} is more than {MAX_IMAGE_SIDE:,} pixels")
        sides.append(int(value))
    return sides[0], sides[1]


def _checked_detections(detections: Any, width: int, height: int, limit: int | None) -> list[Detection]:
    """The detections, validated (see :meth:`Prediction.validated`); a new list only when a
    string had to be redacted. One tight loop: this runs on every detection of every image."""
    if type(detections) is not list:
        raise PredictionFormatError('"predictions" must be a list of detections')
    if limit is not None and len(detections) > limit:
        raise PredictionFormatError(
            f"{len(detections):,} detections, above the limit of {limit:,} (max_detections)"
        )
    find = secret_finder()
    numbers = _PLAIN_NUMBERS
    low_x, high_x, span_x = -width, 2 * width, 3 * width
    low_y, high_y, span_y = -height, 2 * height, 3 * height
    result = detections
    for index, detection in enumerate(detections):
        if type(detection) is not dict and not isinstance(detection, Mapping):
            raise PredictionFormatError(f"predictions[{index}] must be an object, not {_show(detection)}")
        try:
            x, y, w, h = detection["x"], detection["y"], detection["width"], detection["height"]
            c, name = detection["confidence"], detection["class"]
        except KeyError:
            missing = [key for key in _REQUIRED_DETECTION_KEYS if key not in detection]
            raise PredictionFormatError(f"predictions[{index}] lacks {', '.join(missing)}") from None
        if not (type(x) in numbers and type(y) in numbers and type(w) in numbers and type(h) in numbers
                and type(c) in numbers):
            _check_number_types(index, detection)
        # Written so that NaN fails every comparison: these bounds refuse it and infinities too
        # (and a 400-digit integer, which cannot even be halved as a float).
        try:
            inside = (0.0 <= c <= 1.0 and 0.0 <= w <= span_x and 0.0 <= h <= span_y and low_x <= x - w / 2
                      and x + w / 2 <= high_x and low_y <= y - h / 2 and y + h / 2 <= high_y)
        except OverflowError:
            inside = False
        if not inside:
            raise PredictionFormatError(_number_problem(index, x, y, w, h, c, width, height))
        if type(name) is not str:
            raise PredictionFormatError(f"predictions[{index}].class must be a string, not {_show(name)}")
        class_id = detection.get("class_id", 0)
        if type(class_id) is not int or not -_INT_LIMIT < class_id < _INT_LIMIT:
            raise PredictionFormatError(f"predictions[{index}].class_id must be a 64-bit integer, not {_show(class_id)}")
        detection_id = detection.get("detection_id", "")
        if type(detection_id) is not str and (type(detection_id) is not int or not -_INT_LIMIT < detection_id < _INT_LIMIT):
            raise PredictionFormatError(f"predictions[{index}].detection_id must be a string, not {_show(detection_id)}")
        if len(detection) > 6 and not detection.keys() <= _KNOWN_DETECTION_KEYS:
            secret = _check_detection_extras(index, detection, find)
        else:
            secret = find is not None and (find(name) or type(detection_id) is str and find(detection_id))
        if secret:
            if result is detections:
                result = list(detections)
            result[index] = redact_value(dict(detection))
    return result


def _check_number_types(index: int, detection: Mapping[str, Any]) -> None:
    """The slow path of the type check: numpy's ``float64`` (a ``float``) passes, ``True`` does not."""
    for key in _NUMBER_KEYS:
        value = detection[key]
        if type(value) is bool or not isinstance(value, (int, float)):
            raise PredictionFormatError(f"predictions[{index}].{key} must be a number, not {_show(value)}")


def _check_detection_extras(index: int, detection: Mapping[str, Any], find: Callable[[str], object] | None) -> bool:
    """Fields beyond the eight known ones (segmentation ``points``, pose ``keypoints``, a
    tracker id...): JSON-safe, and ``points``/``keypoints`` lists. True when a string of the
    detection holds a registered secret."""
    secret = False
    for key, value in detection.items():
        if key in _KNOWN_DETECTION_KEYS:
            secret = secret or (find is not None and type(value) is str and bool(find(value)))
            continue
        if key in ("points", "keypoints") and type(value) is not list:
            raise PredictionFormatError(f"predictions[{index}].{key} must be a list, not {_show(value)}")
        try:
            secret = check_tree({key: value}, f"predictions[{index}]", max_depth=DEFAULT_MAX_DEPTH - 2, find=find) or secret
        except JsonError as error:
            raise PredictionFormatError(str(error)) from None
    return secret


def _number_problem(index: int, x: float, y: float, w: float, h: float, c: float, width: int, height: int) -> str:
    """Why a detection's numbers were refused (the slow path, for the message only)."""
    where = f"predictions[{index}]"
    for key, value in (("x", x), ("y", y), ("width", w), ("height", h), ("confidence", c)):
        if not is_finite_number(value):
            return f"{where}.{key}: {_show(value)} is not a finite number"
    if not 0.0 <= c <= 1.0:
        return f"{where}.confidence: {_show(c)} is outside 0..1"
    for key, size, side in (("width", w, width), ("height", h, height)):
        if size < 0:
            return f"{where}.{key}: {_show(size)} is negative"
        if size > 3 * side:
            return f"{where}.{key}: {_show(size)} is more than three times the image's {key} {side}"
    for key, centre, size, side, span in (("x", x, w, width, "width"), ("y", y, h, height, "height")):
        try:
            low, high = centre - size / 2, centre + size / 2
        except OverflowError:
            return f"{where}.{key}: {_show(centre)} is far outside the image"
        if not (-side <= low and high <= 2 * side):
            return (f"{where}.{key}: the box spans {low:g}..{high:g}, too far outside the image's {span} "
                    f"0..{side} (up to one image {span} beyond each edge is accepted)")
    return f"{where}: numbers out of range"  # pragma: no cover - every refused case is named above


def _show(value: Any) -> str:
    """A value for a message, cut short (a hostile value can be megabytes long)."""
    try:
        text = json.dumps(value, default=repr)  # as JSON spells it: true, NaN, Infinity, "car"
    except ValueError:  # an integer of more than 4300 digits
        return "a huge integer"
    except (TypeError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:39] + "…"


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
