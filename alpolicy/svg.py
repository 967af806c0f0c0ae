"""Tiny inline-SVG charts for the HTML report: histograms (linear or log x) and horizontal bars.

Why hand-written: the report must open from ``file://`` with no CDN, no server and no JS, and a
plotting library (matplotlib is ~40 MB) would be a heavy dependency for three small charts. Every
text that reaches the SVG goes through :func:`html.escape`; numbers are formatted by us.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Iterable, Sequence

#: Plot area margins (left, right, top, bottom) in SVG pixels.
_MARGIN = (48, 12, 26, 34)
_BAR = "#4e79a7"
_BAND = "#f28e2b"


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
              width: int = 560, height: int = 220, css_id: str | None = None) -> str:
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
        parts.append(f'<rect class="band" x="{a:.1f}" y="{top}" width="{max(b - a, 1.5):.1f}" height="{plot_h}" '
                     f'fill="{_BAND}" fill-opacity="0.18" stroke="{_BAND}" stroke-dasharray="4 3"/>')
    for count, (a, b) in zip(bins.counts, zip(bins.edges, bins.edges[1:])):
        if count:
            h = count / peak * plot_h
            parts.append(f'<rect x="{sx(a) + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(sx(b) - sx(a) - 1, 0.5):.1f}" '
                         f'height="{h:.1f}" fill="{_BAR}"><title>{_num(a)} to {_num(b)}: {count}</title></rect>')
    parts.extend(_x_axis(bins, sx, left, top + plot_h, plot_w))
    parts.extend(_y_axis(peak, left, top, plot_h))
    parts.append(_text(left + plot_w / 2, height - 4, x_label, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: Sequence[tuple[str, int]], *, title: str, width: int = 560, row: int = 20,
              css_id: str | None = None) -> str:
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
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{_BAR}">'
                     f"<title>{escape(label)}: {count}</title></rect>")
        parts.append(_text(label_w + w + 4, y + row * 0.7, str(count)))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------- pieces
def _open(width: int, height: int, title: str, css_id: str | None) -> str:
    ident = f' id="{escape(css_id)}"' if css_id else ""
    return (f'<svg{ident} xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
            f"<title>{escape(title)}</title>" + _text(6, 16, title, weight="bold"))


def _text(x: float, y: float, text: str, *, anchor: str = "start", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}" fill="#333">'
            f"{escape(text)}</text>")


def _axis(value: float, log: bool) -> float:
    return math.log10(value) if log else value


def _x_axis(bins: Bins, sx, left: float, base: float, plot_w: float) -> list[str]:
    parts = [f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#888"/>']
    for tick in _ticks(bins.edges[0], bins.edges[-1], bins.log):
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#888"/>')
        parts.append(_text(x, base + 15, _num(tick), anchor="middle"))
    return parts


def _y_axis(peak: int, left: float, top: float, plot_h: float) -> list[str]:
    return [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
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
