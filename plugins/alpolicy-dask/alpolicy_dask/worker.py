"""What runs on a Dask worker: one bounded batch of images -> their predictions and measurements.

A task is pure: the same batch gives the same outcomes, it reads nothing but the images and
writes nothing but the images' local copies (a remote image's fetch), so Dask may run it again
when a worker dies with it (or with its result) -- the journal, the sampler and the sends are
the driver's, and the driver reads each image's outcome once.

The backend is built from the model's *spec* and options (never pickled: an ONNX session does
not travel), once per worker process: :data:`_BACKENDS` caches it by a digest of both, so the
model loads once per worker, not per task. :data:`LOADS` counts those builds (tests read it with
``client.run(alpolicy_dask.worker.loads)``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from alpolicy import AlpolicyError, ImageFile, ModelOptions, PluginCrash, Policy, Prediction, UsageError
from alpolicy.backends import fingerprint_of
from alpolicy.plugins import get_registry
from alpolicy.runtime.executors import measure_with, predict_with
from alpolicy.runtime.pipeline import make_backend
from alpolicy.runtime.sampler import Sampler

#: Backends built in this worker process, by :func:`_digest` of (spec, options).
_BACKENDS: dict[str, Any] = {}
#: Samplers for the pixel measurements, by policy text (their state is never used: the driver's decides).
_SAMPLERS: dict[str, Sampler] = {}
_POLICIES: dict[str, Policy] = {}
#: Backend builds in this process, by model spec.
LOADS: Counter[str] = Counter()
_lock = threading.RLock()


@dataclass
class Carried:
    """An exception on its way back to the driver: alpolicy's errors do not all survive pickle
    (``PluginCrash(component, error)`` has no one-argument constructor), so the type, the
    one-line message and the attributes travel, and :meth:`rebuild` makes the same error again."""

    kind: type[BaseException]
    message: str
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, error: BaseException) -> "Carried":
        state = {key: value for key, value in vars(error).items() if isinstance(value, (str, int, float, type(None)))}
        return cls(type(error), str(error), state)

    def rebuild(self) -> BaseException:
        error = self.kind.__new__(self.kind)
        Exception.__init__(error, self.message)
        error.__dict__.update(self.state)
        return error


@dataclass
class Unit:
    image: ImageFile
    infer: bool
    measure: bool


@dataclass
class Batch:
    """One task: the images and what to do with each, and how to build what does it."""

    model: str | None
    model_options: ModelOptions
    #: The driver's backend fingerprint: a worker whose model differs would decide differently.
    fingerprint: str | None
    #: The policy document (JSON): its detection and image rules decide each prediction here, its
    #: sampling rules measure the pixels.
    policy: str | None
    component: str
    #: Predictions in flight at once within the batch (``--concurrency``): a batching backend
    #: (ONNX with a dynamic batch axis) stacks them.
    threads: int
    units: list[Unit]


@dataclass
class Outcome:
    prediction: Prediction | None = None
    error: Carried | None = None
    #: The policy's detection and image rules on the prediction, decided here
    #: (:meth:`alpolicy.Policy.verdict`); ``None``: the driver decides.
    verdict: Any = None
    derived: dict[str, Any] = field(default_factory=dict)
    measure_error: Carried | None = None


def run_batch(batch: Batch) -> list[Outcome]:
    """The batch's outcomes, in its order. Per-image failures are values (the driver routes them:
    a failed image, a deferred one, a stopped run); only a broken worker raises."""
    backend: Any = None
    setup_error: Carried | None = None
    if batch.model is not None and any(unit.infer for unit in batch.units):
        try:
            backend = _backend(batch.model, batch.model_options, batch.fingerprint)
        except AlpolicyError as error:
            setup_error = Carried.of(error)
        except Exception as error:
            setup_error = Carried.of(PluginCrash(batch.component, error, verb="failed to start:"))
    sampler = _sampler(batch.policy) if batch.policy is not None and any(unit.measure for unit in batch.units) else None

    def one(unit: Unit) -> Outcome:
        outcome = Outcome()
        missing = _missing(unit.image)
        if unit.infer:
            if setup_error is not None or missing is not None:
                outcome.error = setup_error or missing
            else:
                outcome.prediction, outcome.error = _attempt(lambda: predict_with(backend, unit.image, batch.component,
                                                                                  batch.model_options.max_detections),
                                                             batch.component)
                if outcome.prediction is not None and batch.policy is not None:
                    outcome.verdict = _verdict(batch.policy, outcome.prediction)
        if unit.measure and sampler is not None:
            if missing is not None:
                outcome.measure_error = missing
            else:
                _, outcome.measure_error = _attempt(lambda: measure_with(sampler, unit.image), "a sampling rule")
                outcome.derived = dict(unit.image.derived)
        return outcome

    with ThreadPoolExecutor(max(1, min(batch.threads, len(batch.units))), thread_name_prefix="alpolicy-dask") as pool:
        return list(pool.map(one, batch.units))


def _attempt(call: Any, component: str) -> tuple[Any, Carried | None]:
    try:
        return call(), None
    except AlpolicyError as error:  # ImageError, ServiceError (deferred at the driver), RuleError...
        return None, Carried.of(error)
    except Exception as error:  # not documented by the contract: a bug, in one line
        return None, Carried.of(PluginCrash(component, error))


def _missing(image: ImageFile) -> Carried | None:
    """A local file this worker cannot see: the folder is on the driver's machine only."""
    if image.fetcher is not None or os.path.exists(image.path):
        return None
    return Carried.of(UsageError(
        f"{image.display_path} is not on the Dask worker {socket.gethostname()}: a folder source needs the same "
        "path on every worker (a shared filesystem), or read the images from object storage"))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(pickle.dumps(parts)).hexdigest()


def _backend(spec: str, options: ModelOptions, fingerprint: str | None) -> Any:
    key = _digest(spec, options)
    with _lock:  # one build per worker process, however many tasks start at once
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = make_backend(spec, options, get_registry())
            LOADS[spec] += 1
            _BACKENDS[key] = backend
    if fingerprint is not None and fingerprint_of(backend) != fingerprint:
        raise UsageError(f"the model {spec!r} on Dask worker {socket.gethostname()} is not the driver's (fingerprint "
                         f"{fingerprint_of(backend)} here, {fingerprint} there): install the same model and plugins "
                         "on every worker")
    return backend


def _verdict(policy: str, prediction: Prediction) -> Any:
    """The detection and image rules' verdict on ``prediction``, or ``None`` when they raise (the
    driver then evaluates, and reports the crash with the rule's name as a local run does)."""
    try:
        return _policy(policy).verdict(prediction)
    except Exception:  # noqa: BLE001 -- never a worker's failure: the driver decides instead
        return None


def _policy(policy: str) -> Policy:
    """The policy of a document, compiled once per worker process."""
    with _lock:
        compiled = _POLICIES.get(policy)
        if compiled is None:
            compiled = _POLICIES[policy] = Policy.from_dict(json.loads(policy), registry=get_registry())
    return compiled


def _sampler(policy: str) -> Sampler:
    with _lock:
        sampler = _SAMPLERS.get(policy)
        if sampler is None:
            sampler = Sampler(_policy(policy))
            _SAMPLERS[policy] = sampler
    return sampler


def loads() -> dict[str, int]:
    """Backend builds in this worker process, by model spec (``client.run(loads)``)."""
    return dict(LOADS)
