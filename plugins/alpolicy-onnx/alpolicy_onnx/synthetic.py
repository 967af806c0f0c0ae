"""Synthetic frames of circles, squares and triangles on cluttered backgrounds.

Everything the demo detector sees, in training and in the demo, comes from here: nothing is
downloaded. Output is deterministic for given arguments (NumPy's ``default_rng`` drives every choice;
the footage of one seed also depends on ``n_frames`` and ``size``).

Two generators:

* :func:`random_scene` renders one independent frame and its ground truth, for training and
  evaluation. ``hard=True`` adds the cases that make a detector unsure: partial occlusion,
  Gaussian blur, low-contrast shapes, washed-out or dark frames, small shapes.
* :func:`write_footage` writes a folder of JPEG frames shaped like real footage: a few scenes
  (static background, a fixed set of shapes), shapes drifting slowly so consecutive frames are
  near-duplicates, spans of hard frames (blur, fog, darkness, an occluder passing) and a
  ``ground_truth.json``, and its COCO export ``ground_truth.coco.json`` (:func:`coco_ground_truth`:
  what ``alpolicy evaluate --ground-truth`` reads). It is also a command line::

      python -m alpolicy_onnx.synthetic OUT_DIR [--frames N] [--seed S] [--width W] [--height H]

Ground-truth boxes use the same keys as detections (the Roboflow inference shape, without
``confidence``): ``{"x": cx, "y": cy, "width": w, "height": h, "class": name, "class_id": id}``,
in pixels of the frame, clipped to it. A shape whose box is mostly (over 60 %) outside the frame
is left out of the ground truth. Occluded shapes keep their full (amodal) box.
With ``random_scene(..., polygons=True)`` each entry also carries ``points``, the shape's exact
outline as in a segmentation prediction (``[{"x": .., "y": ..}, ...]``; a circle as a
48-gon), clipped to the frame and amodal like the box: the ground truth of the demo
segmentation model. Asking for it draws no extra random numbers, so the frames are the same.

Clutter (lines, long bars, jagged blobs, scribbles, small dots) is drawn so that it never looks
like one of the three classes: bars are at least 3.5 times longer than wide, blobs have many
irregular spikes, dots are far smaller than the smallest shape.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "CLASS_NAMES",
    "COCO_FILE",
    "coco_ground_truth",
    "GroundTruth",
    "random_scene",
    "write_footage",
    "main",
]

#: Class names, in class-id order (the demo model's ``names`` metadata).
CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle")

#: A ground-truth box: ``x``/``y`` centre, ``width``, ``height`` (pixels), ``class``, ``class_id``.
GroundTruth = dict

# Shape "radius" (half the extent) as a fraction of min(width, height) of the frame.
_MIN_RADIUS = 0.03
_MAX_RADIUS = 0.15
# A box keeps its ground-truth entry when at least this fraction of it lies inside the frame.
_MIN_VISIBLE = 0.4


@dataclass
class _Shape:
    class_id: int
    cx: float
    cy: float
    radius: float
    angle: float  # radians
    colour: tuple[int, int, int]
    outline: tuple[int, int, int] | None = None
    outline_width: int = 0
    # triangle irregularity: per-vertex angle (radians) and radius jitter
    jitter: tuple[float, ...] = ()
    # motion, per frame (footage only)
    vx: float = 0.0
    vy: float = 0.0
    spin: float = 0.0

    def polygon(self) -> list[tuple[float, float]]:
        if self.class_id == 1:  # square: side 1.6 r
            half_diag = 1.6 * self.radius / math.sqrt(2.0)
            return [
                (self.cx + half_diag * math.cos(self.angle + k * math.pi / 2 + math.pi / 4),
                 self.cy + half_diag * math.sin(self.angle + k * math.pi / 2 + math.pi / 4))
                for k in range(4)
            ]
        if self.class_id == 2:  # triangle, circumradius 1.15 r, slightly irregular
            da = self.jitter[:3] if self.jitter else (0.0, 0.0, 0.0)
            dr = self.jitter[3:6] if self.jitter else (1.0, 1.0, 1.0)
            rr = 1.15 * self.radius
            return [
                (self.cx + rr * dr[k] * math.cos(self.angle + da[k] + k * 2 * math.pi / 3),
                 self.cy + rr * dr[k] * math.sin(self.angle + da[k] + k * 2 * math.pi / 3))
                for k in range(3)
            ]
        raise ValueError("circles have no polygon")

    def outline_polygon(self, circle_points: int = 48) -> list[tuple[float, float]]:
        """The shape's outline as a polygon, a circle as a regular ``circle_points``-gon."""
        if self.class_id != 0:
            return self.polygon()
        return [(self.cx + self.radius * math.cos(2 * math.pi * k / circle_points),
                 self.cy + self.radius * math.sin(2 * math.pi * k / circle_points)) for k in range(circle_points)]

    def box(self) -> tuple[float, float, float, float]:
        """Tight axis-aligned box (x1, y1, x2, y2) of the full shape, unclipped."""
        if self.class_id == 0:
            return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)
        pts = self.polygon()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        return (min(xs), min(ys), max(xs), max(ys))

    def draw(self, draw: ImageDraw.ImageDraw, colour: tuple[int, int, int] | None = None) -> None:
        fill = colour if colour is not None else self.colour
        outline = self.outline if colour is None else None
        width = self.outline_width if outline is not None else 0
        if self.class_id == 0:
            draw.ellipse(self.box(), fill=fill, outline=outline, width=width)
        else:
            draw.polygon(self.polygon(), fill=fill, outline=outline, width=width)


