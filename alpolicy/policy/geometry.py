"""The geometry of a prediction's masks: a polygon's area and a COCO run-length mask's runs.

One implementation each, below everything that needs them: the validator (an RLE whose counts do
not decode is refused where the prediction enters), the mask rules (``mask_area``,
``mask_fill``) and the formats (COCO's ``area``). pycocotools' RLE decoding is re-implemented
here: the core keeps its four dependencies.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def polygon_area(polygon: Sequence[tuple[float, float]]) -> float:
    """The shoelace area of a polygon given as ``(x, y)`` vertices in order, in square pixels
    (orientation does not matter; fewer than 3 vertices enclose nothing; a self-crossing
    polygon's lobes count with their signs, as the formula has it)."""
    twice = 0.0
    for index, (x1, y1) in enumerate(polygon):
        x0, y0 = polygon[index - 1]
        twice += x0 * y1 - x1 * y0
    return abs(twice) / 2


def vertices(points: Iterable[Mapping[str, float]]) -> list[tuple[float, float]]:
    """A prediction's ``points`` (``[{x, y}, ...]``) as ``(x, y)`` vertices."""
    return [(point["x"], point["y"]) for point in points]


def rle_counts(counts: str | Sequence[int]) -> list[int]:
    """A COCO RLE's run lengths: a list as given, or decoded from pycocotools' compressed string
    (``rleFrString``: 5 bits a character, offset by 48, each run after the second a delta from
    the run two before). A string that ends inside a run, or decodes to a negative run, is a
    ``ValueError``."""
    if not isinstance(counts, str):
        return list(counts)
    runs: list[int] = []
    position, size = 0, len(counts)
    while position < size:
        value, shift, more = 0, 0, True
        while more:
            if position >= size:
                raise ValueError("the RLE counts string ends inside a run")
            group = ord(counts[position]) - 48
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            position += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError("the RLE counts decode to a negative run length")
        runs.append(value)
    return runs


def rle_area(rle: Mapping[str, Any]) -> int:
    """The pixels a COCO RLE mask covers: its odd runs (runs alternate, background first)."""
    return sum(rle_counts(rle["counts"])[1::2])
