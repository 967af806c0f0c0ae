"""Label Studio tasks with pre-labels, one kind of region per task type (Label Studio's own
result formats, https://labelstud.io/tags/), every coordinate in *percent* of the original image:

* object detection: a ``rectanglelabels`` region per box, its top-left corner and size
  (``value.x``, ``y``, ``width``, ``height``);
* instance segmentation: a ``polygonlabels`` region per instance, ``value.points``
  ``[[x, y], ...]`` and ``closed: true`` -- the polygon only, no box: the polygon *is* the label a
  segmentation project wants (Label Studio's and Roboflow's segmentation templates have no box),
  and a box beside it would be a second shape to correct for every instance. An instance without
  a polygon (a mask-only ``rle`` answer) is sent as the polygon of its box, so that it is not lost;
* keypoints (pose): the instance's box (``rectanglelabels``, in the box control, default
  ``<from_name>_bbox``) and one ``keypointlabels`` region per keypoint (``value.x``, ``y``,
  ``width`` = the point's drawn size, ``keypointlabels: [keypoint name]``), each keypoint's
  ``parentID`` naming its box: the pose instance stays together, as Label Studio's own pose
  backend (label-studio-ml-backend, YOLO ``KeyPointLabels``) sends it. ``with_boxes=False`` (a
  project without a RectangleLabels) sends the keypoints alone;
* single-label classification: one ``choices`` region ``{"choices": [top class]}``;
  multi-label: one ``{"choices": [every predicted class]}`` (a ``choice="multiple"`` control),
  its ``score`` the least sure of them.

The labeling config (:func:`config`) names the controls a region refers to (``from_name``: the
task's control; ``to_name``: the ``Image``); :func:`prediction` reads such regions back.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

from ..policy.prediction import (
    CLASSIFICATION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, MULTI_LABEL_CLASSIFICATION, OBJECT_DETECTION,
    ClassScore, Detection, Keypoint, Prediction,
)
from .coco import box

#: The control each task's regions go to (Label Studio's tag names) and the region ``type``.
CONTROLS = {
    OBJECT_DETECTION: "RectangleLabels",
    INSTANCE_SEGMENTATION: "PolygonLabels",
    KEYPOINT_DETECTION: "KeyPointLabels",
    CLASSIFICATION: "Choices",
    MULTI_LABEL_CLASSIFICATION: "Choices",
}
#: The drawn size of a keypoint, in pixels of the original image (``value.width`` is its percent).
KEYPOINT_SIZE = 4.0


def percent(value: float, total: float) -> float:
    """``value`` in percent of ``total``, clamped to 0..100."""
    return min(100.0, max(0.0, value * 100.0 / total))


def region_id(id_seed: str, index: int | str) -> str:
    """A stable id for the ``index``-th region (the same image sent again gets the same ids)."""
    return hashlib.sha1(f"{id_seed}/{index}".encode()).hexdigest()[:10]


def box_control(from_name: str) -> str:
    """The default name of a pose config's RectangleLabels (Label Studio's pose backend's own)."""
    return f"{from_name}_bbox"


def _geometry(identifier: str, kind: str, from_name: str, to_name: str, width: int, height: int,
              value: dict[str, Any], score: float) -> dict[str, Any]:
    return {
        "id": identifier,
        "from_name": from_name,
        "to_name": to_name,
        "type": kind,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": value,
        "score": score,
    }


def region(detection: Detection, width: int, height: int, identifier: str, from_name: str, to_name: str) -> dict[str, Any]:
    """One rectangle: the top-left corner and size in percent of the ``width`` x ``height`` image."""
    x, y, w, h = box(detection, width, height)
    value = {
        "x": percent(x, width),
        "y": percent(y, height),
        "width": percent(w, width),
        "height": percent(h, height),
        "rotation": 0,
        "rectanglelabels": [detection["class"]],
    }
    return _geometry(identifier, "rectanglelabels", from_name, to_name, width, height, value, detection["confidence"])


def polygon_region(detection: Detection, width: int, height: int, identifier: str, from_name: str,
                   to_name: str) -> dict[str, Any]:
    """One closed polygon, its points in percent; an instance with fewer than three points (a
    mask-only answer) is the polygon of its box."""
    points = detection.get("points") or []
    if len(points) < 3:
        x, y, w, h = box(detection, width, height)
        points = [{"x": x, "y": y}, {"x": x + w, "y": y}, {"x": x + w, "y": y + h}, {"x": x, "y": y + h}]
    value = {
        "points": [[percent(point["x"], width), percent(point["y"], height)] for point in points],
        "closed": True,
        "polygonlabels": [detection["class"]],
    }
    return _geometry(identifier, "polygonlabels", from_name, to_name, width, height, value, detection["confidence"])


def keypoint_name(keypoint: Keypoint, index: int) -> str:
    """A keypoint's label: its ``class`` (the name the model gives it), else its id or place."""
    name = keypoint.get("class")
    if name:
        return name
    return str(keypoint.get("class_id", index))