def _luma(colour: Any) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, low_contrast: bool) -> tuple[int, int, int]:
    """A shape colour far from (or, for ``low_contrast``, close to) the local background colour."""
    bg = background.astype(np.float64)
    bg_luma = _luma(bg)
    if low_contrast:
        # a small shift in luma, plus some hue change so it is not invisible
        target = rng.uniform(15.0, 32.0) * (1 if (bg_luma < 128) == bool(rng.integers(0, 4)) else -1)
        delta = rng.normal(0.0, 10.0, 3)
        delta += target - _luma(delta)
        colour = np.clip(bg + delta, 0, 255)
        if abs(_luma(colour) - bg_luma) < 8:  # clipped against 0 or 255: go the other way
            colour = np.clip(bg - delta, 0, 255)
        return tuple(int(v) for v in colour)  # type: ignore[return-value]
    for _ in range(30):
        colour = _random_colour(rng)
        if abs(_luma(colour) - bg_luma) >= 55:
            return colour
    base = 235 if bg_luma < 128 else 20
    return tuple(int(np.clip(base + v, 0, 255)) for v in rng.integers(-20, 21, 3))  # type: ignore[return-value]


def _background(rng: np.random.Generator, width: int, height: int, clutter: int) -> Image.Image:
    """A gradient with smooth blotches and ``clutter`` distractor items (no sensor noise)."""
    # built at 1/8 resolution and upsampled: both parts are smooth, and this is much faster
    sw, sh = max(2, width // 8), max(2, height // 8)
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    c1 = np.clip(c0 + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(0.0, 1.0, sw, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None]
    t = math.cos(theta) * xs + math.sin(theta) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    arr = c0[None, None, :] + t[..., None] * (c1 - c0)[None, None, :]
    # low-frequency blotches: a tiny random grid upsampled smoothly
    gh, gw = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    grid = rng.normal(0, rng.uniform(5, 30), (gh, gw, 3)).astype(np.float32)
    blotch = np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(grid[..., c])).resize((sw, sh), Image.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    small = Image.fromarray(np.clip(arr + blotch, 0, 255).astype(np.uint8))
    image = small.resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    scale = min(width, height)
    for _ in range(clutter):
        _draw_clutter(rng, draw, width, height, scale)
    return image


def _draw_clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int, scale: int,
                  near: tuple[float, float] | None = None, extent: float | None = None) -> None:
    """One distractor that is not a circle, square or triangle (a line, bar, jagged blob, scribble or dots)."""
    colour = _random_colour(rng)
    if near is None:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    else:
        cx, cy = near
    size = extent if extent is not None else rng.uniform(0.03, 0.25) * scale
    kind = int(rng.integers(0, 5)) if near is None else int(rng.integers(1, 3))
    if kind == 0:  # line
        a = rng.uniform(0, math.pi)
        length = rng.uniform(0.1, 0.8) * scale
        dx, dy = math.cos(a) * length / 2, math.sin(a) * length / 2
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=int(rng.integers(1, 5)))
    elif kind == 1:  # bar: a long thin rotated rectangle (aspect >= 3.5, never a square)
        a = rng.uniform(0, math.pi)
        length = max(size * 2.0, 8.0)
        thick = length / rng.uniform(3.5, 9.0)
        ux, uy = math.cos(a), math.sin(a)
        px, py = -uy, ux
        hl, ht = length / 2, thick / 2
        pts = [(cx + sx * hl * ux + sy * ht * px, cy + sx * hl * uy + sy * ht * py)
               for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
        draw.polygon(pts, fill=colour)
    elif kind == 2:  # jagged blob: many spikes of irregular length
        n = int(rng.integers(9, 17))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = size * rng.uniform(0.3, 1.0, n)
        radii[::2] *= rng.uniform(0.35, 0.6)
        pts = [(cx + r * math.cos(t), cy + r * math.sin(t)) for r, t in zip(radii, angles)]
        draw.polygon(pts, fill=colour)
    elif kind == 3:  # scribble
        n = int(rng.integers(4, 9))
        pts = [(cx, cy)]
        for _ in range(n):
            pts.append((pts[-1][0] + rng.normal(0, size / 2), pts[-1][1] + rng.normal(0, size / 2)))
        draw.line(pts, fill=colour, width=int(rng.integers(1, 4)), joint="curve")
    else:  # a few small dots, far smaller than the smallest circle
        r = max(1.0, 0.006 * scale)
        for _ in range(int(rng.integers(3, 12))):
            x, y = cx + rng.normal(0, size), cy + rng.normal(0, size)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _new_shape(rng: np.random.Generator, width: int, height: int, radius: float, bg: np.ndarray,
               low_contrast: bool, cx: float | None = None, cy: float | None = None) -> _Shape:
    class_id = int(rng.integers(0, len(CLASS_NAMES)))
    if cx is None:
        cx = rng.uniform(radius * 0.9, width - radius * 0.9)
    if cy is None:
        cy = rng.uniform(radius * 0.9, height - radius * 0.9)
    ix = int(np.clip(cx, 0, width - 1))
    iy = int(np.clip(cy, 0, height - 1))
    local = bg[iy, ix].astype(np.float64)
    colour = _contrasting_colour(rng, local, low_contrast)
    outline = None
    outline_width = 0
    if not low_contrast and rng.random() < 0.3:
        outline = tuple(int(v) for v in np.clip(np.array(colour) * rng.uniform(0.3, 0.7), 0, 255))
        outline_width = int(rng.integers(1, 4))
    jitter: tuple[float, ...] = ()
    if class_id == 2:
        jitter = tuple(rng.uniform(-0.17, 0.17, 3)) + tuple(rng.uniform(0.9, 1.1, 3))
    return _Shape(class_id, float(cx), float(cy), float(radius), float(rng.uniform(0, 2 * math.pi)), colour,
                  outline, outline_width, jitter)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _clip_polygon(points: list[tuple[float, float]], width: float, height: float) -> list[tuple[float, float]]:
    """``points`` clipped to the frame ``[0, width] x [0, height]`` (Sutherland-Hodgman; shapes are convex)."""
    edges = ((0, 0.0, 1), (0, width, -1), (1, 0.0, 1), (1, height, -1))  # (axis, bound, inside direction)
    for axis, bound, direction in edges:
        if not points:
            break
        inside = [(p[axis] - bound) * direction >= 0 for p in points]
        clipped: list[tuple[float, float]] = []
        for k, p in enumerate(points):
            q, q_inside = points[k - 1], inside[k - 1]
            if inside[k] != q_inside:  # the edge q -> p crosses the bound
                t = (bound - q[axis]) / (p[axis] - q[axis])
                crossing = [q[0] + t * (p[0] - q[0]), q[1] + t * (p[1] - q[1])]
                crossing[axis] = bound
                clipped.append((crossing[0], crossing[1]))
            if inside[k]:
                clipped.append(p)
        points = clipped
    return points


def _ground_truth(shapes: list[_Shape], width: int, height: int, polygons: bool = False) -> list[GroundTruth]:
    truths: list[GroundTruth] = []
    for shape in shapes:
        x1, y1, x2, y2 = shape.box()
        area = (x2 - x1) * (y2 - y1)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        if cx2 <= cx1 or cy2 <= cy1 or (cx2 - cx1) * (cy2 - cy1) < _MIN_VISIBLE * area:
            continue
        truths.append({
            "x": round((cx1 + cx2) / 2, 2),
            "y": round((cy1 + cy2) / 2, 2),
            "width": round(cx2 - cx1, 2),
            "height": round(cy2 - cy1, 2),
            "class": CLASS_NAMES[shape.class_id],
            "class_id": shape.class_id,
        })
        if polygons:
            truths[-1]["points"] = [{"x": round(x, 2), "y": round(y, 2)}
                                    for x, y in _clip_polygon(shape.outline_polygon(), float(width), float(height))]
    return truths


_NOISE_BANK: np.ndarray | None = None
_NOISE_BANK_SIZE = 1024


def _noise_bank() -> np.ndarray:
    """A fixed bank of unit Gaussian noise; frames take a crop at a random offset (fast, deterministic)."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20240601).standard_normal(
            (_NOISE_BANK_SIZE, _NOISE_BANK_SIZE, 3), dtype=np.float32)
    return _NOISE_BANK


def _add_noise(arr: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    h, w = arr.shape[:2]
    bank = _noise_bank()
    if h <= bank.shape[0] - 64 and w <= bank.shape[1] - 64:
        oy = int(rng.integers(0, bank.shape[0] - h + 1))
        ox = int(rng.integers(0, bank.shape[1] - w + 1))
        noise = bank[oy:oy + h, ox:ox + w]
    else:
        noise = rng.standard_normal(arr.shape, dtype=np.float32)
    out = arr.astype(np.float32)
    out += noise * np.float32(sigma)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _place_shapes(rng: np.random.Generator, width: int, height: int, count: int, bg: np.ndarray,
                  low_contrast_p: float, small: bool) -> list[_Shape]:
    scale = min(width, height)
    shapes: list[_Shape] = []
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(count):
        for _attempt in range(40):
            if small:
                radius = rng.uniform(_MIN_RADIUS, 0.06) * scale
            else:
                # favour small and medium shapes, like objects in real footage
                radius = (_MIN_RADIUS + (_MAX_RADIUS - _MIN_RADIUS) * rng.random() ** 1.5) * scale
            shape = _new_shape(rng, width, height, radius, bg, rng.random() < low_contrast_p)
            box = shape.box()
            if all(_iou(box, other) < 0.15 for other in boxes):
                shapes.append(shape)
                boxes.append(box)
                break
    return shapes


def _occlude(rng: np.random.Generator, draw: ImageDraw.ImageDraw, shape: _Shape, width: int, height: int,
             bg: np.ndarray) -> None:
    """Cover part (roughly 20-50 %) of ``shape`` with clutter or a background-coloured patch."""
    a = rng.uniform(0, 2 * math.pi)
    d = shape.radius * rng.uniform(0.6, 1.1)
    ox, oy = shape.cx + d * math.cos(a), shape.cy + d * math.sin(a)
    if rng.random() < 0.4:
        ix = int(np.clip(ox, 0, width - 1))
        iy = int(np.clip(oy, 0, height - 1))
        colour = tuple(int(v) for v in bg[iy, ix])
        r = shape.radius * rng.uniform(0.6, 0.9)
        draw.rectangle((ox - r, oy - r, ox + r, oy + r), fill=colour)
    else:
        _draw_clutter(rng, draw, width, height, min(width, height), near=(ox, oy),
                      extent=shape.radius * rng.uniform(0.7, 1.0))


def random_scene(rng: np.random.Generator | int, size: tuple[int, int] = (640, 480),
                 hard: bool = False, polygons: bool = False) -> tuple[Image.Image, list[GroundTruth]]:
    """Render one random frame of ``size`` = (width, height) and return ``(image, ground_truth)``.

    ``rng`` is a ``numpy.random.Generator`` (or an int seed). Clean frames hold 0-6 shapes that
    overlap little, in colours that stand out from the background, plus 4-20 clutter items and
    mild sensor noise. ``hard=True`` adds at least one of: occluded shapes, low-contrast shapes,
    small shapes, Gaussian blur, a washed-out frame, a dark frame. ``polygons=True`` adds each
    shape's outline (``points``, see the module docstring) to its ground truth.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    width, height = int(size[0]), int(size[1])
    scale = min(width, height)
    image = _background(rng, width, height, clutter=int(rng.integers(4, 21)))
    bg = np.asarray(image)

    effects: set[str] = set()
    if hard:
        for name, p in (("occlusion", 0.45), ("low_contrast", 0.45), ("small", 0.25), ("blur", 0.45),
                        ("washed_out", 0.25), ("dark", 0.2)):
            if rng.random() < p:
                effects.add(name)
        if not effects:
            effects.add(("occlusion", "low_contrast", "blur")[int(rng.integers(0, 3))])

    count = int(rng.integers(1, 7)) if rng.random() > 0.05 else 0
    # low-contrast shapes in a washed-out or dark frame would be invisible: keep them apart
    low_contrast_p = 0.6 if "low_contrast" in effects and not effects & {"washed_out", "dark"} else 0.0
    shapes = _place_shapes(rng, width, height, count, bg, low_contrast_p, "small" in effects)
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        shape.draw(draw)
    if "occlusion" in effects:
        for shape in shapes:
            if rng.random() < 0.6:
                _occlude(rng, draw, shape, width, height, bg)

    if "blur" in effects:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 4.0) * scale / 480))
    arr = np.asarray(image).astype(np.float32)
    if "washed_out" in effects:
        mean = arr.mean()
        arr = mean + (arr - mean) * rng.uniform(0.25, 0.5) + rng.uniform(-20, 40)
    if "dark" in effects:
        arr = arr * rng.uniform(0.12, 0.3)
    sigma = rng.uniform(1.0, 6.0) + (6.0 if "dark" in effects else 0.0)
    arr = _add_noise(arr, rng, sigma)
    return Image.fromarray(arr), _ground_truth(shapes, width, height, polygons)


