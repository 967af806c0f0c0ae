"""A static HTML report of one run, read back from the journal: see the triage, not just its counts.

``write_run_report(journal, out_dir, run_id)`` writes ``out_dir/index.html`` and ``out_dir/thumbs/``.
The page opens from ``file://``: no CDN, no server, no script; charts are inline SVG
(:mod:`alpolicy.report.svg`), thumbnails are small JPEGs with the boxes drawn in (Pillow), a
segmentation model's polygons and a pose model's keypoints drawn over them in inline SVG (scaled
as the boxes, by :func:`alpolicy.formats.roboflow.scaled`; a keypoint's name and confidence in its
tooltip), and a classifier's classes written under them instead of boxes. Every page
(this one, the what-if of :mod:`alpolicy.report.whatif`, the charts) is built with
:mod:`alpolicy.report.markup`, where a value is escaped unless it is markup built there.

What the page shows, and where each number comes from (so that it can be checked against the journal):

* the funnel: ``seen`` / ``with a prediction`` / ``already sent`` from the run's summary (the
  :class:`~alpolicy.runtime.run_report.RunReport` stored in ``runs.summary``; a run killed before it
  finished has none, and these fall back to the decisions); ``decided``, the detection-rule cascade
  ("has a detection passing rule 1, then rules 1-2, ..."), per-rule rejections, ``qualified`` and
  ``sampled`` from the run's ``decisions``; ``uploaded`` from ``deliveries`` (state ``sent``, this
  run); ``failed`` from ``failures``;
* charts of every detection of the images decided in the run: confidences with the policy's
  ``confidence`` intervals shaded, detections per class, box areas (log scale) with ``box_area``
  bounds shaded. The policy is the run's own (``runs.policy``), not today's file;
* a gallery of the chosen images with witnesses (orange) and other detections (grey) drawn (boxes,
  polygons, keypoints; for a classifier its top or predicted classes and every class's score, best
  first), their reasons and where they went; an evenly spread sample of rejected images with what rejected them;
* the policy, pretty-printed.

The journal is opened read-only: a report never changes it and can be made while a run goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from PIL import Image, ImageDraw, ImageOps

from ..errors import AlpolicyError, UsageError
from ..formats.coco import box as corner_box
from ..formats.roboflow import scaled
from ..io.images import ImageDecodeError, open_image
from ..policy.engine import Policy
from ..policy.prediction import Detection, Prediction, PredictionFormatError, detection_label
from ..runtime.journal import UNKNOWN_SETTINGS, read_stored_prediction
from . import svg
from .markup import Markup, html, join

THUMB_SIZE = 320
GALLERY_LIMIT = 200
REJECTED_SAMPLE = 48
LISTED_FAILURES = 50
_WITNESS = (242, 142, 43)
_OTHER = (170, 170, 170)


# ====================================================================== reading the journal
def open_journal(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """The journal, read-only; a missing or foreign file is one :class:`UsageError` line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"no journal at {path} (runs write one with --journal PATH; default .alpolicy/journal.sqlite)")
    uri = "file:" + urllib.request.pathname2url(os.path.abspath(path)) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=30)
        db.execute("SELECT id FROM runs LIMIT 1").fetchall()
        db.execute("SELECT run_id FROM decisions LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        raise UsageError(f"{path} is not an alpolicy journal ({error})") from None
    return db


@dataclass(frozen=True)
class RunRow:
    id: int
    started_at: float
    finished_at: float | None
    status: str
    source: str | None
    model: str | None
    destination: str | None
    policy: str
    options: dict[str, Any]
    summary: dict[str, Any]


def load_run_row(db: sqlite3.Connection, run_id: int | None) -> RunRow:
    """The run ``run_id``, or the last run when ``None``."""
    sql = "SELECT id, started_at, finished_at, status, source, model, destination, policy, options, summary FROM runs"
    row = (db.execute(sql + " WHERE id = ?", (run_id,)) if run_id is not None else db.execute(sql + " ORDER BY id DESC LIMIT 1")).fetchone()
    if row is None:
        ids = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY id")]
        if not ids:
            raise UsageError("the journal holds no runs yet")
        raise UsageError(f"no run {run_id} in the journal; runs: {_id_ranges(ids)}")
    return RunRow(*row[:8], _json_object(row[8]), _json_object(row[9]))


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _id_ranges(ids: Sequence[int]) -> str:
    return f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}-{ids[-1]}" if ids[-1] - ids[0] == len(ids) - 1 else ", ".join(map(str, ids))


