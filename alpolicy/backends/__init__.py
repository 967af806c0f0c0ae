"""Inference backends: turn one image into a :class:`~alpolicy.Prediction`.

A backend is registered by scheme through the ``alpolicy_inference_backends`` hook and built
from a model spec ``scheme:target`` (``roboflow:project/3``, ``replay:predictions/``,
``onnx:model.onnx``) plus :class:`ModelOptions`. The pipeline calls ``predict`` from a pool of
threads, so a backend must be thread-safe (or serialise internally). Subclass
:class:`InferenceBackend` (``alpolicy.InferenceBackend``) and write ``predict``: ``model_id``,
``fingerprint``, ``check()`` and ``close()`` have defaults. The pipeline does not require the
base class: an object with ``model_id``, ``predict`` and ``close`` works too
(:class:`SupportsPredict` checks that shape). A spec's target may be empty (``fixed:``) only
when the plugin registers its scheme with ``accepts_empty_target=True``.

Failures: raise :class:`ImageError` when this image cannot be processed (it is recorded as failed
and the run goes on; a response that is not a valid prediction is one: read responses with
:func:`alpolicy.policy.prediction.parse_prediction`, and call :meth:`Prediction.validated` on a
prediction built in code -- the pipeline calls it on any prediction that was not), :class:`AuthError` when credentials are refused (the run stops), and
:class:`ServiceError` when the service stays unreachable after retries (the image is recorded as
failed with the reason; nothing is decided, nothing is lost: the next run retries it).

Fingerprint: the journal keys stored predictions by the backend's ``fingerprint``, a short
stable string naming *what produced them*: the scheme, the model id (or the model file's content
hash) and every setting that changes the output (confidence, overlap, labels, input size...).
Build it with :func:`fingerprint` (``roboflow:vehicles/3@1a2b3c4d5e6f``) and expose the settings
you gave it as ``fingerprint_settings`` (the run summary shows them: "confidence 15, overlap 30").
A run whose fingerprint differs from the stored one infers again, so a setting left out means
predictions made under another value are reused silently. A backend written against 0.1 has only
``model_id``: it is then used as the fingerprint (nothing breaks; the settings are not recorded).
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

from ..bases import Component
from ..errors import AlpolicyError, AuthError, ServiceError
from ..io import checks
from ..io.http import ServiceOptions
from ..io.images import ImageFile
from ..io.jsonsafe import DEFAULT_MAX_BYTES
from ..policy.prediction import MAX_DETECTIONS, Prediction


class ImageError(AlpolicyError):
    """This image cannot be processed (unreadable, not an image, too large): recorded, run goes on."""


@dataclass
class ModelOptions(ServiceOptions):
    """Settings every backend may use (``api_key``, ``timeout``, ``attempts``, ``retry_backoff``,
    ``extra`` come from :class:`~alpolicy.io.http.ServiceOptions`); backend-specific ones go in ``extra``."""

    #: Base URL of an inference server (Roboflow hosted or a local Inference server).
    inference_url: str | None = None
    #: Minimum confidence, in percent, asked of the server (Roboflow's ``confidence``). SDK default 40.
    confidence: float = 40
    #: Overlap (IoU) threshold for NMS, in percent (Roboflow's ``overlap``). SDK default 30.
    overlap: float = 30
    #: Largest response (or stored prediction file) read, in bytes; a larger one fails its image.
    max_response_bytes: int | None = DEFAULT_MAX_BYTES
    #: Most detections one prediction may hold; a prediction with more fails its image (it is
    #: not truncated: which detections to drop is the model's call, not ours).
    max_detections: int | None = MAX_DETECTIONS

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
class SupportsPredict(Protocol):
    """The structural shape of a backend, for ``isinstance`` checks of duck-typed objects (a 0.1
    backend that does not subclass :class:`InferenceBackend`). The pipeline checks neither."""

    model_id: str

    def predict(self, image: ImageFile) -> Prediction:
        ...

    def close(self) -> None:
        ...


class InferenceBackend(Component, ABC):
    """The base class of a backend: write ``predict``; the rest has defaults.

    * ``model_id`` identifies the model for people (tags, pre-labels, reports: ``vehicles/3``);
      by default the spec it was built from (``fixed:`` gives ``fixed``).
    * ``fingerprint`` keys the stored predictions (see the module docstring): set it with
      :func:`fingerprint`; by default the ``model_id``. ``fingerprint_settings`` (what went into
      it, shown to people) defaults to ``None``: "settings not recorded".
    * ``task`` names the model's task when the backend knows it (``None`` by default).
    * ``check()`` (called before the first image) and ``close()`` (after the last) do nothing.

    Subclassing is the documented way; an object that only has the members (see
    :class:`SupportsPredict`) works as well.
    """

    #: What went into the fingerprint (``{"confidence": 15.0}``), for people; ``None``: not recorded.
    fingerprint_settings: Mapping[str, Any] | None = None
    #: The model's task (one of :data:`alpolicy.policy.prediction.TASKS`) when the backend knows it
    #: from the model's metadata (a project's type, an export's ``task``); ``None``: unknown, each
    #: prediction's shape tells. Policy validation refuses rules that cannot apply to it, and
    #: destinations build their labeling setup for it.
    task: str | None = None

    @abstractmethod
    def predict(self, image: ImageFile) -> Prediction:
        """The prediction for one image, in the canonical shape (boxes in original pixels)."""

    @property
    def model_id(self) -> str:
        return self.__dict__.get("model_id") or self.name

    @model_id.setter
    def model_id(self, value: str) -> None:
        self.__dict__["model_id"] = value

    @property
    def fingerprint(self) -> str:
        return self.__dict__.get("fingerprint") or self.model_id

    @fingerprint.setter
    def fingerprint(self, value: str) -> None:
        self.__dict__["fingerprint"] = value


#: Hex digits of the settings' hash in a fingerprint: 48 bits, no collision among a journal's models.
FINGERPRINT_DIGITS = 12


def fingerprint(scheme: str, model_id: str, settings: Mapping[str, Any]) -> str:
    """``scheme:model_id@<12 hex>``: the sha256 of a canonical JSON of the scheme, the model id and
    ``settings`` (every setting that changes the output). Canonical: keys sorted, numbers as
    floats (``--confidence 15`` and ``15.0`` are one setting), tuples as lists."""
    canonical = json.dumps(
        {"scheme": scheme, "model": model_id, "settings": canonical_settings(settings)},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:FINGERPRINT_DIGITS]
    name = model_id if model_id.startswith(f"{scheme}:") else f"{scheme}:{model_id}"
    return f"{name}@{digest}"


def canonical_settings(value: Any) -> Any:
    """JSON-ready settings in one spelling per value (what :func:`fingerprint` hashes and the journal keeps)."""
    if isinstance(value, Mapping):
        return {str(key): canonical_settings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical_settings(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    return str(value)


def fingerprint_of(backend: Any) -> str:
    """The backend's fingerprint, or its ``model_id`` for a backend that has none (0.1)."""
    return str(getattr(backend, "fingerprint", None) or backend.model_id)


