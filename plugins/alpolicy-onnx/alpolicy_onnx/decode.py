"""Pre- and post-processing for YOLO-family ONNX detectors, in plain NumPy (no torch).

The pipeline for one image is::

    tensor, ratio, pad = letterbox(image, (input_height, input_width))
    output = session.run(None, {"images": tensor[None]})[0]
    layout = detect_layout(output.shape)                 # "yolov8" or "yolov5"
    [detections] = decode(output, layout, 0.25, 0.45, ratio, pad, image.size, names=names)

Two raw output layouts are understood:

* ``"yolov8"`` (YOLOv8, YOLO11 and the shipped demo model): ``[batch, 4 + classes, anchors]``;
  per anchor ``cx, cy, w, h`` in input pixels, then one score per class (no objectness).
* ``"yolov5"``: ``[batch, anchors, 5 + classes]``; per anchor ``cx, cy, w, h``, objectness, then
  class probabilities; a detection's confidence is objectness x class probability.

Each anchor yields at most one detection, for its best class (as Ultralytics does by default).
Detections are plain dicts in the Roboflow inference shape used across alpolicy
(:mod:`alpolicy.policy.prediction`): ``x``/``y`` box centre, ``width``, ``height`` in pixels of the
original image, ``confidence``, ``class``, ``class_id`` and a random ``detection_id``.

Conventions, chosen so that each argument is written as its source gives it:

* ``letterbox(image, size)``: ``size`` is ``(height, width)``, the ``H, W`` of the model's input
  shape ``[batch, 3, H, W]`` and the order of Ultralytics' ``imgsz`` metadata.
* ``decode(..., original_size=...)``: ``(width, height)``, as ``PIL.Image.Image.size`` gives it.
* ``pad`` is ``(left, top)`` in input pixels; ``ratio`` is input pixels per original pixel.

Thresholds: a detection is kept when ``confidence >= conf_threshold``; non-maximum suppression
removes a box when its IoU with a better box *of the same class* is strictly greater than
``iou_threshold`` (as ``torchvision.ops.nms`` does), so boxes exactly at the threshold are kept.
"""

from __future__ import annotations

import ast
import math
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "LETTERBOX_FILL",
    "Layout",
    "letterbox",
    "detect_layout",
    "decode",
    "nms",
    "class_names_from_metadata",
]

Layout = Literal["yolov8", "yolov5"]

#: Grey used for the letterbox padding, as Ultralytics does.
LETTERBOX_FILL = (114, 114, 114)

#: At most this many candidates (best scores first) enter non-maximum suppression per image.
MAX_NMS_CANDIDATES = 30000

_EXPECTED_LAYOUTS = (
    "expected YOLOv8/YOLO11 [batch, 4 + classes, anchors] or YOLOv5 [batch, anchors, 5 + classes]"
)