def compile_policy(document_text: str) -> Policy | None:
    """The run's policy, compiled; ``None`` when it no longer compiles (a plugin was uninstalled):
    the report then draws every box alike and skips the detection-rule cascade."""
    try:
        return Policy.from_dict(json.loads(document_text))
    except (AlpolicyError, ValueError, TypeError):
        return None


# ====================================================================== the report model
@dataclass
class Shot:
    """One image of a gallery: what to draw and what to say under it."""

    key: str
    path: str
    prediction: Prediction | None
    witnesses: list[Detection]
    badge: str
    lines: list[str]
    link: tuple[str, str] | None = None  # (url, text): where the image went
    klass: str = ""
    #: One :class:`~alpolicy.report.svg.Mark` per detection of ``prediction``: the caller colours
    #: each (the evaluation page: misses, false positives...); its boxes are then drawn in SVG,
    #: with their tooltips, and none into the JPEG.
    marks: list[svg.Mark] | None = None


@dataclass
class FunnelStep:
    name: str
    count: int
    note: str = ""
    level: int = 0  # 1 = a breakdown line under the step above


@dataclass
class RunModel:
    """Everything the page shows, computed from the journal (rendering is separate, and dumb)."""

    run: RunRow
    policy_document: Any
    funnel: list[FunnelStep]
    counts: dict[str, int]
    confidences: list[float] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    areas: list[float] = field(default_factory=list)
    area_relative: bool = False
    confidence_bands: list[tuple[float, float]] = field(default_factory=list)
    area_bands: list[tuple[float, float]] = field(default_factory=list)
    chosen: list[Shot] = field(default_factory=list)
    rejected: list[Shot] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Tally:
    decided: int = 0
    qualified: int = 0
    sampled: int = 0
    undecided: int = 0
    rejected_by: Counter[str] = field(default_factory=Counter)
    sampling_rejected_by: Counter[str] = field(default_factory=Counter)
    cascade: list[int] = field(default_factory=list)
    chosen_seqs: list[int] = field(default_factory=list)
    rejected_seqs: list[int] = field(default_factory=list)
    unreadable: int = 0  # stored predictions that are no longer valid (NaN from alpolicy 0.1)


_DECISIONS = """
SELECT d.seq, d.image_key, d.path, d.qualifies, d.sampled, d.rejected_by, d.decision, p.prediction
FROM decisions d LEFT JOIN predictions p
  ON p.image_key = d.image_key AND {match}
WHERE d.run_id = ?"""
#: The prediction a decision was made on: by the fingerprint it records; a decision of schema 1
#: (no fingerprint) by the ``MODEL@unknown`` its predictions were migrated to.
_BY_FINGERPRINT = (f"p.fingerprint = COALESCE(json_extract(d.decision, '$.fingerprint'), "
                   f"json_extract(d.decision, '$.model') || '@{UNKNOWN_SETTINGS}')")
#: A schema-1 journal not migrated yet (a report opens it read-only: it never migrates it).
_BY_MODEL = "p.model = json_extract(d.decision, '$.model')"


def _decisions_sql(db: sqlite3.Connection) -> str:
    columns = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
    return _DECISIONS.format(match=_BY_FINGERPRINT if "fingerprint" in columns else _BY_MODEL)


