"""Label Studio tasks with pre-labels: a ``rectanglelabels`` region is the box's top-left corner
and size in *percent* of the original image (``value.x``, ``y``, ``width``, ``height``).

The labeling config (:func:`config`) names the two controls a region refers to: the
``RectangleLabels`` (``from_name``) and the ``Image`` (``to_name``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

from ..policy.prediction import Detection, Prediction
from .coco import box


def percent(value: float, total: float) -> float:
    """``value`` in percent of ``total``, clamped to 0..100."""
    return min(100.0, max(0.0, value * 100.0 / total))


def region_id(id_seed: str, index: int) -> str:
    """A stable id for the ``index``-th region (the same image sent again gets the same ids)."""
    return hashlib.sha1(f"{id_seed}/{index}".encode()).hexdigest()[:10]


def region(detection: Detection, width: int, height: int, identifier: str, from_name: str, to_name: str) -> dict[str, Any]:
    """One rectangle: the top-left corner and size in percent of the ``width`` x ``height`` image."""
    x, y, w, h = box(detection, width, height)
    return {
        "id": identifier,
        "from_name": from_name,
        "to_name": to_name,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": percent(x, width),
            "y": percent(y, height),
            "width": percent(w, width),
            "height": percent(h, height),
            "rotation": 0,
            "rectanglelabels": [detection["class"]],
        },
        "score": detection["confidence"],
    }


def results(prediction: Prediction, from_name: str, to_name: str, id_seed: str = "") -> list[dict[str, Any]]:
    """The regions of a prediction's ``result`` list (none for a size-less prediction: a box
    cannot be placed in percent of nothing)."""
    if prediction.width <= 0 or prediction.height <= 0:
        return []
    return [region(detection, prediction.width, prediction.height, region_id(id_seed, i), from_name, to_name)
            for i, detection in enumerate(prediction.detections)]


def prediction(results: Iterable[Mapping[str, Any]], width: int, height: int) -> Prediction:
    """The boxes of a ``result`` list (its ``rectanglelabels`` regions; others are skipped), in
    pixels of a ``width`` x ``height`` image; ``confidence`` is the region's ``score`` (1.0 when absent)."""
    detections: list[Detection] = []
    for result in results:
        if result.get("type") != "rectanglelabels":
            continue
        value = result["value"]
        w, h = value["width"] * width / 100.0, value["height"] * height / 100.0
        detections.append({
            "x": value["x"] * width / 100.0 + w / 2, "y": value["y"] * height / 100.0 + h / 2,
            "width": w, "height": h, "confidence": result.get("score", 1.0), "class": value["rectanglelabels"][0],
        })
    return Prediction(width=width, height=height, detections=detections)


def task(prediction: Prediction, image_url: str, from_name: str, to_name: str, *, id_seed: str = "",
         score: float | None = None, reasons: Sequence[str] = (), tags: Sequence[str] = (),
         source: str | None = None) -> dict[str, Any]:
    """A task for Label Studio's JSON import, with the model's boxes as its one prediction
    (``model_version`` the model id; ``score`` the decision's, else the best box's confidence)."""
    predicted: dict[str, Any] = {"model_version": prediction.model_id or "alpolicy",
                                 "result": results(prediction, from_name, to_name, id_seed)}
    shown = score if score is not None else max((d["confidence"] for d in prediction.detections), default=None)
    if shown is not None:
        predicted["score"] = shown
    return {
        "data": {
            "image": image_url,
            "alpolicy_score": score,
            "alpolicy_reasons": "; ".join(reasons),
            "alpolicy_tags": ", ".join(tags),
            "source": source,
        },
        "predictions": [predicted],
    }


def config(classes: Iterable[str], from_name: str = "label", to_name: str = "image") -> str:
    """A labeling config for such tasks: create the project from it, then import the tasks."""
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in classes)
    return (
        "<View>\n"
        f"  <Image name={quoteattr(to_name)} value=\"$image\"/>\n"
        f"  <RectangleLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>\n"
        f"{labels}"
        "  </RectangleLabels>\n"
        "</View>\n"
    )
