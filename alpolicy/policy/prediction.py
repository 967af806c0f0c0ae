"""The canonical prediction shape every backend produces and every rule reads.

A detection is a plain ``dict`` in the Roboflow inference JSON shape (centre ``x``/``y``, ``width``,
``height`` in pixels of the original image, ``confidence`` in 0..1, ``class``, ``class_id``,
``detection_id``). We keep dicts rather than wrapping each detection in an object because
(1) it is the format users already know and store, so predictions round-trip unchanged, and
(2) the policy hot loop then reads fields without converting anything: wrapping every detection
in a dataclass cost ~10x the whole decision in ``benchmarks/bench_policy.py``.
``Detection`` is a ``TypedDict`` so type checkers still see the fields.

Every task type Roboflow trains has its own shape, all Roboflow Inference's own (see
:data:`TASKS`): detections gain ``points`` (instance segmentation, a polygon) or ``keypoints``
(pose); a classifier answers class entries without boxes, single-label as a ``predictions`` list
plus ``top``/``confidence``, multi-label as a ``predictions`` object plus ``predicted_classes``.
A :class:`Prediction` knows its :attr:`~Prediction.task` (told from the shape, or by the backend
for an empty answer). For a classifier, :attr:`Prediction.detections` holds the *predicted*
classes as box-less entries (the top class; each predicted class of a multi-label model), so the
detection rules that only read ``class`` and ``confidence`` (``confidence``, ``classes``) and
witnesses work unchanged -- the same classes Roboflow Inference's samplers look at by default
(``only_top_classes``); :attr:`Prediction.class_scores` holds every class, best first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypedDict

from ..io.jsonsafe import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, JsonError, check_tree, is_finite_number, loads
from ..io.secrets import redact_value, secret_finder
from .geometry import rle_counts

#: Roboflow's names of the task types (its project types), as :attr:`Prediction.task` spells them.
OBJECT_DETECTION = "object-detection"
INSTANCE_SEGMENTATION = "instance-segmentation"
KEYPOINT_DETECTION = "keypoint-detection"
CLASSIFICATION = "classification"
MULTI_LABEL_CLASSIFICATION = "multi-label-classification"
TASKS = (OBJECT_DETECTION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, CLASSIFICATION, MULTI_LABEL_CLASSIFICATION)
#: Tasks whose detections are boxes (with a polygon or keypoints for the last two).
BOX_TASKS = frozenset({OBJECT_DETECTION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION})
CLASSIFICATION_TASKS = frozenset({CLASSIFICATION, MULTI_LABEL_CLASSIFICATION})

Point = TypedDict("Point", {"x": float, "y": float})
Keypoint = TypedDict(
    "Keypoint", {"x": float, "y": float, "confidence": float, "class_id": int, "class": str}, total=False
)
#: A classifier's verdict on one class (no box): what :attr:`Prediction.class_scores` holds.
ClassScore = TypedDict("ClassScore", {"class": str, "class_id": int, "confidence": float}, total=False)

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
        "points": list[Point],
        "keypoints": list[Keypoint],
    },
    total=False,
)

_REQUIRED_DETECTION_KEYS = ("x", "y", "width", "height", "confidence", "class")
_NUMBER_KEYS = ("x", "y", "width", "height", "confidence")
_KNOWN_DETECTION_KEYS = frozenset({*_REQUIRED_DETECTION_KEYS, "class_id", "detection_id"})
_OWN_KEYS = frozenset({"image", "predictions", "model_id", "task"})
#: A classifier's own top-level keys (single-label ``top``/``confidence``, multi-label ``predicted_classes``).
_CLASSIFICATION_KEYS = frozenset({"top", "confidence", "predicted_classes"})
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
    """One image's model output: its size, the model that produced it, its task and its
    detections (for a classifier, its predicted classes; see the module docstring)."""

    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    model_id: str | None = None
    #: Extra fields of the backend's response (``inference_id``, ``time``...), kept for the record.
    extra: dict[str, Any] = field(default_factory=dict)
    #: True once :meth:`validated` (or ``from_json(check=True)``) has checked every value.
    checked: bool = field(default=False, repr=False, compare=False)
    #: One of :data:`TASKS`: told from the shape by :meth:`from_json`, or set by the backend.
    task: str = OBJECT_DETECTION
    #: A classifier's every class, best first (empty for the box tasks).
    class_scores: list[ClassScore] = field(default_factory=list)

    @classmethod
    def from_json(cls, document: Mapping[str, Any], *, check: bool = True,
                  max_detections: int | None = MAX_DETECTIONS, task: str | None = None) -> "Prediction":
        """Read the Roboflow inference JSON (``{"image": {...}, "predictions": [...]}``) of any task.

        ``check`` validates everything once, where a prediction enters (see :meth:`validated`),
        so that rules can index and compare detections without guarding; it is for what comes
        from outside (a model's response, a file). ``check=False`` is for what alpolicy checked
        itself before (the policy engine's input, tests' dicts): only the shape is read.

        The task is told from the shape (:func:`task_of`); ``task`` is what the backend knows of
        its model: it names the task of an answer whose shape cannot tell (an empty list, boxes
        without their polygons), and an answer of the other family (classes where boxes are due,
        or the reverse) is refused.
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
        if (task is None and len(document) == 2 and type(detections) is list
                and (not detections or _plain_box(detections[0]))):
            # The common answer, boxes and nothing else: no task to tell, no extra fields (hot path).
            prediction = cls(width, height, detections, None, {})
            return prediction._checked(max_detections) if check else prediction
        shape_task = task_of(document)
        hint = task if task is not None else document.get("task")
        found = shape_task if hint is None else _resolve_task(
            shape_task, hint, not detections and shape_task == OBJECT_DETECTION)
        # Only the common two keys? Skip building `extra` (this runs once per image).
        own = _OWN_KEYS if found in BOX_TASKS else _OWN_KEYS | _CLASSIFICATION_KEYS
        extra = {k: v for k, v in document.items() if k not in own} if len(document) > 2 else {}
        if found in BOX_TASKS:
            if type(detections) is not list:
                raise PredictionFormatError('"predictions" must be a list of detections')
            prediction = cls(width, height, detections, document.get("model_id"), extra, task=found)
        else:
            scores, predicted = _read_classes(document, detections, found, check)
            prediction = cls(width, height, predicted, document.get("model_id"), extra, task=found,
                             class_scores=scores)
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
        if self.task not in TASKS:
            raise PredictionFormatError(f"task must be one of {', '.join(TASKS)}, not {_show(self.task)}")
        if self.task in BOX_TASKS:
            self.detections = _checked_detections(self.detections, self.width, self.height, max_detections)
        else:
            if not self.class_scores and self.detections:  # built in code with the predicted classes only
                self.class_scores = sorted(self.detections, key=_by_confidence)
            self.class_scores = _checked_class_scores(self.class_scores, "class_scores", max_detections)
            self.detections = _checked_class_scores(self.detections, "predicted", max_detections)
        if self.extra:
            try:
                if check_tree(self.extra, "extra", max_depth=DEFAULT_MAX_DEPTH, find=secret_finder()):
                    self.extra = redact_value(self.extra)
            except JsonError as error:
                raise PredictionFormatError(str(error)) from None
        self.checked = True
        return self

    def to_json(self) -> dict[str, Any]:
        """The Roboflow inference JSON for this prediction (what destinations store as pre-labels),
        in its task's shape; ``"task"`` is added only where the shape alone cannot tell it (an
        empty answer of a segmentation model), so that a stored prediction reads back the same."""
        document: dict[str, Any] = dict(self.extra)
        document["image"] = {"width": self.width, "height": self.height}
        task = self.task
        if task in BOX_TASKS:
            document["predictions"] = list(self.detections)
            if task != OBJECT_DETECTION and task_of(document) != task:
                document["task"] = task
        elif task == CLASSIFICATION:
            document["predictions"] = list(self.class_scores)
            top = self.detections[0] if self.detections else None
            if top is not None:
                document["top"] = top["class"]
                document["confidence"] = top["confidence"]
            elif not self.class_scores:
                document["task"] = task
        else:
            document["predictions"] = {
                entry["class"]: {k: v for k, v in entry.items() if k != "class"} for entry in self.class_scores
            }
            document["predicted_classes"] = [entry["class"] for entry in self.detections]
        if self.model_id is not None:
            document["model_id"] = self.model_id
        return document

    @property
    def is_classification(self) -> bool:
        """A classifier's answer: class entries, no boxes."""
        return self.task in CLASSIFICATION_TASKS

    @property
    def has_boxes(self) -> bool:
        """Detections with boxes (detection, segmentation, keypoints)."""
        return self.task in BOX_TASKS

    @property
    def top(self) -> str | None:
        """A single-label classifier's top class (``None`` for every other task, or no class)."""
        if self.task != CLASSIFICATION or not self.detections:
            return None
        return self.detections[0]["class"]

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


def task_of(document: Mapping[str, Any]) -> str:
    """The task a Roboflow inference document's shape shows (:data:`OBJECT_DETECTION` when it
    cannot tell: an empty list, boxes only). Reads the first entry only: a model answers one shape.
    Written for speed (it runs once per image): plain dicts and lists are tested by type first."""
    predictions = document.get("predictions")
    if type(predictions) is list:
        if "top" in document:
            return CLASSIFICATION
        if "predicted_classes" in document:
            return MULTI_LABEL_CLASSIFICATION
        if not predictions:
            return OBJECT_DETECTION
        first = predictions[0]
        if type(first) is not dict and not isinstance(first, Mapping):
            return OBJECT_DETECTION
        if "x" in first:
            if len(first) <= 8:  # the eight known keys at most: no polygon, no keypoints
                if "points" not in first and "keypoints" not in first and "rle" not in first:
                    return OBJECT_DETECTION
            if "points" in first or "rle" in first:
                return INSTANCE_SEGMENTATION
            if "keypoints" in first:
                return KEYPOINT_DETECTION
            return OBJECT_DETECTION
        if "points" in first or "rle" in first:
            return INSTANCE_SEGMENTATION
        if "keypoints" in first:
            return KEYPOINT_DETECTION
        if "class" in first and "width" not in first:
            return CLASSIFICATION
        return OBJECT_DETECTION
    if type(predictions) is dict or isinstance(predictions, Mapping):
        return MULTI_LABEL_CLASSIFICATION
    if "top" in document:
        return CLASSIFICATION
    if "predicted_classes" in document:
        return MULTI_LABEL_CLASSIFICATION
    return OBJECT_DETECTION


def _plain_box(first: Any) -> bool:
    """A detection of the eight known keys at most, none of them a mask or keypoints: a box."""
    return (type(first) is dict and "x" in first and len(first) <= 8
            and "points" not in first and "keypoints" not in first and "rle" not in first)


def _resolve_task(shape: str, hint: Any, empty: bool) -> str:
    """The task of a document whose shape shows ``shape``, its backend (or its ``"task"`` key)
    saying ``hint``: the hint names what the shape cannot tell (an ``empty`` answer; boxes
    without the polygons of a segmentation model); a richer shape than a detector's hint tells
    for itself; anything else that disagrees is refused."""
    if hint is None or hint == shape:
        return shape
    if hint not in TASKS:
        raise PredictionFormatError(f"task must be one of {', '.join(TASKS)}, not {_show(hint)}")
    if empty or (shape == OBJECT_DETECTION and hint in BOX_TASKS):
        return hint
    if hint == OBJECT_DETECTION and shape in BOX_TASKS:
        return shape
    raise PredictionFormatError(f"the model's task is {hint}, but the prediction has the shape of {shape}")


def _read_classes(document: Mapping[str, Any], predictions: Any, task: str,
                  check: bool) -> tuple[list[ClassScore], list[ClassScore]]:
    """``(class_scores, predicted)`` of a classifier's answer (see the module docstring)."""
    if task == MULTI_LABEL_CLASSIFICATION:
        if type(predictions) is not dict and not isinstance(predictions, Mapping):
            raise PredictionFormatError('a multi-label "predictions" must be an object {CLASS: {"confidence": C}}')
        scores = []
        for name, entry in predictions.items():
            if type(entry) is not dict and not isinstance(entry, Mapping):
                raise PredictionFormatError(f"predictions.{_key(name)} must be an object, not {_show(entry)}")
            if check and "confidence" not in entry:
                raise PredictionFormatError(f"predictions.{_key(name)} lacks confidence")
            scores.append({"class": name, **{k: v for k, v in entry.items() if k != "class"}})
        if check:
            scores = _checked_class_scores(scores, "predictions", None, by_name=True)
        scores.sort(key=_by_confidence)
        by_name = {entry["class"]: entry for entry in scores}
        named = document.get("predicted_classes")
        if named is None:  # Roboflow always answers it; without, what the model scored 0.5 or more
            return scores, [entry for entry in scores if entry.get("confidence", 0) >= 0.5]
        if type(named) is not list:
            raise PredictionFormatError(f"predicted_classes must be a list of class names, not {_show(named)}")
        predicted = []
        for index, name in enumerate(named):
            entry = by_name.get(name) if type(name) is str else None
            if entry is None:
                raise PredictionFormatError(f"predicted_classes[{index}]: {_show(name)} is not in predictions")
            predicted.append(entry)
        return scores, predicted
    if type(predictions) is not list:
        raise PredictionFormatError('a classification\'s "predictions" must be a list of {class, confidence}')
    scores = _checked_class_scores(predictions, "predictions", None) if check else list(predictions)
    scores.sort(key=_by_confidence)
    top = document.get("top")
    if top is None:
        return scores, scores[:1]
    if type(top) is not str:
        raise PredictionFormatError(f"top must be a class name, not {_show(top)}")
    for entry in scores:
        if entry.get("class") == top:
            return scores, [entry]
    if not scores:  # a top class and its confidence without the list: take them as the list
        confidence = document.get("confidence", 1.0)
        entry = {"class": top, "confidence": confidence}
        if check:
            entry = _checked_class_scores([entry], "top", None)[0]
        return [entry], [entry]
    raise PredictionFormatError(f"top: {_show(top)} is not among the predictions' classes")


def _by_confidence(entry: Mapping[str, Any]) -> float:
    value = entry.get("confidence", 0.0)
    return -value if type(value) in _PLAIN_NUMBERS else 0.0


def _key(name: Any) -> str:
    return name if type(name) is str and name.isidentifier() else _show(name)


def _checked_class_scores(entries: Any, where: str, limit: int | None, *, by_name: bool = False) -> list[ClassScore]:
    """A classifier's class entries, validated: ``class`` a string, ``confidence`` a number in
    0..1, ``class_id`` an integer when present; other fields JSON-safe. A new list only when a
    string had to be redacted (as :func:`_checked_detections`)."""
    if type(entries) is not list:
        raise PredictionFormatError(f"{where} must be a list of classes")
    if limit is not None and len(entries) > limit:
        raise PredictionFormatError(f"{len(entries):,} classes, above the limit of {limit:,} (max_detections)")
    find = secret_finder()
    result = entries
    for index, entry in enumerate(entries):
        place = f"{where}.{_key(entry.get('class'))}" if by_name and isinstance(entry, Mapping) else f"{where}[{index}]"
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise PredictionFormatError(f"{place} must be an object, not {_show(entry)}")
        name, confidence = entry.get("class"), entry.get("confidence")
        if type(name) is not str:
            raise PredictionFormatError(f"{place}.class must be a string, not {_show(name)}")
        if type(confidence) is bool or not isinstance(confidence, (int, float)):
            raise PredictionFormatError(f"{place}.confidence must be a number, not {_show(confidence)}")
        if not 0.0 <= confidence <= 1.0:
            why = "is not a finite number" if not is_finite_number(confidence) else "is outside 0..1"
            raise PredictionFormatError(f"{place}.confidence: {_show(confidence)} {why}")
        class_id = entry.get("class_id", 0)
        if type(class_id) is not int or not -_INT_LIMIT < class_id < _INT_LIMIT:
            raise PredictionFormatError(f"{place}.class_id must be a 64-bit integer, not {_show(class_id)}")
        try:
            secret = check_tree(entry, place, max_depth=DEFAULT_MAX_DEPTH - 2, find=find)
        except JsonError as error:
            raise PredictionFormatError(str(error)) from None
        if secret:
            if result is entries:
                result = list(entries)
            result[index] = redact_value(dict(entry))
    return result


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
            secret = _check_detection_extras(index, detection, find, width, height)
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


def _check_detection_extras(index: int, detection: Mapping[str, Any], find: Callable[[str], object] | None,
                            width: int, height: int) -> bool:
    """Fields beyond the eight known ones (segmentation ``points`` or ``rle``, pose ``keypoints``,
    a tracker id...): each point within the bounds a box has, keypoint confidences in 0..1, an
    RLE's size and counts, everything JSON-safe. True when a string of the detection holds a
    registered secret."""
    secret = False
    for key, value in detection.items():
        if key in _KNOWN_DETECTION_KEYS:
            secret = secret or (find is not None and type(value) is str and bool(find(value)))
            continue
        where = f"predictions[{index}].{key}"
        if key in ("points", "keypoints"):
            if type(value) is not list:
                raise PredictionFormatError(f"{where} must be a list, not {_show(value)}")
            _check_points(value, where, width, height, keypoints=key == "keypoints")
        elif key == "rle":
            _check_rle(value, where)
        try:
            secret = check_tree({key: value}, f"predictions[{index}]", max_depth=DEFAULT_MAX_DEPTH - 2, find=find) or secret
        except JsonError as error:
            raise PredictionFormatError(str(error)) from None
    return secret


def _check_points(points: list[Any], where: str, width: int, height: int, *, keypoints: bool) -> None:
    """A polygon's or a pose's points: ``x``/``y`` numbers within one image size beyond each edge
    (as boxes); a keypoint's ``confidence`` in 0..1 and ``class`` a string when present."""
    low_x, high_x, low_y, high_y = -width, 2 * width, -height, 2 * height
    for number, point in enumerate(points):
        place = f"{where}[{number}]"
        if type(point) is not dict and not isinstance(point, Mapping):
            raise PredictionFormatError(f"{place} must be an object {{x, y}}, not {_show(point)}")
        for key, low, high in (("x", low_x, high_x), ("y", low_y, high_y)):
            value = point.get(key)
            if type(value) is bool or not isinstance(value, (int, float)):
                raise PredictionFormatError(f"{place}.{key} must be a number, not {_show(value)}")
            try:
                inside = low <= value <= high
            except OverflowError:
                inside = False
            if not inside:
                why = "is not a finite number" if not is_finite_number(value) else "is too far outside the image"
                raise PredictionFormatError(f"{place}.{key}: {_show(value)} {why}")
        if not keypoints:
            continue
        confidence = point.get("confidence", 1.0)
        if type(confidence) is bool or not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
            raise PredictionFormatError(f"{place}.confidence: {_show(confidence)} is not a number in 0..1")
        name = point.get("class", "")
        if type(name) is not str:
            raise PredictionFormatError(f"{place}.class must be a string, not {_show(name)}")
        class_id = point.get("class_id", 0)
        if type(class_id) is not int or not -_INT_LIMIT < class_id < _INT_LIMIT:
            raise PredictionFormatError(f"{place}.class_id must be a 64-bit integer, not {_show(class_id)}")


def _check_rle(rle: Any, where: str) -> None:
    """A COCO run-length mask: ``size`` ``[height, width]`` and ``counts`` (a string, or a list of
    run lengths)."""
    if type(rle) is not dict and not isinstance(rle, Mapping):
        raise PredictionFormatError(f"{where} must be an object {{size, counts}}, not {_show(rle)}")
    size, counts = rle.get("size"), rle.get("counts")
    if (type(size) is not list or len(size) != 2
            or not all(type(side) is int and 0 < side <= MAX_IMAGE_SIDE for side in size)):
        raise PredictionFormatError(f"{where}.size must be [height, width] in pixels, not {_show(size)}")
    if type(counts) is list:
        if not all(type(run) is int and 0 <= run < _INT_LIMIT for run in counts):
            raise PredictionFormatError(f"{where}.counts must hold run lengths (whole numbers >= 0)")
    elif type(counts) is not str:
        raise PredictionFormatError(f"{where}.counts must be a string or a list of run lengths, not {_show(counts)}")
    else:
        try:
            rle_counts(counts)
        except ValueError as error:
            raise PredictionFormatError(f"{where}.counts: {error}") from None


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