def load_run(journal: str | os.PathLike[str], run_id: int | None = None, *, gallery_limit: int = GALLERY_LIMIT,
             rejected_sample: int = REJECTED_SAMPLE) -> RunModel:
    """Read one run (the last by default) into a :class:`RunModel`; one pass over its decisions."""
    db = open_journal(journal)
    try:
        run = load_run_row(db, run_id)
        policy = compile_policy(run.policy)
        document = _json_or_text(run.policy)
        model = RunModel(run, document, [], {})
        model.area_relative = _area_unit_is_fraction(document)
        model.confidence_bands, model.area_bands = rule_bands(document, "confidence"), rule_bands(document, "box_area")
        tally = _Tally(cascade=[0] * (len(policy.detection_leaves) if policy else 0))
        for row in db.execute(_decisions_sql(db) + " ORDER BY d.seq", (run.id,)):
            _tally_row(row, tally, model, policy)
        model.counts, model.funnel = _funnel(db, run, tally, policy)
        chosen = tally.chosen_seqs[:gallery_limit]
        model.chosen = [_shot(row, policy, chosen=True) for row in _rows(db, run.id, chosen)]
        model.rejected = [_shot(row, policy, chosen=False) for row in _rows(db, run.id, spread(tally.rejected_seqs, rejected_sample))]
        model.failures = [
            {"path": p, "stage": s, "error": e}
            for p, s, e in db.execute("SELECT path, stage, error FROM failures WHERE run_id = ? ORDER BY rowid LIMIT ?",
                                      (run.id, LISTED_FAILURES))
        ]
        if len(tally.chosen_seqs) > len(chosen):
            model.notes.append(f"gallery: the first {len(chosen)} of {len(tally.chosen_seqs)} chosen images")
        if policy is None:
            model.notes.append("the run's policy does not compile any more (a plugin missing?): no detection-rule cascade")
        if tally.unreadable:
            model.notes.append(
                f"{tally.unreadable} stored prediction{'s are' if tally.unreadable != 1 else ' is'} not valid "
                "(NaN or out-of-range values, written by an older alpolicy): counted in the funnel, "
                "left out of the charts, shown without boxes"
            )
        return model
    finally:
        db.close()


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tally_row(row: tuple[Any, ...], tally: _Tally, model: RunModel, policy: Policy | None) -> None:
    seq, _key, _path, qualifies, sampled, rejected_by, record_text, prediction_text = row
    if qualifies is None:  # failed before a decision
        tally.undecided += 1
        return
    tally.decided += 1
    if not qualifies:
        tally.rejected_by[rejected_by or "policy"] += 1
        tally.rejected_seqs.append(seq)
    else:
        tally.qualified += 1
        if sampled:
            tally.sampled += 1
            tally.chosen_seqs.append(seq)
        else:
            tally.sampling_rejected_by[_sampling_culprit(_json_object(record_text))] += 1
            tally.rejected_seqs.append(seq)
    prediction = _stored_prediction(prediction_text)
    if prediction_text and prediction is None:
        tally.unreadable += 1
    if prediction is not None:
        _add_detections(model, prediction)
        if policy is not None:
            _add_cascade(tally.cascade, policy, prediction)


def _stored_prediction(text: str | None) -> Prediction | None:
    """The stored prediction, checked; ``None`` when there is none or it is no longer valid
    (a journal of alpolicy 0.1 may hold ``NaN``, which would break every chart)."""
    if not text:
        return None
    try:
        return read_stored_prediction(text)
    except PredictionFormatError:
        return None


def _sampling_culprit(record: dict[str, Any]) -> str:
    """``"limit: 10 per run reached"`` -> ``limit`` (the pipeline writes ``by: reason``)."""
    text = str(record.get("sampling") or "sampling")
    return text.split(":", 1)[0]


def _add_detections(model: RunModel, prediction: Prediction) -> None:
    """A detection's confidence, class and box area; a classifier's predicted classes (no area)."""
    area_of_image = (prediction.width * prediction.height) or 1
    for detection in prediction.detections:
        model.confidences.append(float(detection["confidence"]))
        model.classes[str(detection["class"])] += 1
        if not prediction.has_boxes:
            continue
        area = float(detection["width"]) * float(detection["height"])
        model.areas.append(area / area_of_image if model.area_relative else area)


