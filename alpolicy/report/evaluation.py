"""The evaluation page: how many of the model's errors each policy's picks hold, drawn.

``write_evaluation_report(document, journal, out_dir)`` turns the document of ``alpolicy evaluate``
(its ``--json`` output; the keys are defined there) into ``out_dir/evaluation.html``, and when a
run report (``index.html``) is in the folder, adds a short section there that links to it.

What the page shows, and where each number comes from (all from the document; nothing is
recomputed here, so the page cannot disagree with ``--json``):

* per policy one horizontal bar on a common axis of errors: from ``random_mean`` (what as many
  random picks hold in expectation) to ``oracle`` (the most any pick of that size can hold), the
  random spread ``p05``-``p95`` as a band behind it, ``errors_captured`` as a mark, and the
  ``efficiency`` (captured - random) / (oracle - random) written beside it: the mark sits at that
  fraction of the bar;
* a table of these numbers, one by error kind (misses, false positives, wrong class) and one by
  class, each with the totals over every evaluated image;
* per policy a gallery of its picked images (``images``, in the document's order), the thumbnails
  of the run report (:func:`alpolicy.report.html.gallery`, one implementation) with the errors of
  ``per_image`` drawn in SVG: misses (ground-truth boxes no prediction matched) in red, false
  positives in blue, wrong-class pairs (prediction and truth) in purple, matches thin and grey.

``per_image[name]`` holds ``matches`` (predictions, or ``[prediction, truth]`` pairs),
``unmatched_predictions`` and ``unmatched_truths`` (detections in the Roboflow shape: ``class``,
centre ``x``/``y``, ``width``, ``height``, a prediction's ``confidence``; ``points`` and
``keypoints`` when the task has them; ``kind`` may say which error each is) and
``wrong_class_pairs`` (``[prediction, truth]``; without it, the unmatched entries of ``"kind":
"wrong_class"`` pair up in the order listed). A detection of a pair is drawn as wrong class,
not a second time as a miss or a false positive. Entries without a box (a classifier's) are not
drawn, only listed.

The files: ``images`` (name -> path) first, else the journal's stored paths (``predictions.path``,
matched by file name, the newest row winning; its prediction gives the pixel size the boxes are
in). An image no longer on disk is shown by name, with its errors listed, without a thumbnail.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import UsageError
from ..io.images import ImageDecodeError, open_image
from ..policy.prediction import BOX_TASKS, OBJECT_DETECTION, Prediction
from ..runtime.journal import read_stored_prediction
from . import svg
from .html import GALLERY_LIMIT, Shot, gallery, open_journal, page, prepare_out_dir, write_page
from .markup import Markup, html, join

PAGE = "evaluation.html"
KINDS = ("miss", "false_positive", "wrong_class")
KIND_NAMES = {"miss": "misses", "false_positive": "false positives", "wrong_class": "wrong class"}
#: Overlay colours, one per kind of error; a match is drawn thin and grey, under the errors.
COLOURS = {"miss": "#e15759", "false_positive": "#4e79a7", "wrong_class": "#b07aa1", "match": "#aaaaaa"}
_LAYERS = {"match": 0, "false_positive": 1, "miss": 2, "wrong_class": 3}
_INDEX_SECTION = re.compile(r'<section id="evaluation">.*?</section>\n?', re.S)

_CSS = Markup("""
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:18px;height:0;
border-top:3px solid;vertical-align:middle;margin-right:4px}
table.numbers{border-collapse:collapse}table.numbers td,table.numbers th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
table.numbers td.n{text-align:right;font-variant-numeric:tabular-nums}table.numbers tr.total td,table.numbers tr.total th{color:#555}
svg.efficiency{border:1px solid #eee;background:#fff}
""")


# ====================================================================== the model of the page
@dataclass
class PolicyRow:
    """One policy of the document, with what the page needs already taken out."""

    index: int
    label: str
    source: dict[str, Any]
    captured: float
    random_mean: float
    oracle: float
    efficiency: float | None
    p05: float | None
    p95: float | None
    shots: list[Shot] = field(default_factory=list)
    more: int = 0  # picked images left out of the gallery (beyond GALLERY_LIMIT)


@dataclass
class Errors:
    """The detections of one image, by how the page draws them."""

    misses: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    matches: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Located:
    """Where an image is and the pixel size its boxes are in (``size`` None: not known)."""

    path: str | None
    size: tuple[int, int] | None
    task: str = OBJECT_DETECTION


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else default


def _optional(value: Any) -> float | None:
    return _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_document(document: Any) -> None:
    """A document not shaped like ``alpolicy evaluate --json``'s is one :class:`UsageError` line."""
    if not isinstance(document, Mapping):
        raise UsageError("the evaluation document is not a JSON object")
    if not isinstance(document.get("policies"), list) or not all(isinstance(p, Mapping) for p in document["policies"]):
        raise UsageError("the evaluation document has no list of policies ('policies')")
    if not isinstance(document.get("per_image", {}), Mapping):
        raise UsageError("the evaluation document's 'per_image' is not an object")


def policy_rows(document: Mapping[str, Any]) -> list[PolicyRow]:
    rows = []
    for index, policy in enumerate(document["policies"]):
        spread = policy.get("random_spread") if isinstance(policy.get("random_spread"), Mapping) else {}
        label = str(policy.get("name") or policy.get("policy") or f"policy {index + 1}")
        rows.append(PolicyRow(index, label, dict(policy), _number(policy.get("errors_captured")),
                              _number(policy.get("random_mean")), _number(policy.get("oracle")),
                              _optional(policy.get("efficiency")), _optional(spread.get("p05")), _optional(spread.get("p95"))))
    return rows


# ====================================================================== errors of one image
def _detection(entry: Any) -> dict[str, Any] | None:
    """A drawable copy of one detection of the document (a box in pixels; a classifier's entry
    has only a class: listed, not drawn), or None when it is not a detection at all."""
    if not isinstance(entry, Mapping) or "class" not in entry:
        return None
    detection: dict[str, Any] = {"class": str(entry["class"])}
    if _optional(entry.get("confidence")) is not None:
        detection["confidence"] = _number(entry["confidence"])
    if all(_optional(entry.get(key)) is not None for key in ("x", "y", "width", "height")):
        detection.update({key: _number(entry[key]) for key in ("x", "y", "width", "height")})
        for key in ("points", "keypoints"):  # a segmentation's polygon, a pose's keypoints
            points = [point for point in _list(entry.get(key)) if _is_point(point)]
            if points:
                detection[key] = points
    return detection


def _is_point(point: Any) -> bool:
    return isinstance(point, Mapping) and _optional(point.get("x")) is not None and _optional(point.get("y")) is not None


def _pair(entry: Any) -> tuple[Any, Any] | None:
    """``[prediction, truth]`` or ``{"prediction": ..., "truth": ...}``."""
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return entry[0], entry[1]
    if isinstance(entry, Mapping) and "prediction" in entry and "truth" in entry:
        return entry["prediction"], entry["truth"]
    return None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def image_errors(entry: Any) -> Errors:
    """The detections of ``per_image[name]`` sorted for drawing; a detection that is part of a
    wrong-class pair is drawn as such, not a second time as a miss or a false positive.

    The pairs: ``wrong_class_pairs`` when the entry has it; else the unmatched predictions and
    truths whose ``"kind"`` is ``"wrong_class"``, paired in the order listed."""
    entry = entry if isinstance(entry, Mapping) else {}
    predictions, truths = _list(entry.get("unmatched_predictions")), _list(entry.get("unmatched_truths"))
    if "wrong_class_pairs" in entry:
        pairs = [pair for pair in (_pair(item) for item in _list(entry["wrong_class_pairs"])) if pair is not None]
    else:
        pairs = list(zip(_of_kind(predictions, "wrong_class"), _of_kind(truths, "wrong_class")))
    errors = Errors()
    for prediction, truth in pairs:
        drawn = _detection(prediction), _detection(truth)
        if drawn[0] is not None and drawn[1] is not None:
            errors.pairs.append((drawn[0], drawn[1]))
    errors.false_positives = _drawable(_without(predictions, [p for p, _ in pairs]))
    errors.misses = _drawable(_without(truths, [t for _, t in pairs]))
    for item in _list(entry.get("matches")):
        pair = _pair(item)
        detection = _detection(pair[0] if pair is not None else item)
        if detection is not None:
            errors.matches.append(detection)
    return errors


def _of_kind(items: list[Any], kind: str) -> list[Any]:
    return [item for item in items if isinstance(item, Mapping) and item.get("kind") == kind]


def _without(items: list[Any], taken: list[Any]) -> list[Any]:
    """``items`` minus one occurrence of each of ``taken`` (equal JSON values) and minus any
    other entry marked ``"kind": "wrong_class"`` (drawn with its pair)."""
    left = list(taken)
    kept = []
    for item in items:
        if item in left:
            left.remove(item)
        elif not (isinstance(item, Mapping) and item.get("kind") == "wrong_class"):
            kept.append(item)
    return kept


def _drawable(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [d for d in (_detection(item) for item in items) if d is not None]


def _label(detection: Mapping[str, Any]) -> str:
    confidence = detection.get("confidence")
    return f"{detection['class']} {confidence:.3g}" if isinstance(confidence, float) else str(detection["class"])


def marked(errors: Errors) -> tuple[list[dict[str, Any]], list[svg.Mark]]:
    """The detections to draw and one :class:`~alpolicy.report.svg.Mark` each (CSS class = kind)."""
    detections: list[dict[str, Any]] = []
    marks: list[svg.Mark] = []

    def add(detection: dict[str, Any], kind: str, title: str, width: float = 2) -> None:
        if "x" not in detection:  # a class without a box
            return
        detections.append(detection)
        marks.append(svg.Mark(kind.replace("_", "-"), COLOURS[kind], width, title, _LAYERS[kind]))

    for detection in errors.matches:
        add(detection, "match", f"match: {_label(detection)}", 1)
    for detection in errors.false_positives:
        add(detection, "false_positive", f"false positive: {_label(detection)}")
    for detection in errors.misses:
        add(detection, "miss", f"miss: {_label(detection)}")
    for prediction, truth in errors.pairs:
        title = f"wrong class: predicted {_label(prediction)}, truth {_label(truth)}"
        add(prediction, "wrong_class", title)
        add(truth, "wrong_class", title)
    return detections, marks


def error_lines(entry: Any, errors: Errors) -> list[str]:
    """What the caption says: the counts of the document, then each error."""
    entry = entry if isinstance(entry, Mapping) else {}
    counts = ", ".join(f"{KIND_NAMES[kind]} {int(_number(entry.get(kind)))}" for kind in KINDS)
    lines = [f"errors {int(_number(entry.get('errors')))} ({counts})"]
    lines += [f"miss: {_label(d)}" for d in errors.misses]
    lines += [f"false positive: {_label(d)}" for d in errors.false_positives]
    lines += [f"wrong class: predicted {_label(p)}, truth {_label(t)}" for p, t in errors.pairs]
    return lines


# ====================================================================== finding the files
def file_name(path: str) -> str:
    """The name an image is matched by (``alpolicy evaluate`` matches ground truth by file name)."""
    return re.split(r"[\\/]", path)[-1]


def locate(journal: str | os.PathLike[str], names: Iterable[str], images: Mapping[str, str] | None = None) -> dict[str, Located]:
    """name -> :class:`Located` for ``names``: the path from ``images`` or the journal's newest
    stored prediction of that file name (whose size the boxes are in). Paths are read first,
    then only the wanted predictions are parsed (a journal may hold millions)."""
    wanted = set(names)
    images = dict(images or {})
    db = open_journal(journal)
    try:
        newest: dict[str, int] = {}
        for rowid, path in db.execute("SELECT rowid, path FROM predictions ORDER BY rowid"):
            name = file_name(str(path))
            if name in wanted:
                newest[name] = rowid
        found = {name: _stored(db, rowid) for name, rowid in newest.items()}
    finally:
        db.close()
    located = {}
    for name in wanted:
        stored_path, size, task = found.get(name, (None, None, OBJECT_DETECTION))
        path = images.get(name, stored_path)
        located[name] = Located(path, size or _pixel_size(path), task)
    return located


def _stored(db: sqlite3.Connection, rowid: int) -> tuple[str, tuple[int, int] | None, str]:
    path, text = db.execute("SELECT path, prediction FROM predictions WHERE rowid = ?", (rowid,)).fetchone()
    try:
        prediction = read_stored_prediction(text)
    except ValueError:  # PredictionFormatError: NaN stored by alpolicy 0.1; the image size is still wanted
        return str(path), None, OBJECT_DETECTION
    size = (prediction.width, prediction.height) if prediction.width > 0 and prediction.height > 0 else None
    return str(path), size, prediction.task if prediction.task in BOX_TASKS else OBJECT_DETECTION


def _pixel_size(path: str | None) -> tuple[int, int] | None:
    """The file's own size (header only; EXIF orientation applied, as the thumbnail's)."""
    if path is None:
        return None
    try:
        with open_image(path) as image:
            width, height = image.size
            if (image.getexif() or {}).get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except ImageDecodeError:
        return None


def policy_shots(row: PolicyRow, per_image: Mapping[str, Any], located: Mapping[str, Located]) -> list[Shot]:
    shots = []
    for name in [str(n) for n in _list(row.source.get("images"))][:GALLERY_LIMIT]:
        entry = per_image.get(name)
        errors = image_errors(entry)
        where = located.get(name, Located(None, None))
        lines = error_lines(entry, errors)
        if where.path is None:
            lines.append("not found: no stored path in the journal")
        detections, marks = marked(errors)
        prediction = None
        if where.size is not None:
            prediction = Prediction(width=where.size[0], height=where.size[1], detections=detections, task=where.task)
        count = int(_number(entry.get("errors"))) if isinstance(entry, Mapping) else 0
        badge = f"{count} error{'s' if count != 1 else ''}"
        shots.append(Shot("evaluation:" + name, where.path or name, prediction, [], badge, lines, None, "evaluated",
                          marks if prediction is not None else None))
    return shots


# ====================================================================== the chart
def efficiency_chart(rows: Sequence[PolicyRow], *, width: int = 760, row_height: int = 34) -> Markup:
    """One bar per policy on a common axis of errors (0 .. the largest oracle): the band is the
    random spread p05-p95, the bar runs from random_mean to oracle, the dark mark is what the
    policy captured, at the fraction ``efficiency`` of the bar; the efficiency is written right."""
    label_w, right, top, axis_h = 190, 130, 30, 34
    plot_w = width - label_w - right
    height = top + row_height * max(len(rows), 1) + axis_h
    peak = max((max(r.oracle, r.captured, r.random_mean, r.p95 or 0.0) for r in rows), default=0.0) or 1.0

    def sx(value: float) -> float:
        return label_w + max(0.0, value) / peak * plot_w

    parts = [html('<svg class="efficiency" xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" '
                  'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><title>Errors captured per policy</title>'
                  '<text x="6" y="16" font-weight="bold" fill="#333">Errors captured: random → oracle</text>',
                  w=width, h=height)]
    if not rows:
        parts.append(html('<text x="{:.1f}" y="{}" text-anchor="middle" fill="#333">no policy</text>', width / 2, top + 14))
    for position, row in enumerate(rows):
        parts.append(_bar_row(row, top + position * row_height, row_height, sx, label_w, width - right))
    base = top + row_height * max(len(rows), 1) + 4
    parts.append(html('<line x1="{}" y1="{}" x2="{:.1f}" y2="{}" stroke="#888"/>', label_w, base, label_w + plot_w, base))
    for step in range(6):
        value = peak * step / 5
        x = sx(value)
        parts.append(html('<line x1="{x:.1f}" y1="{}" x2="{x:.1f}" y2="{}" stroke="#888"/>'
                          '<text x="{x:.1f}" y="{}" text-anchor="middle" fill="#333">{}</text>',
                          base, base + 4, base + 15, f"{value:.3g}", x=x))
    parts.append(html('<text x="{:.1f}" y="{}" text-anchor="middle" fill="#333">errors in the picked images</text>',
                      label_w + plot_w / 2, base + 28))
    return html("{}</svg>", join(parts))


def _bar_row(row: PolicyRow, y: float, row_height: int, sx, label_w: int, right_x: int) -> Markup:
    middle = y + row_height / 2
    shown = row.label if len(row.label) <= 28 else row.label[:27] + "…"
    parts = [html('<text x="{}" y="{:.1f}" text-anchor="end" fill="#333">{}<title>{}</title></text>',
                  label_w - 8, middle + 4, shown, row.label)]
    if row.p05 is not None and row.p95 is not None:
        a, b = sx(row.p05), sx(row.p95)
        parts.append(html('<rect class="spread" x="{:.3f}" y="{:.1f}" width="{:.3f}" height="{}" fill="#f28e2b" '
                          'fill-opacity="0.25"><title>random picks, p05 to p95: {} to {}</title></rect>',
                          a, y + 4, max(b - a, 1.0), row_height - 8, _fmt(row.p05), _fmt(row.p95)))
    a, b = sx(row.random_mean), sx(row.oracle)
    parts.append(html('<rect class="range" x="{:.3f}" y="{:.1f}" width="{:.3f}" height="{}" fill="#4e79a7" fill-opacity="0.45">'
                      '<title>random {} → oracle {}</title></rect>', a, y + 10, max(b - a, 0.0), row_height - 20,
                      _fmt(row.random_mean), _fmt(row.oracle)))
    x = sx(row.captured)
    parts.append(html('<line class="captured" x1="{x:.3f}" y1="{:.1f}" x2="{x:.3f}" y2="{:.1f}" stroke="#222" stroke-width="3">'
                      '<title>captured {}</title></line>', y + 3, y + row_height - 3, _fmt(row.captured), x=x))
    text = "efficiency n/a" if row.efficiency is None else f"efficiency {row.efficiency:.2f}"
    parts.append(html('<text class="efficiency" x="{}" y="{:.1f}" fill="#333">{}</text>', right_x + 8, middle + 4, text))
    return html('<g class="policy" data-policy="{}" data-captured="{}" data-random="{}" data-oracle="{}" data-efficiency="{}">{}</g>',
                row.index, row.captured, row.random_mean, row.oracle, "" if row.efficiency is None else row.efficiency, join(parts))


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# ====================================================================== tables
def _cell(policy: int | str, key: str, value: Any) -> Markup:
    text = "n/a" if value is None else _fmt(_number(value)) if isinstance(value, (int, float)) else str(value)
    return html('<td class="n" data-policy="{}" data-key="{}">{}</td>', policy, key, text)


def numbers_table(rows: Sequence[PolicyRow]) -> Markup:
    head = html("<tr><th>policy</th><th>picked</th><th>errors captured</th><th>random mean</th>"
                "<th>random p05–p95</th><th>oracle</th><th>efficiency</th></tr>")
    body = []
    for row in rows:
        spread = "n/a" if row.p05 is None or row.p95 is None else f"{_fmt(row.p05)}–{_fmt(row.p95)}"
        efficiency = "n/a" if row.efficiency is None else f"{row.efficiency:.2f}"
        body.append(html("<tr><th>{}</th>{}{}{}{}{}{}</tr>", row.label, _cell(row.index, "picked", row.source.get("picked")),
                         _cell(row.index, "errors_captured", row.captured), _cell(row.index, "random_mean", row.random_mean),
                         _cell(row.index, "random_spread", spread), _cell(row.index, "oracle", row.oracle),
                         _cell(row.index, "efficiency", efficiency)))
    return html('<table class="numbers">{}{}</table>', head, join(body))


def by_kind_table(rows: Sequence[PolicyRow], document: Mapping[str, Any]) -> Markup:
    head = html("<tr><th>policy</th>{}<th>errors</th></tr>", join(html("<th>{}</th>", KIND_NAMES[k]) for k in KINDS))
    body = [html("<tr><th>{}</th>{}{}</tr>", row.label,
                 join(_cell(row.index, k, _mapping(row.source.get("by_kind")).get(k, 0)) for k in KINDS),
                 _cell(row.index, "errors_captured", row.captured)) for row in rows]
    totals = _mapping(document.get("errors_total_by_kind"))
    body.append(html('<tr class="total"><th>all {} evaluated images</th>{}{}</tr>', _fmt(_number(document.get("evaluated"))),
                     join(_cell("total", k, totals.get(k, 0)) for k in KINDS), _cell("total", "errors", document.get("errors_total", 0))))
    return html('<table class="numbers by-kind">{}{}</table>', head, join(body))


def by_class_table(rows: Sequence[PolicyRow], document: Mapping[str, Any]) -> Markup:
    totals = _mapping(document.get("errors_total_by_class"))
    classes = list(totals)
    for row in rows:
        classes += [c for c in _mapping(row.source.get("by_class")) if c not in classes]
    classes.sort(key=lambda c: (-_number(totals.get(c)), str(c)))
    head = html("<tr><th>class</th>{}<th>all images</th></tr>", join(html("<th>{}</th>", row.label) for row in rows))
    body = [html("<tr><th>{}</th>{}{}</tr>", name, join(_cell(row.index, f"class:{name}", _mapping(row.source.get("by_class")).get(name, 0))
                                                        for row in rows), _cell("total", f"class:{name}", totals.get(name, 0)))
            for name in classes]
    if not body:
        return html('<p class="note">no errors in any class</p>')
    return html('<table class="numbers by-class">{}{}</table>', head, join(body))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def legend() -> Markup:
    entries = [("miss", "miss (a ground-truth box no prediction matched)"), ("false_positive", "false positive"),
               ("wrong_class", "wrong class (prediction and truth)"), ("match", "match")]
    return html('<p class="legend">{}</p>', join(html('<span><i style="border-color:{}"></i>{}</span>', COLOURS[k], text)
                                                for k, text in entries))


# ====================================================================== the page
def render_evaluation(document: Mapping[str, Any], rows: Sequence[PolicyRow], out: Path) -> Markup:
    meta = [("ground truth", document.get("ground_truth")), ("journal", document.get("journal")),
            ("IoU ≥", document.get("iou")), ("budget", document.get("budget")), ("evaluated", document.get("evaluated")),
            ("errors", document.get("errors_total"))]
    skipped = _mapping(document.get("skipped"))
    body = [
        html("<h1>alpolicy evaluate</h1>"),
        html('<p class="meta">{}</p>', join((html("{} <code>{}</code>", k, v) for k, v in meta if v is not None), " · ")),
    ]
    if (out / "index.html").is_file():
        body.append(html('<p class="meta"><a href="index.html">the run report</a></p>'))
    if skipped:
        body.append(html('<p class="note">skipped: {}</p>', ", ".join(f"{k}: {v}" for k, v in skipped.items())))
    body += [
        html("<h2>Errors captured per policy</h2>"), efficiency_chart(rows),
        html('<p class="note">bar: from what as many random picks hold (mean) to the most any pick of that size holds '
             '(oracle); band: random picks p05–p95; mark: the policy; efficiency = (captured − random) / (oracle − random). '
             'errors = misses + false positives + 2 × wrong class.</p>'),
        html("<h2>Numbers</h2>"), numbers_table(rows),
        html("<h2>By error kind</h2>"), by_kind_table(rows, document),
        html("<h2>By class</h2>"), by_class_table(rows, document),
    ]
    for row in rows:
        shown = f"; the first {len(row.shots)} shown" if row.more else ""
        body += [html('<h2 id="policy-{}">Picked by {} ({} images{})</h2>', row.index, row.label, len(row.shots) + row.more, shown),
                 legend(), gallery(row.shots, out, empty="the policy picked no image")]
    return page("alpolicy evaluate", body, css=_CSS)


def index_section(rows: Sequence[PolicyRow]) -> Markup:
    """What the run report's page gets: one line per policy and the link."""
    items = join(html("<li>{}: {} of {} errors (random {}), efficiency {}</li>", row.label, _fmt(row.captured), _fmt(row.oracle),
                      _fmt(row.random_mean), "n/a" if row.efficiency is None else f"{row.efficiency:.2f}") for row in rows)
    return html('<section id="evaluation"><h2>Evaluation against ground truth</h2><p><a href="{}">the evaluation page</a>: '
                'the errors each policy\'s picks hold, and the picked images with their errors drawn</p><ul>{}</ul></section>\n',
                PAGE, items)


def _link_from_index(out: Path, rows: Sequence[PolicyRow]) -> None:
    """Add (or replace) the evaluation section of ``out/index.html``, our own page, just before ``</body>``."""
    index = out / "index.html"
    if not index.is_file():
        return
    text = _INDEX_SECTION.sub("", index.read_text(encoding="utf-8"))
    at = text.rfind("</body>")
    if at < 0:
        return
    write_page(out, Markup(text[:at]) + index_section(rows) + Markup(text[at:]), "index.html")


def write_evaluation_report(document: Mapping[str, Any], journal: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                            images: Mapping[str, str] | None = None) -> Path:
    """Write ``out_dir/evaluation.html`` (+ thumbnails in ``out_dir/thumbs/``) for the document of
    ``alpolicy evaluate``; link it from ``out_dir/index.html`` when a report is there. ``images``
    (file name -> path) overrides the journal's stored paths. Returns the page."""
    check_document(document)
    out = prepare_out_dir(out_dir)
    rows = policy_rows(document)
    per_image = _mapping(document.get("per_image"))
    names = {str(name) for row in rows for name in _list(row.source.get("images"))[:GALLERY_LIMIT]}
    located = locate(journal, names, images)
    for row in rows:
        row.shots = policy_shots(row, per_image, located)
        row.more = max(0, len(_list(row.source.get("images"))) - len(row.shots))
    written = write_page(out, render_evaluation(document, rows, out), PAGE)
    _link_from_index(out, rows)
    return written

