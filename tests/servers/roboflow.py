"""A real HTTP server on loopback that speaks the Roboflow routes ``active_learning()`` uses.

Tests and benchmarks talk to it over real sockets (``http.server.ThreadingHTTPServer``), so
timeouts, keep-alive, concurrency, connection resets and lost responses behave as they do
against the real service, which no mock can show. It serves, on one port, both hosts the SDK
talks to: the hosted-inference host (``serverless.roboflow.com``) and the REST API host
(``api.roboflow.com``).

Contract implemented (read from roboflow 1.7.3: ``adapters/rfapi.py``, ``models/object_detection.py``,
``models/inference.py``, ``core/project.py``, ``core/workspace.py``; and from the inference
server's legacy ``/{dataset_id}/{version_id}`` route and its ``legacy/errors.py``)
=============================================================================================

1. Hosted inference: ``POST /{project}/{version}``
   Query: ``api_key`` (required); ``confidence`` -- a percentage (the SDK sends ``40``); values
   ``< 1`` are read as a fraction, as the inference server does; default 40. ``overlap``: NMS
   IoU threshold, same percent/fraction rule, default 30. ``classes``: optional comma-separated
   class filter. ``max_detections`` (default 300). ``format``: only ``json``; ``image`` answers
   501. Others the SDK sends (``name``, ``stroke``, ``labels``...) are ignored. ``image=<url>``
   answers 400 (this fake fetches nothing).
   Body, any of: the base64 of the image file (what ``ObjectDetectionModel.predict`` sends, with
   ``Content-Type: application/x-www-form-urlencoded``; it re-encodes the image as PNG first,
   after ``Image.open(path).convert("RGB")``, which drops the EXIF orientation);
   ``multipart/form-data`` with the image in part ``file`` (what ``InferenceModel.predict``
   sends); or the raw image bytes.
   The image is decoded with Pillow and EXIF-oriented (``ImageOps.exif_transpose``, the server's
   default auto-orient). 200 answer::

       {"inference_id": "<uuid4>", "time": 0.0123,
        "image": {"width": W, "height": H},
        "predictions": [{"x": 101.5, "y": 80.0, "width": 63.0, "height": 40.0,
                         "confidence": 0.734, "class": "car", "class_id": 0,
                         "detection_id": "<uuid>"}, ...]}

   ``x``/``y`` are box centres, all in pixels of the oriented image; ``confidence`` in 0..1
   rounded to 3 decimals. The model's raw detections are then processed like the real server:
   drop ``confidence < threshold``, keep only ``classes`` if given, class-wise NMS at
   ``overlap``, sort by confidence descending, cap at ``max_detections``. Unlike the real
   server, ``detection_id`` is derived from (image bytes, index), so equal images give equal
   ids; ``inference_id`` is a fresh uuid4 per request.
   Errors have the inference server's shape ``{"message": "..."}`` (not ``{"error": ...}``):
   401 for a missing or wrong ``api_key`` (checked before the model lookup, as the server
   resolves the model with the key), 404 for an unknown ``project/version``, 400 for an
   undecodable image, 501 for ``format=image``, 500 if the model's ``predict`` raises.

2. Image upload: ``POST /dataset/{project}/upload``
   Query (what ``rfapi.upload_image`` sends): ``api_key``; ``batch`` (the SDK defaults it to
   ``"Pip Package Upload"``); ``tag`` repeated once per tag; optional ``sequence_number`` and
   ``sequence_size``; any ``**kwargs`` (e.g. ``inference_id``). A hosted-image upload instead
   puts ``name``, ``split``, ``image=<url>`` and ``metadata`` in the query (answered 400 here).
   Body: ``multipart/form-data`` with fields ``name`` (file base name), ``split``
   (``train``/``valid``/``test``, default ``train``), ``file`` (``filename``, bytes,
   guessed content type) and optional ``metadata`` (a JSON object as a string). The REST docs
   also allow a base64 (or raw) image body with ``name``/``split`` in the query; accepted.
   Fields take precedence over the query.
   Answers: new content ``200 {"success": true, "id": "<20-char id>"}``; content (sha256 of
   the uploaded bytes, which the SDK sends unmodified) already in that project
   ``200 {"duplicate": true, "id": "<existing id>"}`` -- the shape seen from the real API
   (roboflow-python#214) and the one ``upload_image`` accepts (``success or duplicate``); a
   duplicate changes nothing but the image's ``upload_count``.
   Errors have the REST API's shape ``{"error": {"message", "type", "hint"}}`` which
   ``upload_image`` unwraps (the texts are close to, not copies of, the real ones): 401 bad key, 400 bad split / metadata / not an image, 404
   unknown project when ``auto_create_projects=False`` (default: created on first upload,
   like ``upload_dataset``; the real per-image route needs an existing project).

3. Save annotation: ``POST /dataset/{project}/annotate/{image_id}``
   Query (``rfapi._save_annotation_url``): ``api_key``, ``name`` (annotation file name; its
   extension names the format, required), ``jobName`` (batch name, optional),
   ``prediction=true`` only when it is a prediction (absent means false), ``overwrite=true``
   optional, ``addToDataset=true|false`` optional.
   Body as the SDK sends it: ``Content-Type: application/json``,
   ``{"annotationFile": "<annotation file text>", "labelmap": <dict or null>}``. The inference
   server's active learning instead posts the annotation text itself as ``text/plain``;
   accepted too. A ``.json`` annotation must parse as JSON (else 400). Each file is read by
   its kind (:func:`_annotation_kind`, stored as ``kind`` and ``classes``): inference JSON
   with boxes, ``points`` polygons or ``keypoints``; a ``.txt`` class name or YOLO rows; a
   JSON list of class names (multi-label); a malformed one is a 400.
   Answers: ``200 {"success": true}``. 404 for an image id not in the project. If the image
   already has an annotation and ``overwrite`` is not true: ``409 {"error": {"message":
   "Image was already annotated.", "type": "InvalidImageException", "hint": ...}}`` -- the
   SDK turns a 409 whose message contains "already annotated" into
   ``{"warn": "already annotated"}`` (success). Switch off with
   ``reject_reannotation=False`` to store every call.

4. Workspace and project: ``GET /?api_key=…`` (``Roboflow.auth`` reads ``workspace``, the key's
   workspace url), ``GET /{workspace}?api_key=…`` (``rfapi.get_workspace``: ``{"workspace":
   {"name", "url", "members", "projects": [...]}}``) and ``GET /{workspace}/{project}?api_key=…``
   (``rfapi.get_project``, ``Workspace.project``: ``{"workspace": {...}, "project": {"id":
   "<workspace>/<project>", "name", "type", "created", "updated", "images", "unannotated",
   "annotation", "public", "splits", "colors", "classes"}, "versions": [...]}``). 401 for a bad
   key; 404 ``GraphMethodException`` for another workspace or an unknown project. With
   ``auto_create_projects`` (the default) every project name exists, empty until its first
   upload creates it; without it, only projects added or uploaded to. These GETs share the
   inference route's two-segment path: the real service serves them on another host.

5. Every task type on the inference route, and the project metadata that names it
   ``add_model(project, version, task=...)`` (one of :data:`TASKS`) shapes the answer as Roboflow
   Inference does: instance segmentation adds ``points`` (a polygon in image pixels) and
   ``mask_format: "polygon"`` to each detection; keypoint detection adds ``keypoints`` (``x``,
   ``y``, ``confidence``, ``class_id``, ``class``); classification answers every class best first
   with ``top`` and ``confidence``; multi-label classification answers ``predictions`` as
   ``{CLASS: {"confidence", "class_id"}}`` with ``predicted_classes`` (those at or above the
   ``confidence`` threshold). ``GET /{workspace}/{project}`` of a model's project answers its
   ``type`` (``classification`` plus ``multilabel: true`` for a multi-label model, as
   ``roboflow.core.project.Project`` reads it) and lists its versions, whether or not the project
   was uploaded to.

6. Saved Workflows: ``POST /{workspace}/workflows/{workflow_id}`` (and the legacy
   ``/infer/workflows/{workspace}/{workflow_id}``), the body ``inference_sdk``'s ``run_workflow``
   sends (``api_key``, ``inputs`` with the image as ``{"type": "base64", "value"}``,
   ``use_cache``...). Validated as the real server does: 422 ``{"detail": [...]}`` for a body
   FastAPI refuses (echoing the input, the whole body for a missing ``inputs``), 401 for a missing
   or wrong key, 404 for an unknown Workflow, 400 ``RuntimeInputError`` for a declared input the
   request lacks. Answers ``{"outputs": [{OUTPUT: VALUE}], "profiler_trace": []}``, detections as
   a Workflow serialises them (:func:`workflow_answer`). Counted as route ``workflow``; what each
   request carried is kept (:meth:`FakeRoboflow.workflow_calls`).

7. CLIP image embeddings: ``POST /clip/embed_image?api_key=…`` with Inference's
   ``ClipImageEmbeddingRequest`` body (``{"api_key", "image": {"type": "base64", "value"},
   "clip_version_id"?}``; ``image`` may be a list) answers ``{"embeddings": [[...]], "time"}``,
   one 64-number unit vector per image (:func:`clip_embedding`: a fixed seeded projection of a
   16x12 RGB thumbnail, so similar images get near vectors, like the real model's). 401 for a
   wrong key, 422 for a body FastAPI refuses, 400 for an image that does not decode. A server
   started without CLIP (``FakeRoboflow(clip=False)``) answers 404 ``{"detail": "Not Found"}``,
   as FastAPI does for a route Inference did not register. Counted as route ``clip``; what each
   request carried is kept (:meth:`FakeRoboflow.clip_calls`).

Test-only additions
===================
* Latency per route (``inference_latency``, ``upload_latency``, ``annotate_latency``) is slept
  in the handler thread before the work, so concurrent clients overlap.
* Other paths answer 404 ``{"error": {...}}``; a GET on a POST route answers 405 (a GET on
  ``/{a}/{b}`` is the project route).
* Faults per route (``infer``/``upload``/``annotate``/``root``/``workspace``/``project``), see :class:`FaultConfig`. "Every Nth"
  counts that route's requests since its faults were last set, 1-based. When several match
  one request only one is injected, in this order: down, reset, throttle, error,
  lose_response, slow. Faults act before authentication, as a load balancer would. Injected
  503/429 bodies use the route's error shape; resets and lost responses close with RST.
* Requests are counted per route and, for uploads and annotations, per image
  (:class:`ImageRequests`: upload requests per content hash, annotate requests per image id,
  each with its faults), so a test sees a client that re-sends even where the content
  de-duplication makes the stored result look right.
* Hostile answers: ``add_model(..., answer=fn)`` sends ``fn(image_bytes)`` verbatim as the 200
  body for the images it chooses (``NaN``, 100,000 brackets, 40 MB), the model's answer otherwise.
  :meth:`FakeRoboflow.answer_uploads` / :meth:`FakeRoboflow.answer_annotations` do the same for
  uploads (chosen by the uploaded bytes; nothing is stored) and pre-labels (chosen by the image id).
* Inspection in process (:class:`FakeRoboflow`), and over HTTP on reserved paths that real
  routes never use: ``GET /__state``, ``POST /__faults``, ``POST /__reset``.
* ``python -m tests.servers.roboflow --port 0 --model proj/1 ...`` prints one line
  ``READY http://127.0.0.1:PORT`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hashlib
import io
import json
import math
import random
import secrets
import signal
import socket
import string
import struct
import sys
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_API_KEY = "rf_test_key"
DEFAULT_CLASSES: tuple[str, ...] = ("car", "person", "bicycle")
ROUTES: tuple[str, ...] = ("infer", "upload", "annotate", "root", "workspace", "project", "workflow", "clip")
#: The routes answered on GET (the others on POST).
GET_ROUTES = frozenset({"root", "workspace", "project"})
FAULT_KINDS: tuple[str, ...] = ("down", "reset", "throttle", "error", "lose_response", "slow")
SPLITS = frozenset({"train", "valid", "test"})
#: The task types a model can have (Roboflow's project types; multi-label classification is a
#: ``classification`` project with ``multilabel: true`` in the project metadata). A
#: semantic-segmentation model answers only its metadata and a stub answer (alpolicy refuses it).
TASKS: tuple[str, ...] = ("object-detection", "instance-segmentation", "keypoint-detection", "classification",
                          "multi-label-classification", "semantic-segmentation")
#: The keypoint names of a keypoint-detection model unless ``add_model(keypoints=...)`` says otherwise.
DEFAULT_KEYPOINTS: tuple[str, ...] = ("nose", "left_eye", "right_eye")

#: ``predict(image, image_bytes) -> detections``: ``image`` is the EXIF-oriented Pillow image,
#: ``image_bytes`` the decoded request bytes. Each detection needs ``x``, ``y``, ``width``,
#: ``height`` (centre format, pixels), ``confidence`` (0..1) and ``class``; ``class_id`` and
#: ``detection_id`` are filled in when missing.
PredictFn = Callable[[Image.Image, bytes], list[dict[str, Any]]]

#: ``answer(image_bytes) -> body``: the raw 200 body to send for this image instead of the model's
#: answer (bytes sent verbatim as ``application/json``: hostile numbers, broken JSON, 40 MB), or
#: ``None`` for the model's answer. Called after authentication and the model lookup.
AnswerFn = Callable[[bytes], "bytes | None"]

# The inference server's messages (inference_server/legacy/errors.py), so clients that log or
# match them see the real text.
_UNAUTHORIZED_INFERENCE = (
    "Unauthorized access to roboflow API - check API key and make sure the key is valid for "
    "workspace you use. Visit https://docs.roboflow.com/api-reference/authentication"
    "#retrieve-an-api-key to learn how to retrieve one."
)
_MODEL_NOT_FOUND = (
    "Requested Roboflow resource not found. Make sure that workspace, project or model you "
    "referred in request exists."
)
_ALREADY_ANNOTATED_HINT = (
    "This image was already annotated; to overwrite the annotation, pass overwrite=true as a "
    "query parameter."
)


# --------------------------------------------------------------------------------------------
# Faults and counters
# --------------------------------------------------------------------------------------------


@dataclass
class FaultConfig:
    """Faults injected into one route. ``0`` disables an "every Nth" fault.

    ``error_every``: answer ``error_status`` (503) on every Nth request, without doing the work;
    a 4xx ``error_status`` is a refusal (what a server says of a request it will never accept).
    ``throttle_every``: answer 429 with ``Retry-After: retry_after`` (seconds; real servers
    send whole seconds, fractions are allowed so tests stay fast). A string is sent verbatim,
    so a test can send an HTTP date or a malformed value (``"soon"``).
    ``reset_every``: read the whole request, then abort the TCP connection (RST, via
    ``SO_LINGER`` 0) without doing the work: the client sees a connection reset.
    ``slow_every``: do the work, then wait ``slow_delay`` seconds more before answering, so a
    client timeout fires after the server has already stored the upload.
    ``lose_response_every``: do the work (store the upload or annotation), then abort the
    connection without answering: the case exactly-once clients must survive.
    ``down``: every request answers ``error_status`` (503).
    ``error_body``: the injected 5xx/429 answers' body instead of the route's JSON error: a
    string is sent verbatim as ``text/plain`` (a proxy's error page), anything else as JSON.
    ``max_faults``: stop injecting after this many faults (``None``: no limit), e.g. "lose
    only the first response" is ``lose_response_every=1, max_faults=1``.
    """

    error_every: int = 0
    error_status: int = 503
    throttle_every: int = 0
    retry_after: float | str = 1.0
    reset_every: int = 0
    slow_every: int = 0
    slow_delay: float = 0.0
    lose_response_every: int = 0
    down: bool = False
    max_faults: int | None = None
    error_body: Any = None

    def __post_init__(self) -> None:
        for name in ("error_every", "throttle_every", "reset_every", "slow_every", "lose_response_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 400 <= self.error_status <= 599 or self.error_status in (401, 403):
            raise ValueError("error_status must be a 4xx refusal (not 401/403) or a 5xx status")
        if self.slow_every and self.slow_delay <= 0:
            raise ValueError("slow_every needs a positive slow_delay")

    def pick(self, n: int) -> str | None:
        """The fault for this route's ``n``-th request (1-based) or ``None``; one at most."""
        if self.down:
            return "down"
        every = {
            "reset": self.reset_every,
            "throttle": self.throttle_every,
            "error": self.error_every,
            "lose_response": self.lose_response_every,
            "slow": self.slow_every,
        }
        for kind, period in every.items():
            if period and n % period == 0:
                return kind
        return None


@dataclass
class _RouteFaults:
    """A route's fault config plus the counters "every Nth" and ``max_faults`` need."""

    config: FaultConfig = field(default_factory=FaultConfig)
    seen: int = 0
    injected: int = 0

    def next_fault(self) -> str | None:
        self.seen += 1
        limit = self.config.max_faults
        if limit is not None and self.injected >= limit:
            return None
        fault = self.config.pick(self.seen)
        if fault is not None:
            self.injected += 1
        return fault


@dataclass
class ImageRequests:
    """The requests one route received for one image, whatever became of them.

    The image is named by what the request carries: an upload by the sha256 of the image bytes
    it sends (so a re-sent upload counts against its content even when a fault stopped it before
    any work), an annotation by the image id in its path. ``done`` counts the requests whose work
    ran (an upload stored or found a duplicate, an annotation stored or refused), including those
    whose answer was then lost (``lose_response``) or delayed (``slow``). The content
    de-duplication hides a client that re-sends; these counts do not: a client that repeats a
    request only when it saw no answer sends at most ``1 + sum(faults.values())`` requests for
    an image, and has its work done at most ``1 + faults["lose_response"] + faults["slow"]`` times.
    """

    requests: int = 0
    done: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    by_status: dict[int, int] = field(default_factory=dict)

    def copy(self) -> "ImageRequests":
        return ImageRequests(self.requests, self.done, dict(self.faults), dict(self.by_status))


@dataclass
class RouteStats:
    """What one route received: every request, each answered status, each injected fault, and
    the same per image (``images``: content sha256 for uploads, image id for annotations).

    A reset or a lost response has no status; it shows only in ``faults``.
    """

    total: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    images: dict[str, ImageRequests] = field(default_factory=dict)

    def copy(self) -> "RouteStats":
        images = {key: counts.copy() for key, counts in self.images.items()}
        return RouteStats(self.total, dict(self.by_status), dict(self.faults), images)


# --------------------------------------------------------------------------------------------
# Stored state
# --------------------------------------------------------------------------------------------


@dataclass
class Model:
    """A hosted model: ``project/version`` and the function that makes its raw detections."""

    project: str
    version: str
    predict: PredictFn
    classes: tuple[str, ...]
    answer: "AnswerFn | None" = None
    task: str = "object-detection"
    keypoints: tuple[str, ...] = DEFAULT_KEYPOINTS

    @property
    def project_type(self) -> tuple[str, bool]:
        """``(project.type, project.multilabel)`` as the REST API describes this model's project."""
        if self.task == "multi-label-classification":
            return "classification", True
        return self.task, False


#: ``run(image, image_bytes, inputs) -> outputs``: a fake Workflow. ``image`` is the EXIF-oriented
#: Pillow image of the input named by the Workflow's first image input, ``inputs`` every input as
#: the request gave it (defaults filled in). The outputs dict is answered as ``{"outputs": [outputs]}``.
WorkflowFn = Callable[[Image.Image, bytes, dict], dict]


@dataclass
class Workflow:
    """A saved Workflow: its id, declared inputs (``parameters``: name -> default, ``None`` for a
    required one; ``image_inputs``: the names of its image inputs) and what it computes."""

    workspace: str
    workflow_id: str
    run: WorkflowFn
    parameters: dict[str, Any] = field(default_factory=dict)
    image_inputs: tuple[str, ...] = ("image",)


@dataclass
class StoredImage:
    """An uploaded image as the fake keeps it (the bytes are kept for ``image_bytes``)."""

    id: str
    name: str
    sha256: str
    split: str
    batch: str | None
    tags: list[str]
    metadata: dict[str, Any] | None
    upload_count: int
    data: bytes
    sequence_number: str | None = None
    sequence_size: str | None = None
    inference_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        info = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "data"}
        info["size"] = len(self.data)
        return info


