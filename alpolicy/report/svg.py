"""Tiny inline SVG for the HTML report: histograms (linear or log x), horizontal bars, and the
overlay of a thumbnail (segmentation polygons, pose keypoints: :func:`overlay`).

Why hand-written: the report must open from ``file://`` with no CDN, no server and no JS, and a
plotting library (matplotlib is ~40 MB) would be a heavy dependency for three small charts. Every
chart is built with :func:`alpolicy.report.markup.html`, so every text that reaches the SVG is escaped;
numbers are formatted by us.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Iterable, Sequence

from ..formats.coco import box as corner_box
from ..policy.prediction import Prediction, detection_label
from .markup import Markup, html, join

#: Plot area margins (left, right, top, bottom) in SVG pixels.
_MARGIN = (48, 12, 26, 34)
_BAR = "#4e79a7"
_BAND = "#f28e2b"
#: Overlay colours: a witness as the report draws its box (orange), any other detection grey.
WITNESS = "#f28e2b"
OTHER = "#aaaaaa"
#: A keypoint the model is less sure of than this is drawn hollow and dashed (probably hidden or
#: off the body), as pose viewers tell visible keypoints from guessed ones.
LOW_KEYPOINT_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Bins:
    """Counts per bin; ``edges`` has one more entry than ``counts`` (in data units, not log)."""

    counts: list[int]
    edges: list[float]
    log: bool = False
    #: Values outside [edges[0], edges[-1]] (counted nowhere else, reported under the chart).
    outside: int = 0


def bin_values(values: Iterable[float], lo: float, hi: float, bins: int, *, log: bool = False) -> Bins:
    """Histogram ``values`` into ``bins`` equal bins over [lo, hi] (equal in log10 when ``log``)."""
    if log:
        if lo <= 0 or hi <= 0:
            raise ValueError("a log histogram needs a positive range")
        a, b = math.log10(lo), math.log10(hi)
    else:
        a, b = lo, hi
    if b <= a:
        b = a + 1.0
    width = (b - a) / bins
    counts = [0] * bins
    outside = 0
    for value in values:
        if log:
            if value <= 0:
                outside += 1
                continue
            value = math.log10(value)
        if value < a or value > b:
            outside += 1
            continue
        counts[min(bins - 1, int((value - a) / width))] += 1
    edges = [a + width * i for i in range(bins + 1)]
    if log:
        edges = [10**e for e in edges]
    return Bins(counts, edges, log, outside)


def positive_range(values: Sequence[float], *, pad: float = 1.0) -> tuple[float, float]:
    """A log-scale range covering the positive values, widened to whole decades."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 1.0, 10.0
    lo, hi = min(positive), max(positive)
    return 10 ** math.floor(math.log10(lo) - (pad - 1)), 10 ** math.ceil(math.log10(hi) - 1e-9)


def histogram(bins: Bins, *, title: str, x_label: str, bands: Sequence[tuple[float, float]] = (),
              width: int = 560, height: int = 220, css_id: str | None = None) -> Markup:
    """An SVG histogram; each band (e.g. a rule's [min, max]) is shaded and outlined over the bars."""
    left, right, top, bottom = _MARGIN
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = _axis(bins.edges[0], bins.log), _axis(bins.edges[-1], bins.log)

    def sx(value: float) -> float:
        clamped = min(max(value, bins.edges[0]), bins.edges[-1])  # also maps -inf/inf bounds to the ends
        return left + (_axis(clamped, bins.log) - x0) / (x1 - x0) * plot_w

    peak = max(bins.counts, default=0) or 1
    parts = [_open(width, height, title, css_id)]
    for low, high in bands:
        a, b = sx(low), sx(high)
        parts.append(html('<rect class="band" x="{:.1f}" y="{}" width="{:.1f}" height="{}" '
                          'fill="{band}" fill-opacity="0.18" stroke="{band}" stroke-dasharray="4 3"/>',
                          a, top, max(b - a, 1.5), plot_h, band=_BAND))
    for count, (a, b) in zip(bins.counts, zip(bins.edges, bins.edges[1:])):
        if count:
            h = count / peak * plot_h
            parts.append(html('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"><title>{} to {}: {}</title></rect>',
                              sx(a) + 0.5, top + plot_h - h, max(sx(b) - sx(a) - 1, 0.5), h, _BAR, _num(a), _num(b), count))
    parts.extend(_x_axis(bins, sx, left, top + plot_h, plot_w))
    parts.extend(_y_axis(peak, left, top, plot_h))
    parts.append(_text(left + plot_w / 2, height - 4, x_label, anchor="middle"))
    return html("{}</svg>", join(parts))


def bar_chart(items: Sequence[tuple[str, int]], *, title: str, width: int = 560, row: int = 20,
              css_id: str | None = None) -> Markup:
    """Horizontal bars, one per (label, count), in the order given."""
    label_w, right, top = 150, 60, 26
    height = top + row * max(len(items), 1) + 8
    peak = max((count for _, count in items), default=0) or 1
    parts = [_open(width, height, title, css_id)]
    if not items:
        parts.append(_text(width / 2, top + 14, "nothing to show", anchor="middle"))
    for index, (label, count) in enumerate(items):
        y = top + index * row
        w = count / peak * (width - label_w - right)
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(_text(label_w - 6, y + row * 0.7, shown, anchor="end"))
        parts.append(html('<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>{}: {}</title></rect>',
                          label_w, y + 3, max(w, 1), row - 6, _BAR, label, count))
        parts.append(_text(label_w + w + 4, y + row * 0.7, str(count)))
    return html("{}</svg>", join(parts))


