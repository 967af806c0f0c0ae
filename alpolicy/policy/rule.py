"""What a rule IS: the objects a rule factory returns, one abstract base per stage.

Rules are compiled once per policy into these small objects; the per-image loop calls their
methods directly (no pluggy dispatch, no schema validation). ``explain`` is only called when a
user asks *why*, so the hot path never formats strings. The policy engine compiles against these
classes, so they live with it, below the rules that implement them (:mod:`alpolicy.rules`; 0.1 had
them in ``alpolicy.rules.base``, which still gives them with a DeprecationWarning).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .prediction import Detection, Prediction

if TYPE_CHECKING:  # pragma: no cover
    from ..io.images import ImageFile
    from .decision import Decision


class ParameterError(ValueError):
    """Raised by a rule factory for a parameter problem a JSON Schema cannot express.

    ``key`` names the offending parameter (or ``None`` for the rule as a whole); the policy
    loader turns it into a :class:`alpolicy.Problem` at that parameter's JSON path.
    """

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class DetectionRule(ABC):
    """Decides whether one detection counts. A witness is a detection every detection rule accepts."""

    @abstractmethod
    def accepts(self, detection: Detection, prediction: Prediction) -> bool:
        """True when the detection passes this rule."""

    @abstractmethod
    def explain(self, detection: Detection, prediction: Prediction, accepted: bool) -> str:
        """The verdict in words, e.g. ``confidence 0.41 within [0.00, 0.60]``."""

    def select(self, detections: Sequence[Detection], prediction: Prediction) -> list[Detection]:
        """The detections this rule accepts, in order.

        The policy engine filters with this method, once per image, rather than calling
        ``accepts`` once per detection: a rule may override it with one comprehension that reads
        its bounds once (what the built-ins do). An override must agree with ``accepts``.
        """
        accepts = self.accepts
        return [detection for detection in detections if accepts(detection, prediction)]


class ImageRule(ABC):
    """Judges an image from all its detections and its witnesses."""

    @abstractmethod
    def check(self, prediction: Prediction, witnesses: Sequence[Detection]) -> bool:
        """True when the image passes this rule."""

    @abstractmethod
    def explain(self, prediction: Prediction, witnesses: Sequence[Detection], passed: bool) -> str:
        """The verdict in words, e.g. ``3 detections, at least 1 required``."""

    def score(self, prediction: Prediction, witnesses: Sequence[Detection]) -> float | None:
        """An optional priority score (higher = more worth labeling); ``None`` if the rule has none."""
        return None


class SamplingRule(ABC):
    """Runs in stream order over images that passed the image stage.

    ``role`` says how the sampler combines it: a ``"gate"`` must admit every sampled image
    (e.g. a budget, near-duplicate suppression); among ``"strategy"`` rules (Roboflow Inference's
    sampling strategies) the first that matches *and* has room in its ``limits`` is charged.
    ``matches`` must not change state: the sampler calls ``commit`` once an image is sampled, so a
    gate never counts an image that a later rule turned down.
    """

    role: str = "strategy"

    @abstractmethod
    def matches(self, image: "ImageFile", decision: "Decision") -> bool:
        """True when this rule would take the image (no side effects)."""

    @abstractmethod
    def explain(self, matched: bool) -> str:
        """The verdict in words."""

    def commit(self, image: "ImageFile", decision: "Decision") -> None:
        """The image was sampled: update whatever state the rule keeps."""


@dataclass
class Candidate:
    """One candidate an end-of-stream selector (a ``"deferred"`` sampling rule with ``select``,
    e.g. ``diversity``) chooses from: the image (its ``derived`` pixel measurements included),
    its priority score and its place in the stream. The pipeline holds them to the end."""

    image: "ImageFile"
    score: float | None
    seq: int