def _add_cascade(cascade: list[int], policy: Policy, prediction: Prediction) -> None:
    """cascade[k] += 1 when a detection passes detection rules 0..k (all of them: a witness so far)."""
    leaves = policy.detection_leaves
    deepest = -1
    for detection in prediction.detections:
        depth = -1
        for index, leaf in enumerate(leaves):
            if not leaf.rule.accepts(detection, prediction):
                break
            depth = index
        deepest = max(deepest, depth)
        if deepest == len(leaves) - 1:
            break
    for index in range(deepest + 1):
        cascade[index] += 1


def _funnel(db: sqlite3.Connection, run: RunRow, tally: _Tally, policy: Policy | None) -> tuple[dict[str, int], list[FunnelStep]]:
    summary = run.summary
    dry_run = bool(run.options.get("dry_run"))
    seen = int(summary.get("seen", tally.decided + tally.undecided))
    predicted = int(summary.get("inferred", 0)) + int(summary.get("reused", 0)) if summary else tally.decided
    already = int(summary.get("already_sent", 0))
    failed = db.execute("SELECT COUNT(*) FROM failures WHERE run_id = ?", (run.id,)).fetchone()[0]
    by_stage = dict(db.execute("SELECT stage, COUNT(*) FROM failures WHERE run_id = ? GROUP BY stage", (run.id,)).fetchall())
    states = dict(db.execute("SELECT state, COUNT(*) FROM deliveries WHERE run_id = ? GROUP BY state", (run.id,)).fetchall())
    uploaded = int(states.get("sent", 0))
    counts = {"seen": seen, "predicted": predicted, "decided": tally.decided, "qualified": tally.qualified,
              "sampled": tally.sampled, "uploaded": uploaded, "failed": failed, "already-sent": already}
    steps = [FunnelStep("seen", seen, "images listed in the source"),
             FunnelStep("predicted", predicted, _predicted_note(summary))]
    if already:
        steps.append(FunnelStep("already-sent", already, "sent by earlier runs: skipped", 1))
    steps.append(FunnelStep("decided", tally.decided, "evaluated by the policy"))
    if policy is not None:
        for index, (leaf, count) in enumerate(zip(policy.detection_leaves, tally.cascade)):
            name = f"detection:{leaf.label}"
            steps.append(FunnelStep(name, count, "has a detection passing " + ("this rule" if index == 0 else f"this and the {index} rule(s) above"), 1))
            counts[name] = count
    for rule, count in tally.rejected_by.most_common():
        steps.append(FunnelStep(f"rejected:{rule}", count, "rejected by this image rule", 1))
        counts[f"rejected:{rule}"] = count
    steps.append(FunnelStep("qualified", tally.qualified, "passed the detection and image stages"))
    for rule, count in tally.sampling_rejected_by.most_common():
        steps.append(FunnelStep(f"not-sampled:{rule}", count, "turned down by this sampling rule", 1))
        counts[f"not-sampled:{rule}"] = count
    steps.append(FunnelStep("sampled", tally.sampled, "chosen: sent, or to send" + (" (dry run)" if dry_run else "")))
    steps.append(FunnelStep("uploaded", uploaded, "dry run: nothing sent" if dry_run else "delivered to the destination"))
    for state in ("pending", "failed", "sending", "uploaded"):
        if states.get(state):
            steps.append(FunnelStep(f"delivery:{state}", int(states[state]), "deliveries in this state", 1))
    steps.append(FunnelStep("failed", failed, ", ".join(f"{stage}: {n}" for stage, n in sorted(by_stage.items()))))
    return counts, steps


def _predicted_note(summary: dict[str, Any]) -> str:
    if not summary:
        return "the run did not finish: counted from its decisions"
    reused = int(summary.get("reused", 0))
    return f"{summary.get('inferred', 0)} inferred" + (f", {reused} reused from the journal" if reused else "")


def rule_bands(document: Any, rule: str) -> list[tuple[float, float]]:
    """[min, max] of every ``rule`` object of the detection stage, in fractions (percent converted)."""
    bands = []
    if not isinstance(document, dict) or not isinstance(document.get("detection"), list):
        return bands
    for obj in document["detection"]:
        if isinstance(obj, dict) and obj.get("rule") == rule:
            scale = 100.0 if obj.get("unit") == "percent" else 1.0
            default_high = 1.0 if rule == "confidence" else math.inf
            low, high = obj.get("min", 0.0 if rule == "confidence" else -math.inf), obj.get("max", default_high * scale)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                bands.append((float(low) / scale, float(high) / scale))
    return bands