def letterbox(image: Image.Image, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize ``image`` into ``size`` = ``(height, width)`` keeping its aspect ratio, pad with grey.

    Returns ``(tensor, ratio, pad)``: ``tensor`` is float32 ``[3, height, width]`` RGB in 0..1
    (add the batch axis with ``tensor[None]``), ``ratio`` the scale applied (input pixels per
    original pixel), ``pad`` the ``(left, top)`` padding in input pixels. The image is centred as in
    Ultralytics' ``LetterBox`` (the odd pixel of padding goes right/bottom) and the padding is
    grey 114. Resizing is Pillow's bilinear filter, antialiased when shrinking (Ultralytics uses
    OpenCV's, which is not; scores of real YOLO exports barely differ). Any image mode is
    converted to RGB; EXIF orientation is not applied here (that is the caller's job).
    """
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"letterbox size must be positive (height, width), got {tuple(size)}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError(f"cannot letterbox an empty image of size {image.size}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    ratio = min(out_h / height, out_w / width)
    new_w = max(1, min(out_w, int(round(width * ratio))))
    new_h = max(1, min(out_h, int(round(height * ratio))))
    dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (out_w, out_h), LETTERBOX_FILL)
    canvas.paste(image, (left, top))
    array = np.asarray(canvas, dtype=np.float32)
    tensor = np.ascontiguousarray(array.transpose(2, 0, 1))
    tensor *= np.float32(1.0 / 255.0)
    return tensor, float(ratio), (float(left), float(top))


def _dim(value: Any) -> int | None:
    """A known, positive dimension as an int; ``None`` for symbolic/unknown ones (``'batch'``, ``None``, -1)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def detect_layout(shape: Sequence[Any]) -> Layout:
    """Tell a YOLOv8/YOLO11 output from a YOLOv5 one by its shape.

    ``shape`` is an output array's shape, or an ONNX Runtime output shape in which symbolic
    dimensions appear as strings or ``None``. The anchors dimension is the large one:
    ``[batch, 4 + classes, anchors]`` with ``anchors > 4 + classes`` is ``"yolov8"``,
    ``[batch, anchors, 5 + classes]`` with ``anchors > 5 + classes`` is ``"yolov5"``. When only one
    of the last two dimensions is known, the unknown one is taken as the anchors. Anything else
    (another rank, equal dimensions, too few channels) raises ``ValueError``.
    """
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"cannot tell the output layout from shape {shape!r}; {_EXPECTED_LAYOUTS}") from None
    if len(dims) != 3:
        raise ValueError(
            f"cannot tell the output layout from a rank-{len(dims)} output of shape {list(dims)}; {_EXPECTED_LAYOUTS}"
        )
    d1, d2 = _dim(dims[1]), _dim(dims[2])
    if d1 is not None and d2 is not None:
        if d2 > d1 and d1 >= 5:
            return "yolov8"
        if d1 > d2 and d2 >= 6:
            return "yolov5"
    elif d1 is not None and d1 >= 5:  # [batch, channels, 'anchors']
        return "yolov8"
    elif d2 is not None and d2 >= 6:  # [batch, 'anchors', channels]
        return "yolov5"
    raise ValueError(f"ambiguous or unsupported output shape {list(dims)}; {_EXPECTED_LAYOUTS}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, class_ids: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression; returns the indices kept, best score first.

    ``boxes`` is ``[n, 4]`` x1, y1, x2, y2. A box is removed when its IoU with a kept, better box
    is strictly greater than ``iou_threshold``. With ``class_ids``, boxes of different classes never
    suppress each other: each box is shifted by ``class_id x span`` (span exceeding every
    coordinate), so boxes of different classes cannot overlap (the usual batched-NMS trick).
    Computed in float64, so IoUs of exactly representable boxes compare exactly.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if class_ids is not None:
        class_ids = np.asarray(class_ids).reshape(-1)
        lo = float(boxes.min())
        span = float(boxes.max()) - lo + 1.0
        boxes = boxes + (class_ids.astype(np.float64) * span)[:, None]
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if not rest.size:
            break
        iw = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0.0)
        ih = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0.0)
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, inter / union, 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _per_item(value: Any, batch: int, is_single: Any, what: str) -> list[Any]:
    if is_single(value):
        return [value] * batch
    values = list(value)
    if len(values) != batch:
        raise ValueError(f"{what} has {len(values)} entries for a batch of {batch}")
    return values


def decode(
    output: np.ndarray,
    layout: Layout,
    conf_threshold: float,
    iou_threshold: float,
    ratio: float | Sequence[float],
    pad: tuple[float, float] | Sequence[tuple[float, float]],
    original_size: tuple[int, int] | Sequence[tuple[int, int]],
    max_detections: int = 300,
    names: Sequence[str] | None = None,
) -> list[list[dict[str, Any]]]:
    """Turn a raw YOLO output into detections, one list per batch item (best confidence first).

    ``output`` is the model's output array (``[batch, 4 + classes, anchors]`` for ``"yolov8"``,
    ``[batch, anchors, 5 + classes]`` for ``"yolov5"``). ``ratio`` and ``pad`` come from
    :func:`letterbox`; ``original_size`` is the original image's ``(width, height)``. Each of
    these three may instead be a sequence with one value per batch item. ``names[class_id]`` is
    a detection's ``class``; without ``names`` the class id is written as a string.

    Steps: keep anchors whose best class score (YOLOv5: objectness x class probability) is
    ``>= conf_threshold``; per-class NMS (:func:`nms`); keep the ``max_detections`` best; undo the
    padding and the scale; clip to the image; drop boxes left with no area.
    """
    output = np.asarray(output)
    if layout not in ("yolov8", "yolov5"):
        raise ValueError(f"unknown layout {layout!r}; expected 'yolov8' or 'yolov5'")
    if output.ndim != 3:
        raise ValueError(f"cannot decode a rank-{output.ndim} output of shape {list(output.shape)}; {_EXPECTED_LAYOUTS}")
    channels = output.shape[1] if layout == "yolov8" else output.shape[2]
    num_classes = channels - (4 if layout == "yolov8" else 5)
    if num_classes < 1:
        raise ValueError(
            f"output of shape {list(output.shape)} has no class scores for layout {layout!r}; {_EXPECTED_LAYOUTS}"
        )
    if names is not None and len(names) != num_classes:
        raise ValueError(f"the model outputs {num_classes} classes but {len(names)} class names were given")
    ratios, pads, sizes = per_item_geometry(output.shape[0], ratio, pad, original_size)
    results: list[list[dict[str, Any]]] = []
    for item in range(output.shape[0]):
        rows = output[item].T if layout == "yolov8" else output[item]
        found = select_candidates(rows, layout, num_classes, conf_threshold, iou_threshold, max_detections)
        mapped = scale_boxes(found.boxes, ratios[item], pads[item], sizes[item])
        results.append(make_detections(mapped, found.confidences, found.class_ids, names))
    return results