# --------------------------------------------------------------------------------------------
# footage


@dataclass
class _SceneSpec:
    index: int
    start: int
    length: int
    background: Image.Image
    shapes: list[_Shape]
    noise_sigma: float
    events: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> [start, stop) in scene frames
    occluder: dict[str, Any] = field(default_factory=dict)


def _split(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    if parts <= 1:
        return [total]
    weights = rng.uniform(0.6, 1.4, parts)
    lengths = np.floor(weights / weights.sum() * total).astype(int)
    lengths = np.maximum(lengths, 1)
    lengths[-1] = total - lengths[:-1].sum()
    while lengths[-1] < 1:  # only for tiny totals
        i = int(np.argmax(lengths[:-1]))
        lengths[i] -= 1
        lengths[-1] += 1
    return [int(v) for v in lengths]


def _make_scene(rng: np.random.Generator, index: int, start: int, length: int, width: int, height: int,
                empty: bool) -> _SceneSpec:
    background = _background(rng, width, height, clutter=int(rng.integers(5, 21)))
    bg = np.asarray(background)
    count = 0 if empty else int(rng.integers(1, 6))
    shapes = _place_shapes(rng, width, height, count, bg, low_contrast_p=0.15, small=False)
    scale = min(width, height)
    for shape in shapes:
        speed = rng.uniform(0.2, 2.5) * scale / 480
        heading = rng.uniform(0, 2 * math.pi)
        shape.vx, shape.vy = speed * math.cos(heading), speed * math.sin(heading)
        shape.spin = rng.normal(0, 0.01)
    spec = _SceneSpec(index, start, length, background, shapes, noise_sigma=float(rng.uniform(1.5, 5.0)))
    # spans of hard frames; most scenes get one or two
    for name, p in (("blur", 0.6), ("fog", 0.5), ("dark", 0.4), ("occluder", 0.6)):
        if rng.random() < p and length >= 8:
            span = int(rng.integers(4, max(5, min(20, length // 3))))
            begin = int(rng.integers(0, length - span + 1))
            spec.events[name] = (begin, begin + span)
    if "occluder" in spec.events:
        begin, stop = spec.events["occluder"]
        y = rng.uniform(0.2, 0.8) * height
        spec.occluder = {
            "y": y,
            "thick": rng.uniform(0.08, 0.2) * scale,
            "colour": _random_colour(rng),
            "tilt": rng.uniform(-0.3, 0.3),
            "from": -0.2 * width,
            "to": 1.2 * width,
        }
        if shapes and rng.random() < 0.7:  # make it cross a shape
            spec.occluder["y"] = shapes[int(rng.integers(0, len(shapes)))].cy
    return spec


def _step(shape: _Shape, width: int, height: int) -> None:
    shape.cx += shape.vx
    shape.cy += shape.vy
    shape.angle += shape.spin
    # bounce when the centre reaches the border, so shapes may be cut by the frame edge for a while
    if not 0 <= shape.cx <= width:
        shape.vx = -shape.vx
        shape.cx = min(max(shape.cx, 0.0), float(width))
    if not 0 <= shape.cy <= height:
        shape.vy = -shape.vy
        shape.cy = min(max(shape.cy, 0.0), float(height))


def write_footage(out_dir: str | Path, n_frames: int = 300, seed: int = 0,
                  size: tuple[int, int] = (640, 480), quality: int = 90) -> Path:
    """Write ``n_frames`` JPEG frames ``frame_00001.jpg``... and ``ground_truth.json`` to ``out_dir``.

    Frames come in scenes of about 60 frames (at least one scene; one scene in five, when there are
    several, has no shapes at all). Within a scene the camera is still and shapes drift slowly,
    so consecutive frames are near-duplicates. Some spans are hard: ``blur`` (Gaussian blur),
    ``fog`` (washed-out, low contrast), ``dark`` (nearly black frames), ``occluder`` (a bar passes
    in front). ``ground_truth.json`` holds, per frame, its file name, size, scene, these tags and
    its ground-truth boxes (see the module docstring); ``ground_truth.coco.json`` the same boxes
    as COCO (:func:`coco_ground_truth`). Returns the path of ``ground_truth.json``.
    """
    if n_frames < 0:
        raise ValueError("n_frames must be >= 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = int(size[0]), int(size[1])
    n_scenes = max(1, round(n_frames / 60))
    lengths = _split(rng, n_frames, n_scenes) if n_frames else []
    empty_scene = int(rng.integers(0, n_scenes)) if n_scenes >= 3 else -1
    # one bank of sensor noise, cropped at a random offset per frame (much faster than fresh noise)
    pad = 32
    noise_bank = rng.standard_normal((height + pad, width + pad, 3), dtype=np.float32)
    frames: list[dict[str, Any]] = []
    number = 0
    start = 0
    for scene_index, length in enumerate(lengths):
        spec = _make_scene(rng, scene_index, start, length, width, height, empty=scene_index == empty_scene)
        scale = min(width, height)
        for t in range(length):
            number += 1
            tags = sorted(name for name, (b, e) in spec.events.items() if b <= t < e)
            image = spec.background.copy()
            draw = ImageDraw.Draw(image)
            for shape in spec.shapes:
                shape.draw(draw)
            if "occluder" in tags:
                b, e = spec.events["occluder"]
                occ = spec.occluder
                progress = (t - b + 0.5) / (e - b)
                x = occ["from"] + (occ["to"] - occ["from"]) * progress
                half = occ["thick"] / 2
                tilt = occ["tilt"] * height
                draw.polygon([(x - half, -10), (x + half, -10), (x + half + tilt, height + 10),
                              (x - half + tilt, height + 10)], fill=occ["colour"])
            if "blur" in tags:
                image = image.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 4.0) * scale / 480))
            arr = np.asarray(image).astype(np.float32)
            sigma = spec.noise_sigma
            if "fog" in tags:
                arr = arr * 0.3 + 150.0
            if "dark" in tags:
                arr = arr * 0.1
                sigma += 3.0
            oy, ox = int(rng.integers(0, pad)), int(rng.integers(0, pad))
            arr += noise_bank[oy:oy + height, ox:ox + width] * sigma
            frame = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            name = f"frame_{number:05d}.jpg"
            frame.save(out / name, quality=quality)
            frames.append({
                "file": name,
                "width": width,
                "height": height,
                "scene": scene_index,
                "tags": tags,
                "boxes": _ground_truth(spec.shapes, width, height),
            })
            for shape in spec.shapes:
                _step(shape, width, height)
        start += length
    document = {"classes": list(CLASS_NAMES), "seed": seed, "size": [width, height], "frames": frames}
    path = out / "ground_truth.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    (out / COCO_FILE).write_text(json.dumps(coco_ground_truth(frames), indent=1) + "\n")
    return path


#: The COCO export of the footage's ground truth, beside ``ground_truth.json``.
COCO_FILE = "ground_truth.coco.json"


def coco_ground_truth(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The frames of ``ground_truth.json`` as a COCO detection dataset (what ``alpolicy evaluate
    --ground-truth`` and pycocotools read): categories circle/square/triangle with ids 1-3
    (``class_id + 1``: 0 is background to many COCO tools), image ids from 1 in frame order,
    ``bbox`` ``[x_min, y_min, width, height]`` from the centre-based boxes, ``area`` the box's,
    ``iscrowd`` 0. No date or version inside: the same footage writes the same file."""
    images, annotations = [], []
    for image_id, frame in enumerate(frames, start=1):
        images.append({"id": image_id, "file_name": frame["file"], "width": frame["width"], "height": frame["height"]})
        for b in frame["boxes"]:
            x0, y0 = round(b["x"] - b["width"] / 2, 2), round(b["y"] - b["height"] / 2, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": b["class_id"] + 1,
                                "bbox": [x0, y0, b["width"], b["height"]], "area": round(b["width"] * b["height"], 4),
                                "iscrowd": 0, "segmentation": []})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)]
    return {"info": {"description": "alpolicy_onnx.synthetic footage ground truth"}, "licenses": [],
            "categories": categories, "images": images, "annotations": annotations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alpolicy_onnx.synthetic",
        description="Write synthetic footage (JPEG frames of circles, squares and triangles) and its ground truth.",
    )
    parser.add_argument("out_dir", help="folder to write frame_00001.jpg..., ground_truth.json and ground_truth.coco.json into")
    parser.add_argument("--frames", type=int, default=300, help="number of frames (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=640, help="frame width in pixels (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels (default 480)")
    args = parser.parse_args(argv)
    if args.frames < 0 or args.width < 32 or args.height < 32:
        parser.error("--frames must be >= 0 and --width/--height >= 32")
    started = time.perf_counter()
    path = write_footage(args.out_dir, n_frames=args.frames, seed=args.seed, size=(args.width, args.height))
    elapsed = time.perf_counter() - started
    print(f"wrote {args.frames} frames and {path} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