def _area_unit_is_fraction(document: Any) -> bool:
    if isinstance(document, dict) and isinstance(document.get("detection"), list):
        for obj in document["detection"]:
            if isinstance(obj, dict) and obj.get("rule") == "box_area":
                return obj.get("unit") == "fraction"
    return False


def spread(items: Sequence[int], count: int) -> list[int]:
    """Up to ``count`` items evenly spaced over ``items`` (deterministic, unlike a random sample)."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def _rows(db: sqlite3.Connection, run_id: int, seqs: Sequence[int]) -> Iterator[tuple[Any, ...]]:
    for start in range(0, len(seqs), 500):
        chunk = seqs[start:start + 500]
        marks = ",".join("?" * len(chunk))
        yield from db.execute(_decisions_sql(db) + f" AND d.seq IN ({marks}) ORDER BY d.seq", (run_id, *chunk))


def _shot(row: tuple[Any, ...], policy: Policy | None, *, chosen: bool) -> Shot:
    seq, key, path, qualifies, _sampled, rejected_by, record_text, prediction_text = row
    record = _json_object(record_text)
    prediction = _stored_prediction(prediction_text)
    witnesses = policy.evaluate(prediction).witnesses if (policy is not None and prediction is not None) else []
    lines = [str(reason) for reason in record.get("reasons") or []]
    if record.get("score") is not None:
        lines.insert(0, f"score {record['score']:.3g}")
    if record.get("tags"):
        lines.append("tags: " + ", ".join(map(str, record["tags"])))
    if record.get("error"):
        lines.append(f"error: {record['error']}")
    if chosen:
        badge = "sent" if record.get("remote_id") else ("not sent" if record.get("error") else "chosen")
        link = (str(record.get("url") or ""), str(record["remote_id"])) if record.get("remote_id") else None
        return Shot(key, path, prediction, witnesses, badge, lines, link, "chosen")
    culprit = rejected_by or (f"sampling: {record.get('sampling')}" if qualifies else "policy")
    if qualifies:
        lines.insert(0, f"qualified, but {record.get('sampling') or 'not sampled'}")
    return Shot(key, path, prediction, witnesses, f"rejected by {culprit}", lines, None, "rejected")


# ====================================================================== thumbnails
def thumbnail(shot: Shot, thumbs: Path, size: int = THUMB_SIZE) -> tuple[str, int, int] | str:
    """Write the shot's JPEG thumbnail with its boxes; returns (file name, w, h) or why not."""
    name = hashlib.sha1(shot.key.encode("utf-8")).hexdigest()[:20] + ".jpg"
    try:
        with open_image(shot.path) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale, much faster
            image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((size, size))
    except ImageDecodeError as error:
        return "image no longer on disk" if not os.path.lexists(shot.path) else f"image unreadable: {error}"
    if shot.prediction is not None and shot.marks is None:
        draw_boxes(image, shot.prediction, shot.witnesses)
    thumbs.mkdir(parents=True, exist_ok=True)
    image.save(thumbs / name, "JPEG", quality=82)
    return name, image.width, image.height


def witness_indices(prediction: Prediction, witnesses: Sequence[Detection]) -> set[int]:
    """The places of ``witnesses`` among the prediction's detections (the policy returns the
    detections themselves; a scaled copy of the prediction has other objects at the same places)."""
    chosen = {id(d) for d in witnesses}
    return {index for index, detection in enumerate(prediction.detections) if id(detection) in chosen}


