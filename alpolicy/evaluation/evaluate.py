"""``alpolicy evaluate``: how many of the model's errors does a policy put in front of a labeler?

Every image with a stored prediction (the journal) and a ground-truth entry (a COCO file, matched
by file name) is *evaluated*: its errors are counted (:mod:`alpolicy.evaluation.matching`) and
each policy decides it again from the stored prediction, with no model call -- the what-if
mechanism of :mod:`alpolicy.report.whatif` (the latest stored prediction of each path, in the
order the journal stored them, judged by :meth:`Policy.evaluate`) -- and then, unlike the
what-if, through the real sampling stage (:class:`~alpolicy.runtime.sampler.Sampler`).

Sampling is replayed on a **scratch ledger over an empty in-memory journal** with a frozen clock:
nothing is charged to the journal, the usage real runs recorded does not leak into another
policy's limits (rules are named by their place in the policy, ``$.sampling[0]``, so two
policies' rules share names), and the answer does not depend on the day it is asked (every pick
falls in one usage window, as if the stream came in within a minute). Rules that measure pixels
(``near_duplicate``) read the image files at their stored paths; random draws are keyed by the
image as it is on disk now (path, size, modification time), as a rerun would key them. A
``top_k`` rule keeps its k best-scored picks, as the pipeline does.

Per policy, ``picked`` = the images it sends (qualifying, then sampled); at ``budget`` K, its K
highest :attr:`Decision.score` picks (``None`` ranks last), ties in stream order. With K =
``picked`` (so a policy that fills less than the budget is compared at what it sends):

* ``errors_captured``: the errors in the picked images (and their ``by_kind``, ``by_class``);
* ``random_mean`` = K / N x ``errors_total`` (what K picks drawn at random hold in expectation;
  per kind and per class it is K / N times the totals, which the document holds), and
  ``random_spread``: std, 5th and 95th percentile over ``draws`` seeded draws of K images;
* ``oracle``: the errors in the K images that hold the most;
* ``efficiency`` = (captured - random_mean) / (oracle - random_mean): 0 is random, 1 the oracle,
  ``None`` when oracle == random_mean (nothing to gain: no error at all, or K == N).

The document's top-level ``oracle`` is the oracle at ``budget`` (``None`` without one).
"""

from __future__ import annotations

import os
import random
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import PolicyError, UsageError
from ..io.images import ImageFile
from ..policy.decision import Decision
from ..policy.engine import Policy
from ..policy.prediction import CLASSIFICATION_TASKS, Detection, Prediction
from ..report.whatif import stored_models
from ..runtime.journal import Journal
from ..runtime.sampler import Sampler
from .ground_truth import GroundTruth, file_key, read_ground_truth
from .matching import KINDS, ImageErrors, match, predicted_classes

DRAWS = 1000
SEED = 0


@dataclass
class Evaluated:
    """One evaluated image, in stream order."""

    name: str
    path: str
    prediction: Prediction
    truth: Prediction
    errors: ImageErrors


def check_iou(iou: float) -> float:
    if not 0 < iou <= 1:
        raise UsageError(f"--iou must be in (0, 1], not {iou:g}")
    return iou


def check_budget(budget: int | None) -> int | None:
    if budget is not None and budget < 1:
        raise UsageError(f"--budget must be at least 1, not {budget}")
    return budget


def load_policy(path: str) -> Policy:
    """A policy file compiled against the installed plugins; one that does not compile is one line
    (``alpolicy validate`` lists every problem)."""
    if not os.path.isfile(path):
        raise UsageError(f"no policy file at {path}")
    try:
        return Policy.from_file(path)
    except PolicyError as error:
        count = len(error.problems)
        more = f" (and {count - 1} more: alpolicy validate {path})" if count > 1 else ""
        raise UsageError(f"the policy {path} does not compile: {error.problems[0] if error.problems else error}{more}") from None


# ---------------------------------------------------------------------- the stream
def stored_stream(journal: Journal, model: str | None) -> dict[str, Prediction]:
    """path -> its latest stored prediction, in the order the journal first stored each path
    (as :func:`alpolicy.report.whatif.compare` reads them)."""
    latest: dict[str, Prediction] = {}
    for path, _model, prediction in journal.iter_predictions(model):
        latest[path] = prediction
    return latest


