"""What a policy says about one image, and why.

A :class:`Decision` is cheap to create: it keeps the evaluation trace (which rules ran and how
they answered) and turns it into words only when someone reads ``reasons``. Rules are pure
functions of the prediction, so explaining later gives exactly the verdicts seen at decision time.
Each derived value (verdicts, reasons, score, tags) is computed on first read and kept: the
pipeline's record, the decisions log and the destination all read the same objects, and a rule's
``explain`` or ``score`` runs once per image however many readers there are. ``rejected_by`` is
read from the trace, never by evaluating the rules again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .prediction import Detection, Prediction, detection_label

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Leaf, Policy

#: How many detections a rejection reason describes before summarising.
_MAX_DESCRIBED = 5


@dataclass(frozen=True)
class Verdict:
    """One rule's answer about one image (or, for detection rules, about one witness)."""

    rule: str
    passed: bool
    reason: str
    path: str

    def __str__(self) -> str:
        return self.reason

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "reason": self.reason, "path": self.path}


@dataclass(slots=True, eq=False)
class Decision:
    """Whether an image qualifies, which detections justify it, and (lazily) why.

    The lists it returns (``verdicts``, ``reasons``, ``tags``) are computed once and shared by every
    reader: copy one before changing it.
    """

    qualifies: bool
    prediction: Prediction
    witnesses: list[Detection]
    #: ``(leaf, passed)`` per rule evaluated, in order; ``(leaf, None)`` for each rule that does not
    #: apply to the prediction's task (then the trace holds only those: see :mod:`.engine`).
    trace: list[tuple["Leaf", bool | None]]
    policy: "Policy"
    # Caches, filled on first read. They have no default on purpose: an unset slot costs nothing
    # when the decision is made (the hot path), and reading one raises AttributeError until then.
    _verdicts: list[Verdict] = field(init=False, repr=False)
    _reasons: list[str] = field(init=False, repr=False)
    _score: float | None = field(init=False, repr=False)
    _tags: list[str] = field(init=False, repr=False)

    @property
    def verdicts(self) -> list[Verdict]:
        """Each evaluated rule's verdict, in evaluation order, then the detection rules' verdicts."""
        try:
            return self._verdicts
        except AttributeError:  # first read
            pass
        self._verdicts = verdicts = self._explain()
        return verdicts

    def _explain(self) -> list[Verdict]:
        # Rule methods go through leaf.call: an exception from a rule's code names the rule.
        prediction, witnesses = self.prediction, self.witnesses
        if self.trace and self.trace[-1][1] is None:  # rules that cannot judge this task: no rule ran
            return [Verdict(leaf.label, False, leaf.not_applicable(prediction.task), leaf.path) for leaf, _ in self.trace]
        verdicts = [
            Verdict(leaf.label, passed, leaf.call(leaf.rule.explain, prediction, witnesses, passed), leaf.path)
            for leaf, passed in self.trace
        ]
        detection_leaves = self.policy.detection_leaves
        if witnesses:
            witness = witnesses[0]
            for leaf in detection_leaves:
                verdicts.append(Verdict(leaf.label, True, leaf.call(leaf.rule.explain, witness, prediction, True), leaf.path))
        elif detection_leaves and prediction.detections:
            verdicts.extend(self._why_no_witness())
        return verdicts

    def _why_no_witness(self) -> list[Verdict]:
        """For each of the first detections, the first detection rule that turned it down."""
        prediction = self.prediction
        out: list[Verdict] = []
        for detection in prediction.detections[:_MAX_DESCRIBED]:
            for leaf in self.policy.detection_leaves:
                if not leaf.call(leaf.rule.accepts, detection, prediction):
                    reason = leaf.call(leaf.rule.explain, detection, prediction, False)
                    out.append(Verdict(leaf.label, False, f"{detection_label(detection)}: {reason}", leaf.path))
                    break
        hidden = len(prediction.detections) - _MAX_DESCRIBED
        if hidden > 0:
            out.append(Verdict("detection", False, f"and {hidden} more detections turned down", "$.detection"))
        return out

    @property
    def reasons(self) -> list[str]:
        """Each verdict in words, e.g. ``confidence 0.41 within [0.00, 0.60]``."""
        try:
            return self._reasons
        except AttributeError:  # first read
            pass
        self._reasons = reasons = [verdict.reason for verdict in self.verdicts]
        return reasons

    @property
    def rejected_by(self) -> str | None:
        """What rejected the image: the failing rule's label, or the composition (``any(...)``,
        ``not(...)``) that said no as a whole; ``None`` when the image qualifies.

        Read from the trace (a lookup, so not cached): no rule is evaluated again."""
        if self.qualifies:
            return None
        return self.policy.rejected_by(self.trace)

    @property
    def score(self) -> float | None:
        """The highest priority score any passing image rule gave, or ``None``."""
        try:
            return self._score
        except AttributeError:  # first read
            pass
        scores = [
            score
            for leaf, passed in self.trace
            if passed
            and callable(scorer := getattr(leaf.rule, "score", None))
            and (score := leaf.call(scorer, self.prediction, self.witnesses)) is not None
        ]
        self._score = best = max(scores) if scores else None
        return best

    @property
    def tags(self) -> list[str]:
        """The policy's tags plus the tags of the rules that fired (why this image was chosen)."""
        try:
            return self._tags
        except AttributeError:  # first read
            pass
        self._tags = tags = self._fired_tags() if self.qualifies else []
        return tags

    def _fired_tags(self) -> list[str]:
        tags = list(self.policy.tags)
        tags.extend(leaf.tag for leaf, passed in self.trace if passed and leaf.tag)
        if self.witnesses:
            tags.extend(leaf.tag for leaf in self.policy.detection_leaves if leaf.tag)
        return list(dict.fromkeys(tags))

    def to_json(self) -> dict[str, Any]:
        return {
            "qualifies": self.qualifies,
            "rejected_by": self.rejected_by,
            "score": self.score,
            "tags": self.tags,
            "reasons": self.reasons,
            "verdicts": [verdict.to_json() for verdict in self.verdicts],
            "witnesses": list(self.witnesses),
        }