def draw_boxes(image: Image.Image, prediction: Prediction, witnesses: Sequence[Detection]) -> None:
    """Boxes scaled from the prediction's image size to the thumbnail
    (:func:`alpolicy.formats.roboflow.scaled`); witnesses in orange, on top. A classifier has no
    box: its classes are written under the thumbnail (:func:`classes_block`); polygons and
    keypoints are drawn over it in SVG (:func:`alpolicy.report.svg.overlay`)."""
    if not prediction.has_boxes:
        return
    chosen = witness_indices(prediction, witnesses)
    small = scaled(prediction, image.width, image.height)
    draw = ImageDraw.Draw(image)
    ordered = sorted(range(len(small.detections)), key=lambda index: index in chosen)
    for index in ordered:
        detection = small.detections[index]
        colour = _WITNESS if index in chosen else _OTHER
        x, y, w, h = corner_box(detection, image.width, image.height)
        box = (x, y, x + w, y + h)
        draw.rectangle(box, outline=colour, width=2 if index in chosen else 1)
        label = detection_label(detection)
        left, top = box[0], max(0.0, box[1] - 11)
        text_box = draw.textbbox((left + 1, top), label)
        draw.rectangle((text_box[0] - 1, text_box[1] - 1, text_box[2] + 1, text_box[3] + 1), fill=colour)
        draw.text((left + 1, top), label, fill=(0, 0, 0))


# ====================================================================== HTML pieces
CSS = Markup("""
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}.meta code{background:#f4f4f4;padding:0 3px}
table.funnel{border-collapse:collapse}table.funnel td,table.funnel th{padding:2px 8px;text-align:left}
table.funnel td.n{text-align:right;font-variant-numeric:tabular-nums}
table.funnel tr.sub th{font-weight:normal;padding-left:24px;color:#444}
.bar{background:#4e79a7;height:12px;min-width:1px}.note{color:#666}
.charts{display:flex;flex-wrap:wrap;gap:16px}.charts svg{border:1px solid #eee;background:#fff}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;background:#fafafa}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:12px;word-break:break-word}figcaption ul{margin:4px 0;padding-left:16px}
.badge{display:inline-block;border-radius:3px;padding:0 5px;color:#fff;background:#59a14f;font-size:11px}
.rejected .badge{background:#e15759}.missing{padding:40px 8px;color:#a00;background:#fee;text-align:center}
pre{background:#f6f6f6;padding:10px;overflow:auto}
a.shot{position:relative;display:inline-block;max-width:100%}
a.shot svg.overlay{position:absolute;left:0;top:0;width:100%;height:100%}
svg.overlay circle.low{fill-opacity:0}
.classes{margin:4px 0}.classes .verdict{font-size:13px}
table.scores{border-collapse:collapse;font-size:12px}table.scores td{padding:0 6px 0 0}
table.scores td.n{text-align:right;font-variant-numeric:tabular-nums}table.scores td.meter{width:120px}
table.scores tr.predicted td:first-child{font-weight:bold}table.scores tr.other{color:#666}
table.fail td{padding:1px 8px;font-size:12px;vertical-align:top}
""")


def page(title: str, body: Iterable[Markup | str], *, css: Markup = Markup("")) -> Markup:
    """A complete HTML document (UTF-8, inline CSS, no script); plain strings in ``body`` are text;
    ``css``: a page's own rules, after the shared ones (a trusted constant, as :data:`CSS`)."""
    return html('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width,initial-scale=1">'
                "<title>{title}</title><style>{css}</style></head><body>\n{body}\n</body></html>\n",
                title=title, css=CSS + css, body=join(body, "\n"))


def href(url: str, out_dir: Path) -> str | None:
    """A link for a destination's URL: http(s) as it is, ``file:`` as a relative path (the report
    folder can move along with the files), ``None`` for anything else (``javascript:``...)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "file":
        return relative_href(urllib.request.url2pathname(parts.path), out_dir)
    return None


def relative_href(path: str, out_dir: Path) -> str:
    """A local file as a URL relative to the report folder (absolute ``file:`` URI across drives)."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, out_dir.resolve())
    except ValueError:  # another drive (Windows)
        return Path(absolute).as_uri()
    return urllib.parse.quote(relative.replace(os.sep, "/"))


def gallery(shots: Sequence[Shot], out_dir: Path, *, empty: str = "none") -> Markup:
    """A grid of figures: thumbnail (linking to the original), badge, reasons, destination link."""
    if not shots:
        return html('<p class="note">{}</p>', empty)
    return html('<div class="gallery">{}</div>', join(_figure(shot, out_dir) for shot in shots))


