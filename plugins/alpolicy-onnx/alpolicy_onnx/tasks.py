"""Which task an ONNX export solves, and its raw outputs as Roboflow inference JSON.

Ultralytics exports of every task are understood (YOLOv8 / YOLO11; YOLOv5 for boxes and masks):

============================ ==================================================== =============================
Ultralytics ``task``         raw outputs                                          Roboflow task (``.task``)
============================ ==================================================== =============================
``detect``                   ``[B, 4 + nc, N]`` (YOLOv5: ``[B, N, 5 + nc]``)       ``object-detection``
``segment``                  ``[B, 4 + nc + nm, N]`` and protos ``[B, nm, h, w]``  ``instance-segmentation``
``pose``                     ``[B, 4 + nc + K * d, N]``, ``kpt_shape`` ``[K, d]``  ``keypoint-detection``
``classify``                 ``[B, nc]``                                          ``classification`` (or
                                                                                  ``multi-label-classification``)
============================ ==================================================== =============================

:func:`tell_task` reads the task from the export's metadata (Ultralytics writes ``task``, and
``kpt_shape`` for pose) and checks it against the output shapes; without metadata the shapes tell
(one rank-2 output: classify; a rank-3 output with rank-4 prototypes: segment; one rank-3 output:
detect; pose needs ``kpt_shape``). A contradiction or an unknown layout is a ``ValueError`` naming
the shapes, which the backend turns into one line naming the model file.

:class:`TaskDecoder` turns one image's outputs into its Roboflow document (see
:mod:`alpolicy.policy.prediction` for the shapes). Choices, documented where a user meets them:

* **Keypoint names** (``keypoints[].class``): Ultralytics' ``kpt_names`` metadata (names per
  object class) when present; else the 17 COCO names when ``kpt_shape`` is ``[17, 3]`` (or
  ``[17, 2]``); else the keypoint index as a string, ``"0"``, ``"1"``... Keypoint coordinates are
  un-letterboxed as boxes are and clipped to the image (as Ultralytics does). A keypoint's
  ``confidence`` is its visibility score; a ``kpt_shape`` of ``[K, 2]`` has none, and every keypoint
  gets 1.0. Keypoints below ``keypoint_confidence`` (default 0: keep all) are left out, as Roboflow
  Inference's ``keypoint_confidence`` does.
* **Classification scores**: Ultralytics classify exports end in a softmax. A model answering
  logits (a value outside 0..1, for the probe image at load time or for any image) gets the
  softmax (single-label) or a sigmoid per class (multi-label) applied here. Single-label lists
  every class best first and names the best one ``top`` whatever its confidence (as Roboflow
  answers; rules judge it); multi-label's ``predicted_classes`` are the classes whose confidence
  is ``>=`` the backend's confidence threshold, in class order.
* **Input of a classifier**: resize + centre crop (:func:`classify_input`), as Ultralytics'
  ``classify_transforms`` does for its exports, not the detectors' letterbox.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from .decode import (
    Layout,
    class_names_from_metadata,
    detect_layout,
    make_detections,
    scale_boxes,
    scale_points,
    select_candidates,
)
from .masks import MASK_THRESHOLD, mask_logits, mask_polygon

__all__ = [
    "OBJECT_DETECTION", "INSTANCE_SEGMENTATION", "KEYPOINT_DETECTION", "CLASSIFICATION",
    "MULTI_LABEL_CLASSIFICATION", "COCO_KEYPOINTS", "ModelTask", "TaskDecoder", "tell_task",
    "classify_input", "keypoint_names_from_metadata", "multi_label_from", "answers_logits",
]

# Roboflow's project-type names (alpolicy.policy.prediction.TASKS), spelled here so that this module
# reads without the foundation's constants.
OBJECT_DETECTION = "object-detection"
INSTANCE_SEGMENTATION = "instance-segmentation"
KEYPOINT_DETECTION = "keypoint-detection"
CLASSIFICATION = "classification"
MULTI_LABEL_CLASSIFICATION = "multi-label-classification"

#: Ultralytics' task key -> the Roboflow task (classification may become multi-label).
ROBOFLOW_TASKS = {"detect": OBJECT_DETECTION, "segment": INSTANCE_SEGMENTATION, "pose": KEYPOINT_DETECTION,
                  "classify": CLASSIFICATION}

#: Ultralytics' (and COCO's) names of the 17 person keypoints, in the model's order.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)

_LAYOUTS = {
    "detect": "[batch, 4 + classes, anchors] (YOLOv8/YOLO11) or [batch, anchors, 5 + classes] (YOLOv5)",
    "segment": "output0 [batch, 4 + classes + masks, anchors] and output1 prototypes [batch, masks, H/4, W/4]",
    "pose": "[batch, 4 + classes + keypoints x dims, anchors] with kpt_shape [keypoints, dims] in the metadata",
    "classify": "[batch, classes]",
}


@dataclass(frozen=True)
class ModelTask:
    """What :func:`tell_task` found: the task and how to read its outputs."""

    kind: str  # Ultralytics' task key: detect, segment, pose, classify
    task: str  # the Roboflow task name
    num_classes: int
    layout: Layout | None = None  # the box output's layout (None for classify)
    num_masks: int = 0
    kpt_shape: tuple[int, int] | None = None

    @property
    def is_classification(self) -> bool:
        return self.kind == "classify"


def _show(shapes: Sequence[Sequence[Any]]) -> str:
    return ", ".join(str([int(d) if isinstance(d, (int, np.integer)) else d for d in shape]) for shape in shapes)


def _literal(metadata: Mapping[str, str], key: str) -> Any:
    """A metadata value Ultralytics wrote with ``str()`` (a Python literal), or the raw text."""
    text = metadata.get(key)
    if text is None:
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def _kpt_shape(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    if "kpt_shape" not in metadata:
        return None
    value = _literal(metadata, "kpt_shape")
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(type(v) is int for v in value) or value[0] < 1 or value[1] not in (2, 3)):
        raise ValueError(f"metadata kpt_shape {metadata['kpt_shape']!r} is not [keypoints, 2 or 3]")
    return int(value[0]), int(value[1])


def tell_task(metadata: Mapping[str, str] | None, shapes: Sequence[Sequence[Any]]) -> ModelTask:
    """The model's task from its metadata's ``task`` (else from ``shapes``), checked against ``shapes``.

    ``shapes`` are the shapes of the model's outputs, in order (of a real run: every dimension
    known). Raises ``ValueError`` with the shapes for a contradiction or an unknown layout."""
    metadata = metadata or {}
    shapes = [tuple(int(d) for d in shape) for shape in shapes]
    args = _literal(metadata, "args")
    if _truthy(_literal(metadata, "end2end")) or (isinstance(args, dict) and _truthy(args.get("nms"))):
        raise ValueError(
            f"an end-to-end export (NMS inside the model; outputs {_show(shapes)}) is not supported: "
            "export it again with nms left unset (Ultralytics' default), so that the raw outputs come out"
        )
    kpt_shape = _kpt_shape(metadata)
    declared = metadata.get("task")
    if declared is not None:
        kind = str(declared).strip()
        if kind not in ROBOFLOW_TASKS:
            raise ValueError(f"the metadata names task {kind!r}, which is not supported "
                             f"(detect, segment, pose, classify); outputs {_show(shapes)}")
        source = f"the metadata says task {kind!r} but the outputs are {_show(shapes)}"
    else:
        kind = _kind_from_shapes(shapes, kpt_shape)
        source = f"outputs {_show(shapes)}"
    return _checked(kind, shapes, kpt_shape, source)


def _kind_from_shapes(shapes: list[tuple[int, ...]], kpt_shape: tuple[int, int] | None) -> str:
    ranks = [len(shape) for shape in shapes]
    if ranks[:1] == [2]:
        return "classify"
    if ranks[:2] == [3, 4]:
        return "segment"
    if ranks[:1] == [3]:
        return "pose" if kpt_shape is not None else "detect"
    expected = "; ".join(f"{kind}: {layout}" for kind, layout in _LAYOUTS.items())
    raise ValueError(f"cannot tell the task from outputs {_show(shapes)}; expected {expected}")


def _checked(kind: str, shapes: list[tuple[int, ...]], kpt_shape: tuple[int, int] | None, source: str) -> ModelTask:
    def wrong(why: str = "") -> ValueError:
        return ValueError(f"{source}{why}; a {kind} export has {_LAYOUTS[kind]}")

    first = shapes[0] if shapes else ()
    if kind == "classify":
        if len(first) != 2 or first[1] < 1:
            raise wrong()
        return ModelTask(kind, CLASSIFICATION, first[1])
    if len(first) != 3:
        raise wrong()
    try:
        layout = detect_layout(first)
    except ValueError:
        raise wrong() from None
    channels = first[1] if layout == "yolov8" else first[2]
    boxes = 4 if layout == "yolov8" else 5
    has_protos = len(shapes) >= 2 and len(shapes[1]) == 4
    if kind == "detect":
        if has_protos:
            raise wrong(" (mask prototypes: a segment export?)")
        return ModelTask(kind, OBJECT_DETECTION, channels - boxes, layout)
    if kind == "segment":
        if not has_protos:
            raise wrong(" (no mask prototypes)")
        num_masks = shapes[1][1]
        if channels - boxes - num_masks < 1:
            raise wrong(f" ({channels} channels leave no class scores beside {num_masks} mask coefficients)")
        return ModelTask(kind, INSTANCE_SEGMENTATION, channels - boxes - num_masks, layout, num_masks=num_masks)
    # pose
    if kpt_shape is None:
        raise wrong(" (no kpt_shape in the metadata)")
    if layout != "yolov8" or has_protos:
        raise wrong()
    values = kpt_shape[0] * kpt_shape[1]
    if channels - 4 - values < 1:
        raise wrong(f" ({channels} channels leave no class scores beside kpt_shape {list(kpt_shape)})")
    return ModelTask(kind, KEYPOINT_DETECTION, channels - 4 - values, layout, kpt_shape=kpt_shape)


def multi_label_from(metadata: Mapping[str, str] | None, option: Any) -> bool:
    """A classifier is multi-label when ``--model-opt multi_label=true`` says so, else when its
    metadata does (a ``multi_label`` key; Ultralytics writes none: its classifiers are single-label)."""
    if option is not None:
        return bool(option)
    return _truthy(_literal(metadata or {}, "multi_label"))


def keypoint_names_from_metadata(metadata: Mapping[str, str] | None, kpt_shape: tuple[int, int],
                                 num_classes: int) -> list[list[str]]:
    """The keypoint names of each object class (``names[class_id][keypoint]``).

    From Ultralytics' ``kpt_names`` metadata (``{0: ['nose', ...]}``, one list per class; a plain
    list is taken for every class); a class it does not name gets the COCO names for 17 keypoints,
    else ``"0"``, ``"1"``... A list of another length than ``kpt_shape`` is a ``ValueError``."""
    count = kpt_shape[0]
    default = list(COCO_KEYPOINTS) if count == len(COCO_KEYPOINTS) else [str(i) for i in range(count)]
    value = _literal(metadata or {}, "kpt_names")
    per_class: dict[int, Any] = {}
    if isinstance(value, (list, tuple)):
        per_class = {class_id: value for class_id in range(num_classes)}
    elif isinstance(value, dict):
        per_class = {int(k): v for k, v in value.items() if isinstance(k, int) or str(k).strip().isdigit()}
    elif value is not None:
        raise ValueError(f"metadata kpt_names is not a dict of class id to a list of names: {value!r:.80}")
    names: list[list[str]] = []
    for class_id in range(num_classes):
        given = per_class.get(class_id)
        if given is None:
            names.append(default)
            continue
        if not isinstance(given, (list, tuple)) or len(given) != count or not all(isinstance(n, str) and n for n in given):
            raise ValueError(f"metadata kpt_names for class {class_id} must list {count} names (kpt_shape {list(kpt_shape)})")
        names.append(list(given))
    return names


def classify_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A classifier's input ``[3, height, width]`` float32 RGB in 0..1: resize, then centre crop.

    As Ultralytics' ``classify_transforms`` (torchvision ``Resize`` + ``CenterCrop``, mean 0, std
    1): for a square input the shorter side is resized to the input size keeping the aspect (the
    longer side truncated to an int) and the centre cut out; a non-square input is resized to it
    exactly. Bilinear, antialiased when shrinking (Pillow, as torchvision on PIL images)."""
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"classifier input size must be positive (height, width), got {tuple(size)}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if out_h == out_w:
        short, long = min(width, height), max(width, height)
        new_short, new_long = out_h, int(out_h * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    else:
        new_w, new_h = out_w, out_h
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
    if (left, top, new_w, new_h) != (0, 0, out_w, out_h):
        image = image.crop((left, top, left + out_w, top + out_h))
    tensor = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
    tensor *= np.float32(1.0 / 255.0)
    return tensor


@dataclass
class TaskDecoder:
    """One model's outputs to Roboflow documents: the thresholds and names, fixed at load time."""

    model: ModelTask
    names: list[str]
    confidence: float
    iou: float
    input_size: tuple[int, int]  # (height, width)
    multi_label: bool = False
    keypoint_names: list[list[str]] = field(default_factory=list)
    keypoint_confidence: float = 0.0
    #: The classifier answers logits (seen at load time): always apply the activation.
    logits: bool = False
    max_candidates: int = 300

    @property
    def task(self) -> str:
        return MULTI_LABEL_CLASSIFICATION if self.model.is_classification and self.multi_label else self.model.task

    def settings(self) -> dict[str, Any]:
        """What changes this decoder's answers, for the backend's fingerprint."""
        settings: dict[str, Any] = {"task": self.task}
        if self.model.kind == "segment":
            settings.update(mask_threshold=MASK_THRESHOLD, polygon="largest-external-contour")
        elif self.model.kind == "pose":
            settings.update(kpt_shape=list(self.model.kpt_shape or ()), keypoint_names=self.keypoint_names,
                            keypoint_confidence=self.keypoint_confidence)
        elif self.model.is_classification:
            settings.update(multi_label=self.multi_label, logits=self.logits, input="resize+center-crop")
        return settings

    def decode(self, outputs: Sequence[np.ndarray], ratio: float, pad: tuple[float, float],
               original_size: tuple[int, int], item: int = 0) -> dict[str, Any]:
        """Batch item ``item`` of ``outputs`` (every output of one ``session.run``) as a Roboflow document."""
        width, height = int(original_size[0]), int(original_size[1])
        document: dict[str, Any] = {"image": {"width": width, "height": height}}
        if self.model.is_classification:
            document.update(self._classes(np.asarray(outputs[0])[item]))
            return document
        rows = np.asarray(outputs[0])[item]
        rows = rows.T if self.model.layout == "yolov8" else rows
        found = select_candidates(rows, self.model.layout or "yolov8", self.model.num_classes, self.confidence,
                                  self.iou, self.max_candidates)
        mapped = scale_boxes(found.boxes, ratio, pad, original_size)
        extras: list[dict[str, Any]] | None = None
        first = (4 if self.model.layout == "yolov8" else 5) + self.model.num_classes  # after the class scores
        if self.model.kind == "segment":
            protos = np.asarray(outputs[1])[item]
            extras = [{"points": self._points(protos, rows[anchor, first:first + self.model.num_masks], box, ratio, pad,
                                              original_size)} for anchor, box in zip(found.anchors.tolist(), mapped)]
        elif self.model.kind == "pose":
            extras = [{"keypoints": self._keypoints(rows[anchor, first:], int(class_id), ratio, pad, original_size)}
                      for anchor, class_id in zip(found.anchors.tolist(), found.class_ids.tolist())]
        document["predictions"] = make_detections(mapped, found.confidences, found.class_ids, self.names, extras)
        return document

    def _points(self, protos: np.ndarray, coefficients: np.ndarray, box: np.ndarray, ratio: float,
                pad: tuple[float, float], original_size: tuple[int, int]) -> list[dict[str, float]]:
        if not (box[2] > box[0] and box[3] > box[1]):
            return []  # dropped by make_detections anyway
        return mask_polygon(mask_logits(protos, coefficients), box, ratio, pad, self.input_size, original_size)

    def _keypoints(self, values: np.ndarray, class_id: int, ratio: float, pad: tuple[float, float],
                   original_size: tuple[int, int]) -> list[dict[str, Any]]:
        count, dims = self.model.kpt_shape or (0, 3)
        points = np.asarray(values[: count * dims], dtype=np.float64).reshape(count, dims)
        xy = scale_points(points[:, :2], ratio, pad, original_size)
        confidences = points[:, 2] if dims == 3 else np.ones(count)
        names = self.keypoint_names[class_id] if self.keypoint_names else [str(i) for i in range(count)]
        keypoints = []
        for index, ((x, y), confidence) in enumerate(zip(xy.tolist(), confidences.tolist())):
            if confidence < self.keypoint_confidence:
                continue
            keypoints.append({"x": x, "y": y, "confidence": float(confidence), "class_id": index, "class": names[index]})
        return keypoints

    def _classes(self, scores: np.ndarray) -> dict[str, Any]:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.logits or not ((scores >= 0.0) & (scores <= 1.0)).all():
            scores = _sigmoid(scores) if self.multi_label else _softmax(scores)
        values = [float(score) for score in scores.tolist()]
        if self.multi_label:
            return {
                "predictions": {name: {"confidence": score, "class_id": class_id}
                                for class_id, (name, score) in enumerate(zip(self.names, values))},
                "predicted_classes": [name for name, score in zip(self.names, values) if score >= self.confidence],
            }
        order = sorted(range(len(values)), key=lambda class_id: -values[class_id])  # stable: ties by class id
        ranked = [{"class": self.names[class_id], "class_id": class_id, "confidence": values[class_id]} for class_id in order]
        return {"predictions": ranked, "top": ranked[0]["class"], "confidence": ranked[0]["confidence"]}


def answers_logits(scores: np.ndarray) -> bool:
    """Whether a classifier's output holds a value outside 0..1 (so it cannot be probabilities)."""
    scores = np.asarray(scores, dtype=np.float64)
    return bool(np.isfinite(scores).all() and not ((scores >= 0.0) & (scores <= 1.0)).all())


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - np.max(values))
    return shifted / shifted.sum()


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))