def _one_model(journal_path: str) -> str | None:
    models = stored_models(journal_path)  # also: a missing or foreign file is one line
    if len(models) > 1:
        raise UsageError(f"the journal {journal_path} holds predictions of {len(models)} models ({', '.join(models)}): "
                         "evaluate one model's predictions (a journal per model)")
    return models[0] if models else None


def evaluated_images(journal_path: str, truth: GroundTruth, iou: float) -> tuple[list[Evaluated], dict[str, int]]:
    """The images with a stored prediction and a ground-truth entry, their errors counted, and
    the ``skipped`` counts; no image in common is one :class:`UsageError` line."""
    model = _one_model(journal_path)
    journal = Journal(journal_path)
    try:
        stream = stored_stream(journal, model)
    finally:
        journal.close()
    by_name: dict[str, str] = {}
    for path in stream:
        name = file_key(path)
        if name in by_name:
            raise UsageError(f"the journal stores two images named {name!r} ({by_name[name]} and {path}): "
                             "images are matched to the ground truth by file name")
        by_name[name] = path
    images = [Evaluated(name, path, stream[path], truth.images[name],
                        match(stream[path], truth.images[name], iou, truth.sigmas))
              for name, path in by_name.items() if name in truth.images]
    if not images:
        raise UsageError(f"no image in common: {len(stream)} images have a stored prediction in {journal_path}, "
                         f"{len(truth.images)} a ground-truth entry, and no file name is in both")
    skipped = {"no ground truth": len(stream) - len(images), "no prediction": len(truth.images) - len(images)}
    return images, skipped


# ---------------------------------------------------------------------- a policy's picks
def _image_file(path: str) -> ImageFile:
    return ImageFile.from_path(path) if os.path.isfile(path) else ImageFile(path, 0, 0)


def rank(candidates: Sequence[tuple[int, Decision]], k: int) -> list[int]:
    """The stream positions of the ``k`` highest-scored candidates (``None`` last, ties in stream
    order), in stream order."""
    best = sorted(candidates, key=lambda c: (c[1].score is None, -(c[1].score or 0.0), c[0]))[:k]
    return sorted(seq for seq, _ in best)


def picks(policy: Policy, images: Sequence[Evaluated], budget: int | None = None) -> list[int]:
    """The stream positions of the images ``policy`` sends (see the module docstring)."""
    for task in dict.fromkeys(image.prediction.task for image in images):
        policy.check_task(task)
    sampler = Sampler(policy, Journal(":memory:"), 0, clock=lambda: 0.0, dry_run=True)
    try:
        candidates: list[tuple[int, Decision]] = []
        for seq, image in enumerate(images):
            decision = policy.evaluate(image.prediction)
            if not decision.qualifies:
                continue
            file = _image_file(image.path)
            if sampler.needs_pixels:
                if not os.path.isfile(image.path):
                    raise UsageError(f"the policy {policy.source} measures pixels (a near_duplicate rule) "
                                     f"but {image.path} is not there any more")
                sampler.prepare(file)
            if sampler.admit(file, decision).sampled:
                candidates.append((seq, decision))
    finally:
        sampler.journal.close()
    chosen = [seq for seq, _ in candidates]
    if sampler.top_k is not None:
        chosen = rank(candidates, sampler.top_k)
    if budget is not None:
        kept = set(chosen)
        chosen = rank([c for c in candidates if c[0] in kept], budget)
    return chosen