def per_item_geometry(batch: int, ratio: Any, pad: Any, original_size: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """``ratio``, ``pad`` and ``original_size`` as one value per batch item (each may be given once for all)."""
    ratios = _per_item(ratio, batch, lambda v: isinstance(v, (int, float, np.number)), "ratio")
    pads = _per_item(pad, batch, lambda v: len(v) == 2 and isinstance(v[0], (int, float, np.number)), "pad")
    sizes = _per_item(original_size, batch, lambda v: len(v) == 2 and isinstance(v[0], (int, float, np.number)),
                      "original_size")
    return ratios, pads, sizes


@dataclass
class Candidates:
    """The boxes that survive the confidence threshold and NMS, best first.

    ``anchors`` are their row indices in the output, so that a task decoder reads the rest of the
    row (mask coefficients, keypoints) for exactly the boxes kept."""

    boxes: np.ndarray  # [n, 4] x1, y1, x2, y2 in input pixels (float64)
    confidences: np.ndarray  # [n] float64
    class_ids: np.ndarray  # [n] int
    anchors: np.ndarray  # [n] int: row index in ``rows``


def select_candidates(rows: np.ndarray, layout: Layout, num_classes: int, conf_threshold: float,
                      iou_threshold: float, max_detections: int) -> Candidates:
    """Threshold, NMS and ``max_detections`` over one image's ``rows`` ``[anchors, channels]``.

    The class scores are the ``num_classes`` channels after the box (YOLOv5: after the objectness,
    multiplied by it); channels after them (mask coefficients, keypoints) are left to the caller."""
    if layout == "yolov8":
        class_scores = rows[:, 4:4 + num_classes]
    else:
        class_scores = rows[:, 5:5 + num_classes] * rows[:, 4:5]
    class_ids = np.argmax(class_scores, axis=1) if rows.shape[0] else np.zeros(0, dtype=np.int64)
    confidences = class_scores[np.arange(rows.shape[0]), class_ids]
    selected = np.flatnonzero((confidences >= conf_threshold) & np.isfinite(rows[:, :4]).all(axis=1))
    if selected.size > MAX_NMS_CANDIDATES:
        selected = selected[np.argsort(-confidences[selected], kind="stable")[:MAX_NMS_CANDIDATES]]
    xywh = rows[selected, :4].astype(np.float64)
    confidences = confidences[selected].astype(np.float64)
    class_ids = class_ids[selected]
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    keep = nms(boxes, confidences, iou_threshold, class_ids)[: max(0, int(max_detections))]
    return Candidates(boxes[keep], confidences[keep], class_ids[keep], selected[keep])


def _check_ratio(ratio: float) -> None:
    if ratio <= 0 or not math.isfinite(ratio):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}")


