"""Roboflow inference, hosted or on a self-hosted Inference server (``roboflow:PROJECT/VERSION``).

Every task type Roboflow trains (object detection, instance segmentation, keypoint detection,
single- and multi-label classification) is served on the same documented legacy route, by the
hosted service and a local Inference server alike: ``POST {base}/{project}/{version}?api_key=…
&confidence=…&overlap=…&format=json`` with the image file base64-encoded as the body (the
SDK's ``ClassificationModel``, ``InstanceSegmentationModel`` and ``KeypointDetectionModel`` post
there too; ``serverless.roboflow.com`` serves all of them). The bytes are sent as they are on
disk (no re-encode: no quality loss, EXIF orientation kept for the server to apply), so boxes,
polygons and keypoints come back in the pixels of the oriented original.

The model's task comes from its metadata, once, before the first image (:meth:`check`, or the
first use of :attr:`RoboflowInference.task`): ``GET {api}/?api_key=…`` names the key's workspace
and ``GET {api}/{workspace}/{project}?api_key=…`` answers ``project.type`` (Roboflow's project
types) and, for a classification project, ``project.multilabel`` -- the two reads
``roboflow.core.project.Project`` makes, and Inference's own ``get_roboflow_dataset_type``.
``--model-opt task=TASK`` gives it instead (a local Inference server that cannot reach the API).
The answers keep Roboflow's shapes, which are alpolicy's canonical ones; :func:`normalised` mends
the two places where a Workflow's serialisation differs (:mod:`alpolicy.backends.workflow`).
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any, Callable, Mapping

from ..errors import ServiceError, UsageError
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import BodyTooLarge, HttpClient, read_body, server_message
from ..io.images import ImageDecodeError, ImageFile, open_image
from ..io.jsonsafe import JsonError, loads, response_json
from ..io.secrets import Secret, secret
from ..policy.prediction import (CLASSIFICATION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, MULTI_LABEL_CLASSIFICATION,
                                 OBJECT_DETECTION, TASKS, Prediction, PredictionFormatError)
from ..registry import InferenceBackendSpec
from . import ImageError, InferenceBackend, ModelOptions, fingerprint

HOSTED_INFERENCE_URL = "https://serverless.roboflow.com"
INFERENCE_URL_ENV = "ROBOFLOW_INFERENCE_URL"
API_KEY_ENV = "ROBOFLOW_API_KEY"
API_URL = "https://api.roboflow.com"
API_URL_ENV = "ROBOFLOW_API_URL"

#: Roboflow's project types (``project.type``; the ``single-``/``multi-label-classification``
#: spellings are the ones a project is created with) and the task each is.
PROJECT_TYPES: Mapping[str, str] = {
    "object-detection": OBJECT_DETECTION,
    "instance-segmentation": INSTANCE_SEGMENTATION,
    "keypoint-detection": KEYPOINT_DETECTION,
    "classification": CLASSIFICATION,
    "single-label-classification": CLASSIFICATION,
    "multi-label-classification": MULTI_LABEL_CLASSIFICATION,
}

#: The backend's own ``extra`` settings (``--model-opt KEY=VALUE``).
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "roboflow backend options",
    "type": "object",
    "properties": {
        "task": {"enum": list(TASKS),
                 "description": "the model's task, instead of reading it from the Roboflow API before the first image "
                                "(for a local Inference server that cannot reach the API)"},
        "api_url": {"type": "string",
                    "description": f"the Roboflow API the model's task is read from (default ${API_URL_ENV} or {API_URL})"},
    },
}


def api_key_from(options_key: str | None, purpose: str) -> Secret:
    """The API key from the argument or ``ROBOFLOW_API_KEY``, registered for redaction and
    masked in any ``repr``; a clear error when neither is set."""
    key = options_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise UsageError(f"{purpose} needs a Roboflow API key: set {API_KEY_ENV} or pass --api-key")
    return secret(key)


def parse_model_target(target: str) -> tuple[str, str]:
    project, sep, version = target.strip("/").rpartition("/")
    if not sep or not project or not version.isdigit():
        raise UsageError(f"roboflow model {target!r} should be PROJECT/VERSION, e.g. roboflow:vehicles/3")
    return project, version


def task_of_project(body: Any, project: str) -> str:
    """The task of a project from the REST API's description of it (``{"project": {"type",
    "multilabel"}}``): a missing type is object detection, as Inference reads it (old projects
    have none); a type alpolicy cannot handle is a one-line :class:`UsageError`."""
    described = body.get("project") if isinstance(body, dict) else None
    if not isinstance(described, dict):
        raise UsageError(f"the Roboflow API did not describe project {project!r} (no \"project\" object in its answer): "
                         f"check {API_URL_ENV}, or give the task with --model-opt task=TASK")
    kind = described.get("type", OBJECT_DETECTION)
    task = PROJECT_TYPES.get(kind) if isinstance(kind, str) else None
    if task is None:
        shown = repr(kind) if isinstance(kind, str) else f"a {type(kind).__name__}"
        raise UsageError(f"Roboflow project {project!r} is a {shown} project: alpolicy handles {', '.join(TASKS)}")
    if task == CLASSIFICATION and described.get("multilabel") is True:
        return MULTI_LABEL_CLASSIFICATION
    return task


def normalised(document: Any, content: bytes | None = None) -> Any:
    """A Roboflow answer in the canonical shape. Roboflow Inference's answers already are; a
    Workflow's serialisation of detections (``serialise_sv_detections``) differs twice: an
    image without detections has ``{"width": null, "height": null}`` (filled here from the
    image itself, ``content``, oriented as the server sees it), and masks serialised as RLE are
    ``rle_mask`` (renamed ``rle``). Anything else is left for validation to judge."""
    if not isinstance(document, dict):
        return document
    image = document.get("image")
    if content is not None and isinstance(image, dict) and image.get("width") is None and image.get("height") is None:
        width, height = oriented_size(content)
        document = {**document, "image": {**image, "width": width, "height": height}}
    predictions = document.get("predictions")
    if isinstance(predictions, list) and any(isinstance(d, dict) and "rle_mask" in d and "rle" not in d for d in predictions):
        renamed = [{("rle" if key == "rle_mask" else key): value for key, value in d.items()}
                   if isinstance(d, dict) and "rle" not in d else d for d in predictions]
        document = {**document, "predictions": renamed}
    return document


def oriented_size(content: bytes) -> tuple[int, int]:
    """An image's size as displayed (EXIF orientation 5-8 swaps the sides), from its header."""
    try:
        with open_image(content) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112)
    except ImageDecodeError as error:
        raise ImageError(str(error)) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_prediction(raw: bytes | Any, *, task: str | None, max_detections: int | None, content: bytes | None,
                    problem: str = "the inference server answered something that is not a prediction") -> Prediction:
    """An answer (raw bytes, or a JSON value already read) as a validated :class:`Prediction` of
    ``task``: :func:`normalised`, then the one validator; a malformed answer fails its image in
    one located line, ``<problem>: predictions[2].points[5].x: ...``."""
    try:
        document = loads(raw, max_bytes=None, finite=False) if isinstance(raw, (bytes, str)) else raw
        return Prediction.from_json(normalised(document, content), check=True, max_detections=max_detections, task=task)
    except (JsonError, PredictionFormatError) as error:
        raise ImageError(f"{problem}: {error}") from None


