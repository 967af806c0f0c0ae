"""Helpers a plugin's tests import: real alpolicy objects from a few arguments.

In the spirit of pytest's ``pytester``: a rule, backend or destination plugin is tested against
the real engine, not a copy of it. Every helper returns what alpolicy itself makes and uses -- a
validated :class:`~alpolicy.Prediction`, a :class:`~alpolicy.Decision` from a compiled
:class:`~alpolicy.Policy`, a :class:`~alpolicy.destinations.Delivery` as the pipeline hands it to
a destination, a :class:`~alpolicy.RunReport` from :func:`alpolicy.run` -- so a test that passes
here passes in a real run::

    from alpolicy.testing import evaluate, image_folder, make_detection, make_prediction, registry_with, run_one

    def test_my_rule():
        prediction = make_prediction(make_detection("pole", 0.9, width=30, height=10), width=100, height=100)
        assert evaluate({"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}]}, prediction).qualifies

    def test_my_destination(tmp_path):
        (image,) = image_folder(tmp_path / "frames", 1)
        report = run_one(image, destination=MyDestination(), registry=registry_with(my_plugin))
        assert report.sent == 1

Fixtures for pytest (``alpolicy_images``, ``alpolicy_registry_with``) are in
:mod:`alpolicy.testing.pytest_plugin`: ``pytest_plugins = ["alpolicy.testing.pytest_plugin"]`` in
a ``conftest.py``. This module does not import pytest.

Stable API (kept compatible within a major version): :func:`make_detection`,
:func:`make_prediction`, :func:`make_classification`, :func:`make_delivery`, :func:`image_folder`, :func:`evaluate`,
:func:`run_one`, :func:`registry_with`, :class:`StaticBackend`, :class:`CollectingDestination`,
:data:`SEND_EVERYTHING`.
"""

from __future__ import annotations

import copy
import os
import random
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from PIL import Image

from ..backends import InferenceBackend, fingerprint
from ..destinations import Delivery, Destination, Receipt
from ..io.images import ImageFile
from ..plugins import build_registry, get_registry, make_plugin_manager
from ..policy.decision import Decision
from ..policy.engine import Policy
from ..policy.prediction import CLASSIFICATION, Detection, Prediction, task_of
from ..registry import Registry
from ..runtime.pipeline import RunOptions, delivery_metadata, delivery_tags, run
from ..runtime.run_report import RunReport

#: A policy that sends every image (at least zero detections): what :func:`run_one` and
#: :func:`make_delivery` use when no policy is given.
SEND_EVERYTHING: Mapping[str, Any] = {"version": 1, "image": {"rule": "detection_count", "min": 0}}

__all__ = [
    "CollectingDestination", "SEND_EVERYTHING", "StaticBackend", "evaluate", "image_folder", "make_delivery",
    "make_classification", "make_detection", "make_prediction", "registry_with", "run_one",
]


# ---------------------------------------------------------------------- predictions and decisions
def make_detection(cls: str = "car", confidence: float = 0.5, x: float = 50, y: float = 50, width: float = 10,
                   height: float = 10, *, class_id: int = 0, detection_id: str | None = None,
                   **fields: Any) -> Detection:
    """One detection in the Roboflow inference shape: box centre ``x``/``y`` and ``width``/``height``
    in pixels, ``confidence`` in 0..1; ``fields`` adds any other key (``points``...)."""
    detection: dict[str, Any] = {
        "x": x, "y": y, "width": width, "height": height, "confidence": confidence, "class": cls,
        "class_id": class_id, "detection_id": detection_id if detection_id is not None else f"{cls}-{confidence}",
    }
    detection.update(fields)
    return detection  # type: ignore[return-value]


def make_prediction(*detections: Mapping[str, Any], width: int = 640, height: int = 480, model_id: str | None = None,
                    validate: bool = True, task: str | None = None, **extra: Any) -> Prediction:
    """A :class:`~alpolicy.Prediction` of ``detections`` for a ``width`` x ``height`` image.

    ``task`` is told from the detections (``points``: instance segmentation, ``keypoints``:
    pose) unless given; for a classifier see :func:`make_classification`.

    ``validate`` runs the one validator every prediction from a model passes
    (:meth:`Prediction.validated`): a detection a real backend could not return is a
    :class:`~alpolicy.PredictionFormatError` here too. ``validate=False`` keeps any value, for a
    test of what a rule does with input that was not checked. ``extra`` are extra response fields.
    """
    listed = [dict(detection) for detection in detections]
    found = task or task_of({"predictions": listed})
    prediction = Prediction(width, height, listed, model_id, dict(extra), task=found)  # type: ignore[arg-type]
    return prediction.validated() if validate else prediction


