"""The sampling stage at run time, with Roboflow Inference's semantics.

For each image that passed the image stage, in stream order:

1. every **gate** (``role == "gate"``: budgets, later near-duplicate suppression) must match;
2. if the policy has **strategies**, the first one that matches *and* has room in all its
   ``limits`` takes the image (Inference: ``find_strategy_with_spare_usage_credit``); its tags
   are added. With no strategies, every image that passed the gates is sampled;
3. only then are the gates committed and the strategy charged, so nothing is counted for an
   image that was finally turned down.

Usage is counted in the journal, per image (charging the same image twice counts once), in
fixed UTC windows: limits hold across restarts and a resumed run does not pay twice. A dry run
reads that usage but records its own apart (:class:`Usage`): it spends nothing.
Sampling rule objects are rebuilt from the policy for every run: their state is the run's.

A sampling rule's code is a plugin's as much as an image rule's: every call into it (``prepare``,
``matches``, ``commit``, ``explain``) goes through its policy leaf's :meth:`Leaf.call`, so an
exception it raises is a :class:`RuleError` naming the rule, its plugin and its place
(``$.sampling[0]``) -- one image fails, the run goes on (see ``pipeline._Run._finish``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..io.images import ImageFile
from ..policy.decision import Decision
from ..policy.usage import UsageCounter
from ..policy.validation import common_keys
from ..registry import Stage
from .journal import Journal

#: Inference's limit types -> usage windows.
LIMIT_WINDOWS = {"minutely": "minute", "hourly": "hour", "daily": "day"}
_WINDOW_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class Usage(UsageCounter):
    """How many images each sampling rule took, per run / UTC window / in total (journal-backed),
    and the hashes of the images they took: all the sampling state a later run reads back.
    The journal-backed implementation of :class:`alpolicy.policy.usage.UsageCounter`.

    The one place a dry run differs: its usage is a scratch layer over the journal's
    (:meth:`Journal.sampling_ledger`). It decides from what real runs took, counts its own picks
    within the run (a limit of 3 stops after 3), and leaves nothing a later run reads.
    """

    def __init__(self, journal: Journal, run_id: int, clock: Callable[[], float] = time.time, *,
                 dry_run: bool = False) -> None:
        self.ledger = journal.sampling_ledger(scratch=dry_run)
        self.run_id, self.clock = run_id, clock

    def window_start(self, per: str) -> float | None:
        if per in _WINDOW_SECONDS:
            seconds = _WINDOW_SECONDS[per]
            return self.clock() // seconds * seconds  # fixed UTC windows (epoch-aligned)
        return None

    def count(self, rule: str, per: str, cls: str = "") -> int:
        return self.ledger.count(rule, cls, run_id=self.run_id if per == "run" else None, since=self.window_start(per))

    def holds(self, rule: str, image: ImageFile, cls: str = "") -> bool:
        """The image already counts against this rule: deciding it again (a resume) needs no new room."""
        return self.ledger.holds(rule, image, cls)

    def charge(self, rule: str, image: ImageFile, classes: list[str]) -> None:
        for cls in classes:
            self.ledger.charge(rule, image, cls, self.run_id, self.clock())

    def sampled_hashes(self, rule: str) -> list[tuple[str, int]]:
        """(image key, perceptual hash) of the images this rule took in earlier runs."""
        return self.ledger.hashes(rule)

    def add_sampled_hash(self, rule: str, image: ImageFile, value: int) -> None:
        self.ledger.add_hash(rule, image.key, value)


@dataclass
class Admission:
    """The sampler's answer for one image."""

    sampled: bool
    by: str | None = None  # the strategy that took it, or the gate that refused it
    reason: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class _Step:
    name: str
    rule: Any
    tags: list[str]
    limits: list[tuple[str, int]]
    #: The policy's leaf: who the rule is, for the one line that names it when its code raises.
    leaf: Any

    def call(self, method: str, *args: Any) -> Any:
        """The rule's ``method(*args)``; an exception from its code is a :class:`RuleError`. A
        duck-typed rule need not have ``commit`` (:class:`SamplingRule`'s does nothing)."""
        bound = getattr(self.rule, method, None)
        if bound is None:
            return None
        return self.leaf.call(bound, *args)