@dataclass(frozen=True)
class Mark:
    """How :func:`overlay` draws one detection when the caller decides instead of the witness
    rule (the evaluation page: a miss, a false positive, a wrong-class pair, a match): ``kind``
    is its CSS class, ``title`` its tooltip (a ground-truth box has no confidence to show), and
    a higher ``layer`` is drawn later (on top)."""

    kind: str
    colour: str
    width: float
    title: str
    layer: int = 0


def overlay(prediction: Prediction, witnesses: Collection[int] = (), *, marks: Sequence[Mark] | None = None) -> Markup | None:
    """An SVG in the prediction's own pixels (the caller scales it to the thumbnail first, with
    :func:`alpolicy.formats.roboflow.scaled`) with each detection's polygon (``points``) as a
    ``<polygon>`` and its keypoints as small circles, each titled with its class and confidence
    (the browser's tooltip); the detections at the indices ``witnesses`` in orange, drawn last
    (on top), the others grey; a keypoint below :data:`LOW_KEYPOINT_CONFIDENCE` hollow and
    dashed. ``None`` when there is nothing of the kind (boxes are drawn into the thumbnail).

    ``marks`` (one :class:`Mark` per detection) replaces the witness colouring, and then the
    boxes are drawn here too, as ``<rect class="KIND">``: each carries its own colour and
    tooltip, which a box burnt into the JPEG could not.
    Every text goes through :func:`~alpolicy.report.markup.html`: a class name stays text."""
    styles = marks if marks is not None else [
        Mark("witness", WITNESS, 2, "", 1) if index in witnesses else Mark("other", OTHER, 1, "", 0)
        for index in range(len(prediction.detections))
    ]
    order = sorted(range(len(prediction.detections)), key=lambda index: styles[index].layer)
    parts: list[Markup] = []
    for index in order:
        detection, style = prediction.detections[index], styles[index]
        title = style.title or detection_label(detection)
        if marks is not None and prediction.has_boxes:
            x, y, w, h = corner_box(detection, prediction.width, prediction.height)
            parts.append(html('<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="none" '
                              'stroke="{}" stroke-width="{}"><title>{}</title></rect>',
                              style.kind, x, y, w, h, style.colour, style.width, title))
        points = detection.get("points")
        if isinstance(points, list) and len(points) >= 2:
            parts.append(html('<polygon class="{}" points="{}" fill="{c}" fill-opacity="0.25" stroke="{c}" stroke-width="{}">'
                              '<title>{}</title></polygon>', style.kind,
                              " ".join(f"{point['x']:.1f},{point['y']:.1f}" for point in points), style.width,
                              title, c=style.colour))
        for keypoint in detection.get("keypoints") or ():
            confidence = float(keypoint.get("confidence", 1.0))
            low = confidence < LOW_KEYPOINT_CONFIDENCE
            parts.append(html('<circle class="keypoint{}" cx="{:.1f}" cy="{:.1f}" r="3" fill="{}" stroke="{c}" stroke-width="1.5"{}>'
                              '<title>{} {:.2f} ({})</title></circle>', " low" if low else "", keypoint["x"], keypoint["y"],
                              "none" if low else style.colour, Markup(' stroke-dasharray="2 1.5"') if low else "",
                              keypoint.get("class", ""), confidence, detection["class"], c=style.colour))
    if not parts:
        return None
    return html('<svg class="overlay" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
                '{}</svg>', join(parts), w=prediction.width, h=prediction.height)


# ---------------------------------------------------------------------- pieces
def _open(width: int, height: int, title: str, css_id: str | None) -> Markup:
    return html('<svg{ident} xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" '
                'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><title>{title}</title>{text}',
                ident=html(' id="{}"', css_id) if css_id else "", w=width, h=height, title=title,
                text=_text(6, 16, title, weight="bold"))


def _text(x: float, y: float, text: str, *, anchor: str = "start", weight: str = "normal") -> Markup:
    return html('<text x="{:.1f}" y="{:.1f}" text-anchor="{}" font-weight="{}" fill="#333">{}</text>', x, y, anchor, weight, text)


def _axis(value: float, log: bool) -> float:
    return math.log10(value) if log else value


def _x_axis(bins: Bins, sx, left: float, base: float, plot_w: float) -> list[Markup]:
    parts = [html('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888"/>', left, base, left + plot_w, base)]
    for tick in _ticks(bins.edges[0], bins.edges[-1], bins.log):
        x = sx(tick)
        parts.append(html('<line x1="{x:.1f}" y1="{}" x2="{x:.1f}" y2="{}" stroke="#888"/>', base, base + 4, x=x))
        parts.append(_text(x, base + 15, _num(tick), anchor="middle"))
    return parts


def _y_axis(peak: int, left: float, top: float, plot_h: float) -> list[Markup]:
    return [
        html('<line x1="{left}" y1="{}" x2="{left}" y2="{}" stroke="#888"/>', top, top + plot_h, left=left),
        _text(left - 4, top + 8, str(peak), anchor="end"),
        _text(left - 4, top + plot_h, "0", anchor="end"),
    ]


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
        step = max(1, (last - first) // 8 + 1)
        return [10.0**e for e in range(first, last + 1, step)]
    return [lo + (hi - lo) * i / 5 for i in range(6)]


def _num(value: float) -> str:
    """Short axis numbers: 0.2, 1e+04 -> 10k, 1e6 -> 1M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:.3g}"