def settings_of(backend: Any) -> dict[str, Any] | None:
    """The settings in the backend's fingerprint, for people; ``None`` when it does not say."""
    settings = getattr(backend, "fingerprint_settings", None)
    return canonical_settings(settings) if isinstance(settings, Mapping) else None


def describe_settings(settings: Mapping[str, Any] | None) -> str:
    """``confidence 15, overlap 30``: a fingerprint's settings on one short line (long strings such
    as a content hash are cut to 12 characters, long lists to their length)."""
    if settings is None:
        return "settings not recorded"
    return ", ".join(f"{key} {_short(value)}" for key, value in settings.items()) or "no settings"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        text = ",".join(_short(item) for item in value)
        return text if len(text) <= 40 else f"({len(value)} items)"
    if isinstance(value, Mapping):
        return f"({len(value)} settings)"
    text = str(value)
    if len(text) > 16 and all(c in "0123456789abcdef" for c in text):  # a content hash
        return text[:FINGERPRINT_DIGITS] + "…"
    return text if len(text) <= 60 else "…" + text[-59:]  # a path: its end says the most


def split_spec(spec: str, kind: str, *, allow_empty_target: bool = False) -> tuple[str, str]:
    """``"roboflow:proj/3"`` -> ``("roboflow", "proj/3")``; a spec without a scheme is a usage error,
    and so is one without a target unless ``allow_empty_target`` (its plugin accepts ``fixed:``)."""
    from ..errors import UsageError

    scheme, sep, target = spec.partition(":")
    if not sep or not scheme or not (target or allow_empty_target):
        raise UsageError(f"{kind} {spec!r} should look like SCHEME:TARGET, e.g. {_EXAMPLES[kind]}")
    return scheme, target


_EXAMPLES = {
    "model": "roboflow:my-project/3, replay:predictions/ or onnx:model.onnx",
    "destination": "roboflow:my-project or folder:out/",
    "source": "frames/, folder:frames/ or another installed source's SCHEME:TARGET",
}

__all__ = [
    "AuthError", "ImageError", "InferenceBackend", "ModelOptions", "ServiceError", "SupportsPredict", "describe_settings",
    "fingerprint", "fingerprint_of", "settings_of", "split_spec",
]