def make_classification(scores: Mapping[str, float], *, multi_label: bool = False,
                        predicted: Iterable[str] | None = None, width: int = 640, height: int = 480,
                        model_id: str | None = None) -> Prediction:
    """A classifier's :class:`~alpolicy.Prediction`, read from the JSON Roboflow Inference answers:
    ``scores`` maps each class to its confidence (class ids in the given order). Single-label: the
    top class is the best score; ``multi_label``: the ``predicted`` classes (default: those
    scoring 0.5 or more)."""
    entries = [{"class": name, "class_id": index, "confidence": value} for index, (name, value) in enumerate(scores.items())]
    image = {"width": width, "height": height}
    if multi_label:
        chosen = list(predicted) if predicted is not None else [e["class"] for e in entries if e["confidence"] >= 0.5]
        document: dict[str, Any] = {
            "image": image,
            "predictions": {e["class"]: {"confidence": e["confidence"], "class_id": e["class_id"]} for e in entries},
            "predicted_classes": chosen,
        }
    else:
        ranked = sorted(entries, key=lambda e: -e["confidence"])
        document = {"image": image, "predictions": ranked}
        if ranked:
            document.update(top=ranked[0]["class"], confidence=ranked[0]["confidence"])
        else:
            document["task"] = CLASSIFICATION
    if model_id is not None:
        document["model_id"] = model_id
    return Prediction.from_json(document, check=True)


def _policy(policy: Policy | Mapping[str, Any] | str | os.PathLike[str] | None, registry: Registry | None) -> Policy:
    if policy is None:
        policy = SEND_EVERYTHING
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return Policy.from_file(policy, registry=registry)
    return Policy.from_dict(policy, registry=registry)


def evaluate(policy: Policy | Mapping[str, Any] | str | os.PathLike[str], prediction: Prediction | Mapping[str, Any], *,
             registry: Registry | None = None) -> Decision:
    """The real :class:`~alpolicy.Decision` of ``policy`` (a Policy, a policy dict, or a file path;
    compiled against ``registry``, by default the installed plugins) on ``prediction`` (a
    Prediction or an inference JSON dict). A policy with a problem raises :class:`~alpolicy.PolicyError`."""
    return _policy(policy, registry).evaluate(prediction)


def make_delivery(image_path: str | os.PathLike[str], prediction: Prediction | Mapping[str, Any] | None = None,
                  policy: Policy | Mapping[str, Any] | str | None = None, *, tags: Iterable[str] = (),
                  remote_id: str | None = None, checkpoint: Callable[[str], None] | None = None,
                  registry: Registry | None = None) -> Delivery:
    """The :class:`~alpolicy.destinations.Delivery` the pipeline would hand a destination for one
    image: its content hash as ``key``, the decision of ``policy`` (default :data:`SEND_EVERYTHING`)
    on ``prediction`` (default: :meth:`StaticBackend.prediction_for` the image), the pipeline's tags
    (the decision's, ``tags``, ``model:<id>``) and metadata. ``remote_id`` and ``checkpoint`` are
    what a resumed delivery carries (see the destination contract). The pipeline sends only
    qualifying images, so a policy that rejects the prediction is a ``ValueError``.
    """
    image = ImageFile.from_path(image_path)
    if prediction is None:
        prediction = StaticBackend.prediction_for(image)
    elif not isinstance(prediction, Prediction):
        prediction = Prediction.from_json(prediction)
    compiled = _policy(policy, registry)
    decision = compiled.evaluate(prediction)
    if not decision.qualifies:
        raise ValueError(f"the policy rejects this prediction ({'; '.join(decision.reasons)}): the pipeline would not send it")
    model = prediction.model_id
    return Delivery(
        image, prediction, decision, image.sha256(), delivery_tags(decision, tags, model),
        delivery_metadata(decision, compiled.name, model, image), remote_id,
        checkpoint if checkpoint is not None else (lambda new_remote_id: None),
    )


