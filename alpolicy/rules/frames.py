"""Sampling gates that look at the pixels: near-duplicate suppression and image quality.

Their measurements (a perceptual hash, sharpness and exposure) are computed by ``prepare`` in
the pipeline's worker threads, next to inference, and cached on the image; the coordinator's
``matches`` only compares numbers. An image that cannot be decoded is not judged (it passes),
since the model's side already reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..hookspecs import hookimpl
from ..io.images import ImageDecodeError, ImageFile
from ..policy.rule import ParameterError, SamplingRule
from ..registry import RuleSpec, Stage
from .base import builtin_schema

if TYPE_CHECKING:  # pragma: no cover
    from ..policy.decision import Decision
    from ..policy.usage import UsageCounter


@dataclass
class NearDuplicateRule(SamplingRule):
    max_distance: int
    kind: str
    against: str
    timeout: int | None
    scope: str
    role: str = field(default="gate", init=False)
    name: str = field(default="near_duplicate", init=False)
    index: Any = field(default=None, init=False, repr=False)
    usage: "UsageCounter | None" = field(default=None, init=False, repr=False)
    reference: int | None = field(default=None, init=False)
    since_reference: int = field(default=0, init=False)
    last: str = field(default="", init=False)

    def bind(self, usage: "UsageCounter", name: str) -> None:
        from ..pixels.hashindex import HashIndex

        self.usage, self.name = usage, name
        self.index = HashIndex(self.max_distance)
        if self.scope == "all":
            for key, value in usage.sampled_hashes(name):
                self.index.add(value, key)

    def prepare(self, image: ImageFile) -> None:
        from ..pixels.imagehash import image_hash

        slot = f"hash:{self.kind}"
        if slot not in image.derived:
            try:
                image.derived[slot] = image_hash(image.path, self.kind)
            except ImageDecodeError:
                image.derived[slot] = None

    def _hash(self, image: ImageFile) -> int | None:
        self.prepare(image)
        return image.derived[f"hash:{self.kind}"]

    def matches(self, image: ImageFile, decision: "Decision") -> bool:
        value = self._hash(image)
        if value is None:
            self.last = "could not hash the image: not judged"
            return True
        if self.against == "previous":  # the SDK's rule, stateful by design: every frame moves the counter
            self.since_reference += 1
            distance = None if self.reference is None else (value ^ self.reference).bit_count()
            if distance is None or distance > self.max_distance or self.since_reference == self.timeout:
                self.reference, self.since_reference = value, 0
                self.last = "differs from the previous reference frame" if distance is None or distance > self.max_distance else "timeout: taken anyway"
                return True
            self.last = f"{distance} bits from the previous reference frame (max {self.max_distance})"
            return False
        found = self.index.nearest(value)
        if found is None:
            self.last = "no near-duplicate among the images sampled"
            return True
        distance, key = found
        self.last = f"near-duplicate of {key.split('|')[0]} ({distance} bits, max {self.max_distance})"
        return False

    def commit(self, image: ImageFile, decision: "Decision") -> None:
        value = self._hash(image)
        if value is None or self.against == "previous":
            return
        self.index.add(value, image.key)
        if self.scope == "all" and self.usage is not None:
            self.usage.add_sampled_hash(self.name, image, value)

    def explain(self, matched: bool) -> str:
        return self.last


@dataclass
class QualityRule(SamplingRule):
    bounds: dict[str, tuple[float, float]]
    keep_good: bool
    role: str = field(default="gate", init=False)
    last: str = field(default="", init=False)

    def prepare(self, image: ImageFile) -> None:
        from ..pixels.quality import measure

        if "quality" not in image.derived:
            try:
                image.derived["quality"] = measure(image.path)
            except ImageDecodeError:
                image.derived["quality"] = None

    def matches(self, image: ImageFile, decision: "Decision") -> bool:
        self.prepare(image)
        quality = image.derived["quality"]
        if quality is None:
            self.last = "could not measure the image: not judged"
            return True
        outside = [
            f"{name} {getattr(quality, name):.3g}"
            for name, (low, high) in self.bounds.items()
            if not low <= getattr(quality, name) <= high
        ]
        good = not outside
        self.last = ("within bounds" if good else "outside: " + ", ".join(outside)) + ("" if good == self.keep_good else " (not kept)")
        return good == self.keep_good

    def explain(self, matched: bool) -> str:
        return f"quality {self.last}"


def make_near_duplicate(params: dict[str, Any]) -> NearDuplicateRule:
    against = params.get("against", "sampled")
    if "timeout" in params and against != "previous":
        raise ParameterError("timeout", "only applies with against=previous")
    return NearDuplicateRule(
        int(params.get("max_distance", 6)), params.get("hash", "phash"), against, params.get("timeout"), params.get("scope", "run")
    )


_QUALITY_BOUNDS = {
    "sharpness": ("min_sharpness", None),
    "brightness": ("min_brightness", "max_brightness"),
    "dark_fraction": (None, "max_dark_fraction"),
    "bright_fraction": (None, "max_bright_fraction"),
}


def make_quality(params: dict[str, Any]) -> QualityRule:
    bounds: dict[str, tuple[float, float]] = {}
    for measure_name, (low_key, high_key) in _QUALITY_BOUNDS.items():
        low = float(params[low_key]) if low_key and low_key in params else float("-inf")
        high = float(params[high_key]) if high_key and high_key in params else float("inf")
        if low > high:
            raise ParameterError(low_key, f"{low:g} is greater than {high_key} {high:g}")
        if (low, high) != (float("-inf"), float("inf")):
            bounds[measure_name] = (low, high)
    if not bounds:
        raise ParameterError(None, "give at least one bound (min_sharpness, min_brightness, max_brightness, max_dark_fraction, max_bright_fraction)")
    return QualityRule(bounds, params.get("keep", "good") == "good")


@hookimpl
def alpolicy_rules(register: Callable[[RuleSpec], None]) -> None:
    register(RuleSpec("near_duplicate", Stage.SAMPLING, builtin_schema("near_duplicate"), make_near_duplicate,
                      "Drop near-duplicate frames (perceptual hash, Hamming distance), locally."))
    register(RuleSpec("quality", Stage.SAMPLING, builtin_schema("quality"), make_quality,
                      "Keep out (or keep only) blurred, dark or blown-out frames."))
