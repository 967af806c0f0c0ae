"""Ultralytics YOLO txt labels, one line per object, normalised to 0..1, and the ``data.yaml``
naming the classes by index (https://docs.ultralytics.com/datasets/):

* detection: ``class cx cy w h``;
* segmentation (``-seg``): ``class x1 y1 x2 y2 ...``, the polygon clipped to the image; a
  detection without a polygon (boxes only, or an RLE mask: no polygon to trace without a
  raster library) is written as its clipped box's four corners, as Ultralytics' own converters do;
* keypoints (``-pose``): ``class cx cy w h px1 py1 v1 ...``, every line with the dataset's ``K``
  keypoints (``kpt_shape: [K, 3]`` in ``data.yaml``; a class with fewer, or a keypoint the model
  did not answer, is padded with ``0 0 0``), ``v`` as in COCO
  (:data:`~alpolicy.formats.shapes.KEYPOINT_VISIBLE`); ``data.yaml`` also lists each class's
  ``kpt_names`` and, when the names pair up left/right, the ``flip_idx`` Ultralytics' flip
  augmentation needs (without it Ultralytics only turns that augmentation off).
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping, Sequence

from ..policy.prediction import INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, OBJECT_DETECTION, Detection, Prediction
from . import shapes
from .coco import box


def class_index(names: Sequence[str]) -> dict[str, int]:
    """Class name -> index; a name listed twice (in a user's ``data.yaml``) keeps its first index."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    return index


def label_lines(prediction: Prediction, class_index: Mapping[str, int], *, task: str | None = None,
                keypoints: int | None = None) -> list[str]:
    """One line per object, its shape clipped to the image first (as in COCO). ``task`` (the
    dataset's; by default the prediction's) picks the line format; ``keypoints`` is a pose
    dataset's ``K``."""
    width, height = prediction.width, prediction.height
    task = task or prediction.task
    lines = []
    for detection in prediction.detections:
        index = class_index[detection["class"]]
        if task == INSTANCE_SEGMENTATION:
            lines.append(f"{index} " + " ".join(f"{v:.6f}" for v in _polygon(detection, width, height)))
            continue
        x, y, w, h = box(detection, width, height)
        line = f"{index} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}"
        if task == KEYPOINT_DETECTION:
            for px, py, visible in shapes.keypoint_triplets(detection, keypoints or 0, width, height):
                line += f" {px / width:.6f} {py / height:.6f} {visible}"
        lines.append(line)
    return lines


def _polygon(detection: Detection, width: int, height: int) -> list[float]:
    """The normalised polygon of a segmentation line (the clipped box's corners without one)."""
    polygon = shapes.clip_polygon(detection["points"], width, height) if detection.get("points") else []
    if not polygon:
        x, y, w, h = box(detection, width, height)
        polygon = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    return [value / (width if i % 2 == 0 else height) for i, value in enumerate(shapes.flat(polygon))]


def labels_text(prediction: Prediction, class_index: Mapping[str, int], *, task: str | None = None,
                keypoints: int | None = None) -> str:
    """The ``labels/<stem>.txt`` file: the lines, each ending in a newline (empty: no object)."""
    lines = label_lines(prediction, class_index, task=task, keypoints=keypoints)
    return "\n".join(lines) + ("\n" if lines else "")


def prediction(lines: Iterable[str], names: Sequence[str], width: int, height: int, *,
               kpt_shape: Sequence[int] | None = None,
               kpt_names: Mapping[int, Sequence[str]] | None = None) -> Prediction:
    """The objects of a label file, in pixels of a ``width`` x ``height`` image. YOLO labels carry
    no confidence: 1.0, unless a sixth column of a box line (Ultralytics' ``save_conf``) gives one.

    ``kpt_shape`` (``data.yaml``'s ``[K, 2 or 3]``) reads pose lines, their keypoints named by
    ``kpt_names`` (class index -> names; else their index); otherwise a line of 7 fields or more
    is a polygon (its box the polygon's bounds)."""
    detections: list[Detection] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            index, values = int(fields[0]), [float(value) for value in fields[1:]]
        except ValueError:
            raise ValueError(f"line {number}: not numbers: {line!r}") from None
        if not 0 <= index < len(names):
            raise ValueError(f"line {number}: class {index} is not in names")
        detection: Detection
        if kpt_shape is not None:
            count, dims = kpt_shape
            if len(values) != 4 + count * dims:
                raise ValueError(f"line {number}: expected 'class cx cy w h' and {count} keypoints of {dims}, not {line!r}")
            detection = _box(values[:4], width, height, 1.0)
            labels = (kpt_names or {}).get(index) or []
            detection["keypoints"] = [
                {"x": values[4 + k * dims] * width, "y": values[5 + k * dims] * height, "confidence": 1.0,
                 "class_id": k, "class": labels[k] if k < len(labels) else str(k)}
                for k in range(count) if dims == 2 or values[6 + k * dims] > 0]
        elif len(values) in (4, 5):
            detection = _box(values[:4], width, height, values[4] if len(values) == 5 else 1.0)
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = [v * width for v in values[0::2]], [v * height for v in values[1::2]]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            detection = {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "width": x1 - x0, "height": y1 - y0,
                         "confidence": 1.0, "points": [{"x": x, "y": y} for x, y in zip(xs, ys)]}
        else:
            raise ValueError(f"line {number}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', not {line!r}")
        detection["class"] = names[index]
        detection["class_id"] = index
        detections.append(detection)
    if kpt_shape is not None:
        task = KEYPOINT_DETECTION
    else:
        task = INSTANCE_SEGMENTATION if any("points" in d for d in detections) else OBJECT_DETECTION
    return Prediction(width=width, height=height, detections=detections, task=task)


def _box(values: Sequence[float], width: int, height: int, confidence: float) -> Detection:
    cx, cy, w, h = values
    return {"x": cx * width, "y": cy * height, "width": w * width, "height": h * height, "confidence": confidence}


def names_lines(names: Sequence[str], *, ascii_only: bool = True) -> list[str]:
    """The ``names:`` block of a ``data.yaml``, one JSON-quoted name per index (JSON strings are
    YAML flow scalars). ``ascii_only=False`` keeps non-ASCII names as written (a user's file)."""
    return ["names:"] + [f"  {i}: {json.dumps(name, ensure_ascii=ascii_only)}" for i, name in enumerate(names)]


def keypoint_count(names: Sequence[str], keypoints: Mapping[str, Sequence[str]]) -> int:
    """A pose dataset's ``K``: the longest skeleton of its classes (one ``kpt_shape`` per dataset)."""
    return max((len(keypoints.get(name, [])) for name in names), default=0)


def pose_lines(names: Sequence[str], keypoints: Mapping[str, Sequence[str]]) -> list[str]:
    """The pose keys of a ``data.yaml``: ``kpt_shape``, ``flip_idx`` when the names tell it (of
    the first class with the full skeleton), ``kpt_names`` per class index."""
    count = keypoint_count(names, keypoints)
    lines = [f"kpt_shape: [{count}, 3]"]
    full = next((list(keypoints[name]) for name in names if len(keypoints.get(name, [])) == count), [])
    flip = shapes.flip_index(full) if count else None
    if flip is not None and all(len(keypoints.get(name, [])) in (0, count) for name in names):
        lines.append(f"flip_idx: [{', '.join(str(i) for i in flip)}]")
    lines.append("kpt_names:")
    for i, name in enumerate(names):
        listed = list(keypoints.get(name, []))
        lines.append(f"  {i}: [{', '.join(json.dumps(k) for k in listed)}]")
    return lines


def data_yaml(names: Sequence[str], keypoints: Mapping[str, Sequence[str]] | None = None) -> str:
    """Ultralytics' dataset file: images and labels side by side, class names by index; for a
    pose dataset (``keypoints``: class -> keypoint names) its ``kpt_shape`` and names too."""
    listed = "".join(f"{line}\n" for line in names_lines(names))
    pose = "".join(f"{line}\n" for line in pose_lines(names, keypoints)) if keypoints is not None else ""
    return (
        "# generated by alpolicy: pre-labels to review, not ground truth\n"
        "path: .\ntrain: images\nval: images\n"
        f"{pose}nc: {len(names)}\n{listed}"
    )