class RoboflowInference(InferenceBackend):
    """Thread-safe: one pooled HTTP session shared by the pipeline's threads; the task is read once."""

    def __init__(self, target: str, options: ModelOptions) -> None:
        self.project, self.version = parse_model_target(target)
        self.api_key = api_key_from(options.api_key, "roboflow inference")
        base = checks.configured_url(options.inference_url, "inference_url", INFERENCE_URL_ENV, HOSTED_INFERENCE_URL,
                                     secret="API key", allow_insecure_http=options.allow_insecure_http)
        given = options.extra.get("task")
        if given is not None and given not in TASKS:
            raise UsageError(f"--model-opt task: {given!r} is not one of {', '.join(TASKS)}")
        self._task: str | None = given
        self._task_lock = threading.Lock()
        self.api = None if given else checks.configured_url(
            options.extra.get("api_url"), "api_url", API_URL_ENV, API_URL, secret="API key",
            allow_insecure_http=options.allow_insecure_http)
        self.url = f"{base}/{self.project}/{self.version}"
        self.model_id = f"{self.project}/{self.version}"
        self.params = {
            "api_key": self.api_key,
            "confidence": _percent(options.confidence),
            "overlap": _percent(options.overlap),
            "format": "json",
        }
        self._thresholds = {"confidence": float(options.confidence), "overlap": float(options.overlap)}
        self.client = HttpClient(
            timeout=options.timeout, retry=options.retry_policy(), service="inference server"
        )
        self.api_client = HttpClient(timeout=options.timeout, retry=options.retry_policy(),
                                     service="Roboflow API (the inference model's metadata)")
        self.max_response_bytes = options.max_response_bytes
        self.max_detections = options.max_detections

    # ---- the model's task ------------------------------------------------------------------

    def check(self) -> None:
        """Before the first image: the model's task, from the API unless ``task`` was given."""
        self._resolve_task()

    @property  # type: ignore[override]
    def task(self) -> str:
        """The model's task (one of :data:`~alpolicy.policy.prediction.TASKS`), read once."""
        return self._resolve_task()

    @property  # type: ignore[override]
    def fingerprint_settings(self) -> dict[str, Any]:
        """What changes the answer for one image: the thresholds the server applies, and the
        task unless it is object detection (a detector's fingerprint is the one earlier versions
        stored, so their predictions stay reusable). The URL is not in it: hosted and
        self-hosted serve the same weights."""
        task = self._resolve_task()
        return {**self._thresholds, **({"task": task} if task != OBJECT_DETECTION else {})}

    @property
    def fingerprint(self) -> str:
        return fingerprint("roboflow", self.model_id, self.fingerprint_settings)

    def _resolve_task(self) -> str:
        with self._task_lock:
            if self._task is None:
                self._task = self._task_from_api()
            return self._task

    def _task_from_api(self) -> str:
        """``project.type`` (and ``multilabel``) from the two reads ``Roboflow().workspace().project()``
        makes (:func:`project_document`). A refused key is an :class:`AuthError`, a project the key
        cannot see a :class:`UsageError`, a service that stays down a :class:`ServiceError`: one line each."""
        workspace, found = project_document(
            self.api_client, self.api, self.api_key, self.project, what="looking up the model's task",
            hint=f"check {API_URL_ENV} or --model-opt api_url, or give the task with --model-opt task=TASK")
        if found is None:
            raise UsageError(f"the model's project {self.project!r} does not exist in workspace {workspace!r}: "
                             "check the model (roboflow:PROJECT/VERSION)")
        return task_of_project(found, self.project)

    # ---- inference -------------------------------------------------------------------------

    def predict(self, image: ImageFile) -> Prediction:
        task = self._resolve_task()
        try:
            image.check()  # refuse non-images and bombs locally, before spending a request
            content = image.read_bytes()
        except ImageDecodeError as error:
            raise ImageError(str(error)) from None
        body = base64.b64encode(content)
        answer = self.client.with_retries(lambda: self._infer_once(body), what="inference")
        prediction = read_prediction(answer, task=task, max_detections=self.max_detections, content=content)
        prediction.model_id = self.model_id
        return prediction

    def _infer_once(self, body: bytes) -> bytes:
        """One attempt: the answer's bytes, read within ``max_response_bytes`` (the body is
        streamed, so a 4 GB answer is never held, and a connection cut mid-body is retried;
        any other failure ends the retries at once)."""
        response = self.client.attempt(
            "POST", self.url, what="inference", params=self.params, data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"}, stream=True,
        )
        if response.status_code == 404:
            response.close()
            raise UsageError(
                f"the inference server has no model {self.model_id!r} (HTTP 404): check the project and version"
            )
        if response.status_code >= 400:
            message = server_message(response)
            response.close()
            raise ImageError(f"the inference server rejected the image (HTTP {response.status_code}): {message}")
        try:
            return read_body(response, self.max_response_bytes, what="inference")
        except BodyTooLarge as error:
            raise ImageError(f"the inference server answered something that is not a prediction: {error}") from None

    def close(self) -> None:
        self.client.close()
        self.api_client.close()


