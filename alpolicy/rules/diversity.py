"""The ``diversity`` sampling rule: k-center greedy (coreset) selection over image embeddings.

A budget spent on the K highest scores of a footage is often twenty frames of one scene. This
rule spends it on frames far apart instead: the candidates (the images that qualify and pass
the gates) are held to the end of the stream, as with ``top_k``, then **k-center greedy** picks
the batch:

1. the first centre is the highest-scored candidate (``Decision.score``, e.g. from
   ``uncertainty``; ties and unscored candidates in stream order), or, with ``seed``, the
   candidate with the lowest seeded draw;
2. then, until K are picked, the candidate farthest from its nearest centre already picked
   (ties in stream order).

That is the 2-approximation of the k-center problem (Gonzalez 1985; the "core-set" of Sener &
Savarese 2018): every candidate left out is at most twice as far from the batch as an optimal
batch could have it. Deterministic: the same candidates give the same picks, in a dry run and a
real run alike. Embeddings come from an embedder plugin (:class:`alpolicy.EmbedderSpec`; the
built-in ``pixels``, or ``clip``), computed by :meth:`DiversityRule.prepare` in the run's
worker threads. A candidate that could not be embedded is never picked (it has no place in the
space).

One end-of-stream selector per policy: ``diversity`` is refused with ``top_k`` (or a second
``diversity``) at validation -- both would spend the same budget, each its own way.
Memory: one embedding per candidate (256 numbers for ``pixels``) until the end of the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from jsonschema import Draft202012Validator

from ..hookspecs import hookimpl
from ..io.images import ImageDecodeError, ImageFile
from ..policy.rule import Candidate, ParameterError, SamplingRule
from ..registry import RuleSpec, Stage, default_registry, did_you_mean
from .base import builtin_schema, seeded_draw

if TYPE_CHECKING:  # pragma: no cover
    from ..policy.decision import Decision
    from ..policy.usage import UsageCounter

Vector = Sequence[float]


def _normalised(vector: Vector) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else [0.0] * len(vector)


def distances_from(centre: Vector, points: Sequence[Vector], metric: str) -> list[float]:
    """The distance of every point from ``centre``. ``cosine``: 1 - cos, on vectors normalised
    beforehand (:func:`k_center_greedy` does); ``euclidean``: the straight-line distance."""
    if metric == "cosine":
        return [0.5 * math.dist(centre, point) ** 2 for point in points]  # 1 - cos for unit vectors
    return [math.dist(centre, point) for point in points]


def k_center_greedy(points: Sequence[Vector], k: int, first: int = 0, metric: str = "euclidean") -> list[tuple[int, float]]:
    """Pick ``k`` of ``points`` by k-center greedy: ``first``, then repeatedly the point farthest
    from its nearest pick (ties: the lowest index). Returns ``(index, distance)`` in pick order,
    the distance being that point's distance to the picks before it (``inf`` for the first)."""
    if k <= 0 or not points:
        return []
    if metric == "cosine":
        points = [_normalised(point) for point in points]
    picks = [(first, math.inf)]
    left = [i for i in range(len(points)) if i != first]  # in stream order: max() keeps the first of ties
    nearest = dict(zip(left, distances_from(points[first], [points[i] for i in left], metric)))
    while left and len(picks) < k:
        farthest = max(left, key=nearest.__getitem__)
        picks.append((farthest, nearest.pop(farthest)))
        left.remove(farthest)
        for i, distance in zip(left, distances_from(points[farthest], [points[i] for i in left], metric)):
            if distance < nearest[i]:
                nearest[i] = distance
    return picks


