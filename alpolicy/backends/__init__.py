"""Inference backends: turn one image into a :class:`~alpolicy.Prediction`.

A backend is registered by scheme through the ``alpolicy_inference_backends`` hook and built
from a model spec ``scheme:target`` (``roboflow:project/3``, ``replay:predictions/``,
``onnx:model.onnx``) plus :class:`ModelOptions`. The pipeline calls ``predict`` from a pool of
threads, so a backend must be thread-safe (or serialise internally).

Failures: raise :class:`ImageError` when this image cannot be processed (it is recorded as failed
and the run goes on), :class:`AuthError` when credentials are refused (the run stops), and
:class:`ServiceError` when the service stays unreachable after retries (the image is recorded as
failed with the reason; nothing is decided, nothing is lost: the next run retries it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .. import checks
from ..errors import AlpolicyError, AuthError, ServiceError
from ..http import ServiceOptions
from ..images import ImageFile
from ..prediction import Prediction


class ImageError(AlpolicyError):
    """This image cannot be processed (unreadable, not an image, too large): recorded, run goes on."""


@dataclass
class ModelOptions(ServiceOptions):
    """Settings every backend may use (``api_key``, ``timeout``, ``attempts``, ``retry_backoff``,
    ``extra`` come from :class:`~alpolicy.http.ServiceOptions`); backend-specific ones go in ``extra``."""

    #: Base URL of an inference server (Roboflow hosted or a local Inference server).
    inference_url: str | None = None
    #: Minimum confidence, in percent, asked of the server (Roboflow's ``confidence``). SDK default 40.
    confidence: float = 40
    #: Overlap (IoU) threshold for NMS, in percent (Roboflow's ``overlap``). SDK default 30.
    overlap: float = 30

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A wrong value is a one-line :class:`~alpolicy.errors.UsageError` (checked when made
        and again when a run starts, for fields set afterwards). URLs are checked by the backend
        that uses them, together with the environment variable they may come from."""
        checks.service_options(self)
        checks.number(self.confidence, "confidence", minimum=0, maximum=100)
        checks.number(self.overlap, "overlap", minimum=0, maximum=100)


@runtime_checkable
class InferenceBackend(Protocol):
    """What the pipeline needs from a backend."""

    #: Identifies the model in journals and pre-labels (e.g. ``roboflow:vehicles/3``).
    model_id: str

    def predict(self, image: ImageFile) -> Prediction:
        """The prediction for one image, in the canonical shape (boxes in original pixels)."""
        ...

    def close(self) -> None:
        """Release connections, sessions, threads."""
        ...


def split_spec(spec: str, kind: str) -> tuple[str, str]:
    """``"roboflow:proj/3"`` -> ``("roboflow", "proj/3")``; a spec without a scheme is a usage error."""
    from ..errors import UsageError

    scheme, sep, target = spec.partition(":")
    if not sep or not scheme or not target:
        raise UsageError(f"{kind} {spec!r} should look like SCHEME:TARGET, e.g. {_EXAMPLES[kind]}")
    return scheme, target


_EXAMPLES = {
    "model": "roboflow:my-project/3, replay:predictions/ or onnx:model.onnx",
    "destination": "roboflow:my-project or folder:out/",
}

__all__ = ["AuthError", "ImageError", "InferenceBackend", "ModelOptions", "ServiceError", "split_spec"]