def project_document(client: HttpClient, api: str, api_key: Any, project: str, *, what: str,
                     hint: str) -> tuple[str, Any | None]:
    """``(workspace, project JSON)`` from the two reads ``Roboflow().workspace().project()`` makes:
    ``GET {api}/?api_key=…`` names the key's workspace (a refused key stops the run; an answer
    without one is a :class:`UsageError` ending with ``hint``), then
    ``GET {api}/{workspace}/{project}?api_key=…``: ``None`` when the project does not exist there
    (404; the caller says why that matters), a :class:`ServiceError` for any other failure. Both
    the backend (the model's task) and the destination (the queue's project) read it this way."""
    params = {"api_key": api_key}
    root = client.request("GET", f"{api}/", what="checking the API key", params=params)
    body = _json(root)
    workspace = body.get("workspace") if isinstance(body, dict) else None
    if root.status_code != 200 or not isinstance(workspace, str) or not workspace:
        raise UsageError(f"the Roboflow API at {api} did not name the key's workspace (HTTP {root.status_code}): {hint}")
    found = client.request("GET", f"{api}/{workspace}/{project}", what=what, params=params)
    if found.status_code == 404:
        return workspace, None
    if found.status_code != 200:
        raise ServiceError(f"{what} of Roboflow project {project!r} failed (HTTP {found.status_code}): {server_message(found)}")
    return workspace, _json(found)


def _json(response: Any) -> Any:
    """The answer's JSON, or ``None`` (read strictly: 100,000 nested brackets are not a crash)."""
    try:
        return response_json(response, what="the Roboflow API")
    except JsonError:
        return None


def _percent(value: float) -> str:
    return f"{value:g}"


def make_backend(target: str, options: ModelOptions) -> RoboflowInference:
    return RoboflowInference(target, options)


@hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "roboflow", make_backend,
            "Roboflow hosted inference or a local Inference server, any task type: roboflow:PROJECT/VERSION",
            options_schema=OPTIONS_SCHEMA,
        )
    )
