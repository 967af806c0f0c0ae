"""The usage counters a sampling rule may read and charge: the protocol, not the storage.

A sampling rule (``limit``, a strategy's ``limits``, ``frames.near_duplicate``) is bound to a
counter before a run (``rule.bind(usage, name)``) and calls only the methods below. The policy
layer states what a rule may ask; the run machinery provides the journal-backed implementation
(:class:`alpolicy.runtime.sampler.Usage`, which counts per image in the journal so limits hold
across restarts and a dry run spends nothing). Keeping the protocol here lets a rule -- built-in
or a plugin's -- be written and tested without importing the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from ..io.images import ImageFile


@runtime_checkable
class UsageCounter(Protocol):
    """What a sampling rule may call on the usage it is bound to."""

    def count(self, rule: str, per: str, cls: str = "") -> int:
        """Images this rule took in the window ``per`` (``run``, ``minute``, ``hour``, ``day`` or total)."""
        ...  # pragma: no cover

    def holds(self, rule: str, image: "ImageFile", cls: str = "") -> bool:
        """The image already counts against this rule: deciding it again (a resume) needs no new room."""
        ...  # pragma: no cover

    def charge(self, rule: str, image: "ImageFile", classes: list[str]) -> None:
        """Count one sampled image against the rule, once per class (charging twice counts once)."""
        ...  # pragma: no cover

    def sampled_hashes(self, rule: str) -> list[tuple[str, int]]:
        """(image key, perceptual hash) of the images this rule took in earlier runs."""
        ...  # pragma: no cover

    def add_sampled_hash(self, rule: str, image: "ImageFile", value: int) -> None:
        """Keep a sampled image's perceptual hash for later runs."""
        ...  # pragma: no cover