# ---------------------------------------------------------------------- the numbers
def _add(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (NumPy's default)."""
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def random_spread(counts: Sequence[int], k: int, draws: int = DRAWS, seed: int = SEED) -> dict[str, Any]:
    """The errors ``k`` images drawn at random hold, over ``draws`` draws seeded with ``seed``."""
    rng = random.Random(seed)
    totals = sorted(float(sum(counts[i] for i in rng.sample(range(len(counts)), k))) for _ in range(draws))
    return {"draws": draws, "seed": seed, "std": statistics.pstdev(totals),
            "p05": _percentile(totals, 0.05), "p95": _percentile(totals, 0.95)}


def oracle(counts: Sequence[int], k: int) -> int:
    """The errors in the ``k`` images that hold the most."""
    return sum(sorted(counts, reverse=True)[:k])


def efficiency(captured: float, random_mean: float, best: float) -> float | None:
    denominator = best - random_mean
    return None if abs(denominator) < 1e-12 else (captured - random_mean) / denominator


def policy_outcome(source: str, policy: Policy, images: Sequence[Evaluated], budget: int | None,
                   draws: int = DRAWS, seed: int = SEED) -> dict[str, Any]:
    chosen = picks(policy, images, budget)
    counts = [image.errors.errors for image in images]
    k, total = len(chosen), sum(counts)
    by_kind = dict.fromkeys(KINDS, 0)
    by_class: dict[str, int] = {}
    for seq in chosen:
        _add(by_kind, images[seq].errors.by_kind)
        _add(by_class, images[seq].errors.by_class)
    captured = sum(counts[seq] for seq in chosen)
    random_mean = k / len(images) * total
    best = oracle(counts, k)
    return {
        "policy": source, "name": policy.name, "picked": k, "images": [images[seq].name for seq in chosen],
        "errors_captured": captured, "by_kind": by_kind, "by_class": dict(sorted(by_class.items())),
        "random_mean": random_mean, "random_spread": random_spread(counts, k, draws, seed),
        "oracle": best, "efficiency": efficiency(captured, random_mean, best),
    }


# ---------------------------------------------------------------------- per image, in JSON
def _shape(detection: Detection, *, confidence: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"class": detection["class"]}
    if confidence:
        found["confidence"] = detection.get("confidence", 1.0)
    for key in ("x", "y", "width", "height"):
        if key in detection:
            found[key] = detection[key]
    return found


def image_json(image: Evaluated) -> dict[str, Any]:
    """One image's counts and what was matched: boxes centre-based in pixels, as predictions are
    (a classifier's entries name a class only)."""
    errors = image.errors
    if image.prediction.task in CLASSIFICATION_TASKS:
        preds: list[Detection] = [{"class": c, "confidence": 1.0} for c in predicted_classes(image.prediction)]
        truths: list[Detection] = [{"class": c} for c in dict.fromkeys(d["class"] for d in image.truth.detections)]
    else:
        preds, truths = image.prediction.detections, image.truth.detections
    unmatched_predictions = [{**_shape(preds[p], confidence=True), "kind": "false_positive"} for p in errors.false_positives]
    unmatched_truths = [{**_shape(truths[t], confidence=False), "kind": "miss"} for t in errors.misses]
    for p, t, value, measure in errors.wrong_class_pairs:
        unmatched_predictions.append({**_shape(preds[p], confidence=True), "kind": "wrong_class",
                                      "truth_class": truths[t]["class"], "measure": measure, "similarity": value})
        unmatched_truths.append({**_shape(truths[t], confidence=False), "kind": "wrong_class",
                                 "predicted_class": preds[p]["class"], "measure": measure, "similarity": value})
    return {
        **errors.by_kind, "errors": errors.errors,
        "matches": [{"class": preds[p]["class"], "measure": measure, "similarity": value,
                     "prediction": _shape(preds[p], confidence=True), "truth": _shape(truths[t], confidence=False)}
                    for p, t, value, measure in errors.matches],
        "unmatched_predictions": unmatched_predictions, "unmatched_truths": unmatched_truths,
    }


def evaluate(ground_truth: str, journal: str, policies: Sequence[tuple[str, Policy]], *, budget: int | None = None,
             iou: float = 0.5, draws: int = DRAWS, seed: int = SEED) -> dict[str, Any]:
    """The evaluation document ``alpolicy evaluate --json`` prints (keys: see the module docstring
    and the README). ``policies``: (the name to show, usually the file, compiled policy)."""
    check_iou(iou)
    check_budget(budget)
    truth = read_ground_truth(ground_truth)
    images, skipped = evaluated_images(journal, truth, iou)
    counts = [image.errors.errors for image in images]
    by_kind = dict.fromkeys(KINDS, 0)
    by_class: dict[str, int] = {}
    for image in images:
        _add(by_kind, image.errors.by_kind)
        _add(by_class, image.errors.by_class)
    return {
        "ground_truth": ground_truth, "journal": journal, "iou": iou, "budget": budget,
        "evaluated": len(images), "errors_total": sum(counts), "errors_total_by_kind": by_kind,
        "errors_total_by_class": dict(sorted(by_class.items())),
        "oracle": oracle(counts, budget) if budget is not None else None, "skipped": skipped,
        "per_image": {image.name: image_json(image) for image in images},
        "policies": [policy_outcome(source, policy, images, budget, draws, seed) for source, policy in policies],
    }