def scale_boxes(boxes: np.ndarray, ratio: float, pad: tuple[float, float], original_size: tuple[int, int]) -> np.ndarray:
    """Boxes ``[n, 4]`` x1, y1, x2, y2 from input pixels to the original image's, clipped to it."""
    _check_ratio(ratio)
    width, height = float(original_size[0]), float(original_size[1])
    mapped = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    mapped[:, [0, 2]] = np.clip((mapped[:, [0, 2]] - float(pad[0])) / ratio, 0.0, width)
    mapped[:, [1, 3]] = np.clip((mapped[:, [1, 3]] - float(pad[1])) / ratio, 0.0, height)
    return mapped


def scale_points(xy: np.ndarray, ratio: float, pad: tuple[float, float], original_size: tuple[int, int]) -> np.ndarray:
    """Points ``[..., 2]`` from input pixels to the original image's, clipped to it (as boxes are)."""
    _check_ratio(ratio)
    mapped = np.array(xy, dtype=np.float64)
    mapped[..., 0] = np.clip((mapped[..., 0] - float(pad[0])) / ratio, 0.0, float(original_size[0]))
    mapped[..., 1] = np.clip((mapped[..., 1] - float(pad[1])) / ratio, 0.0, float(original_size[1]))
    return mapped


def has_area(mapped: np.ndarray) -> np.ndarray:
    """Which mapped boxes keep an area after clipping (a box wholly in the padding has none)."""
    mapped = np.asarray(mapped).reshape(-1, 4)
    return (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])


def make_detections(mapped: np.ndarray, confidences: np.ndarray, class_ids: np.ndarray,
                    names: Sequence[str] | None,
                    extras: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Detections in the Roboflow shape from boxes already in original pixels; boxes without area
    are dropped. ``extras[i]`` (a polygon's ``points``, a pose's ``keypoints``) joins detection ``i``."""
    detections: list[dict[str, Any]] = []
    rows = zip(mapped.tolist(), confidences.tolist(), class_ids.tolist())
    for index, ((x1, y1, x2, y2), confidence, class_id) in enumerate(rows):
        if x2 <= x1 or y2 <= y1:
            continue
        class_id = int(class_id)
        detection = {
            "x": (x1 + x2) / 2,
            "y": (y1 + y2) / 2,
            "width": x2 - x1,
            "height": y2 - y1,
            "confidence": float(confidence),
            "class": names[class_id] if names is not None else str(class_id),
            "class_id": class_id,
            "detection_id": str(uuid.uuid4()),
        }
        if extras is not None:
            detection.update(extras[index])
        detections.append(detection)
    return detections


#: Longest ``names`` metadata value parsed (a model with 10 000 long class names stays well below).
_MAX_NAMES_LENGTH = 1_000_000


def class_names_from_metadata(metadata: Mapping[str, str] | None) -> list[str] | None:
    """Class names from an Ultralytics export's ``names`` metadata, or ``None`` when there is none.

    Ultralytics writes ``names`` as a Python dict literal, ``"{0: 'person', 1: 'bicycle'}"``; a
    list literal (``"['person', 'bicycle']"``) and string keys (``"{'0': 'person'}"``, as JSON
    gives) are accepted too. The value is parsed with :func:`ast.literal_eval`, which only reads
    literals and never runs code. Keys must be the ids ``0..n-1`` and values non-empty strings;
    anything else raises ``ValueError``.
    """
    if not metadata or "names" not in metadata:
        return None
    text = metadata["names"]
    if not isinstance(text, str):
        raise ValueError(f"model metadata 'names' must be a string, not {type(text).__name__}")
    if len(text) > _MAX_NAMES_LENGTH:
        raise ValueError(f"model metadata 'names' is too long ({len(text)} characters)")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        preview = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(
            f"model metadata 'names' is not a dict literal like \"{{0: 'person'}}\": {preview!r}"
        ) from None
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not value:
        raise ValueError(f"model metadata 'names' must be a non-empty dict of class id to name, got {type(value).__name__}")
    by_id: dict[int, str] = {}
    for key, name in value.items():
        if isinstance(key, bool):
            raise ValueError(f"model metadata 'names' has a non-integer class id {key!r}")
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        if not isinstance(key, int) or key < 0:
            raise ValueError(f"model metadata 'names' has an invalid class id {key!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"model metadata 'names' has an invalid name {name!r} for class {key}")
        if key in by_id:
            raise ValueError(f"model metadata 'names' repeats class id {key}")
        by_id[key] = name
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"model metadata 'names' class ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]