# ---------------------------------------------------------------------- images
def image_folder(folder: str | os.PathLike[str], count: int = 3, *, seed: int = 0, ext: str = ".jpg",
                 size: tuple[int, int] = (96, 72)) -> list[Path]:
    """``count`` real, distinct images (``frame_00000.jpg``...) in ``folder`` (made if missing),
    written with Pillow: a plain colour from ``seed`` and one white pixel at a place of their own,
    so that no two have the same content (a server or a journal sees ``count`` different images)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))  # type: ignore[arg-type]
        image.putpixel((index % size[0], (index // size[0]) % size[1]), (255, 255, 255))
        path = folder / f"frame_{index:05d}{ext}"
        image.save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------- plugins and runs
def registry_with(*plugins: Any, load_entry_points: bool = False) -> Registry:
    """A registry of the built-ins with ``plugins`` registered on top, as installed plugins are:
    each a module (or an object) with ``@alpolicy.hookimpl`` functions, or a ``(name, plugin)``
    pair. The installed entry points are left out unless ``load_entry_points`` (a test then sees
    only what it names). A broken plugin raises :class:`~alpolicy.PluginError`, as at startup."""
    named = [plugin if isinstance(plugin, tuple) else (_plugin_name(plugin), plugin) for plugin in plugins]
    return build_registry(make_plugin_manager(load_entry_points=load_entry_points, extra=named))


def _plugin_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


class StaticBackend(InferenceBackend):
    """An inference backend that answers one prediction for every image (a copy each time), for
    testing a destination or a policy without a model. Without a ``prediction`` it answers one
    detection covering the middle of each image, at the image's real size."""

    def __init__(self, prediction: Prediction | Mapping[str, Any] | None = None, *, model_id: str = "static") -> None:
        if prediction is not None and not isinstance(prediction, Prediction):
            prediction = Prediction.from_json(prediction)
        self.prediction = prediction
        self.model_id = model_id
        self.fingerprint_settings: dict[str, Any] = {"prediction": prediction.to_json() if prediction else "centre box"}
        self.fingerprint = fingerprint("static", model_id, self.fingerprint_settings)
        #: Images predicted, in the order asked (diagnostics for tests).
        self.seen: list[str] = []
        self._lock = threading.Lock()

    @staticmethod
    def prediction_for(image: ImageFile, cls: str = "object", confidence: float = 0.5) -> Prediction:
        """One detection over the middle half of ``image``, at its stored size."""
        width, height = image.check()
        box = make_detection(cls, confidence, x=width / 2, y=height / 2, width=width / 2, height=height / 2)
        return make_prediction(box, width=width, height=height)

    def predict(self, image: ImageFile) -> Prediction:
        with self._lock:
            self.seen.append(image.path)
        if self.prediction is None:
            prediction = self.prediction_for(image)
        else:
            prediction = copy.deepcopy(self.prediction)
        prediction.model_id = prediction.model_id or self.model_id
        return prediction

    def close(self) -> None:
        pass


class CollectingDestination(Destination):
    """A destination that keeps every delivery in memory (``deliveries``), for testing a backend or a
    policy end to end. Idempotent as the contract asks: the same content again is a duplicate."""

    def __init__(self, name: str = "collect:memory") -> None:
        self.name = name
        self.deliveries: list[Delivery] = []
        self.checked = False
        self.closed = False
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def check(self) -> None:
        self.checked = True

    check_read_only = check

    def send(self, delivery: Delivery) -> Receipt:
        with self._lock:
            duplicate = delivery.key in self._keys
            if not duplicate:
                self._keys.add(delivery.key)
                self.deliveries.append(delivery)
        return Receipt(delivery.key[:16], duplicate=duplicate)

    def close(self) -> None:
        self.closed = True


def run_one(image_path: str | os.PathLike[str], *, backend: Any = None, destination: Any = None,
            policy: Policy | Mapping[str, Any] | str | None = None, registry: Registry | None = None,
            options: RunOptions | None = None) -> RunReport:
    """One image through the real :func:`alpolicy.run`, with an in-memory journal and no decisions
    log: the backend infers, the policy decides, the destination receives the delivery.

    ``backend`` and ``destination`` are objects or specs (``onnx:demo``, ``folder:out/``: built
    from ``registry`` -- by default the installed plugins -- with ``options``' model and
    destination options, checked against their options schemas); by default a
    :class:`StaticBackend` and a :class:`CollectingDestination` (pass your own to read its
    ``deliveries``). ``policy`` defaults to :data:`SEND_EVERYTHING`. ``options`` defaults to no
    progress output and no deferred retry rounds; its ``journal`` is used as given.
    """
    registry = registry or get_registry()
    if options is None:
        options = RunOptions(journal=None, progress=False, retry_for=0, decisions_log="")
    return run([os.fspath(image_path)], _policy(policy, registry), model=backend if backend is not None else StaticBackend(),
               destination=destination if destination is not None else CollectingDestination(),
               options=options, registry=registry)