def keypoint_names(prediction: Prediction) -> list[str]:
    """The keypoint names of a pose prediction, in order of first appearance."""
    names: dict[str, None] = {}
    for detection in prediction.detections:
        for index, keypoint in enumerate(detection.get("keypoints") or []):
            names.setdefault(keypoint_name(keypoint, index))
    return list(names)


def keypoint_region(keypoint: Keypoint, index: int, width: int, height: int, identifier: str, from_name: str,
                    to_name: str, parent: str | None) -> dict[str, Any]:
    """One keypoint (``value.width`` its drawn size), ``parentID`` its instance's box when sent."""
    value = {
        "x": percent(keypoint["x"], width),
        "y": percent(keypoint["y"], height),
        "width": percent(KEYPOINT_SIZE, width),
        "keypointlabels": [keypoint_name(keypoint, index)],
    }
    result = _geometry(identifier, "keypointlabels", from_name, to_name, width, height, value,
                       keypoint.get("confidence", 1.0))
    if parent is not None:
        result["parentID"] = parent
    return result


def choices_region(entries: Sequence[ClassScore], identifier: str, from_name: str, to_name: str) -> dict[str, Any]:
    """The classes chosen (one for a single-label model), ``score`` the least sure of them."""
    return {
        "id": identifier,
        "from_name": from_name,
        "to_name": to_name,
        "type": "choices",
        "value": {"choices": [entry["class"] for entry in entries]},
        "score": min(entry["confidence"] for entry in entries),
    }


def results(prediction: Prediction, from_name: str, to_name: str, id_seed: str = "", *,
            box_name: str | None = None, with_boxes: bool = True) -> list[dict[str, Any]]:
    """The regions of a prediction's ``result`` list, of its task's kind (see the module
    docstring); ``from_name`` is the task's control. For a pose model ``box_name`` is the
    RectangleLabels of the boxes (default :func:`box_control`), ``with_boxes=False`` sends the
    keypoints alone. None for a size-less prediction of boxes (a shape cannot be placed in
    percent of nothing)."""
    if prediction.is_classification:
        chosen = prediction.detections  # the top class, or each predicted class
        return [choices_region(chosen, region_id(id_seed, 0), from_name, to_name)] if chosen else []
    width, height = prediction.width, prediction.height
    if width <= 0 or height <= 0:
        return []
    if prediction.task == INSTANCE_SEGMENTATION:
        return [polygon_region(detection, width, height, region_id(id_seed, i), from_name, to_name)
                for i, detection in enumerate(prediction.detections)]
    if prediction.task == KEYPOINT_DETECTION:
        return _pose(prediction, from_name, to_name, id_seed, box_name or box_control(from_name), with_boxes)
    return [region(detection, width, height, region_id(id_seed, i), from_name, to_name)
            for i, detection in enumerate(prediction.detections)]


def _pose(prediction: Prediction, from_name: str, to_name: str, id_seed: str, box_name: str,
          with_boxes: bool) -> list[dict[str, Any]]:
    width, height = prediction.width, prediction.height
    regions: list[dict[str, Any]] = []
    for i, detection in enumerate(prediction.detections):
        parent = None
        if with_boxes:
            parent = region_id(id_seed, i)
            regions.append(region(detection, width, height, parent, box_name, to_name))
        for j, keypoint in enumerate(detection.get("keypoints") or []):
            regions.append(keypoint_region(keypoint, j, width, height, region_id(id_seed, f"{i}/{j}"),
                                           from_name, to_name, parent))
    return regions


def prediction(results: Iterable[Mapping[str, Any]], width: int, height: int, *, task: str | None = None) -> Prediction:
    """The prediction a ``result`` list holds, in pixels of a ``width`` x ``height`` image;
    ``confidence`` is each region's ``score`` (1.0 when absent); other region types are skipped.

    Rectangles are boxes, polygons instances (their box spans the points), keypoints join the
    box their ``parentID`` names (keypoints without one form one instance spanning them, its
    class the keypoint control's name); a ``choices`` region is a classification, multi-label
    when it holds several classes or ``task`` says so."""
    regions = [result for result in results if isinstance(result, Mapping)]
    choices = [result for result in regions if result.get("type") == "choices"]
    if choices:
        return _classification(choices[0], width, height, task)
    detections: list[Detection] = []
    boxes: dict[str, Detection] = {}
    orphans: dict[str, list[Keypoint]] = {}
    found = task or OBJECT_DETECTION
    for result in regions:
        kind, value = result.get("type"), result.get("value") or {}
        if kind == "rectanglelabels":
            w, h = value["width"] * width / 100.0, value["height"] * height / 100.0
            detection: Detection = {
                "x": value["x"] * width / 100.0 + w / 2, "y": value["y"] * height / 100.0 + h / 2,
                "width": w, "height": h, "confidence": result.get("score", 1.0), "class": value["rectanglelabels"][0],
            }
            detections.append(detection)
            if result.get("id") is not None:
                boxes[str(result["id"])] = detection
        elif kind == "polygonlabels":
            points = [{"x": x * width / 100.0, "y": y * height / 100.0} for x, y in value["points"]]
            detections.append({**_spanning(points), "confidence": result.get("score", 1.0),
                               "class": value["polygonlabels"][0], "points": points})
            found = INSTANCE_SEGMENTATION
    for result in regions:
        if result.get("type") != "keypointlabels":
            continue
        value = result["value"]
        keypoint: Keypoint = {"x": value["x"] * width / 100.0, "y": value["y"] * height / 100.0,
                              "confidence": result.get("score", 1.0), "class": value["keypointlabels"][0]}
        parent = boxes.get(str(result.get("parentID")))
        if parent is not None:
            parent.setdefault("keypoints", []).append(keypoint)
        else:
            orphans.setdefault(str(result.get("from_name", "keypoints")), []).append(keypoint)
        found = KEYPOINT_DETECTION
    for name, keypoints in orphans.items():
        detections.append({**_spanning(keypoints), "confidence": max(k["confidence"] for k in keypoints),
                           "class": name, "keypoints": keypoints})
    if found == KEYPOINT_DETECTION:
        for detection in detections:
            detection.setdefault("keypoints", [])
    return Prediction(width=width, height=height, detections=detections, task=found)