def _figure(shot: Shot, out_dir: Path) -> Markup:
    made = thumbnail(shot, out_dir / "thumbs")
    if isinstance(made, tuple):
        name, w, h = made
        drawn = _overlay(shot, w, h)
        picture = html('<a class="shot" href="{link}"><img src="thumbs/{name}" width="{w}" height="{h}" alt="{alt}">{drawn}</a>',
                       link=relative_href(shot.path, out_dir), name=name, w=w, h=h, alt=os.path.basename(shot.path),
                       drawn=drawn or "")
    else:
        picture = html('<div class="missing">{}</div>', made)
    caption = [html('<span class="badge">{}</span> <b>{}</b>', shot.badge, os.path.basename(shot.path))]
    if shot.prediction is not None and shot.prediction.is_classification:
        caption.append(classes_block(shot.prediction))
    if shot.link:
        url, text = shot.link
        target = href(url, out_dir)
        caption.append(html('<div>destination: <a href="{}">{}</a></div>', target, text) if target
                       else html("<div>destination: {}</div>", text))
    if shot.lines:
        caption.append(html("<ul>{}</ul>", join(html("<li>{}</li>", line) for line in shot.lines[:12])))
    return html('<figure class="{}">{}<figcaption>{}</figcaption></figure>', shot.klass, picture, join(caption))


def _overlay(shot: Shot, width: int, height: int) -> Markup | None:
    """The shot's polygons and keypoints in SVG over its ``width`` x ``height`` thumbnail."""
    prediction = shot.prediction
    if prediction is None or not prediction.has_boxes:
        return None
    if shot.marks is not None:
        return svg.overlay(scaled(prediction, width, height), marks=shot.marks)
    chosen = witness_indices(prediction, shot.witnesses)
    return svg.overlay(scaled(prediction, width, height), chosen)


#: Most class scores listed under a classifier's thumbnail (best first; the rest are counted).
LISTED_SCORES = 10


def classes_block(prediction: Prediction) -> Markup:
    """A classifier's verdict as text, where a detector's boxes would be: the top class (single
    label) or the predicted classes (multi-label) with their confidences, then every class's
    score, best first (the first :data:`LISTED_SCORES`), the predicted ones marked."""
    predicted = [str(entry["class"]) for entry in prediction.detections]
    labels = join((html('<b class="class">{}</b> {:.2f}', entry["class"], float(entry["confidence"]))
                   for entry in prediction.detections), ", ")
    if prediction.top is not None:
        verdict = html('<div class="verdict">top: {}</div>', labels)
    elif predicted:
        verdict = html('<div class="verdict">predicted: {}</div>', labels)
    else:
        verdict = html('<div class="verdict">no class predicted</div>')
    rows = [
        html('<tr class="{}"><td>{}</td><td class="n">{:.2f}</td><td class="meter"><div class="bar" style="width:{:.1f}%"></div></td></tr>',
             "predicted" if str(entry["class"]) in predicted else "other", entry["class"], float(entry["confidence"]),
             100.0 * float(entry["confidence"]))
        for entry in prediction.class_scores[:LISTED_SCORES]
    ]
    more = len(prediction.class_scores) - LISTED_SCORES
    if more > 0:
        rows.append(html('<tr class="more"><td colspan="3">and {} more</td></tr>', more))
    return html('<div class="classes">{}<table class="scores">{}</table></div>', verdict, join(rows))


def funnel_table(steps: Sequence[FunnelStep]) -> Markup:
    """The funnel as a table; each count cell carries ``data-count`` (tests and scripts read it)."""
    peak = max((step.count for step in steps), default=0) or 1
    rows = [
        html('<tr{klass}><th>{name}</th><td class="n" data-count="{name}">{count}</td>'
             '<td style="width:320px"><div class="bar" style="width:{width:.1f}%"></div></td>'
             '<td class="note">{note}</td></tr>',
             klass=Markup(' class="sub"') if step.level else "", name=step.name, count=int(step.count),
             width=100.0 * step.count / peak, note=step.note)
        for step in steps
    ]
    return html('<table class="funnel">{}</table>', join(rows))


