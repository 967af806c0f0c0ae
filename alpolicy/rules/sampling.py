"""Built-in sampling rules: Roboflow Inference's strategies (same semantics) and a budget gate.

Strategies decide with a *seeded* draw (see :func:`seeded_draw`), so reruns and resumes make the
same choices. Limits (``"limits": [{"type": "daily", "value": 200}]`` on any strategy) and the
``limit`` gate are counted by the sampler in the journal (:mod:`alpolicy.runtime.sampler`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..hookspecs import hookimpl
from ..policy.rule import ParameterError, SamplingRule
from ..registry import RuleSpec, Stage
from .base import builtin_schema, format_names, seeded_draw

if TYPE_CHECKING:  # pragma: no cover
    from ..policy.decision import Decision
    from ..io.images import ImageFile
    from ..policy.usage import UsageCounter


@dataclass
class _Seeded(SamplingRule):
    """Shared by the strategies: a probability and the seeded draw that applies it."""

    probability: float
    seed: int | str
    name: str = field(default="", init=False)
    last_draw: float | None = field(default=None, init=False)

    def draw_passes(self, image: "ImageFile") -> bool:
        if self.probability >= 1:
            return True
        self.last_draw = seeded_draw(self.seed, self.name, image.key)
        return self.last_draw < self.probability


@dataclass
class RandomRule(_Seeded):
    """Inference ``random``: ``draw < traffic_percentage``."""

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        return self.draw_passes(image)

    def explain(self, matched: bool) -> str:
        return f"random draw {'<' if matched else '>='} rate {self.probability:g}"


@dataclass
class CloseToThresholdRule(_Seeded):
    """Inference ``close_to_threshold`` for detection output."""

    threshold: float = 0.5
    epsilon: float = 0.1
    classes: frozenset[str] | None = None
    minimum: int = 1
    found: int = field(default=0, init=False)

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        classes, threshold, epsilon = self.classes, self.threshold, self.epsilon
        self.found = sum(
            1
            for d in decision.prediction.detections
            if (classes is None or d["class"] in classes) and abs(d["confidence"] - threshold) < epsilon
        )
        return self.found >= self.minimum and self.draw_passes(image)

    def explain(self, matched: bool) -> str:
        of = f" of {format_names(self.classes)}" if self.classes is not None else ""
        return (
            f"{self.found} detection(s){of} within {self.epsilon:g} of {self.threshold:g} "
            f"({self.minimum} needed){'' if matched else ', not sampled'}"
        )


@dataclass
class DetectionsNumberRule(_Seeded):
    """Inference ``detections_number_based``: ``more_than < n < less_than``, both optional."""

    more_than: int | None = None
    less_than: int | None = None
    classes: frozenset[str] | None = None
    count: int = field(default=0, init=False)

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        classes = self.classes
        self.count = sum(1 for d in decision.prediction.detections if classes is None or d["class"] in classes)
        in_range = (self.more_than is None or self.count > self.more_than) and (
            self.less_than is None or self.count < self.less_than
        )
        return in_range and self.draw_passes(image)

    def explain(self, matched: bool) -> str:
        bounds = f"{'' if self.more_than is None else f'{self.more_than} < '}n{'' if self.less_than is None else f' < {self.less_than}'}"
        return f"{self.count} detection(s), {bounds}{'' if matched else ': not sampled'}"


@dataclass
class LimitRule(SamplingRule):
    """A budget gate: at most ``max`` sampled images per run / UTC window / in total (per class)."""

    max: int
    per: str
    per_class: bool
    role: str = field(default="gate", init=False)
    usage: "UsageCounter | None" = field(default=None, init=False, repr=False)
    name: str = field(default="limit", init=False)
    full: str | None = field(default=None, init=False)

    def bind(self, usage: "UsageCounter", name: str) -> None:
        self.usage, self.name = usage, name

    def _classes(self, decision: "Decision") -> list[str]:
        return sorted({d["class"] for d in decision.witnesses or decision.prediction.detections}) or [""]

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        assert self.usage is not None, "a limit must be bound to the run's usage counter"
        for cls in self._classes(decision) if self.per_class else [""]:
            if self.usage.holds(self.name, image, cls):
                continue  # already counted (a resume deciding it again)
            if self.usage.count(self.name, self.per, cls) >= self.max:
                self.full = cls
                return False
        return True

    def commit(self, image: "ImageFile", decision: "Decision") -> None:
        assert self.usage is not None
        self.usage.charge(self.name, image, self._classes(decision) if self.per_class else [""])

    def explain(self, matched: bool) -> str:
        scope = {"run": "this run", "minute": "this minute (UTC)", "hour": "this hour (UTC)",
                 "day": "today (UTC)", "total": "all runs"}[self.per]
        who = f" of class {self.full!r}" if self.per_class and self.full else ""
        return f"at most {self.max} images{who} per {scope}{'' if matched else ': reached'}"


@dataclass
class BalanceRule(SamplingRule):
    """A gate steering the sampled images' classes toward target proportions (per run)."""

    targets: dict[str, float]
    warmup: int
    witnesses_only: bool
    role: str = field(default="gate", init=False)
    counts: dict[str, int] = field(default_factory=dict, init=False)
    total: int = field(default=0, init=False)
    last: str = field(default="", init=False)

    def _classes(self, decision: "Decision") -> set[str]:
        detections = decision.witnesses if self.witnesses_only else decision.prediction.detections
        return {d["class"] for d in detections} & self.targets.keys()

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        classes = self._classes(decision)
        if not classes:
            self.last = "none of the target classes"
            return False
        if self.total < self.warmup:
            self.last = "warm-up"
            return True
        behind = sorted(c for c in classes if self.counts.get(c, 0) / self.total <= self.targets[c])
        self.last = f"{', '.join(behind)} at or below target" if behind else f"{', '.join(sorted(classes))} above target"
        return bool(behind)

    def commit(self, image: "ImageFile", decision: "Decision") -> None:
        self.total += 1
        for cls in self._classes(decision):
            self.counts[cls] = self.counts.get(cls, 0) + 1

    def explain(self, matched: bool) -> str:
        return f"class balance: {self.last}"


