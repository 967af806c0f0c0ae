"""Detection quality: average precision (AP) and mean average precision (mAP) at one IoU threshold.

Predictions and ground truths are given per image, as lists of dicts with the box keys of the
Roboflow inference shape (``x``/``y`` centre, ``width``, ``height``, ``class``; predictions also
``confidence``), as :func:`alpolicy_onnx.decode.decode` and :mod:`alpolicy_onnx.synthetic` give them.

Matching follows COCO/VOC: for each class, predictions from all images are taken by decreasing
confidence; a prediction is a true positive when its IoU with the best-overlapping ground truth
of that class in the same image that is *not yet matched* is ``>= iou``; otherwise it is a false
positive. Every ground-truth box counts (there are no "difficult" or "crowd" boxes).

Interpolation (``interpolation=``):

* ``"all-point"`` (default; PASCAL VOC 2010+): the area under the precision-recall curve after
  making precision monotonically non-increasing (each point's precision is the best precision at
  any higher recall).
* ``"101-point"`` (COCO): the mean of that interpolated precision sampled at recall 0, 0.01, ..., 1.

The mAP is the mean AP over the classes that have at least one ground-truth box (as COCO and
VOC do); a class with ground truth but no prediction has AP 0.

Masks: every function takes ``overlap=``, the IoU of one image's predictions and ground truths
of one class as an ``[n, m]`` array (default: :func:`box_iou` of their boxes). ``overlap=polygon_iou``
scores instance segmentation: the IoU of the ``points`` polygons (the Roboflow segmentation
shape, as :func:`alpolicy_onnx.synthetic.random_scene` ``(polygons=True)`` gives the ground truth),
so the mask mAP is the same matching with another overlap.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "Interpolation",
    "box_iou",
    "polygon_iou",
    "precision_recall",
    "interpolated_ap",
    "average_precision",
    "per_class_average_precision",
    "mean_average_precision",
]

Interpolation = Literal["all-point", "101-point"]

Box = Mapping[str, Any]
#: ``overlap(predictions, truths)`` -> ``[len(predictions), len(truths)]`` IoUs (one image, one class).
Overlap = Callable[[Sequence[Box], Sequence[Box]], np.ndarray]


def _xyxy(boxes: Sequence[Box]) -> np.ndarray:
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    arr = np.array([[b["x"], b["y"], b["width"], b["height"]] for b in boxes], dtype=np.float64)
    return np.stack([arr[:, 0] - arr[:, 2] / 2, arr[:, 1] - arr[:, 3] / 2,
                     arr[:, 0] + arr[:, 2] / 2, arr[:, 1] + arr[:, 3] / 2], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[n, 4]`` and ``[m, 4]`` x1, y1, x2, y2 boxes, as an ``[n, m]`` array."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _boxes_iou(predictions: Sequence[Box], truths: Sequence[Box]) -> np.ndarray:
    return box_iou(_xyxy(predictions), _xyxy(truths))


def polygon_iou(predictions: Sequence[Box], truths: Sequence[Box]) -> np.ndarray:
    """Pairwise IoU of the ``points`` polygons (``[{"x", "y"}, ...]``, pixels) of two lists of instances.

    Each polygon is filled (Pillow; pixel centres at integer coordinates + 0.5) over its own
    extent, and only pairs whose extents meet are intersected, so the cost follows the shapes'
    areas, not the image's. A missing or degenerate polygon has an empty mask and IoU 0.
    """
    result = np.zeros((len(predictions), len(truths)), dtype=np.float64)
    if not len(predictions) or not len(truths):
        return result
    a = [_fill(item) for item in predictions]
    b = [_fill(item) for item in truths]
    for i, (ax, ay, am) in enumerate(a):
        for j, (bx, by, bm) in enumerate(b):
            x0, y0 = max(ax, bx), max(ay, by)
            x1, y1 = min(ax + am.shape[1], bx + bm.shape[1]), min(ay + am.shape[0], by + bm.shape[0])
            union = int(am.sum()) + int(bm.sum())
            if x1 <= x0 or y1 <= y0 or union == 0:
                continue
            inter = int(np.count_nonzero(am[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & bm[y0 - by:y1 - by, x0 - bx:x1 - bx]))
            result[i, j] = inter / (union - inter)
    return result


def _fill(item: Box) -> tuple[int, int, np.ndarray]:
    """``(left, top, boolean mask)`` of an instance's ``points`` polygon over its own extent."""
    polygon = [(float(p["x"]), float(p["y"])) for p in item.get("points") or ()]
    if len(polygon) < 3:
        return 0, 0, np.zeros((0, 0), dtype=bool)
    xs, ys = [x for x, _ in polygon], [y for _, y in polygon]
    left, top = math.floor(min(xs)) - 1, math.floor(min(ys)) - 1
    width, height = math.ceil(max(xs)) + 2 - left, math.ceil(max(ys)) + 2 - top
    canvas = Image.new("1", (width, height))
    ImageDraw.Draw(canvas).polygon([(x - left, y - top) for x, y in polygon], fill=1)
    return left, top, np.asarray(canvas, dtype=bool)


