"""The sampling stage at run time: stateful rules applied in stream order to qualifying images.

A sampling rule object has ``admit(image, decision) -> bool`` and ``explain(admitted) -> str``;
the sampler asks each in policy order and an image is sampled when every rule admits it. Rules
are built fresh for each run (their state -- counters, hashes -- belongs to the run).
"""

from __future__ import annotations

from typing import Any

from .decision import Decision
from .images import ImageFile


class Sampler:
    def __init__(self, policy: Any, run_key: str = "") -> None:
        self.rules = [(leaf.label, leaf.rule) for leaf in policy.sampling_leaves]
        self.run_key = run_key

    def admit(self, image: ImageFile, decision: Decision) -> tuple[bool, str | None]:
        """(admitted, the label of the rule that refused or ``None``)."""
        for label, rule in self.rules:
            if not rule.admit(image, decision):
                return False, label
        return True, None