@dataclass
class TopKRule(SamplingRule):
    """Deferred: the pipeline keeps the ``k`` best-scored candidates and sends them at the end."""

    k: int
    role: str = field(default="deferred", init=False)

    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        return True

    def explain(self, matched: bool) -> str:
        return f"among the {self.k} highest scores of the run" if matched else f"not among the {self.k} highest scores"


def _classes(params: dict[str, Any]) -> frozenset[str] | None:
    return frozenset(params["classes"]) if "classes" in params else None


def make_random(params: dict[str, Any]) -> RandomRule:
    return RandomRule(float(params["rate"]), params.get("seed", 0))


def make_close_to_threshold(params: dict[str, Any]) -> CloseToThresholdRule:
    return CloseToThresholdRule(
        float(params.get("probability", 1.0)), params.get("seed", 0), float(params["threshold"]),
        float(params["epsilon"]), _classes(params), int(params.get("minimum", 1)),
    )


def make_detections_number_based(params: dict[str, Any]) -> DetectionsNumberRule:
    more, less = params.get("more_than"), params.get("less_than")
    if more is not None and less is not None and more >= less:
        raise ParameterError("more_than", f"{more} >= less_than {less}: no number of detections is in range")
    return DetectionsNumberRule(float(params.get("probability", 1.0)), params.get("seed", 0), more, less, _classes(params))


def make_limit(params: dict[str, Any]) -> LimitRule:
    return LimitRule(int(params["max"]), params.get("per", "run"), bool(params.get("per_class", False)))


def make_balance(params: dict[str, Any]) -> BalanceRule:
    total = sum(params["targets"].values())
    targets = {cls: weight / total for cls, weight in params["targets"].items()}
    return BalanceRule(targets, int(params.get("warmup", 10)), params.get("of", "witnesses") == "witnesses")


def make_top_k(params: dict[str, Any]) -> TopKRule:
    return TopKRule(int(params["k"]))


_RULES: list[tuple[str, Callable[[dict[str, Any]], SamplingRule], str]] = [
    ("random", make_random, "Take a seeded random fraction of the images (Inference: random)."),
    ("close_to_threshold", make_close_to_threshold, "Images with detections whose confidence is near a threshold (Inference)."),
    ("detections_number_based", make_detections_number_based, "Images whose number of detections is in a range (Inference)."),
    ("limit", make_limit, "A budget: at most N images per run, UTC minute/hour/day, or in total (per class)."),
    ("balance", make_balance, "Steer the sampled images' classes toward target proportions."),
    ("top_k", make_top_k, "Score the whole run, then send only the K highest-scored images."),
]


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    for name, factory, summary in _RULES:
        register(RuleSpec(name, Stage.SAMPLING, builtin_schema(name), factory, summary))