def precision_recall(predictions: Sequence[Sequence[Box]], ground_truths: Sequence[Sequence[Box]],
                     class_name: str, iou: float = 0.5,
                     overlap: Overlap | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Precision and recall after each prediction of ``class_name`` (by decreasing confidence).

    Returns ``(precision, recall, number_of_ground_truth_boxes)``.
    """
    overlap = overlap or _boxes_iou
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} images of predictions but {len(ground_truths)} of ground truth")
    scored: list[tuple[float, int, int]] = []  # (confidence, image, index in that image's class predictions)
    class_truths: list[list[Box]] = []
    ious: list[np.ndarray] = []
    n_truth = 0
    for image, (preds, truths) in enumerate(zip(predictions, ground_truths)):
        mine = [p for p in preds if p["class"] == class_name]
        theirs = [t for t in truths if t["class"] == class_name]
        class_truths.append(theirs)
        ious.append(np.asarray(overlap(mine, theirs), dtype=np.float64).reshape(len(mine), len(theirs)))
        n_truth += len(theirs)
        scored.extend((float(p["confidence"]), image, k) for k, p in enumerate(mine))
    # stable order: by confidence, ties by image then index
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    matched = [np.zeros(len(t), dtype=bool) for t in class_truths]
    tp = np.zeros(len(scored), dtype=np.float64)
    for rank, (_, image, k) in enumerate(scored):
        if not len(class_truths[image]):
            continue
        overlaps = np.where(matched[image], -1.0, ious[image][k])
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou:
            matched[image][best] = True
            tp[rank] = 1.0
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(1.0 - tp)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1e-12)
    recall = tp_cum / n_truth if n_truth else np.zeros_like(tp_cum)
    return precision, recall, n_truth


def interpolated_ap(precision: np.ndarray, recall: np.ndarray, interpolation: Interpolation = "all-point") -> float:
    """AP from a precision-recall curve (recall non-decreasing), see the module docstring."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope
    if interpolation == "all-point":
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    if interpolation == "101-point":
        points = np.linspace(0.0, 1.0, 101)
        # the interpolated precision at recall r is the envelope at the first curve point with recall >= r
        idx = np.searchsorted(mrec[1:-1], points, side="left")
        values = np.where(idx < recall.size, mpre[1:-1][np.minimum(idx, recall.size - 1)], 0.0)
        return float(values.mean())
    raise ValueError(f"unknown interpolation {interpolation!r}; expected 'all-point' or '101-point'")


def average_precision(predictions: Sequence[Sequence[Box]], ground_truths: Sequence[Sequence[Box]],
                      class_name: str, iou: float = 0.5, interpolation: Interpolation = "all-point",
                      overlap: Overlap | None = None) -> float:
    """AP of one class at IoU ``iou``; ``nan`` when the class has no ground-truth box."""
    precision, recall, n_truth = precision_recall(predictions, ground_truths, class_name, iou, overlap)
    if n_truth == 0:
        return math.nan
    return interpolated_ap(precision, recall, interpolation)


def _classes(*groups: Iterable[Sequence[Box]]) -> list[str]:
    names: dict[str, None] = {}
    for group in groups:
        for boxes in group:
            for box in boxes:
                names.setdefault(box["class"], None)
    return list(names)


def per_class_average_precision(predictions: Sequence[Sequence[Box]], ground_truths: Sequence[Sequence[Box]],
                                iou: float = 0.5, interpolation: Interpolation = "all-point",
                                overlap: Overlap | None = None) -> dict[str, float]:
    """AP per class that has at least one ground-truth box."""
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} images of predictions but {len(ground_truths)} of ground truth")
    return {
        name: average_precision(predictions, ground_truths, name, iou, interpolation, overlap)
        for name in _classes(ground_truths)
    }


def mean_average_precision(predictions: Sequence[Sequence[Box]], ground_truths: Sequence[Sequence[Box]],
                           iou: float = 0.5, interpolation: Interpolation = "all-point",
                           overlap: Overlap | None = None) -> float:
    """mAP at IoU ``iou``: the mean AP over classes with ground truth (``nan`` when there is none)."""
    aps = per_class_average_precision(predictions, ground_truths, iou, interpolation, overlap)
    if not aps:
        return math.nan
    return float(np.mean(list(aps.values())))