@dataclass
class Project:
    """An upload destination: images by id, content index for dedup, annotations per image."""

    name: str
    explicit: bool
    images: dict[str, StoredImage] = field(default_factory=dict)
    by_sha256: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A JSON answer (or raw bytes); ``Content-Length`` is always sent so keep-alive works."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ImageDecodeError(ValueError):
    """The request's image bytes are not an image Pillow can read."""


class HttpError(Exception):
    """Raised by route handlers to answer with an error status."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.response = Response(status, body, dict(headers or {}))


def _api_error(status: int, message: str, type_: str, hint: str | None = None) -> HttpError:
    """An error in the REST API's shape, which ``rfapi`` unwraps via ``error.message``."""
    error: dict[str, Any] = {"message": message, "type": type_}
    if hint:
        error["hint"] = hint
    return HttpError(status, {"error": error})


def _missing_route_message(request: "Request") -> str:
    """The REST API's 404 text for a path the key cannot see."""
    path = "/" + "/".join(request.segments)
    return f"Unsupported request. `{request.method} {path}` does not exist or cannot be loaded due to missing permissions."


def _inference_error(status: int, message: str) -> HttpError:
    """An error in the inference server's shape (``{"message": ...}``)."""
    return HttpError(status, {"message": message})


def _route_error(route: str, status: int, message: str, type_: str) -> Response:
    """An injected-fault answer in the shape of the route's host."""
    if route in ("infer", "workflow", "clip"):
        return Response(status, {"message": message})
    return Response(status, {"error": {"message": message, "type": type_}})


