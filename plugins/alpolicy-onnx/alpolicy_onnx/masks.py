"""Instance masks of YOLO ``-seg`` exports, as polygons in pixels of the original image.

A segmentation export answers, besides the boxes, ``nm`` mask coefficients per box and one
prototype tensor ``[nm, H/4, W/4]`` per image. A box's mask is ``sigmoid(coefficients @ protos)``
at prototype resolution; :func:`mask_polygon` turns it into what Roboflow Inference answers for an
instance-segmentation model: the outline of the mask as ``points: [{x, y}, ...]``.

How each step matches Ultralytics' ``retina_masks`` / Roboflow's ``accurate`` decoding while
doing less work:

* **Resolution.** The mask is computed at the original image's resolution, not the input's: each
  original pixel is sampled (bilinearly) at the place of the prototype grid it came from through the
  letterbox, i.e. the padding and the scale are undone exactly as for the boxes
  (:func:`alpolicy_onnx.decode.scale_boxes`). Ultralytics upsamples to the input size and then
  resizes the un-padded part to the original size: two bilinear passes where this takes one.
* **Crop.** Only the pixels whose centre lies inside the (un-letterboxed) box are sampled, so the
  cost follows the box's area, not the image's; the rest of the mask is zero, as after
  Ultralytics' ``crop_mask``.
* **Threshold.** A pixel belongs to the mask when ``sigmoid(logit) > threshold`` (0.5, i.e. a
  logit above 0), as Ultralytics and Roboflow binarize.
* **Polygon.** The external contours of the binary mask (``cv2.findContours``, ``RETR_EXTERNAL``,
  ``CHAIN_APPROX_SIMPLE``, as both do); the one with the largest area is kept. (Both pick the
  contour with the most *vertices*, which after ``CHAIN_APPROX_SIMPLE`` can prefer a small ragged
  speck to a large smooth blob; the area is what "largest" means to a labeller.) Vertices are the
  centres of the boundary pixels: ``index + 0.5`` in pixel coordinates, where boxes' edges are
  pixel edges.
* **A vanished mask** (no pixel above the threshold inside the box, or only a speck without area)
  gives ``points: []`` and the detection is kept, as Roboflow Inference keeps it (its
  ``masks2poly`` yields an empty polygon and the prediction is still answered). The box and its
  confidence remain for the rules; a destination that needs a polygon skips or boxes it.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

__all__ = ["MASK_THRESHOLD", "mask_polygon", "mask_logits"]

#: A pixel is in the mask when its sigmoid is above this (Ultralytics and Roboflow: 0.5).
MASK_THRESHOLD = 0.5


def mask_logits(protos: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``coefficients @ protos``: the mask logits ``[mask_h, mask_w]`` of one box at prototype resolution."""
    nm, mask_h, mask_w = protos.shape
    flat = np.asarray(coefficients, dtype=np.float32).reshape(1, nm) @ protos.reshape(nm, -1).astype(np.float32, copy=False)
    return flat.reshape(mask_h, mask_w)


def mask_polygon(logits: np.ndarray, box: np.ndarray, ratio: float, pad: tuple[float, float],
                 input_size: tuple[int, int], original_size: tuple[int, int],
                 threshold: float = MASK_THRESHOLD) -> list[dict[str, float]]:
    """The polygon of one box's mask, in pixels of the original image (``[]`` when it vanished).

    ``logits`` ``[mask_h, mask_w]`` from :func:`mask_logits`; ``box`` x1, y1, x2, y2 already in
    original pixels (clipped); ``ratio``/``pad`` from the letterbox; ``input_size`` the model's
    ``(height, width)``; ``original_size`` the image's ``(width, height)``.
    """
    binary, left, top = _binary_mask(logits, box, ratio, pad, input_size, original_size, threshold)
    if binary is None:
        return []
    contours = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return []
    best = max(contours, key=lambda contour: (cv2.contourArea(contour), len(contour)))
    if len(best) < 3 or cv2.contourArea(best) <= 0:
        return []
    xy = best.reshape(-1, 2).astype(np.float64) + (left + 0.5, top + 0.5)
    return [{"x": float(x), "y": float(y)} for x, y in xy.tolist()]


def _binary_mask(logits: np.ndarray, box: np.ndarray, ratio: float, pad: tuple[float, float],
                 input_size: tuple[int, int], original_size: tuple[int, int],
                 threshold: float) -> tuple[Any, int, int]:
    """The 0/1 mask of the box's pixels (those whose centre is inside the box), with its origin.

    Original pixel ``i`` has its centre at ``i + 0.5``; through the letterbox that is input
    coordinate ``(i + 0.5) * ratio + pad``, and prototype pixel ``j`` covers input coordinates
    ``[j, j + 1) * stride`` with its centre at ``(j + 0.5) * stride``: so the sample is taken at
    prototype index ``((i + 0.5) * ratio + pad) / stride - 0.5`` (bilinear, edges replicated).
    """
    width, height = int(original_size[0]), int(original_size[1])
    x1, y1, x2, y2 = (float(v) for v in box)
    left, right = max(0, math.ceil(x1 - 0.5)), min(width, math.ceil(x2 - 0.5))
    top, bottom = max(0, math.ceil(y1 - 0.5)), min(height, math.ceil(y2 - 0.5))
    if right <= left or bottom <= top:
        return None, left, top
    mask_h, mask_w = logits.shape
    stride_x, stride_y = float(input_size[1]) / mask_w, float(input_size[0]) / mask_h
    xs = ((np.arange(left, right, dtype=np.float64) + 0.5) * ratio + float(pad[0])) / stride_x - 0.5
    ys = ((np.arange(top, bottom, dtype=np.float64) + 0.5) * ratio + float(pad[1])) / stride_y - 0.5
    map_x = np.broadcast_to(xs.astype(np.float32)[None, :], (ys.size, xs.size))
    map_y = np.broadcast_to(ys.astype(np.float32)[:, None], (ys.size, xs.size))
    sampled = cv2.remap(np.ascontiguousarray(logits, dtype=np.float32), np.ascontiguousarray(map_x),
                        np.ascontiguousarray(map_y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cut = _logit(threshold)
    return (sampled > cut).astype(np.uint8), left, top


def _logit(probability: float) -> float:
    """``sigmoid(v) > p`` is ``v > logit(p)``: compare logits, no exponential per pixel."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))