def policy_block(document: Any) -> Markup:
    text = json.dumps(document, indent=2, ensure_ascii=False) if not isinstance(document, str) else document
    return html("<pre>{}</pre>", text)


# ====================================================================== the run page
def render_run(model: RunModel, out_dir: Path) -> Markup:
    run = model.run
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
    meta = [("status", run.status), ("started", started), ("source", run.source), ("model", run.model),
            ("destination", run.destination), ("dry run", "yes" if run.options.get("dry_run") else "no")]
    policy_name = model.policy_document.get("name") if isinstance(model.policy_document, dict) else None
    body = [
        html("<h1>alpolicy run {}{}</h1>", run.id, f": {policy_name}" if policy_name else ""),
        html('<p class="meta">{}</p>', join((html("{} <code>{}</code>", k, v) for k, v in meta if v is not None), " · ")),
        *(html('<p class="note">{}</p>', note) for note in model.notes),
        html("<h2>Funnel</h2>"), funnel_table(model.funnel),
        html("<h2>Detections</h2>"), html('<div class="charts">'), *_charts(model), html("</div>"),
        html("<h2>Chosen images ({})</h2>", model.counts.get("sampled", 0)),
        gallery(model.chosen, out_dir, empty="no image was chosen"),
        html("<h2>Rejected images (a sample of {})</h2>", len(model.rejected)),
        gallery(model.rejected, out_dir, empty="no image was rejected"),
    ]
    if model.failures:
        body += [html("<h2>Failures</h2>"), _failures_table(model.failures, model.counts.get("failed", 0))]
    body += [html("<h2>Policy</h2>"), policy_block(model.policy_document)]
    return page(f"alpolicy run {run.id}", body)


def _charts(model: RunModel) -> list[Markup]:
    confidence = svg.histogram(svg.bin_values(model.confidences, 0.0, 1.0, 40), title=f"Confidence of {len(model.confidences)} detections",
                               x_label="confidence (shaded: the policy's confidence rules)", bands=model.confidence_bands,
                               css_id="chart-confidence")
    classes = svg.bar_chart(model.classes.most_common(25), title="Detections per class", css_id="chart-classes")
    lo, hi = svg.positive_range(model.areas)
    unit = "fraction of the image" if model.area_relative else "px²"
    areas = svg.histogram(svg.bin_values(model.areas, lo, hi, 40, log=True), title="Box areas (log scale)",
                          x_label=f"box area, {unit} (shaded: box_area rules)", bands=model.area_bands, css_id="chart-areas")
    return [confidence, classes, areas]


def _failures_table(failures: Sequence[dict[str, str]], total: int) -> Markup:
    rows = join(html("<tr><td>{stage}</td><td>{path}</td><td>{error}</td></tr>", **f) for f in failures)
    more = html('<p class="note">{} more in the journal</p>', total - len(failures)) if total > len(failures) else ""
    return html('<table class="fail">{}</table>{}', rows, more)


def write_page(out_dir: str | os.PathLike[str], page_html: Markup, name: str = "index.html") -> Path:
    """Write ``out_dir/index.html`` (or ``name``); only :class:`Markup` (a page built by :mod:`alpolicy.report.markup`)
    is written, so a page pasted together from unescaped strings cannot reach a browser."""
    if not isinstance(page_html, Markup):
        raise TypeError("write_page() takes Markup built with alpolicy.report.markup.html(), not a plain str")
    index = Path(out_dir) / name
    index.write_text(page_html, encoding="utf-8")
    return index


def prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Create the report folder; an existing file there, or no permission, is a one-line error."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    try:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the report folder {out}: {error.strerror or error}") from None
    return out


def write_run_report(journal: str | os.PathLike[str], out_dir: str | os.PathLike[str], run_id: int | None = None) -> Path:
    """Write ``out_dir/index.html`` (+ ``thumbs/``) for run ``run_id`` (default: the last); returns the page."""
    model = load_run(journal, run_id)
    out = prepare_out_dir(out_dir)
    return write_page(out, render_run(model, out))