@dataclass
class Request:
    """One parsed HTTP request, as route handlers see it."""

    method: str
    segments: list[str]
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def params(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").strip().lower() == "true"

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").strip()


@dataclass
class FormPart:
    """One ``multipart/form-data`` part."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def parse_multipart(content_type: str, body: bytes) -> dict[str, FormPart]:
    """Parse a ``multipart/form-data`` body (RFC 7578) byte-exactly.

    A small split on the boundary rather than the stdlib ``email`` parser: the latter's header
    machinery cost the server two thirds of its CPU in the throughput benchmark, where this
    server stands in for a service that is never the bottleneck.
    """
    boundary = _content_type_param(content_type, "boundary")
    if not boundary:
        raise _api_error(400, "Malformed multipart body", "InvalidRequestException")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3:
        raise _api_error(400, "Malformed multipart body", "InvalidRequestException")
    parts: dict[str, FormPart] = {}
    for section in sections[1:-1]:  # before the first delimiter: preamble; after the last: "--" epilogue
        if section.startswith(b"\r\n"):
            section = section[2:]
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise _api_error(400, "Malformed multipart body", "InvalidRequestException")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = _content_type_param(disposition, "name")
        if not name:
            continue
        part_type = headers.get("content-type", "text/plain").split(";")[0].strip().lower()
        parts[name] = FormPart(name, _content_type_param(disposition, "filename"), part_type, data)
    return parts


def _content_type_param(header: str, key: str) -> str | None:
    """A parameter of a header value (``boundary`` of Content-Type, ``name`` of Content-Disposition)."""
    for piece in header.split(";")[1:]:
        name, _, value = piece.strip().partition("=")
        if name.strip().lower() == key:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            return value
    return None


def _decode_base64(body: bytes) -> bytes | None:
    """The bytes a base64 body encodes, or ``None`` if it is not base64 (i.e. raw bytes)."""
    compact = b"".join(body.split())
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _body_image_bytes(request: Request) -> bytes:
    """The image file bytes of an inference or upload body: multipart ``file``, base64, raw."""
    if request.content_type.lower().startswith("multipart/form-data"):
        part = parse_multipart(request.content_type, request.body).get("file")
        return part.data if part else b""
    decoded = _decode_base64(request.body)
    return decoded if decoded is not None else request.body


def _open_image(data: bytes) -> Image.Image:
    """Decode and EXIF-orient an image, so width/height are those of the image as viewed."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:  # Pillow's decode errors
        raise ImageDecodeError(str(error)) from error


#: The fake CLIP's projection: 64 fixed pseudo-random directions in the 16x12x3 thumbnail space.
_CLIP_DIMENSIONS = 64
_CLIP_PROJECTION: list[list[float]] = [
    [random.Random(f"clip-{row}").gauss(0.0, 1.0) for _ in range(16 * 12 * 3)] for row in range(_CLIP_DIMENSIONS)
]


def clip_embedding(image: Image.Image) -> list[float]:
    """The fake CLIP vector of an image: its 16x12 RGB thumbnail (0..1, mean removed) through a
    fixed seeded projection, normalised. Deterministic, and near for similar images."""
    thumb = image.convert("RGB").resize((16, 12), Image.Resampling.BOX)
    values = [channel / 255 for channel in thumb.tobytes()]
    mean = sum(values) / len(values)
    centred = [v - mean for v in values]
    vector = [sum(w * v for w, v in zip(row, centred)) for row in _CLIP_PROJECTION]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def _parse_ratio(raw: str | None, default: float, name: str) -> float:
    """A threshold given as percent (``40``) or fraction (``0.4``), as the inference server reads it."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _inference_error(400, f"Invalid value for {name}: {raw!r}") from None
    return value / 100 if value >= 1 else value


def _new_image_id() -> str:
    """A 20-character id like Roboflow's (e.g. ``5L3NfNHRHfZr06q6ojvv``); random, as clients
    must not be able to derive it."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def _stable_uuid(*parts: object) -> str:
    """A uuid-shaped id derived from ``parts``, so the same image gets the same detection ids."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def seeded_predictor(classes: Sequence[str]) -> PredictFn:
    """The default model: 0-6 detections drawn from a RNG seeded by sha256(image bytes).

    Deterministic per image so tests can rely on it, varied across images so policies see a
    spread: classes from ``classes`` (``class_id`` = index), confidence uniform in [0.05, 1.0],
    boxes of varied size wholly inside the image.
    """
    names = tuple(classes)

    def predict(image: Image.Image, image_bytes: bytes) -> list[dict[str, Any]]:
        if not names:
            return []
        rng = random.Random(hashlib.sha256(image_bytes).digest())
        width, height = image.size
        detections = []
        for _ in range(rng.randint(0, 6)):
            box_w = rng.randint(max(1, width // 20), max(1, width * 3 // 5))
            box_h = rng.randint(max(1, height // 20), max(1, height * 3 // 5))
            left = rng.randint(0, width - box_w)
            top = rng.randint(0, height - box_h)
            class_id = rng.randrange(len(names))
            detections.append(
                {
                    "x": left + box_w / 2,
                    "y": top + box_h / 2,
                    "width": float(box_w),
                    "height": float(box_h),
                    "confidence": rng.uniform(0.05, 1.0),
                    "class": names[class_id],
                    "class_id": class_id,
                }
            )
        return detections

    return predict


def _iou(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Intersection over union of two centre-format boxes."""
    ax0, ax1 = a["x"] - a["width"] / 2, a["x"] + a["width"] / 2
    ay0, ay1 = a["y"] - a["height"] / 2, a["y"] + a["height"] / 2
    bx0, bx1 = b["x"] - b["width"] / 2, b["x"] + b["width"] / 2
    by0, by1 = b["y"] - b["height"] / 2, b["y"] + b["height"] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def _class_nms(detections: list[dict[str, Any]], iou_threshold: float) -> list[dict[str, Any]]:
    """Greedy per-class NMS on confidence-sorted detections (what ``overlap`` controls)."""
    kept: list[dict[str, Any]] = []
    for candidate in sorted(detections, key=lambda d: d["confidence"], reverse=True):
        same_class = (k for k in kept if k["class"] == candidate["class"])
        if all(_iou(candidate, k) <= iou_threshold for k in same_class):
            kept.append(candidate)
    return kept


def _normalise_detection(
    raw: Mapping[str, Any], classes: Sequence[str], image_sha: str, index: int
) -> dict[str, Any]:
    """One detection in the real key order and types, with ``class_id``/``detection_id`` filled."""
    name = str(raw["class"])
    class_id = raw.get("class_id")
    if class_id is None:
        class_id = classes.index(name) if name in classes else -1
    return {
        "x": float(raw["x"]),
        "y": float(raw["y"]),
        "width": float(raw["width"]),
        "height": float(raw["height"]),
        "confidence": round(float(raw["confidence"]), 3),
        "class": name,
        "class_id": int(class_id),
        "detection_id": str(raw.get("detection_id") or _stable_uuid(image_sha, index)),
    }


def seeded_class_scores(classes: Sequence[str], multilabel: bool = False) -> PredictFn:
    """The default classifier: a score per class from a RNG seeded by sha256(image bytes).

    Single-label scores sum to 1 (a softmax's); multi-label ones are independent (sigmoids).
    Returns ``[{"class", "confidence"}, ...]`` in class order; ``class_id`` is the index.
    """
    names = tuple(classes)

    def predict(image: Image.Image, image_bytes: bytes) -> list[dict[str, Any]]:
        rng = random.Random(hashlib.sha256(image_bytes).digest())
        raw = [rng.random() ** (1 if multilabel else 3) for _ in names]
        total = sum(raw) if not multilabel and sum(raw) > 0 else 1.0
        return [{"class": name, "class_id": i, "confidence": value / total} for i, (name, value) in enumerate(zip(names, raw))]

    return predict


def _polygon(detection: Mapping[str, Any]) -> list[dict[str, float]]:
    """A hexagon inside the detection's box, in image pixels: a segmentation model's ``points``."""
    rng = random.Random(detection["detection_id"])
    x, y, w, h = detection["x"], detection["y"], detection["width"], detection["height"]
    points = []
    for k in range(6):
        angle, reach = 2 * math.pi * k / 6, 0.5 + 0.5 * rng.random()
        points.append({"x": round(x + math.cos(angle) * w / 2 * reach, 1), "y": round(y + math.sin(angle) * h / 2 * reach, 1)})
    return points


def _keypoints(detection: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """One keypoint per name inside the detection's box, as a pose model answers them."""
    rng = random.Random(detection["detection_id"])
    left, top = detection["x"] - detection["width"] / 2, detection["y"] - detection["height"] / 2
    return [
        {"x": round(left + detection["width"] * (i + 1) / (len(names) + 1), 1),
         "y": round(top + detection["height"] * rng.uniform(0.1, 0.9), 1),
         "confidence": round(rng.uniform(0.05, 1.0), 3), "class_id": i, "class": name}
        for i, name in enumerate(names)
    ]


def _box_rle(detection: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    """The detection's box as a real COCO RLE (pycocotools' compressed string, as Inference's
    ``serialise_rle_sv_detections`` sends it): a fake server must speak the format it fakes."""
    import numpy as np
    from pycocotools import mask as mask_utils

    mask = np.zeros((height, width), dtype=np.uint8, order="F")
    x0, y0 = max(0, int(detection["x"] - detection["width"] / 2)), max(0, int(detection["y"] - detection["height"] / 2))
    x1, y1 = min(width, int(detection["x"] + detection["width"] / 2) + 1), min(height, int(detection["y"] + detection["height"] / 2) + 1)
    mask[y0:y1, x0:x1] = 1
    encoded = mask_utils.encode(mask)
    return {"size": [height, width], "counts": encoded["counts"].decode("ascii")}


def workflow_answer(answer: Mapping[str, Any], *, rle: bool = False) -> dict[str, Any]:
    """A legacy-route answer (:meth:`FakeRoboflow.infer`) as a Workflow's output serialises it.

    Detections as ``serialise_sv_detections`` writes them (inference
    ``core_steps/common/serializers.py``): keys ``width, height, x, y, confidence, class_id,
    [points], class, detection_id, parent_id, [keypoints]``, and an ``image`` of ``{"width":
    null, "height": null}`` when there is no detection (the size travels with each detection
    there). ``rle``: masks as ``rle_mask`` ``{"size": [h, w], "counts": "..."}`` instead of
    ``points`` (``serialise_rle_sv_detections``). A classification answer keeps its shape, with
    the ``prediction_type``/``parent_id`` fields the model blocks add.
    """
    predictions = answer["predictions"]
    image = dict(answer["image"])
    if isinstance(predictions, dict) or "top" in answer:  # a classifier's answer
        kind = "classification"
        return {**{k: v for k, v in answer.items() if k not in ("time",)}, "prediction_type": kind,
                "parent_id": "image", "root_parent_id": "image"}
    detections = []
    for detection in predictions:
        item: dict[str, Any] = {key: detection[key] for key in ("width", "height", "x", "y", "confidence", "class_id")}
        if "points" in detection:
            if rle:
                item["rle_mask"] = _box_rle(detection, image["width"], image["height"])
            else:
                item["points"] = detection["points"]
        item["class"], item["detection_id"], item["parent_id"] = detection["class"], detection["detection_id"], "image"
        if "keypoints" in detection:
            item["keypoints"] = detection["keypoints"]
        detections.append(item)
    if not detections:
        image = {"width": None, "height": None}
    return {"image": image, "predictions": detections}


def _classification(raw: list[dict[str, Any]], model: Model, confidence: float) -> dict[str, Any]:
    """A classifier's answer fields: single-label ``predictions`` best first with ``top`` and
    ``confidence``; multi-label ``predictions`` by class with ``predicted_classes`` (the classes
    at or above the confidence threshold), as ``ClassificationInferenceResponse`` and
    ``MultiLabelClassificationInferenceResponse`` are."""
    scores = []
    for entry in raw:
        name = str(entry["class"])
        class_id = entry.get("class_id", model.classes.index(name) if name in model.classes else -1)
        scores.append({"class": name, "class_id": int(class_id), "confidence": round(float(entry["confidence"]), 4)})
    if model.task == "multi-label-classification":
        return {"predictions": {s["class"]: {"confidence": s["confidence"], "class_id": s["class_id"]} for s in scores},
                "predicted_classes": [s["class"] for s in scores if s["confidence"] >= confidence]}
    scores.sort(key=lambda s: s["confidence"], reverse=True)
    top = scores[0] if scores else {"class": "", "confidence": 0.0}
    return {"predictions": scores, "top": top["class"], "confidence": top["confidence"]}


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeRoboflow:
    """A loopback Roboflow: hosted inference, image upload and annotation save, with faults.

    Usage::

        with FakeRoboflow(api_key="rf_test_key", classes=["car", "person"], inference_latency=0.05) as rf:
            rf.add_model("vehicles", 3)
            rf.set_faults("upload", lose_response_every=2)
            ...  # point the client at rf.url
            assert len(rf.images("dest")) == 10
            assert rf.requests["upload"].faults["lose_response"] == 5

    All public methods are thread-safe and return copies, never live state.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        classes: Sequence[str] = DEFAULT_CLASSES,
        models: Iterable[str] = (),
        inference_latency: float = 0.0,
        upload_latency: float = 0.0,
        annotate_latency: float = 0.0,
        auto_create_projects: bool = True,
        reject_reannotation: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        clip: bool = True,
    ) -> None:
        self.api_key = api_key
        #: Whether ``/clip/embed_image`` exists (an Inference server started with CLIP).
        self.clip = clip
        self._clip_calls: list[dict[str, Any]] = []
        self.workspace = "test-workspace"
        self.classes = tuple(classes)
        #: Seconds slept per request on each route; may be changed while serving.
        self.latency: dict[str, float] = {
            "infer": float(inference_latency),
            "upload": float(upload_latency),
            "annotate": float(annotate_latency),
            "root": 0.0,
            "workspace": 0.0,
            "project": 0.0,
            "workflow": 0.0,
            "clip": 0.0,
        }
        self.auto_create_projects = auto_create_projects
        self.reject_reannotation = reject_reannotation
        #: Raw 200 bodies instead of the real answers (see :meth:`answer_uploads`).
        self._upload_answer: AnswerFn | None = None
        self._annotate_answer: AnswerFn | None = None
        self._project_answer: AnswerFn | None = None
        self._workflows: dict[tuple[str, str], Workflow] = {}
        self._workflow_calls: list[dict[str, Any]] = []
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._models: dict[tuple[str, str], Model] = {}
        self._projects: dict[str, Project] = {}
        self._faults: dict[str, _RouteFaults] = {route: _RouteFaults() for route in ROUTES}
        self._stats: dict[str, RouteStats] = {route: RouteStats() for route in ROUTES}
        self._connections: set[socket.socket] = set()
        self._connections_accepted = 0
        self._httpd: _Server | None = None
        self._bound_port: int | None = None
        self._thread: threading.Thread | None = None
        for model_id in models:
            project, _, version = model_id.partition("/")
            self.add_model(project, version)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FakeRoboflow":
        """Bind and serve on a background thread; returns ``self``."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self._host, self._port), _Handler, self)
        self._bound_port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll: keep close() fast
            name="fake-roboflow",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: wake sleeping handlers, stop accepting, drop open keep-alive connections.

        Dropping idle connections matters: a client's pooled connection would otherwise keep
        talking to a server that a test believes is gone.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeRoboflow":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port (still known after ``close()``, so a test can show it refuses)."""
        if self._bound_port is None:
            raise RuntimeError("the server was never started; call start() or use it as a context manager")
        return self._bound_port

    @property
    def url(self) -> str:
        """Base URL for both hosts: ``{url}/{project}/{version}`` and ``{url}/dataset/...``."""
        return f"http://{self._host}:{self.port}"

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far: lets tests check that keep-alive reuses them."""
        with self._lock:
            return self._connections_accepted

    # ---- configuration ---------------------------------------------------------------------

    def add_model(
        self,
        project: str,
        version: int | str,
        predict: PredictFn | None = None,
        classes: Sequence[str] | None = None,
        answer: AnswerFn | None = None,
        task: str = "object-detection",
        keypoints: Sequence[str] = DEFAULT_KEYPOINTS,
    ) -> None:
        """Serve ``POST /{project}/{version}``; replaces an existing model of that id.

        ``predict`` defaults to :func:`seeded_predictor` over ``classes`` (default: the
        server's), or :func:`seeded_class_scores` for a classifier. Its raw detections then get
        the server's confidence filter, class filter and NMS, as a real model's would. ``answer``
        (see :data:`AnswerFn`) replaces the whole answer for the images it chooses: what a
        broken or hostile server sends. ``task`` (one of :data:`TASKS`) shapes the answer and is
        the project's type in its metadata (``GET /{workspace}/{project}``); ``keypoints`` names
        a keypoint model's points.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        names = tuple(classes) if classes is not None else self.classes
        if predict is None:
            classifier = task in ("classification", "multi-label-classification")
            predict = seeded_class_scores(names, task == "multi-label-classification") if classifier else seeded_predictor(names)
        model = Model(project, str(version), predict, names, answer, task, tuple(keypoints))
        with self._lock:
            self._models[(model.project, model.version)] = model

    def answer_uploads(self, answer: AnswerFn | None) -> None:
        """Answer an upload whose image bytes ``answer`` chooses with ``answer(image_bytes)``
        verbatim as the 200 body, storing nothing (a hostile or broken API: 100,000 brackets, a
        non-JSON page); ``None`` restores the real answers. Counted like any upload request."""
        with self._lock:
            self._upload_answer = answer

    def answer_annotations(self, answer: AnswerFn | None) -> None:
        """Like :meth:`answer_uploads` for pre-labels: ``answer(image_id.encode())`` chooses,
        and the annotation is not stored."""
        with self._lock:
            self._annotate_answer = answer

    def answer_projects(self, answer: AnswerFn | None) -> None:
        """Like :meth:`answer_uploads` for the project route: ``answer(project_name.encode())``
        chooses (a malformed description: no ``type``, a type alpolicy does not know)."""
        with self._lock:
            self._project_answer = answer

    def add_workflow(self, workflow_id: str, run: WorkflowFn | None = None, *, workspace: str | None = None,
                     parameters: Mapping[str, Any] | None = None, image_inputs: Sequence[str] = ("image",)) -> None:
        """Serve the saved Workflow ``POST /{workspace}/workflows/{workflow_id}`` (and the legacy
        ``/infer/workflows/{workspace}/{workflow_id}``); ``workspace`` defaults to the server's.

        ``run`` (see :data:`WorkflowFn`) makes its outputs; by default one output ``predictions``
        holding the server's default detector's answer as a Workflow serialises it
        (:func:`workflow_answer`). ``parameters``: the declared inputs besides the images, name
        -> default (``None``: required); ``image_inputs``: the image inputs' names (each required).
        """
        if run is None:
            detector = Model("", "", seeded_predictor(self.classes), self.classes)
            run = self.model_workflow(detector)
        flow = Workflow(workspace or self.workspace, workflow_id, run, dict(parameters or {}), tuple(image_inputs))
        with self._lock:
            self._workflows[(flow.workspace, flow.workflow_id)] = flow

    def model_workflow(self, model: "Model | tuple[str, int | str]", output: str = "predictions", *,
                       rle: bool = False) -> WorkflowFn:
        """A Workflow running one model (a served ``(project, version)`` or a :class:`Model`) on its
        image, at the ``confidence`` input (a fraction, default 0.4), into the output ``output``."""

        def run(image: Image.Image, image_bytes: bytes, inputs: dict) -> dict:
            if isinstance(model, Model):
                chosen = model
            else:
                with self._lock:
                    chosen = self._models[(model[0], str(model[1]))]
            confidence = float(inputs.get("confidence", 0.4))
            return {output: workflow_answer(self._answer(chosen, image_bytes, confidence=confidence), rle=rle)}

        return run

    def workflow_calls(self) -> list[dict[str, Any]]:
        """Every Workflow request that reached a known Workflow, in order: ``workspace``,
        ``workflow_id``, ``body`` (the JSON body as sent, each base64 image value replaced by
        ``{"type", "sha256"}`` of the decoded bytes, ``api_key`` replaced by ``"<given>"``)."""
        with self._lock:
            return copy.deepcopy(self._workflow_calls)

    def add_project(self, name: str) -> None:
        """Create an upload project (needed when ``auto_create_projects`` is false)."""
        with self._lock:
            existing = self._projects.get(name)
            if existing is None:
                self._projects[name] = Project(name, explicit=True)
            else:
                existing.explicit = True

    def set_faults(self, route: str, **config: Any) -> FaultConfig:
        """Replace ``route``'s faults with ``FaultConfig(**config)``; restarts its "every Nth" count."""
        fault_config = FaultConfig(**config)
        with self._lock:
            self._faults[self._check_route(route)] = _RouteFaults(fault_config)
        return replace(fault_config)

    def clear_faults(self, route: str | None = None) -> None:
        """Remove the faults of ``route``, or of every route."""
        with self._lock:
            for name in ROUTES if route is None else (self._check_route(route),):
                self._faults[name] = _RouteFaults()

    def faults(self, route: str) -> FaultConfig:
        with self._lock:
            return replace(self._faults[self._check_route(route)].config)

    def reset(self) -> None:
        """Forget uploads, annotations, counters and faults; keep models, latency and projects
        created with :meth:`add_project` (emptied)."""
        with self._lock:
            self._projects = {
                name: Project(name, explicit=True) for name, p in self._projects.items() if p.explicit
            }
            self._faults = {route: _RouteFaults() for route in ROUTES}
            self._stats = {route: RouteStats() for route in ROUTES}
            self._workflow_calls = []
            self._clip_calls = []

    # ---- inspection ------------------------------------------------------------------------

    def images(self, project: str) -> list[dict[str, Any]]:
        """Images stored in ``project`` in upload order: ``id``, ``name``, ``sha256``, ``split``,
        ``batch``, ``tags``, ``metadata``, ``upload_count`` (posts of that content, duplicates
        included), ``size``, ``sequence_number``, ``sequence_size``, ``inference_id``."""
        with self._lock:
            stored = self._projects.get(project)
            return [image.to_dict() for image in stored.images.values()] if stored else []

    def image_bytes(self, project: str, image_id: str) -> bytes:
        """The exact bytes stored for an image (``KeyError`` if unknown)."""
        with self._lock:
            return self._projects[project].images[image_id].data

    def annotations(self, project: str) -> dict[str, list[dict[str, Any]]]:
        """Stored annotation calls per image id, in order. Each: ``kind``, ``classes`` (see
        :func:`_annotation_kind`), ``name``, ``prediction``,
        ``job_name``, ``overwrite``, ``add_to_dataset``, ``content_type``, ``annotation_file``
        (text as sent), ``annotation`` (it parsed as JSON, or ``None``), ``labelmap``, ``body``
        (the parsed JSON request body, or ``None`` for a text body). Calls answered 409 are not
        stored; they show in ``requests["annotate"].by_status``."""
        with self._lock:
            stored = self._projects.get(project)
            return copy.deepcopy(stored.annotations) if stored else {}

    @property
    def requests(self) -> dict[str, RouteStats]:
        """Counters per route (``infer``, ``upload``, ``annotate``, ``root``, ``workspace``, ``project``),
        with ``images``: per upload content (sha256) and per annotated image id, see :class:`ImageRequests`."""
        with self._lock:
            return {route: stats.copy() for route, stats in self._stats.items()}

    def state(self) -> dict[str, Any]:
        """Everything above as one JSON-able document (what ``GET /__state`` returns)."""
        with self._lock:
            projects = {
                name: {"images": self.images(name), "annotations": self.annotations(name)}
                for name in self._projects
            }
            return {
                "projects": projects,
                "requests": {route: asdict(stats) for route, stats in self._stats.items()},
                "faults": {route: asdict(f.config) for route, f in self._faults.items()},
                "models": [f"{m.project}/{m.version}" for m in self._models.values()],
                "workflows": [f"{w.workspace}/{w.workflow_id}" for w in self._workflows.values()],
                "latency": dict(self.latency),
                "connections_accepted": self._connections_accepted,
            }

    # ---- inference (also callable in process, to compute expected answers) -----------------

    def infer(
        self,
        project: str,
        version: int | str,
        image_bytes: bytes,
        *,
        confidence: float = 0.4,
        overlap: float = 0.3,
        classes: Sequence[str] | None = None,
        max_detections: int = 300,
    ) -> dict[str, Any]:
        """What ``POST /{project}/{version}`` answers for these image bytes (no auth, latency or
        faults; thresholds as fractions), in the shape of the model's task (see the module
        docstring). ``KeyError`` for an unknown model, ``ImageDecodeError`` for bytes that are
        not an image."""
        with self._lock:
            model = self._models[(project, str(version))]
        return self._answer(model, image_bytes, confidence=confidence, overlap=overlap, classes=classes,
                            max_detections=max_detections)

    @staticmethod
    def _answer(model: Model, image_bytes: bytes, *, confidence: float = 0.4, overlap: float = 0.3,
                classes: Sequence[str] | None = None, max_detections: int = 300) -> dict[str, Any]:
        started = time.perf_counter()
        image = _open_image(image_bytes)
        image_sha = hashlib.sha256(image_bytes).hexdigest()
        raw = model.predict(image, image_bytes)
        head = {"inference_id": str(uuid.uuid4()), "time": 0.0, "image": {"width": image.width, "height": image.height}}
        if model.task in ("classification", "multi-label-classification"):
            body = {**head, **_classification(raw, model, confidence)}
        elif model.task == "semantic-segmentation":
            body = {**head, "predictions": {"segmentation_mask": "", "class_map": dict(enumerate(model.classes))}}
        else:
            detections = [_normalise_detection(d, model.classes, image_sha, i) for i, d in enumerate(raw)]
            detections = [d for d in detections if d["confidence"] >= confidence]
            if classes:
                detections = [d for d in detections if d["class"] in classes]
            detections = _class_nms(detections, overlap)[:max_detections]
            for detection in detections:
                if model.task == "instance-segmentation":
                    detection["points"] = _polygon(detection)
                    detection["mask_format"] = "polygon"  # as InstanceSegmentationPrediction dumps it
                elif model.task == "keypoint-detection":
                    detection["keypoints"] = _keypoints(detection, model.keypoints)
            body = {**head, "predictions": detections}
        body["time"] = round(time.perf_counter() - started, 6)
        return body

    # ---- request dispatch (called from handler threads) ------------------------------------

    def _check_route(self, route: str) -> str:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
        return route

    def _admit(self, route: str, image_key: str | None) -> str | None:
        """Count an arriving request (for its route and its image) and pick its fault, atomically."""
        with self._lock:
            stats = self._stats[route]
            stats.total += 1
            per_image = stats.images.setdefault(image_key, ImageRequests()) if image_key else None
            if per_image is not None:
                per_image.requests += 1
            fault = self._faults[route].next_fault()
            if fault is not None:
                stats.faults[fault] = stats.faults.get(fault, 0) + 1
                if per_image is not None:
                    per_image.faults[fault] = per_image.faults.get(fault, 0) + 1
            return fault

    def _count_done(self, route: str, image_key: str | None) -> None:
        """The route handler ran for this request (its answer may still be lost)."""
        if image_key:
            with self._lock:
                self._stats[route].images.setdefault(image_key, ImageRequests()).done += 1

    def _count_status(self, route: str, status: int, image_key: str | None = None) -> None:
        with self._lock:
            stats = self._stats[route]
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
            if image_key:
                per_image = stats.images.setdefault(image_key, ImageRequests()).by_status
                per_image[status] = per_image.get(status, 0) + 1

    @staticmethod
    def _image_key(route: str, request: Request) -> str | None:
        """What names the image a request is about: an upload's content hash, an annotation's
        image id; ``None`` for other routes or a body with no readable image part."""
        if route == "annotate":
            return request.segments[3]
        if route != "upload":
            return None
        try:
            data = _body_image_bytes(request)
        except HttpError:  # a malformed multipart body: the handler answers 400
            return None
        return hashlib.sha256(data).hexdigest() if data else None

    def _fault_config(self, route: str) -> FaultConfig:
        with self._lock:
            return self._faults[route].config

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server closes so ``close()`` never waits on it."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(connection)
                self._connections_accepted += 1
            else:
                self._connections.discard(connection)

    def _route(self, request: Request) -> tuple[str, Callable[[Request], Response]] | None:
        """Which real route a request is for, if any."""
        seg = request.segments
        if not seg:
            return "root", self._handle_root
        if len(seg) == 3 and seg[0] == "dataset" and seg[2] == "upload":
            return "upload", self._handle_upload
        if len(seg) == 4 and seg[0] == "dataset" and seg[2] == "annotate":
            return "annotate", self._handle_annotate
        if seg[0].startswith("__"):
            return None
        if seg == ["clip", "embed_image"]:
            return "clip", self._handle_clip
        if (len(seg) == 3 and seg[1] == "workflows") or (len(seg) == 4 and seg[:2] == ["infer", "workflows"]):
            return "workflow", self._handle_workflow
        # /{a}/{b} is inference on the inference host (POST) and a project on the API host (GET).
        if len(seg) == 2 and request.method != "GET":
            return "infer", self._handle_infer
        if request.method == "GET" and seg[0] != "dataset" and len(seg) <= 2:
            return ("project", self._handle_project) if len(seg) == 2 else ("workspace", self._handle_workspace)
        return None

    def _control(self, request: Request) -> Response | None:
        """The reserved ``/__*`` paths for out-of-process tests; ``None`` if not one of them."""
        key = (request.method, "/".join(request.segments))
        if key == ("GET", "__state"):
            return Response(200, self.state())
        if key == ("POST", "__reset"):
            self.reset()
            return Response(200, {"success": True})
        if key == ("POST", "__faults"):
            return self._control_faults(request)
        return None

    def _control_faults(self, request: Request) -> Response:
        """``POST /__faults`` with ``{"upload": {"lose_response_every": 2}, "infer": null}``:
        each named route gets exactly that config (``null``/``{}`` clears it);
        ``{"clear": true}`` clears every route first."""
        try:
            document = json.loads(request.body or b"{}")
            if not isinstance(document, dict):
                raise ValueError("expected a JSON object")
            clear = bool(document.pop("clear", False))
            # Validate everything before applying anything, so a bad request changes nothing.
            configs = {
                self._check_route(route): FaultConfig(**(config or {})) for route, config in document.items()
            }
        except (ValueError, TypeError) as error:
            return Response(400, {"error": {"message": str(error), "type": "InvalidFaults"}})
        with self._lock:
            if clear:
                self.clear_faults()
            for route, config in configs.items():
                self._faults[route] = _RouteFaults(config)
            return Response(200, {route: asdict(f.config) for route, f in self._faults.items()})

    def _dispatch(self, handler: "_Handler", request: Request) -> None:
        """Route, inject faults, sleep, run the handler and answer (or deliberately not)."""
        control = self._control(request)
        if control is not None:
            handler.send_json(control)
            return
        matched = self._route(request)
        if matched is None:
            handler.send_json(
                Response(404, {"error": {"message": "Not found", "type": "GraphMethodException"}})
            )
            return
        route, route_handler = matched
        allowed = "GET" if route in GET_ROUTES else "POST"
        if request.method != allowed:
            handler.send_json(Response(405, {"message": "Method Not Allowed"}, {"Allow": allowed}))
            return
        image_key = self._image_key(route, request)
        fault = self._admit(route, image_key)
        early = self._early_fault_response(route, fault)
        if fault == "reset":
            handler.abort_connection()
            return
        if early is None:
            self._sleep(self.latency[route])
            early = self._run(route, route_handler, request)
            self._count_done(route, image_key)
        if fault == "lose_response":
            handler.abort_connection()
            return
        if fault == "slow":
            self._sleep(self._fault_config(route).slow_delay)
        self._count_status(route, early.status, image_key)
        handler.send_json(early)

    @staticmethod
    def _run(route: str, route_handler: Callable[[Request], Response], request: Request) -> Response:
        """Run a route handler; a bug in it (or in a test's ``predict``) answers 500 with the
        traceback on stderr instead of silently dropping the connection."""
        try:
            return route_handler(request)
        except HttpError as error:
            return error.response
        except Exception:
            traceback.print_exc()
            return _route_error(route, 500, "Internal error.", "InternalError")

    def _early_fault_response(self, route: str, fault: str | None) -> Response | None:
        """The answer of a fault that replaces the work (down, error, throttle), if any."""
        config = self._fault_config(route)
        if fault in ("down", "error"):
            status = config.error_status
            return self._custom_error(config, status) or _route_error(route, status, "Service Unavailable", "ServiceUnavailable")
        if fault == "throttle":
            response = self._custom_error(config, 429) or _route_error(route, 429, "Too Many Requests", "RateLimitException")
            seconds = config.retry_after
            if isinstance(seconds, str):
                response.headers["Retry-After"] = seconds
            else:
                response.headers["Retry-After"] = (
                    str(int(seconds)) if float(seconds).is_integer() else str(seconds)
                )
            return response
        return None

    @staticmethod
    def _custom_error(config: FaultConfig, status: int) -> Response | None:
        if config.error_body is None:
            return None
        if isinstance(config.error_body, str):
            return Response(status, config.error_body.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})
        return Response(status, config.error_body)

    # ---- route handlers --------------------------------------------------------------------

    def _handle_infer(self, request: Request) -> Response:
        project, version = request.segments
        if request.param("api_key") != self.api_key:
            raise _inference_error(401, _UNAUTHORIZED_INFERENCE)
        with self._lock:
            model = self._models.get((project, version))
        if model is None:
            raise _inference_error(404, _MODEL_NOT_FOUND)
        fmt = request.param("format", "json")
        if fmt != "json":
            raise _inference_error(501, "Visualization is not available on this server")
        if request.param("image"):
            raise _inference_error(
                400, "Image URLs are not fetched by this server; send the image in the body."
            )
        image_bytes = _body_image_bytes(request)
        if not image_bytes:
            raise _inference_error(400, "Image not found in request body.")
        if model.answer is not None:
            raw = model.answer(image_bytes)
            if raw is not None:
                return Response(200, raw, {"Content-Type": "application/json"})
        classes_param = request.param("classes")
        classes = [c.strip() for c in classes_param.split(",") if c.strip()] if classes_param else None
        try:
            max_detections = int(request.param("max_detections", "300") or 300)
        except ValueError:
            raise _inference_error(400, "Invalid value for max_detections") from None
        try:
            answer = self.infer(
                project,
                version,
                image_bytes,
                confidence=_parse_ratio(request.param("confidence"), 0.4, "confidence"),
                overlap=_parse_ratio(request.param("overlap"), 0.3, "overlap"),
                classes=classes,
                max_detections=max_detections,
            )
        except ImageDecodeError as error:
            raise _inference_error(400, f"Could not load input image. Cause: {error}") from None
        return Response(200, answer)

    def _handle_clip(self, request: Request) -> Response:
        """``POST /clip/embed_image``: Inference's ``clip_embed_image`` (see the module docstring)."""
        if not self.clip:
            raise HttpError(404, {"detail": "Not Found"})
        try:
            body = json.loads(request.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(422, {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]}) from None
        images = body.get("image") if isinstance(body, dict) else None
        images = images if isinstance(images, list) else [images]
        if not all(isinstance(i, dict) and i.get("type") == "base64" and isinstance(i.get("value"), str) for i in images):
            raise HttpError(422, {"detail": [{"type": "missing", "loc": ["body", "image"], "msg": "Field required"}]})
        if request.param("api_key") != self.api_key and body.get("api_key") != self.api_key:
            raise _inference_error(401, _UNAUTHORIZED_INFERENCE)
        vectors = []
        for item in images:
            data = _decode_base64(item["value"].encode("ascii", "replace"))
            try:
                vectors.append(clip_embedding(_open_image(data or b"")))
            except ImageDecodeError as error:
                raise _inference_error(400, f"Could not load input image. Cause: {error}") from None
        with self._lock:
            self._clip_calls.append({"query_key": request.param("api_key") == self.api_key,
                                     "body_key": body.get("api_key") == self.api_key,
                                     "clip_version_id": body.get("clip_version_id"), "images": len(images)})
        return Response(200, {"embeddings": vectors, "time": 0.001})

    def clip_calls(self) -> list[dict[str, Any]]:
        """What each ``/clip/embed_image`` request carried (whether the key was in the query and
        the body, ``clip_version_id``, how many images), in arrival order."""
        with self._lock:
            return copy.deepcopy(self._clip_calls)

    def _handle_workflow(self, request: Request) -> Response:
        """``POST /{workspace}/workflows/{workflow_id}``: run a saved Workflow, as the inference
        server's ``infer_from_predefined_workflow`` does. The body is validated first, as FastAPI
        does (422, ``{"detail": [...]}`` echoing the offending input: a missing ``inputs`` echoes
        the whole body, api key included, as the real server does), then the key (401), the
        Workflow (404), its declared inputs (400 ``RuntimeInputError``) and the image (400)."""
        seg = request.segments
        workspace, workflow_id = (seg[0], seg[2]) if seg[1] == "workflows" else (seg[2], seg[3])
        try:
            body = json.loads(request.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(422, {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error",
                                              "input": {}}]}) from None
        if not isinstance(body, dict):
            raise HttpError(422, {"detail": [{"type": "model_attributes_type", "loc": ["body"],
                                              "msg": "Input should be a valid dictionary or object to extract fields from",
                                              "input": body}]})
        if "inputs" not in body:
            raise HttpError(422, {"detail": [{"type": "missing", "loc": ["body", "inputs"], "msg": "Field required",
                                              "input": body}]})
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            raise HttpError(422, {"detail": [{"type": "dict_type", "loc": ["body", "inputs"],
                                              "msg": "Input should be a valid dictionary", "input": inputs}]})
        if body.get("api_key") != self.api_key:
            raise _inference_error(401, _UNAUTHORIZED_INFERENCE)
        with self._lock:
            flow = self._workflows.get((workspace, workflow_id))
        if flow is None:
            raise _inference_error(404, _MODEL_NOT_FOUND)
        images: dict[str, bytes] = {}
        recorded_inputs = dict(inputs)
        for name in flow.image_inputs:
            if name not in inputs:
                raise self._runtime_input_error(name, "WorkflowImage", "['image']")
            value = inputs[name]
            data = _decode_base64(str(value.get("value", "")).encode()) if isinstance(value, dict) else None
            if not isinstance(value, dict) or value.get("type") != "base64" or data is None:
                raise _inference_error(400, f"Could not load input image `{name}`: expected {{\"type\": \"base64\", \"value\": ...}}")
            images[name] = data
            recorded_inputs[name] = {"type": value["type"], "sha256": hashlib.sha256(data).hexdigest()}
        for name, default in flow.parameters.items():
            if default is None and name not in inputs:
                raise self._runtime_input_error(name, "WorkflowParameter", "['*']")
        with self._lock:
            self._workflow_calls.append({"workspace": workspace, "workflow_id": workflow_id,
                                         "body": {**body, "api_key": "<given>", "inputs": recorded_inputs}})
        first = images[flow.image_inputs[0]] if flow.image_inputs else b""
        try:
            image = _open_image(first) if flow.image_inputs else Image.new("RGB", (1, 1))
        except ImageDecodeError as error:
            raise _inference_error(400, f"Could not load input image. Cause: {error}") from None
        outputs = flow.run(image, first, {**{k: v for k, v in flow.parameters.items() if v is not None}, **inputs})
        return Response(200, {"outputs": [outputs], "profiler_trace": []})

    @staticmethod
    def _runtime_input_error(name: str, kind: str, kinds: str) -> HttpError:
        """The execution engine's answer to a declared input the request lacks."""
        return HttpError(400, {
            "message": f"Detected runtime parameter `{name}` defined as `{kind}` (of kind `{kinds}`), but value is not "
                       "provided.",
            "error_type": "RuntimeInputError", "context": "workflow_execution | runtime_input_validation",
            "inner_error_type": "RuntimeInputError", "inner_error_message": None,
        })

    def _handle_root(self, request: Request) -> Response:
        """``GET /?api_key=…``: the API root the SDK calls to check a key (``Roboflow.__init__``)."""
        self._check_api_key(request)
        return Response(200, {"welcome": "Welcome to the Roboflow API.", "workspace": self.workspace})

    def _handle_workspace(self, request: Request) -> Response:
        """``GET /{workspace}?api_key=…`` (``rfapi.get_workspace``): the workspace and its projects."""
        (workspace,) = request.segments
        self._check_api_key(request)
        self._check_workspace(workspace, request)
        with self._lock:
            projects = [self._project_json(project) for project in self._projects.values()]
        return Response(200, {"workspace": {"name": "Test Workspace", "url": self.workspace, "members": 1,
                                            "projects": projects}})

    def _handle_project(self, request: Request) -> Response:
        """``GET /{workspace}/{project}?api_key=…`` (``rfapi.get_project``, ``Workspace.project``).

        With ``auto_create_projects`` every project name exists (empty until its first upload, as
        that upload would create it); otherwise only projects added or uploaded to, and those of
        the models served (``project.type`` is then the model's task, see :attr:`Model.project_type`,
        and ``versions`` lists the model versions). :meth:`answer_projects` may replace the answer."""
        workspace, name = request.segments
        self._check_api_key(request)
        self._check_workspace(workspace, request)
        raw = self._raw_answer(self._project_answer, name.encode())
        if raw is not None:
            return raw
        with self._lock:
            models = [model for model in self._models.values() if model.project == name]
            project = self._projects.get(name) or (
                Project(name, explicit=False) if self.auto_create_projects or models else None)
            if project is None:
                raise _api_error(404, _missing_route_message(request), "GraphMethodException")
            return Response(200, {
                "workspace": {"name": "Test Workspace", "url": self.workspace, "members": 1},
                "project": self._project_json(project),
                "versions": [{"id": f"{self.workspace}/{name}/{model.version}", "name": name, "version": model.version,
                              "model": {"id": f"{name}/{model.version}"}} for model in models],
            })

    def _check_workspace(self, workspace: str, request: Request) -> None:
        if workspace != self.workspace:  # another workspace: the key cannot see it
            raise _api_error(404, _missing_route_message(request), "GraphMethodException")

    def _project_json(self, project: Project) -> dict[str, Any]:
        """A project as the REST API describes it (the fields ``roboflow.core.project.Project`` reads)."""
        splits: dict[str, int] = {}
        for image in project.images.values():
            splits[image.split] = splits.get(image.split, 0) + 1
        annotated = sum(1 for image_id in project.images if project.annotations.get(image_id))
        model = next((m for m in self._models.values() if m.project == project.name), None)
        kind, multilabel = model.project_type if model is not None else ("object-detection", False)
        described = {
            "id": f"{self.workspace}/{project.name}", "name": project.name, "type": kind,
            "created": 1764201600, "updated": 1764201600, "images": len(project.images),
            "unannotated": len(project.images) - annotated, "annotation": project.name, "public": False,
            "splits": splits, "colors": {}, "classes": {},
        }
        if kind == "classification":  # roboflow.core.project.Project reads project.get("multilabel", False)
            described["multilabel"] = multilabel
        return described

    def _check_api_key(self, request: Request) -> None:
        if request.param("api_key") != self.api_key:
            raise _api_error(
                401,
                "This API key does not exist (or has been revoked).",
                "OAuthException",
                "You may retrieve your API key via the Roboflow Dashboard.",
            )

    def _project(self, name: str, create: bool) -> Project:
        """The project ``name`` (call with the lock held); 404 in the REST API's words."""
        project = self._projects.get(name)
        if project is None and create and self.auto_create_projects:
            project = self._projects[name] = Project(name, explicit=False)
        if project is None:
            raise _api_error(
                404,
                f"Unsupported request. `POST /dataset/{name}` does not exist or cannot be loaded "
                "due to missing permissions.",
                "GraphMethodException",
            )
        return project

    def _handle_upload(self, request: Request) -> Response:
        project_name = request.segments[1]
        self._check_api_key(request)
        upload = self._read_upload(request)
        raw = self._raw_answer(self._upload_answer, upload.data)
        if raw is not None:
            return raw
        sha = hashlib.sha256(upload.data).hexdigest()
        with self._lock:
            project = self._project(project_name, create=True)
            existing_id = project.by_sha256.get(sha)
            if existing_id is not None:
                project.images[existing_id].upload_count += 1
                return Response(200, {"duplicate": True, "id": existing_id})
            image_id = _new_image_id()
            project.images[image_id] = replace(upload, id=image_id, sha256=sha)
            project.by_sha256[sha] = image_id
        return Response(200, {"success": True, "id": image_id})

    def _raw_answer(self, answer: AnswerFn | None, chooser: bytes) -> Response | None:
        with self._lock:
            chosen = answer(chooser) if answer is not None else None
        return None if chosen is None else Response(200, chosen, {"Content-Type": "application/json"})

    def _read_upload(self, request: Request) -> StoredImage:
        """Validate an upload request into a (not yet stored) image: fields beat query params."""
        if request.param("image") and not request.body:
            raise _api_error(
                400, "Could not fetch image URL: this server fetches nothing.", "InvalidImageException"
            )
        form: dict[str, FormPart] = {}
        if request.content_type.lower().startswith("multipart/form-data"):
            form = parse_multipart(request.content_type, request.body)
            data = form["file"].data if "file" in form else b""
        else:
            data = _body_image_bytes(request)
        if not data:
            raise _api_error(
                400, "No image found in the request (multipart field 'file').", "InvalidImageException"
            )
        try:
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()
        except Exception:  # Pillow raises many types for junk input
            raise _api_error(
                400, "Invalid image: the file could not be read as an image.", "InvalidImageException"
            ) from None

        def field_or_param(name: str) -> str | None:
            return form[name].text if name in form else request.param(name)

        file_part = form.get("file")
        name = field_or_param("name") or (file_part.filename if file_part else None) or "image.jpg"
        split = field_or_param("split") or "train"
        if split not in SPLITS:
            raise _api_error(
                400, f"Invalid split {split!r}: use train, valid or test.", "InvalidRequestException"
            )
        return StoredImage(
            id="",
            name=name,
            sha256="",
            split=split,
            batch=request.param("batch"),
            tags=request.params("tag"),
            metadata=self._read_metadata(field_or_param("metadata")),
            upload_count=1,
            data=data,
            sequence_number=request.param("sequence_number"),
            sequence_size=request.param("sequence_size"),
            inference_id=request.param("inference_id"),
        )

    @staticmethod
    def _read_metadata(raw: str | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            metadata = json.loads(raw)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise _api_error(400, "metadata must be a JSON object", "InvalidRequestException")
        return metadata

    def _handle_annotate(self, request: Request) -> Response:
        _, project_name, _, image_id = request.segments
        self._check_api_key(request)
        record = self._read_annotation(request)
        raw = self._raw_answer(self._annotate_answer, image_id.encode())
        if raw is not None:
            return raw
        with self._lock:
            project = self._project(project_name, create=False)
            if image_id not in project.images:
                raise _api_error(
                    404, f"Image {image_id} not found in project {project_name}.", "NotFoundException"
                )
            previous = project.annotations.setdefault(image_id, [])
            if previous and self.reject_reannotation and not record["overwrite"]:
                raise HttpError(
                    409,
                    {
                        "error": {
                            "message": "Image was already annotated.",
                            "type": "InvalidImageException",
                            "hint": _ALREADY_ANNOTATED_HINT,
                        }
                    },
                )
            previous.append(record)
        return Response(200, {"success": True})

    def _read_annotation(self, request: Request) -> dict[str, Any]:
        """Parse an annotate request (SDK JSON envelope or a raw text body) into a record."""
        name = request.param("name")
        if not name:
            raise _api_error(400, "Missing required query parameter: name", "InvalidRequestException")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _api_error(
                400, "The annotation must be UTF-8 text.", "InvalidAnnotationException"
            ) from None
        body: Any = None
        annotation_file, labelmap = text, None
        if "json" in request.content_type.lower():
            try:
                body = json.loads(text)
            except ValueError:
                raise _api_error(
                    400, "The request body is not valid JSON.", "InvalidRequestException"
                ) from None
            if isinstance(body, dict) and "annotationFile" in body:
                annotation_file, labelmap = body["annotationFile"], body.get("labelmap")
        if not isinstance(annotation_file, str) or not annotation_file.strip():
            raise _api_error(400, "The annotation file is empty.", "InvalidAnnotationException")
        try:
            parsed = json.loads(annotation_file)
        except ValueError:
            parsed = None
            if name.lower().endswith(".json"):
                raise _api_error(
                    400, f"Could not parse {name} as JSON.", "InvalidAnnotationException"
                ) from None
        kind, classes = _annotation_kind(name, annotation_file, parsed)
        add_to_dataset = request.param("addToDataset")
        return {
            "kind": kind,
            "classes": classes,
            "name": name,
            "prediction": request.flag("prediction"),
            "job_name": request.param("jobName"),
            "overwrite": request.flag("overwrite"),
            "add_to_dataset": None if add_to_dataset is None else add_to_dataset.lower() == "true",
            "content_type": request.content_type,
            "annotation_file": annotation_file,
            "annotation": parsed,
            "labelmap": labelmap,
            "body": body,
        }


def _annotation_kind(name: str, text: str, parsed: Any) -> tuple[str, list[str]]:
    """What an annotation file is, read as the API reads it by its name and content, and the
    classes it labels; a malformed one is a 400, as the API refuses a file it cannot read.

    * ``*.json`` holding ``predictions`` (a list): Roboflow inference JSON, the kind Roboflow
      Inference's active learning registers for every box task: ``roboflow-json``. Each entry
      needs a box (``x``, ``y``, ``width``, ``height`` numbers) and a ``class``; ``points`` (a
      polygon) at least three ``{x, y}``; ``keypoints`` each ``{x, y}`` and a ``class`` name.
      Any other JSON document is ``json`` (COCO, CreateML...: not read further here).
    * ``*.txt``: rows of numbers are a Darknet/YOLO file (``yolo``); one line of text is a
      classification's class name (``class``), what Inference registers for a classifier.
    * a name that is no file name (the SDK names a classification label by its text): a JSON
      list of class names is a multi-label label (``classes``, the SDK's ``_classes.csv``
      upload); the text itself a single class (``class``).
    """
    def refuse(message: str) -> HttpError:
        return _api_error(400, f"{name}: {message}", "InvalidAnnotationException")

    lowered = name.lower()
    if lowered.endswith(".json"):
        predictions = parsed.get("predictions") if isinstance(parsed, dict) else None
        if not isinstance(predictions, list):
            return "json", []
        for index, entry in enumerate(predictions):
            where = f"predictions[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
                raise refuse(f"{where} needs a class")
            if not all(_is_number(entry.get(key)) for key in ("x", "y", "width", "height")):
                raise refuse(f"{where} needs a box: x, y, width, height")
            points = entry.get("points")
            if points is not None and (not isinstance(points, list) or len(points) < 3
                                       or not all(_is_point(point) for point in points)):
                raise refuse(f"{where}.points must be a polygon of at least 3 {{x, y}}")
            keypoints = entry.get("keypoints")
            if keypoints is not None and (not isinstance(keypoints, list) or not all(
                    _is_point(point) and isinstance(point.get("class", ""), str) for point in keypoints)):
                raise refuse(f"{where}.keypoints must be a list of {{x, y, class}}")
        return "roboflow-json", list(dict.fromkeys(entry["class"] for entry in predictions))
    if lowered.endswith(".txt"):
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and all(_is_number_row(line) for line in lines):
            return "yolo", []
        if len(lines) != 1:
            raise refuse("a classification label is one class name")
        return "class", [lines[0].strip()]
    if isinstance(parsed, list):
        if not all(isinstance(label, str) and label for label in parsed):
            raise refuse("a multi-label label is a JSON list of class names")
        return "classes", list(parsed)
    if name == text:
        return "class", [text]
    return "other", []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _is_number_row(line: str) -> bool:
    """``0 0.5 0.5 0.2 0.2``: a Darknet/YOLO label row (a class index, then numbers)."""
    parts = line.split()
    try:
        int(parts[0]), [float(part) for part in parts[1:]]
    except (ValueError, IndexError):
        return False
    return len(parts) >= 3


def _is_point(point: Any) -> bool:
    return isinstance(point, dict) and _is_number(point.get("x")) and _is_number(point.get("y"))


class _Server(ThreadingHTTPServer):
    """One thread per connection; daemon threads so a hung client never blocks shutdown."""

    daemon_threads = True
    request_queue_size = 256  # listen() backlog: >= 64 clients may connect at once
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeRoboflow
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanishes mid-request (killed with SIGKILL in the resume tests) is
        expected here, not an error worth a traceback; anything else still prints one."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads whole requests, hands them to :class:`FakeRoboflow`, writes JSON answers."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server: _Server
    server_version = "FakeRoboflow/1.0"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle holds the body
        # until the client's delayed ACK (~40 ms per keep-alive request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, opened=False)

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        request = Request(
            self.command, segments, parse_qs(parts.query, keep_blank_values=True), self.headers, body
        )
        self.server.fake._dispatch(self, request)

    def _read_body(self) -> bytes:
        """The whole request body (Content-Length or chunked), so the next keep-alive request
        starts on a clean stream."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, response: Response) -> None:
        """The body as JSON, or as it is when it is bytes (with the response's own Content-Type)."""
        raw = isinstance(response.body, bytes)
        payload = response.body if raw else json.dumps(response.body).encode("utf-8")
        try:
            self.send_response(response.status)
            if not raw or "Content-Type" not in response.headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client went away (e.g. it timed out on a slow answer)
            self.close_connection = True

    def abort_connection(self) -> None:
        """Close with RST (``SO_LINGER`` 0) and no answer: the client sees a connection reset.

        ``rfile`` holds a reference to the socket, so it is closed first for ``close()`` to
        really close the descriptor now (``wfile`` is unbuffered and holds none).
        """
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.rfile.close()
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests assert on counters, and subprocess stdout must hold only READY."""


# --------------------------------------------------------------------------------------------
# Subprocess mode
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.roboflow", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--model", action="append", default=[], metavar="PROJECT/VERSION", help="repeatable")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated class names")
    parser.add_argument(
        "--project", action="append", default=[], help="pre-create an upload project; repeatable"
    )
    parser.add_argument("--inference-latency", type=float, default=0.0)
    parser.add_argument("--upload-latency", type=float, default=0.0)
    parser.add_argument("--annotate-latency", type=float, default=0.0)
    parser.add_argument("--no-auto-create-projects", action="store_true")
    parser.add_argument(
        "--allow-reannotation", action="store_true", help="store re-annotations instead of 409"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the only stdout line is ``READY <url>``."""
    args = _parse_args(argv)
    for model_id in args.model:
        if "/" not in model_id:
            raise SystemExit(f"--model needs PROJECT/VERSION, got {model_id!r}")
    server = FakeRoboflow(
        args.api_key,
        classes=[c.strip() for c in args.classes.split(",") if c.strip()],
        models=args.model,
        inference_latency=args.inference_latency,
        upload_latency=args.upload_latency,
        annotate_latency=args.annotate_latency,
        auto_create_projects=not args.no_auto_create_projects,
        reject_reannotation=not args.allow_reannotation,
        host=args.host,
        port=args.port,
    )
    for project in args.project:
        server.add_project(project)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print(f"READY {server.url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