class Sampler:
    def __init__(self, policy: Any, journal: Journal | None = None, run_id: int = 0,
                 clock: Callable[[], float] = time.time, *, dry_run: bool = False) -> None:
        self.journal = journal or Journal(":memory:")
        self.usage = Usage(self.journal, run_id, clock, dry_run=dry_run)
        self.gates: list[_Step] = []
        self.strategies: list[_Step] = []
        #: ``k`` of a ``top_k`` rule: the pipeline sends only the k best-scored sampled images, at the end.
        self.top_k: int | None = None
        #: A deferred rule that picks from all the candidates at the end (``diversity``: it has
        #: ``select``); the policy allows one end-of-stream selector (see ``Policy`` validation).
        self.selector: _Step | None = None
        for leaf in policy.sampling_leaves:
            step = self._fresh(leaf)
            role = getattr(step.rule, "role", "strategy")
            if role == "deferred" and callable(getattr(step.rule, "select", None)):
                self.selector = step
            elif role == "deferred":
                self.top_k = step.rule.k if self.top_k is None else min(self.top_k, step.rule.k)
            else:
                (self.gates if role == "gate" else self.strategies).append(step)

    def _fresh(self, leaf: Any) -> _Step:
        source = leaf.source or {}
        params = {k: v for k, v in source.items() if k not in common_keys(Stage.SAMPLING)}
        rule = leaf.call(leaf.factory, params) if leaf.factory is not None else leaf.rule
        if hasattr(rule, "name"):
            rule.name = leaf.label
        if callable(getattr(rule, "bind", None)):
            leaf.call(rule.bind, self.usage, leaf.label)
        tags = list(source.get("tags", [])) + ([leaf.tag] if leaf.tag else [])
        limits = [(LIMIT_WINDOWS[limit["type"]], int(limit["value"])) for limit in source.get("limits", [])]
        return _Step(leaf.label, rule, tags, limits, leaf)

    @property
    def steps(self) -> list[_Step]:
        """Every rule of the sampling stage: gates, strategies, the end-of-stream selector."""
        return self.gates + self.strategies + ([self.selector] if self.selector is not None else [])

    @property
    def needs_pixels(self) -> bool:
        """True when a rule measures the image itself (worth doing in the worker threads)."""
        return any(callable(getattr(step.rule, "prepare", None)) for step in self.steps)

    def prepare(self, image: ImageFile) -> None:
        """Compute what the rules will need from the pixels (called from a worker thread)."""
        for step in self.steps:
            if callable(getattr(step.rule, "prepare", None)):
                step.call("prepare", image)

    def close(self) -> None:
        """The run is over: rules holding a connection (an embedder's) let it go."""
        for step in self.steps:
            if callable(getattr(step.rule, "close", None)):
                step.call("close")

    def admit(self, image: ImageFile, decision: Decision) -> Admission:
        """Raises :class:`RuleError` when a rule's code does; state committed by the gates before
        it stays (the image took their place), nothing is charged."""
        for gate in self.gates:
            if not gate.call("matches", image, decision):
                return Admission(False, gate.name, gate.call("explain", False))
        chosen: _Step | None = None
        if self.strategies:
            full: list[str] = []
            for step in self.strategies:
                if not step.call("matches", image, decision):
                    continue
                if self._has_room(step, image):
                    chosen = step
                    break
                full.append(step.name)
            if chosen is None:
                why = f"limits reached for {', '.join(full)}" if full else "no sampling strategy took it"
                return Admission(False, "sampling", why)
        for gate in self.gates:
            gate.call("commit", image, decision)
        if chosen is None:
            return Admission(True, None, "", [tag for gate in self.gates for tag in gate.tags])
        chosen.call("commit", image, decision)
        if chosen.limits:
            self.usage.charge(chosen.name, image, [""])
        return Admission(True, chosen.name, chosen.call("explain", True), chosen.tags + [t for g in self.gates for t in g.tags])

    def _has_room(self, step: _Step, image: ImageFile) -> bool:
        if not step.limits or self.usage.holds(step.name, image):
            return True
        return all(self.usage.count(step.name, per) < value for per, value in step.limits)
