"""Policy what-if: which stored images would two policies send, and where do they differ?

Why from the journal: every run stores its predictions, so a policy change can be judged on the
whole history in seconds, with no model call and no pixel decoded (``Policy.evaluate`` on a
:class:`Prediction` takes a few microseconds; parsing the stored JSON dominates).

Scope, stated once: the **detection and image stages** are evaluated. **Sampling rules are not
applied** (budgets, top-k, balance, random strategies and near-duplicate suppression depend on
the order of a run, on clocks and usage windows, or on pixels); :attr:`Comparison.skipped_sampling`
names the sampling rules each policy has so that the output can say so.

Images: the latest stored prediction per image path (a file changed since is judged on its newest
prediction, and so is one stored at several settings, i.e. model fingerprints). When the journal
holds predictions of several models, one must be chosen.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .html import (REJECTED_SAMPLE, Shot, gallery, open_journal, page, policy_block, prepare_out_dir, spread,
                          write_page)
from ..policy.engine import Policy
from ..policy.prediction import Prediction, PredictionFormatError
from ..runtime.journal import Journal, read_stored_prediction
from .markup import html, join


@dataclass
class Comparison:
    """The outcome of a what-if; the path lists are sorted (deterministic galleries)."""

    images: int
    model: str | None
    a_sends: int
    b_sends: int
    both: int
    a_only: list[str]
    b_only: list[str]
    elapsed: float
    skipped_sampling: dict[str, list[str]] = field(default_factory=dict)
    #: path -> model of the evaluated prediction, for the differences only (the gallery looks them up).
    origin: dict[str, str] = field(default_factory=dict, repr=False)

    def summary(self, label_a: str, label_b: str) -> str:
        """The few lines ``alpolicy compare`` prints."""
        width = max(len(label_a), len(label_b), len("both"))
        lines = [f"{self.images} images with stored predictions" + (f" (model {self.model})" if self.model else "")
                 + f", compared in {self.elapsed:.2f}s",
                 f"  {'A ' + label_a:<{width + 2}}  would send {self.a_sends:>7}",
                 f"  {'B ' + label_b:<{width + 2}}  would send {self.b_sends:>7}",
                 f"  {'both':<{width + 2}}             {self.both:>7}",
                 f"  {'A only':<{width + 2}}             {len(self.a_only):>7}",
                 f"  {'B only':<{width + 2}}             {len(self.b_only):>7}"]
        for which, rules in self.skipped_sampling.items():
            if rules:
                lines.append(f"  note: sampling rules of {which} not applied (they depend on a run's order, clock or pixels): "
                             + ", ".join(rules))
        return "\n".join(lines)


def stored_models(journal_path: str | os.PathLike[str]) -> list[str]:
    db = open_journal(journal_path)
    try:
        return [row[0] for row in db.execute("SELECT DISTINCT model FROM predictions ORDER BY model")]
    finally:
        db.close()


def _choose_model(journal_path: str | os.PathLike[str], model: str | None) -> str | None:
    """The model whose predictions are compared: the only one stored, or the one asked for."""
    models = stored_models(journal_path)
    if model is not None:
        if model not in models:
            raise UsageError(f"no predictions of model {model!r} in the journal; it has: {', '.join(models) or 'none'}")
        return model
    if len(models) > 1:
        raise UsageError(f"the journal holds predictions of {len(models)} models ({', '.join(models)}): choose one with --model")
    return models[0] if models else None


def _verdicts(journal: Journal, model: str | None, policy_a: Policy, policy_b: Policy) -> dict[str, tuple[bool, bool, str]]:
    """path -> (A sends, B sends, model), streaming; a later (newer) prediction of a path replaces
    an earlier one, and only these small tuples are kept, not the predictions."""
    verdicts: dict[str, tuple[bool, bool, str]] = {}
    for path, model_id, prediction in journal.iter_predictions(model):
        verdicts[path] = (policy_a.evaluate(prediction).qualifies, policy_b.evaluate(prediction).qualifies, model_id)
    return verdicts


def compare(journal_path: str | os.PathLike[str], policy_a: Policy, policy_b: Policy, *, model: str | None = None) -> Comparison:
    """Evaluate both policies on every stored prediction; count the images each would send."""
    started = time.perf_counter()
    model = _choose_model(journal_path, model)
    journal = Journal(journal_path)
    try:
        verdicts = _verdicts(journal, model, policy_a, policy_b)
    finally:
        journal.close()
    a_only = sorted(path for path, (in_a, in_b, _) in verdicts.items() if in_a and not in_b)
    b_only = sorted(path for path, (in_a, in_b, _) in verdicts.items() if in_b and not in_a)
    comparison = Comparison(
        len(verdicts), model, sum(v[0] for v in verdicts.values()), sum(v[1] for v in verdicts.values()),
        sum(v[0] and v[1] for v in verdicts.values()), a_only, b_only, time.perf_counter() - started,
    )
    comparison.skipped_sampling = {"A": [leaf.label for leaf in policy_a.sampling_leaves],
                                   "B": [leaf.label for leaf in policy_b.sampling_leaves]}
    comparison.origin = {path: verdicts[path][2] for path in (*a_only, *b_only)}
    return comparison


# ---------------------------------------------------------------------- the what-if page
def _predictions_of(db: sqlite3.Connection, paths: list[str], origin: dict[str, str]) -> dict[str, tuple[str, Prediction]]:
    """path -> (image key, newest prediction) for a few paths, in one pass (``path`` has no index)."""
    found: dict[str, tuple[str, Prediction]] = {}
    for start in range(0, len(paths), 500):
        chunk = paths[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for path, model, key, text in db.execute(
            f"SELECT path, model, image_key, prediction FROM predictions WHERE path IN ({marks}) ORDER BY rowid", chunk
        ):
            if origin.get(path) == model:
                try:
                    found[path] = (key, read_stored_prediction(text))
                except PredictionFormatError:  # NaN stored by alpolicy 0.1: compare() skipped it too
                    continue
    return found


def _difference_shots(db: sqlite3.Connection, comparison: Comparison, paths: list[str], chooser: Policy,
                      other: Policy, label: str, other_label: str, sample: int) -> list[Shot]:
    """Shots of the images only ``chooser`` sends: its witnesses and reasons, and why ``other`` refuses."""
    chosen_paths = [paths[i] for i in spread(range(len(paths)), sample)]
    found = _predictions_of(db, chosen_paths, comparison.origin)
    shots = []
    for path in chosen_paths:
        if path not in found:
            continue
        key, prediction = found[path]
        chosen, refused = chooser.evaluate(prediction), other.evaluate(prediction)
        lines = [f"{other_label}: rejected by {refused.rejected_by}", *(f"{label}: {r}" for r in chosen.reasons)]
        shots.append(Shot(key, path, prediction, chosen.witnesses, f"{label} only", lines, None, "chosen"))
    return shots


def write_comparison_report(journal_path: str | os.PathLike[str], comparison: Comparison, policy_a: Policy, policy_b: Policy,
                            out_dir: str | os.PathLike[str], *, labels: tuple[str, str] = ("A", "B"),
                            sample: int = REJECTED_SAMPLE) -> Path:
    """``out_dir/index.html``: counts, the two policies, and galleries of A-only and B-only images."""
    out = prepare_out_dir(out_dir)
    db = open_journal(journal_path)
    try:
        a_shots = _difference_shots(db, comparison, comparison.a_only, policy_a, policy_b, "A", "B", sample)
        b_shots = _difference_shots(db, comparison, comparison.b_only, policy_b, policy_a, "B", "A", sample)
    finally:
        db.close()
    rows = [("images", comparison.images), ("A sends", comparison.a_sends), ("B sends", comparison.b_sends),
            ("both", comparison.both), ("A only", len(comparison.a_only)), ("B only", len(comparison.b_only))]
    table = join(html('<tr><th>{name}</th><td class="n" data-count="{name}">{value}</td></tr>', name=name, value=value)
                 for name, value in rows)
    notes = [html('<p class="note">sampling rules of {} not applied: {}</p>', which, ", ".join(rules))
             for which, rules in comparison.skipped_sampling.items() if rules]
    body = [
        html("<h1>alpolicy compare</h1>"),
        html('<p class="meta">A = <code>{}</code> · B = <code>{}</code> · model <code>{}</code></p>',
             labels[0], labels[1], comparison.model or "none"),
        html('<table class="funnel">{}</table>', table), *notes,
        html("<h2>Only A sends ({}; showing {})</h2>", len(comparison.a_only), len(a_shots)), gallery(a_shots, out, empty="none"),
        html("<h2>Only B sends ({}; showing {})</h2>", len(comparison.b_only), len(b_shots)), gallery(b_shots, out, empty="none"),
        html("<h2>Policy A</h2>"), policy_block(policy_a.document), html("<h2>Policy B</h2>"), policy_block(policy_b.document),
    ]
    return write_page(out, page("alpolicy compare", body))
