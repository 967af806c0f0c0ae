"""One image's errors: a prediction matched against its ground truth.

**Matching.** Predictions are taken by descending confidence (ties in their stored order); each
takes the still unmatched truth *of its class* it overlaps most, if that overlap is at least the
threshold (``>=``: an IoU of exactly 0.5 matches at ``--iou 0.5``). Overlap is measured per task:

* boxes (object detection, and any detection without the shapes below): box IoU;
* instance segmentation: **mask IoU** when both sides have a polygon (``points``): each polygon is
  filled with Pillow's :class:`ImageDraw.ImageDraw` -- the pixels it covers, its outline
  included, as ImageDraw draws it -- on a canvas of the image's size, and the pixels are counted
  with ``Image.histogram`` (no NumPy in the core). Otherwise (an RLE mask, a missing polygon) box IoU;
* keypoints: **OKS**, COCO's object keypoint similarity, with the threshold applied to it:
  ``OKS = mean over the truth's labelled keypoints of exp(-d^2 / (2 s^2 k^2))``, ``d`` the distance
  from the predicted keypoint of the same name (a missing one counts 0), ``s^2`` the truth box's
  area (COCO's annotation area for keypoints, as :mod:`alpolicy.formats.coco` writes it) and
  ``k = 2 sigma``. ``sigma`` is COCO's per-keypoint constant when the class's skeleton is COCO's
  17 person keypoints (named as COCO names them), else 0.1 for every keypoint. A truth with no
  labelled keypoint is matched by box IoU.

**Errors** are the unmatched predictions plus the unmatched truths. **Kinds**: after the
same-class matching, the unmatched predictions (again by descending confidence) each pair with the
unmatched truth *of another class* they overlap most at ``>=`` the threshold, each used once: a
``wrong_class`` pair. The truths left are ``miss``, the predictions left ``false_positive``, so
``errors == miss + false_positive + 2 x wrong_class``. **By class** every unmatched object counts
once under its own class (a truth under the truth's class, a prediction under the prediction's),
so the per-class counts add up to ``errors``.

**Classification** has no geometry: the predicted classes (single-label: the top class; multi-label:
every predicted class) are compared with the truth's classes (the classes of its annotations).
A predicted class the truth lacks is an unmatched prediction, a true class not predicted an
unmatched truth (multi-label: their symmetric difference, all ``false_positive`` / ``miss``).
Single-label, a wrong top class is one ``wrong_class`` pair (2 errors, as for a box of the wrong
class), a top class on an image with no true class a ``false_positive``, no class a ``miss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from PIL import Image, ImageChops, ImageDraw

from ..policy.prediction import CLASSIFICATION, CLASSIFICATION_TASKS, Detection, Prediction

KINDS = ("miss", "false_positive", "wrong_class")

#: COCO's 17 person keypoints and their sigmas (pycocotools ``COCOeval``'s ``kpt_oks_sigmas``).
COCO_KEYPOINT_SIGMAS: dict[str, float] = dict(zip(
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
     "right_knee", "left_ankle", "right_ankle"),
    (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89),
))
COCO_KEYPOINT_SIGMAS = {name: value / 10 for name, value in COCO_KEYPOINT_SIGMAS.items()}
#: The sigma of every keypoint of a skeleton that is not COCO's.
DEFAULT_SIGMA = 0.1


def sigmas_for(names: Sequence[str]) -> dict[str, float]:
    """Per-keypoint sigmas of a class whose skeleton names ``names``: COCO's when it is COCO's 17
    person keypoints (any order), else :data:`DEFAULT_SIGMA` each."""
    if len(names) == len(COCO_KEYPOINT_SIGMAS) and set(names) == set(COCO_KEYPOINT_SIGMAS):
        return dict(COCO_KEYPOINT_SIGMAS)
    return {name: DEFAULT_SIGMA for name in names}


@dataclass
class ImageErrors:
    """The outcome for one image; indices are positions in the prediction's / truth's detections."""

    #: (prediction index, truth index, similarity, measure) of the same-class matches.
    matches: list[tuple[int, int, float, str]] = field(default_factory=list)
    #: (prediction index, truth index, similarity, measure) of the wrong-class pairs.
    wrong_class_pairs: list[tuple[int, int, float, str]] = field(default_factory=list)
    false_positives: list[int] = field(default_factory=list)
    misses: list[int] = field(default_factory=list)
    #: class -> errors of that class (every unmatched object once, under its own class).
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def by_kind(self) -> dict[str, int]:
        return {"miss": len(self.misses), "false_positive": len(self.false_positives),
                "wrong_class": len(self.wrong_class_pairs)}

    @property
    def errors(self) -> int:
        """Unmatched predictions plus unmatched truths."""
        return len(self.misses) + len(self.false_positives) + 2 * len(self.wrong_class_pairs)


# ---------------------------------------------------------------------- overlap measures
def _corners(d: Mapping[str, Any]) -> tuple[float, float, float, float]:
    return (d["x"] - d["width"] / 2, d["y"] - d["height"] / 2, d["x"] + d["width"] / 2, d["y"] + d["height"] / 2)


def box_iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """IoU of two centre-based boxes (``x``, ``y``, ``width``, ``height``); 0 when both are empty."""
    ax0, ay0, ax1, ay1 = _corners(a)
    bx0, by0, bx1, by1 = _corners(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def _filled(points: Sequence[Mapping[str, float]], origin: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("1", size, 0)
    ImageDraw.Draw(canvas).polygon([(p["x"] - origin[0], p["y"] - origin[1]) for p in points], fill=1, outline=1)
    return canvas


def _pixels(mask: Image.Image) -> int:
    return mask.histogram()[-1]  # mode "1": bin 255 counts the set pixels


def mask_iou(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]], width: int, height: int) -> float:
    """IoU of two polygons rasterised on the ``width`` x ``height`` image (only the part of the
    canvas their bounding boxes cover is drawn: the same pixels, less memory)."""
    if (max(p["x"] for p in a) < min(p["x"] for p in b) or max(p["x"] for p in b) < min(p["x"] for p in a)
            or max(p["y"] for p in a) < min(p["y"] for p in b) or max(p["y"] for p in b) < min(p["y"] for p in a)):
        return 0.0  # apart: nothing to draw
    xs = [p["x"] for p in (*a, *b)]
    ys = [p["y"] for p in (*a, *b)]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(int(width), math.ceil(max(xs)) + 1), min(int(height), math.ceil(max(ys)) + 1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    size = (x1 - x0, y1 - y0)
    first, second = _filled(a, (x0, y0), size), _filled(b, (x0, y0), size)
    inter = _pixels(ImageChops.logical_and(first, second))
    union = _pixels(ImageChops.logical_or(first, second))
    return inter / union if union else 0.0


def oks(prediction: Mapping[str, Any], truth: Mapping[str, Any], sigmas: Mapping[str, float]) -> float | None:
    """COCO's object keypoint similarity of a detection to a truth (see the module docstring);
    ``None`` when the truth has no labelled keypoint."""
    labelled = truth.get("keypoints") or []
    if not labelled:
        return None
    predicted = {point["class"]: point for point in prediction.get("keypoints") or []}
    area = truth["width"] * truth["height"]
    total = 0.0
    for point in labelled:
        guess = predicted.get(point["class"])
        if guess is None:
            continue
        k = 2 * sigmas.get(point["class"], DEFAULT_SIGMA)
        squared = (guess["x"] - point["x"]) ** 2 + (guess["y"] - point["y"]) ** 2
        total += math.exp(-squared / (2 * area * k * k + 2.220446049250313e-16))
    return total / len(labelled)


def similarity(prediction: Detection, truth: Detection, width: int, height: int,
               sigmas: Mapping[str, Mapping[str, float]] | None = None) -> tuple[float, str]:
    """``(overlap, measure)``, measure one of ``box``, ``mask``, ``oks`` (see the module docstring)."""
    if truth.get("keypoints"):
        value = oks(prediction, truth, (sigmas or {}).get(truth["class"], {}))
        if value is not None:
            return value, "oks"
    if prediction.get("points") and truth.get("points"):
        return mask_iou(prediction["points"], truth["points"], width, height), "mask"
    return box_iou(prediction, truth), "box"


# ---------------------------------------------------------------------- matching
def _by_confidence(detections: Sequence[Detection], indices: Sequence[int]) -> list[int]:
    return sorted(indices, key=lambda i: -float(detections[i].get("confidence", 1.0)))  # stable: ties in order


def _greedy(predictions: Sequence[Detection], truths: Sequence[Detection], candidates: Sequence[int],
            free: list[int], same_class: bool, threshold: float, overlap: Any) -> list[tuple[int, int, float, str]]:
    """Each candidate prediction, by descending confidence, takes the free truth it overlaps most
    (same class, or another class) at ``>= threshold``; the truth is then no longer free."""
    pairs = []
    for p in _by_confidence(predictions, candidates):
        best: tuple[float, int, str] | None = None
        for t in free:
            if (truths[t]["class"] == predictions[p]["class"]) != same_class:
                continue
            value, measure = overlap(p, t)
            if value >= threshold and (best is None or value > best[0]):
                best = (value, t, measure)
        if best is not None:
            pairs.append((p, best[1], best[0], best[2]))
            free.remove(best[1])
    return pairs


def match(prediction: Prediction, truth: Prediction, threshold: float = 0.5,
          sigmas: Mapping[str, Mapping[str, float]] | None = None) -> ImageErrors:
    """The errors of ``prediction`` against ``truth`` (the same image); ``sigmas``: class ->
    keypoint name -> sigma (:func:`sigmas_for`), for keypoints."""
    if prediction.task in CLASSIFICATION_TASKS:
        return classification_errors(prediction, truth)
    preds, truths = prediction.detections, truth.detections
    width, height = truth.width or prediction.width, truth.height or prediction.height
    cache: dict[tuple[int, int], tuple[float, str]] = {}

    def overlap(p: int, t: int) -> tuple[float, str]:
        if (p, t) not in cache:
            cache[p, t] = similarity(preds[p], truths[t], width, height, sigmas)
        return cache[p, t]

    free = list(range(len(truths)))
    found = ImageErrors()
    found.matches = _greedy(preds, truths, range(len(preds)), free, True, threshold, overlap)
    matched = {p for p, *_ in found.matches}
    unmatched = [p for p in range(len(preds)) if p not in matched]
    found.wrong_class_pairs = _greedy(preds, truths, unmatched, free, False, threshold, overlap)
    paired = {p for p, *_ in found.wrong_class_pairs}
    found.false_positives = [p for p in unmatched if p not in paired]
    found.misses = sorted(t for t in free)
    for p in unmatched:
        _count(found.by_class, preds[p]["class"])
    for t in [*found.misses, *(t for _, t, *_ in found.wrong_class_pairs)]:
        _count(found.by_class, truths[t]["class"])
    return found


def _count(counts: dict[str, int], cls: str) -> None:
    counts[cls] = counts.get(cls, 0) + 1


def predicted_classes(prediction: Prediction) -> list[str]:
    """The classes a classifier labels its image with: the top class (single-label), every
    predicted class (multi-label)."""
    if prediction.task == CLASSIFICATION:
        return [prediction.top] if prediction.top is not None else []
    return list(dict.fromkeys(entry["class"] for entry in prediction.detections))


def classification_errors(prediction: Prediction, truth: Prediction) -> ImageErrors:
    """A classifier's errors on one image (see the module docstring). Indices point into
    :func:`predicted_classes` and the truth's distinct classes."""
    predicted = predicted_classes(prediction)
    true = list(dict.fromkeys(entry["class"] for entry in truth.detections))
    found = ImageErrors()
    found.matches = [(predicted.index(c), true.index(c), 1.0, "class") for c in predicted if c in true]
    extra = [i for i, c in enumerate(predicted) if c not in true]
    missing = [i for i, c in enumerate(true) if c not in predicted]
    if prediction.task == CLASSIFICATION and extra and missing:
        found.wrong_class_pairs = [(extra.pop(0), missing.pop(0), 0.0, "class")]
    found.false_positives, found.misses = extra, missing
    for i in [*extra, *(p for p, *_ in found.wrong_class_pairs)]:
        _count(found.by_class, predicted[i])
    for i in [*missing, *(t for _, t, *_ in found.wrong_class_pairs)]:
        _count(found.by_class, true[i])
    return found
