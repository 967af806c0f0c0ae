"""The geometry every format shares: a polygon clipped to the image and its area, a run-length
mask's area, and keypoints laid out in their skeleton's order.

Why one module: COCO and YOLO (and any later format) must clip a polygon, place a keypoint and
tell its visibility the same way, or the two files of one dataset disagree. Pure functions, no
dependency (the areas of polygons and RLE masks: :mod:`alpolicy.policy.geometry`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..policy.prediction import Detection, Keypoint, Prediction

#: A keypoint whose confidence is at least this is *visible* (COCO ``v = 2``); below it the
#: model placed it but doubts it (occluded or guessed): ``v = 1``, "labeled but not visible", so
#: that a reviewer still sees where it was put. 0.5 is the threshold Ultralytics draws keypoints at.
#: A keypoint of the skeleton the prediction lacks is ``0, 0, 0`` (COCO's "not labeled").
KEYPOINT_VISIBLE = 0.5
#: A keypoint's ``class_id`` beyond this is no skeleton index (a hostile value must not make a
#: list of 10**18 slots): its position in the list is used instead.
MAX_KEYPOINTS = 1024

Polygon = list[tuple[float, float]]


def clip_polygon(points: Iterable[Mapping[str, Any]], width: float, height: float) -> Polygon:
    """A polygon's points (``{x, y}`` in pixels) clipped to the ``width`` x ``height`` image
    (Sutherland-Hodgman against its four edges: the part of the shape inside the image, as a box
    is clipped). Fewer than 3 points: nothing is inside."""
    polygon: Polygon = [(float(p["x"]), float(p["y"])) for p in points]
    for axis, limit, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        polygon = _clip_edge(polygon, axis, limit, keep_below)
        if not polygon:
            break
    return polygon if len(polygon) >= 3 else []


def _clip_edge(polygon: Polygon, axis: int, limit: float, keep_below: bool) -> Polygon:
    def inside(point: tuple[float, float]) -> bool:
        return point[axis] <= limit if keep_below else point[axis] >= limit

    result: Polygon = []
    for index, current in enumerate(polygon):
        previous = polygon[index - 1]
        if inside(current):
            if not inside(previous):
                result.append(_crossing(previous, current, axis, limit))
            result.append(current)
        elif inside(previous):
            result.append(_crossing(previous, current, axis, limit))
    return result


def _crossing(a: tuple[float, float], b: tuple[float, float], axis: int, limit: float) -> tuple[float, float]:
    t = (limit - a[axis]) / (b[axis] - a[axis])
    other = 1 - axis
    point = [0.0, 0.0]
    point[axis] = limit
    point[other] = a[other] + t * (b[other] - a[other])
    return point[0], point[1]


def flat(polygon: Sequence[tuple[float, float]]) -> list[float]:
    """``[x1, y1, x2, y2, ...]``: how COCO and YOLO list a polygon."""
    return [value for point in polygon for value in point]


# -- keypoints -------------------------------------------------------------------------------


def keypoint_slot(keypoint: Keypoint, position: int) -> int:
    """Where a keypoint goes in its skeleton: its ``class_id`` (Roboflow numbers a skeleton's
    points from 0), else its position in the list."""
    index = keypoint.get("class_id")
    return index if type(index) is int and 0 <= index < MAX_KEYPOINTS else position


def keypoint_names(predictions: Iterable[Prediction]) -> dict[str, list[str]]:
    """Each class's skeleton: the keypoint names by index (the first name seen for an index; an
    index never named is its number), from every keypoint of every detection of that class."""
    found: dict[str, dict[int, str]] = {}
    for prediction in predictions:
        for detection in prediction.detections:
            slots = found.setdefault(detection["class"], {})
            for position, keypoint in enumerate(detection.get("keypoints") or []):
                name = keypoint.get("class")
                slot = keypoint_slot(keypoint, position)
                if slot not in slots or (slots[slot] == str(slot) and isinstance(name, str) and name):
                    slots[slot] = name if isinstance(name, str) and name else str(slot)
    return {cls: [slots.get(i, str(i)) for i in range(max(slots) + 1)] if slots else [] for cls, slots in found.items()}


def keypoint_triplets(detection: Detection, count: int, width: float, height: float) -> list[tuple[float, float, int]]:
    """``count`` ``(x, y, v)`` in pixels, by skeleton index: each keypoint clamped into the image,
    ``v`` 2 (visible) or 1 (placed, doubtful) by :data:`KEYPOINT_VISIBLE`; a missing one ``(0, 0, 0)``."""
    triplets: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * count
    taken: set[int] = set()
    for position, keypoint in enumerate(detection.get("keypoints") or []):
        slot = keypoint_slot(keypoint, position)
        if slot >= count or slot in taken:
            continue
        taken.add(slot)
        x = min(float(width), max(0.0, float(keypoint["x"])))
        y = min(float(height), max(0.0, float(keypoint["y"])))
        visible = 2 if keypoint.get("confidence", 1.0) >= KEYPOINT_VISIBLE else 1
        triplets[slot] = (x, y, visible)
    return triplets


def flip_index(names: Sequence[str]) -> list[int] | None:
    """Ultralytics' ``flip_idx`` (which keypoint each becomes in a mirrored image), when the names
    tell it: every ``left``/``right`` name has its counterpart (``left_eye`` <-> ``right_eye``),
    the others map to themselves. ``None`` when a counterpart is missing or no name is sided:
    Ultralytics then only turns its flip augmentation off."""
    index = {name: i for i, name in enumerate(names)}
    result, sided = [], False
    for i, name in enumerate(names):
        mirror = _mirror(name)
        if mirror is None:
            result.append(i)
            continue
        sided = True
        if mirror not in index:
            return None
        result.append(index[mirror])
    return result if sided else None


def _mirror(name: str) -> str | None:
    lowered = name.lower()
    for side, other in (("left", "right"), ("right", "left")):
        position = lowered.find(side)
        if position >= 0:
            cut = name[position:position + len(side)]
            swapped = other if cut.islower() else other.upper() if cut.isupper() else other.capitalize()
            return name[:position] + swapped + name[position + len(side):]
    return None