@dataclass
class DiversityRule(SamplingRule):
    """Deferred: the pipeline holds the candidates and asks :meth:`select` at the end."""

    budget: int | None
    fraction: float | None
    embedder_name: str
    embedder_options: dict[str, Any]
    metric: str
    seed: int | str | None
    role: str = field(default="deferred", init=False)
    name: str = field(default="diversity", init=False)
    embedder: Any = field(default=None, init=False, repr=False)

    @property
    def slot(self) -> str:
        return f"embedding:{self.embedder_name}"

    def bind(self, usage: "UsageCounter", name: str) -> None:
        """Build the embedder, when a run starts (a policy only validated needs no key nor server)."""
        self.name = name
        self.embedder = default_registry().embedders[self.embedder_name].factory(dict(self.embedder_options))

    def prepare(self, image: ImageFile) -> None:
        if self.slot in image.derived:
            return
        if self.embedder is None:  # compiled outside a run (a policy evaluated in code)
            self.embedder = default_registry().embedders[self.embedder_name].factory(dict(self.embedder_options))
        try:
            image.derived[self.slot] = list(self.embedder.embed(image))
        except ImageDecodeError:
            image.derived[self.slot] = None

    def matches(self, image: ImageFile, decision: "Decision") -> bool:
        return True  # every candidate is held; :meth:`select` decides at the end

    def explain(self, matched: bool) -> str:
        return f"held for the {self.describe_budget()} most diverse candidates of the run"

    def describe_budget(self) -> str:
        return str(self.budget) if self.budget is not None else f"{self.fraction:g} x candidates"

    def size(self, candidates: int) -> int:
        """K for this many candidates: ``budget``, or ``ceil(fraction x candidates)``."""
        if self.budget is not None:
            return self.budget
        return math.ceil((self.fraction or 0) * candidates - 1e-9)

    def select(self, candidates: Sequence[Candidate], room: int) -> tuple[list[int], list[str]]:
        """The candidates to send (indices into ``candidates``, which are in stream order), in
        pick order, and why, for every candidate, it was picked or not."""
        embedded = [i for i, c in enumerate(candidates) if c.image.derived.get(self.slot) is not None]
        points = [candidates[i].image.derived[self.slot] for i in embedded]
        lengths = {len(point) for point in points}
        if len(lengths) > 1:
            raise ValueError(f"the {self.embedder_name} embedder gave vectors of {len(lengths)} different lengths")
        first = self._first([candidates[i] for i in embedded])
        picks = k_center_greedy(points, room, first, self.metric) if points else []
        reasons = ["could not embed the image: not picked" for _ in candidates]
        for i in embedded:
            reasons[i] = f"not among the {room} most diverse candidates"
        chosen: list[int] = []
        for rank, (local, distance) in enumerate(picks, 1):
            index = embedded[local]
            chosen.append(index)
            how = "first centre" if rank == 1 else f"{self.metric} distance {distance:.3g} to the nearest pick"
            reasons[index] = f"pick {rank} of {room} ({how})"
        if picks:
            nearest = self._nearest_pick(points, [local for local, _ in picks])
            for local, (pick, distance) in nearest.items():
                reasons[embedded[local]] += f" (nearest pick {candidates[embedded[pick]].image.display_path}, {distance:.3g})"
        return chosen, reasons

    def _first(self, candidates: Sequence[Candidate]) -> int:
        if not candidates:
            return 0
        if self.seed is not None:
            return min(range(len(candidates)), key=lambda i: (seeded_draw(self.seed, self.name, candidates[i].image.key), i))
        scores = [c.score if c.score is not None else -math.inf for c in candidates]
        return max(range(len(candidates)), key=lambda i: (scores[i], -i))

    def _nearest_pick(self, points: Sequence[Vector], picks: list[int]) -> dict[int, tuple[int, float]]:
        """For each point not picked: its nearest pick and the distance (for the explanation)."""
        chosen = set(picks)
        vectors = [_normalised(p) for p in points] if self.metric == "cosine" else list(points)
        rows = [distances_from(vectors[pick], vectors, self.metric) for pick in picks]
        out: dict[int, tuple[int, float]] = {}
        for i in range(len(points)):
            if i not in chosen:
                best = min(range(len(picks)), key=lambda j: (rows[j][i], j))
                out[i] = (picks[best], rows[best][i])
        return out

    def close(self) -> None:
        if callable(getattr(self.embedder, "close", None)):
            self.embedder.close()


def _check_embedder(name: str, options: Any) -> None:
    embedders = default_registry().embedders
    spec = embedders.get(name)
    if spec is None:
        known = ", ".join(sorted(embedders)) or "none"
        raise ParameterError("embedder", f"unknown embedder {name!r}{did_you_mean(name, embedders)}; embedders: {known}")
    schema = spec.options_schema
    if schema is None:
        return
    allowed = set(schema.get("properties", {}))
    for key in options:
        if key not in allowed and schema.get("additionalProperties", False) is False:
            raise ParameterError("embedder_options", f"unknown option {key!r} of embedder {name!r}"
                                 f"{did_you_mean(key, allowed)}; options: {', '.join(sorted(allowed)) or 'none'}")
    error = next(iter(sorted(Draft202012Validator(dict(schema)).iter_errors(options), key=lambda e: list(e.path))), None)
    if error is not None:
        where = ".".join(str(part) for part in error.path)
        raise ParameterError("embedder_options", f"{where + ': ' if where else ''}{error.message}")


def make_diversity(params: dict[str, Any]) -> DiversityRule:
    if ("budget" in params) == ("fraction" in params):
        raise ParameterError(None, "give the batch size: budget (images) or fraction (of the candidates), one of them")
    name = params.get("embedder", "pixels")
    options = dict(params.get("embedder_options", {}))
    _check_embedder(name, options)
    budget = int(params["budget"]) if "budget" in params else None
    fraction = float(params["fraction"]) if "fraction" in params else None
    return DiversityRule(budget, fraction, name, options, params.get("metric", "cosine"), params.get("seed"))


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    register(RuleSpec("diversity", Stage.SAMPLING, builtin_schema("diversity"), make_diversity,
                      "Hold the run's candidates, then send a budget of them far apart (k-center greedy over embeddings)."))