def _spanning(points: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The centre-based box spanning ``points``."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "width": x1 - x0, "height": y1 - y0}


def _classification(result: Mapping[str, Any], width: int, height: int, task: str | None) -> Prediction:
    chosen = list((result.get("value") or {}).get("choices") or [])
    multi = task == MULTI_LABEL_CLASSIFICATION or (task is None and len(chosen) > 1)
    entries: list[ClassScore] = [{"class": name, "confidence": result.get("score", 1.0)} for name in chosen]
    if not multi:
        entries = entries[:1]
    return Prediction(width=width, height=height, detections=list(entries), class_scores=list(entries),
                      task=MULTI_LABEL_CLASSIFICATION if multi else CLASSIFICATION)


def task(prediction: Prediction, image_url: str, from_name: str, to_name: str, *, id_seed: str = "",
         score: float | None = None, reasons: Sequence[str] = (), tags: Sequence[str] = (),
         source: str | None = None, box_name: str | None = None, with_boxes: bool = True) -> dict[str, Any]:
    """A task for Label Studio's JSON import, with the model's regions as its one prediction
    (``model_version`` the model id; ``score`` the decision's, else the surest region's
    confidence; ``box_name``/``with_boxes`` as in :func:`results`)."""
    predicted: dict[str, Any] = {"model_version": prediction.model_id or "alpolicy",
                                 "result": results(prediction, from_name, to_name, id_seed,
                                                   box_name=box_name, with_boxes=with_boxes)}
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


def controls(classes: Iterable[str], from_name: str = "label", to_name: str = "image", *,
             task: str = OBJECT_DETECTION, keypoints: Iterable[str] = (), box_name: str | None = None,
             with_boxes: bool = True, indent: str = "  ") -> str:
    """The control elements of a ``task``'s config (see :func:`config`; ``with_boxes=False``: a
    pose model's KeyPointLabels alone)."""
    tag = CONTROLS[task]
    item = "Choice" if tag == "Choices" else "Label"
    names: Iterable[str] = keypoints if task == KEYPOINT_DETECTION else classes
    attributes = ""
    if tag == "Choices":
        attributes = f' choice="{"multiple" if task == MULTI_LABEL_CLASSIFICATION else "single"}" showInline="true"'
    text = ""
    if task == KEYPOINT_DETECTION and with_boxes:
        text = _control("RectangleLabels", box_name or box_control(from_name), to_name, classes, "Label", "", indent)
    return text + _control(tag, from_name, to_name, names, item, attributes, indent)


def _control(tag: str, name: str, to_name: str, labels: Iterable[str], item: str, attributes: str, indent: str) -> str:
    items = "".join(f"{indent}  <{item} value={quoteattr(label)}/>\n" for label in labels)
    return (f"{indent}<{tag} name={quoteattr(name)} toName={quoteattr(to_name)}{attributes}>\n"
            f"{items}{indent}</{tag}>\n")


def config(classes: Iterable[str], from_name: str = "label", to_name: str = "image", *,
           task: str = OBJECT_DETECTION, keypoints: Iterable[str] = (), box_name: str | None = None) -> str:
    """A labeling config for such tasks: create the project from it, then import the tasks.

    The ``task``'s control (:data:`CONTROLS`) named ``from_name`` on the ``Image`` ``to_name``:
    ``classes`` its labels (for a classifier every class it knows, as ``Choice`` elements, with
    ``choice="multiple"`` for a multi-label model); for a pose model the KeyPointLabels lists the
    ``keypoints`` names and a RectangleLabels (``box_name``, default :func:`box_control`) the classes."""
    return (
        "<View>\n"
        f"  <Image name={quoteattr(to_name)} value=\"$image\"/>\n"
        f"{controls(classes, from_name, to_name, task=task, keypoints=keypoints, box_name=box_name)}"
        "</View>\n"
    )
