"""Tasks with pre-labels in a Label Studio project (``labelstudio:PROJECT_ID``, ``labelstudio:new``).

Each qualifying image becomes ONE task whose ``data`` holds the uploaded image's URL and the
policy's verdict (``alpolicy_score``, ``alpolicy_reasons``, ``alpolicy_tags``, ``alpolicy_policy``,
``alpolicy_key`` = the content sha256, ``source``), with ONE prediction holding every region
(percent coordinates of the original image; ``model_version`` = the model id, ``score`` = the
policy's priority score, or the highest confidence when the policy gives none).

Regions per task (:mod:`alpolicy.formats.labelstudio`), each into the control of the project's
labeling config that takes it: boxes into a ``RectangleLabels``; instance segmentation's polygons
into a ``PolygonLabels``; a pose model's keypoints into a ``KeyPointLabels`` (one region per
keypoint, labelled with its name), each linked by ``parentID`` to its instance's box in a
``RectangleLabels`` on the same Image (without one the keypoints go alone); a classifier's top
class (multi-label: its predicted classes) into a ``Choices`` (``choice="multiple"`` for a
multi-label model; a ``perRegion`` Choices classifies regions, not images, and is not used).

The requests (Label Studio 1.23 open source; ``label_studio/data_import/api.py``,
``data_manager``, ``jwt_auth``):

1. ``GET /api/projects/{id}/`` (``check``): the project's ``label_config``; alpolicy reads the
   task's control's ``name`` (the regions' ``from_name``), its ``toName`` (an ``Image`` tag:
   ``to_name``), that Image's ``value`` (``$image`` -> the task data key) and the ``Label``
   (``Choice``) values. 404 -> :class:`UsageError`; 401/403 -> :class:`AuthError`. The task is the
   backend's (``prepare_task``, before ``check``): a config without its control is a one-line
   :class:`UsageError` then, before any image. When the backend does not say (stored
   predictions), ``check`` only requires a control for some task, and each delivery's
   ``prediction.task`` picks its control: the first image of a task the config cannot take
   raises that UsageError from ``send``, which stops the run (the sends already under way end
   ``RetryableError``, pending): every image stays in the journal for the run after the config
   is fixed. A prediction with nothing to label (an empty answer reads as a detector's) goes to
   any control the config has.
2. ``GET /api/tasks/?project=ID&query={"filters": ... data.alpolicy_key equal KEY}``
   (``include=id,data``): is this content already a task? Then the send answers
   ``Receipt(duplicate=True)`` with that task's id. Every returned task's key is compared
   client-side too, and the pages are walked, so a server ignoring the filter costs time, never a
   wrong answer.
3. ``POST /api/projects/{id}/import?commit_to_project=false`` (multipart ``file``): stores the
   image and answers ``{"file_upload_ids": [N]}`` without creating a task;
   ``GET /api/import/file-upload/N`` answers ``{"file": "upload/{project}/<uuid8>-<name>"}``,
   served at ``/data/upload/{project}/<uuid8>-<name>`` (Django ``MEDIA_URL``, behind the URL's
   path prefix when Label Studio runs under one): the task's image URL, the very URL Label Studio
   gives tasks it makes from uploaded files. The destination then checkpoints ``upload:N``: a
   resumed send reuses the upload rather than storing the image again.
4. ``POST /api/projects/{id}/import?return_task_ids=true`` with ``[task]`` (JSON): creates the
   task and its prediction in one request (``{"task_ids": [T]}``); Label Studio validates the
   prediction against the config (unknown labels -> 400).

Exactly-once: the task appears atomically with its key (request 4), sends of one content are
serialised in this process, and request 2 runs before it. Request 4 is never blindly retried
(a lost response would make a second task): after a failure the destination asks request 2
again and creates the task only if it is still missing. An image upload retried after a lost
response may leave an unused file upload behind, never a second task.

Tasks are imported one at a time per destination (uploads stay concurrent): Label Studio on SQLite
(the default of ``label-studio start``) answers concurrent imports 201 but drops their predictions
(``prediction_count: 0``; seen with 1.23.2). A task found or made without its prediction gets it
through ``POST /api/predictions/`` (checked with ``GET /api/predictions/?task=ID`` after a failure).

Missing labels: a predicted class (or keypoint name) that is not a ``Label`` (``Choice``) of
its control fails the image (:class:`PermanentError`, naming them and suggesting
``--add-missing-labels``). With ``extra["add_missing_labels"]`` (and always for
``labelstudio:new``, where a classifier's every class is added) the destination adds them:
under a lock it re-reads the config, appends the elements and
``PATCH /api/projects/{id}/`` ``{"label_config": ...}``.

``labelstudio:new``: the destination learns the policy and the model only from the first
delivery, so the project is made then: titled ``alpolicy <policy>: <model>`` (Label Studio allows
50 characters), with the config of the task (the backend's, else that prediction's;
:func:`alpolicy.formats.labelstudio.config`, ``label``/``image`` as the ``folder:`` destination
writes it) listing that prediction's classes -- a classifier's every class, a pose model's
keypoint names too (its boxes in ``label_bbox``). A project of that exact title is reused, so a
rerun sends to the same project. A project alpolicy made never refuses a task: one whose config
lacks that task's control (made from empty answers, read as a detector's) gains it
(``polygon``, ``keypoints``, ``class``, ``classes`` when ``label`` is taken).

Tokens: ``DestinationOptions.api_key`` or ``LABEL_STUDIO_API_KEY``. A legacy token is sent as
``Authorization: Token <token>``; a personal access token (a JWT refresh token: it has two dots)
is exchanged at ``POST /api/token/refresh/`` for a short-lived access token, sent as
``Authorization: Bearer <access>`` and renewed before it expires and on a 401. Both are registered
with :mod:`alpolicy.io.secrets` and appear in no message.

Server: ``extra["labelstudio_url"]`` (the CLI's ``--labelstudio-url``), else
``LABEL_STUDIO_URL``, else ``http://localhost:8080``. A config with several controls of the
task's kind on Images: the first is used, or the one named ``extra["labelstudio_from_name"]``.

The journal knows this destination as ``labelstudio:<url>/projects/<id>`` (``.../projects/new``
for ``labelstudio:new``, whatever project that turns out to be: a later run with another policy
into ``labelstudio:new`` skips images the journal already sent; give it the project id instead).
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import os
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import requests

from ..errors import AuthError, ServiceError, UsageError
from ..formats import labelstudio as labelstudio_format
from ..formats.labelstudio import CONTROLS
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import AttemptFailed, HttpClient, clip, server_message
from ..io.images import ImageDecodeError, display_path, sha256_bytes
from ..io.jsonsafe import JsonError, response_json
from ..io.secrets import secret
from ..policy.prediction import (
    CLASSIFICATION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, MULTI_LABEL_CLASSIFICATION, OBJECT_DETECTION, TASKS,
    Prediction,
)
from ..registry import DestinationSpec
from . import Delivery, Destination, DestinationOptions, PermanentError, Receipt, RetryableError

log = logging.getLogger("alpolicy.labelstudio")

API_KEY_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
DEFAULT_URL = "http://localhost:8080"
NEW = "new"
KEY_FIELD = "alpolicy_key"
TITLE_MAX = 50  # Label Studio's PROJECT_TITLE_MAX_LEN
PAGE_SIZE = 100
#: Renew a personal access token's access token this long before it expires.
ACCESS_MARGIN = 30.0

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STRIPES = 64


#: Most tasks created by one import request.
MAX_IMPORT_BATCH = 50


@dataclass
class _PendingTask:
    """A task waiting for a batched import, and what became of it."""

    task: dict[str, Any]
    key: str
    result: tuple[int, int | None] | None = None
    error: BaseException | None = None
    done: bool = False


class LabelStudioDestination(Destination):
    """Thread-safe: sends of one content are serialised (striped locks), config changes under a lock."""

    def __init__(self, target: str, options: DestinationOptions) -> None:
        target = target.strip().strip("/")
        extra = options.extra or {}
        if target == NEW:
            self.project_id: int | None = None
        elif target.isdigit() and int(target) > 0:
            self.project_id = int(target)
        else:
            raise UsageError(
                f"labelstudio destination {target!r} should be a project id or 'new', e.g. labelstudio:3 or labelstudio:new"
            )
        self.create_project = self.project_id is None
        self.url = checks.configured_url(extra.get("labelstudio_url"), "labelstudio_url", URL_ENV, DEFAULT_URL,
                                         secret="API token", allow_insecure_http=options.allow_insecure_http)
        self.name = f"labelstudio:{self.url}/projects/{target}"
        self.add_missing_labels = bool(extra.get("add_missing_labels")) or self.create_project
        self.preferred_control = extra.get("labelstudio_from_name")
        token = options.api_key or os.environ.get(API_KEY_ENV)
        if not token:
            raise UsageError(f"sending to Label Studio needs an API token: set {API_KEY_ENV}")
        self.client = HttpClient(timeout=options.timeout, retry=options.retry_policy(), service="Label Studio API")
        self.credentials = _Credentials(token.strip(), self.url, self.client)
        #: The config last used (for the task of the last delivery), for diagnostics and tests.
        self.config: LabelConfig | None = None
        #: The model's task when the backend says (:meth:`prepare_task`), else each delivery's.
        self.task: str | None = None
        self._xml: str | None = None  # the project's labeling config, as last read
        self._configs: dict[str, LabelConfig] = {}  # its control per task, parsed from _xml
        self._no_control: dict[str, UsageError] = {}  # tasks the project's config has no control for
        self._lock = threading.Lock()  # the project (labelstudio:new) and its labeling config
        self._import_lock = threading.Lock()  # one task import at a time (see _create_task)
        self._queue_lock = threading.Lock()
        self._queue: list[_PendingTask] = []  # tasks waiting for the next batched import
        #: Import requests made (each may create many tasks): diagnostics and tests.
        self.import_requests = 0
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))

    # -- contract ----------------------------------------------------------------------------

    def check(self) -> None:
        """Read the project's labeling config (or, for ``new``, prove the token works): it must
        have the control the model's task needs (:meth:`prepare_task`), or, when the task is not
        known yet, a control for some task (each delivery's task is checked as it comes)."""
        if self.project_id is None:
            self._request("GET", "/api/current-user/whoami", what="checking the API token")
            return
        self._read_project(self._project())
        assert self._xml is not None
        if self.task is not None:
            self.config = self._config_for_task(self.task)
        elif not LabelConfig.tasks(self._xml, self._where(), self.preferred_control):
            raise UsageError(
                f"{self._where()}: its labeling config has no RectangleLabels, PolygonLabels, KeyPointLabels or "
                "Choices control on an Image; alpolicy needs one for its pre-labels"
            )

    def prepare_task(self, task: str) -> None:
        """The backend knows its model's task: :meth:`check` then requires its control."""
        if task in TASKS:
            self.task = task

    #: Both checks only read: a dry run makes them too.
    check_read_only = check

    def send(self, delivery: Delivery) -> Receipt:
        key = delivery.key
        if not isinstance(key, str) or not _SHA256.match(key):
            raise PermanentError(f"delivery key {key!r} is not a sha256 hex digest of the image")
        config = self._config_for(delivery)
        with self._stripes[int(key[:8], 16) % _STRIPES]:
            existing = self._find_task(key)
            if existing is not None:
                task_id, predictions = existing
                if not predictions:  # made by an import that lost its prediction (see _create_task)
                    self._add_prediction(task_id, self._task(delivery, config, "")["predictions"][0])
                return Receipt(str(task_id), url=self._task_url(task_id), duplicate=True)
            image_url = self._upload(delivery)
            task = self._task(delivery, config, image_url)
            task_id, predictions = self._create_task(task, key)
            if not predictions:
                self._add_prediction(task_id, task["predictions"][0])
        return Receipt(str(task_id), url=self._task_url(task_id))

    def close(self) -> None:
        self.client.close()

    # -- the project and its labeling config -------------------------------------------------

    def _where(self) -> str:
        return f"Label Studio project {self.project_id}"

    def _project(self) -> dict[str, Any]:
        response = self._request("GET", f"/api/projects/{self.project_id}/", what=f"reading project {self.project_id}")
        if response.status_code == 404:
            raise UsageError(
                f"Label Studio project {self.project_id} does not exist at {self.url} (or this token cannot see it)"
            )
        return self._json(response, f"reading project {self.project_id}")

    def _read_project(self, project: dict[str, Any]) -> str:
        """Keep the project's labeling config (the per-task controls are parsed from it on demand)."""
        xml = project.get("label_config")
        if not isinstance(xml, str) or not xml.strip():
            raise UsageError(f"Label Studio project {self.project_id} has no labeling config")
        self._xml, self._configs, self._no_control = xml, {}, {}
        return xml

    def _task_of(self, prediction: Prediction) -> str:
        """The task whose control a delivery's regions go to: its prediction's; for a prediction
        with nothing to label (no region: any control takes it) the backend's, else one the
        project's config has -- an empty answer reads as a detector's, whatever the model."""
        if prediction.detections or prediction.class_scores:
            return prediction.task
        if self.task is not None:
            return self.task
        if self._xml is None:
            return prediction.task
        supported = LabelConfig.tasks(self._xml, self._where(), self.preferred_control)
        return prediction.task if prediction.task in supported or not supported else supported[0]

    def _config_for_task(self, task: str) -> "LabelConfig":
        """The project's control for ``task``. A project alpolicy made (``labelstudio:new``) that
        lacks it gains it; the user's own project without it is a :class:`UsageError`: every
        image of this model would fail, so the run stops (and sends them once the config has it)."""
        config = self._configs.get(task)
        if config is not None:
            return config
        with self._lock:
            config = self._configs.get(task)
            if config is not None:
                return config
            refused = self._no_control.get(task)
            if refused is not None:  # said once (it stops the run); the sends already under way stay pending
                raise RetryableError(f"not sent: {refused}")
            if self._xml is None:
                self._read_project(self._project())
            assert self._xml is not None
            try:
                config = LabelConfig.parse(self._xml, self._where(), self.preferred_control, task)
            except _NoControl as error:
                if not self.create_project:
                    self._no_control[task] = error
                    raise
                config = self._add_control(task)
            self._configs[task] = config
            return config

    def _add_control(self, task: str) -> "LabelConfig":
        """Append ``task``'s control (without labels: they are added as they are predicted) to the
        config of the project alpolicy made; called under ``_lock``."""
        xml = self._read_project(self._project())  # read again: someone may have edited it
        where = self._where()
        try:
            return LabelConfig.parse(xml, where, self.preferred_control, task)
        except _NoControl:
            pass
        root = ET.fromstring(xml)
        images = [el for el in root.iter() if _tag(el) == "image" and (el.get("value") or "").startswith("$") and el.get("name")]
        if not images:
            raise UsageError(f"{where}: its labeling config has no Image taking its URL from a task field ($name)")
        to_name = images[0].get("name") or "image"
        taken = {el.get("name") for el in root.iter() if el.get("name")}
        name = _free_name(taken, "label", _CONTROL_NAMES[task])
        boxes = task == KEYPOINT_DETECTION and not any(  # a pose model's boxes: a RectangleLabels there already?
            _tag(el) == "rectanglelabels" and to_name in (el.get("toName") or "").split(",") for el in root.iter())
        snippet = labelstudio_format.controls([], name, to_name, task=task, with_boxes=boxes,
                                              box_name=_free_name(taken | {name}, labelstudio_format.box_control(name)))
        self._patch_config(with_controls(xml, snippet), f"adding a {CONTROLS[task]} control for {_MODEL[task]}")
        log.info("added a %s control %r to the labeling config of Label Studio project %s", CONTROLS[task], name, self.project_id)
        assert self._xml is not None
        return LabelConfig.parse(self._xml, where, self.preferred_control, task)

    def _patch_config(self, xml: str, what: str) -> None:
        """``PATCH /api/projects/{id}/ {"label_config": xml}``; keeps what Label Studio stored."""
        response = self._request("PATCH", f"/api/projects/{self.project_id}/", what=what, json={"label_config": xml})
        if response.status_code != 200:
            raise PermanentError(
                f"Label Studio refused {what} of project {self.project_id} (HTTP {response.status_code}): {server_message(response)}"
            )
        self._read_project(self._json(response, what))

    def _config_for(self, delivery: Delivery) -> "LabelConfig":
        if self.project_id is None:
            self._ensure_project(delivery)
        prediction = delivery.prediction
        task = self._task_of(prediction)
        config = self._config_for_task(task)
        self.config = config
        needed = _needed(prediction, config)
        missing = {control: config.missing(labels, control) for control, labels in needed.items()}
        missing = {control: names for control, names in missing.items() if names}
        if not missing:
            return config
        if not self.add_missing_labels:
            control, names = next(iter(missing.items()))
            noun = ("keypoint", "keypoints") if task == KEYPOINT_DETECTION and control == config.from_name else ("class", "classes")
            tag = CONTROLS[task] if control == config.from_name else "RectangleLabels"
            raise PermanentError(
                f"{_plural(names, *noun)} {', '.join(map(repr, names))} "
                f"{'is' if len(names) == 1 else 'are'} not {'a choice' if tag == 'Choices' else 'a label'} of the {tag} {control!r} "
                f"of Label Studio project {self.project_id}: add {'it' if len(names) == 1 else 'them'} "
                "to the labeling config, or run with --add-missing-labels"
            )
        if self.create_project and prediction.is_classification:  # the choices a labeler may pick: every class
            missing[config.from_name] = list(dict.fromkeys(
                [*missing.get(config.from_name, []), *config.missing([c["class"] for c in prediction.class_scores])]))
        return self._add_labels(task, missing)

    def _add_labels(self, task: str, additions: dict[str, list[str]]) -> "LabelConfig":
        """Append the missing labels to the live config's controls (read again: someone may have edited it)."""
        with self._lock:
            self._read_project(self._project())
            assert self._xml is not None
            config = LabelConfig.parse(self._xml, self._where(), self.preferred_control, task)
            added: list[str] = []
            for control, names in additions.items():
                missing = config.missing(names, control)
                if missing:
                    config = dataclasses.replace(config, xml=config.with_labels(missing, control))
                    added.extend(missing)
            if added:
                self._patch_config(config.xml, "adding labels to the labeling config")
                assert self._xml is not None
                config = LabelConfig.parse(self._xml, self._where(), self.preferred_control, task)
                log.info("added %s to the labeling config of Label Studio project %s", ", ".join(added), self.project_id)
            self._configs = {task: config}
            self.config = config
            return config

    def prepare_run(self, policy: str | None, model: str | None) -> None:
        """Before the run (``labelstudio:new``): name the journal's destination after the project
        this policy and model will use, so a run with another policy or model -- another
        project -- does not take images sent to this one for already sent."""
        if self.create_project and policy and model:
            self.name = f"labelstudio:{self.url}/projects/new/{project_title(policy, model)}"

    def _ensure_project(self, delivery: Delivery) -> None:
        """``labelstudio:new``: find the project titled after the policy and model, or make it,
        its config built for the task (the backend's, else the first delivery's)."""
        with self._lock:
            if self.project_id is not None:
                return
            prediction = delivery.prediction
            policy = str(delivery.metadata.get("alpolicy_policy") or "policy")
            model = str(prediction.model_id or delivery.metadata.get("model") or "model")
            title = project_title(policy, model)
            project = self._find_project(title)
            if project is None:
                task = prediction.task if prediction.detections or prediction.class_scores else (self.task or prediction.task)
                project = self._create_project(title, policy, model, _new_config(prediction, task))
                log.info("created Label Studio project %s %r: send to it again with labelstudio:%s", project["id"], title, project["id"])
            else:
                log.info("using Label Studio project %s %r", project["id"], title)
            self.project_id = int(project["id"])
            self._read_project(project)

    def _find_project(self, title: str) -> dict[str, Any] | None:
        page = 1
        while True:
            response = self._request(
                "GET", "/api/projects/", what="looking up the project",
                params={"title": title, "page": page, "page_size": PAGE_SIZE},
            )
            if response.status_code == 404:  # past the last page
                return None
            body = self._json(response, "looking up the project")
            results = body.get("results", []) if isinstance(body, dict) else body
            for project in results:
                if isinstance(project, dict) and project.get("title") == title:
                    return project
            if not isinstance(body, dict) or not body.get("next"):
                return None
            page += 1

    def _create_project(self, title: str, policy: str, model: str, label_config: str) -> dict[str, Any]:
        document = {
            "title": title,
            "description": f"Pre-labelled by alpolicy: policy {policy}, model {model}",
            "label_config": label_config,
        }

        def create() -> requests.Response:
            return self._request("POST", "/api/projects/", what="creating the project", once=True, json=document)

        def made() -> dict[str, Any] | None:
            return self._find_project(title)

        response, found = self._once(create, made, "creating the project")
        if found is not None:
            return found
        assert response is not None
        if response.status_code != 201:
            raise UsageError(f"Label Studio refused to create the project {title!r} (HTTP {response.status_code}): {server_message(response)}")
        return self._json(response, "creating the project")

    # -- tasks -------------------------------------------------------------------------------

    def _find_task(self, key: str) -> tuple[int, int] | None:
        """This project's task whose ``data.alpolicy_key`` is ``key``, if any: its id and prediction count."""
        query = json.dumps({
            "filters": {
                "conjunction": "and",
                "items": [{"filter": f"filter:tasks:data.{KEY_FIELD}", "operator": "equal", "type": "String", "value": key}],
            },
        }, separators=(",", ":"))
        page, seen = 1, 0
        while True:
            response = self._request(
                "GET", "/api/tasks/", what="looking for the task",
                params={"project": self.project_id, "query": query, "fields": "task_only", "include": "id,data,total_predictions",
                        "page": page, "page_size": PAGE_SIZE},
            )
            if response.status_code == 404 and page > 1:
                return None
            body = self._json(response, "looking for the task")
            tasks = body.get("tasks") if isinstance(body, dict) else None
            if not isinstance(tasks, list):
                raise PermanentError(f"unexpected answer from Label Studio while looking for the task: {clip(body, 200)}")
            for task in tasks:
                data = task.get("data") if isinstance(task, dict) else None
                if isinstance(data, dict) and data.get(KEY_FIELD) == key:
                    return int(task["id"]), int(task.get("total_predictions") or 0)
            seen += len(tasks)
            if not tasks or seen >= int(body.get("total") or 0):
                return None
            page += 1

    def _upload(self, delivery: Delivery) -> str:
        """The URL of the stored image: the checkpointed upload when it is still there, else a new one."""
        upload_id = _upload_id(delivery.remote_id)
        if upload_id is not None:
            stored = self._file_upload(upload_id, expected_size=delivery.image.size)
            if stored is not None:
                return self._media_url(stored)
        try:
            content = delivery.image.read_bytes()
        except ImageDecodeError as error:
            raise PermanentError(str(error)) from None
        if sha256_bytes(content) != delivery.key:
            raise RetryableError(f"{delivery.image.path} changed while it was being sent")
        name = display_path(delivery.image.name)  # a name that is not UTF-8 cannot go in a form
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = self._request(
            "POST", f"/api/projects/{self.project_id}/import", what="uploading the image",
            params={"commit_to_project": "false"}, files={"file": (name, content, mime)},
        )
        if response.status_code != 201:
            raise self._refused(response, "uploading the image")
        ids = self._json(response, "uploading the image").get("file_upload_ids")
        if not isinstance(ids, list) or len(ids) != 1:
            raise PermanentError(f"Label Studio did not store {name} as one file (file_upload_ids: {ids!r})")
        upload_id = int(ids[0])
        delivery.checkpoint(f"upload:{upload_id}")
        stored = self._file_upload(upload_id)
        if stored is None:
            raise RetryableError(f"Label Studio lost the file upload {upload_id} of {name}")
        return self._media_url(stored)

    def _file_upload(self, upload_id: int, expected_size: int | None = None) -> str | None:
        """The stored name (``upload/<project>/<uuid8>-<name>``) of a file upload of this project."""
        response = self._request("GET", f"/api/import/file-upload/{upload_id}", what="reading the file upload")
        if response.status_code == 404:
            return None
        body = self._json(response, "reading the file upload")
        stored = body.get("file")
        if not isinstance(stored, str) or not stored.startswith(f"upload/{self.project_id}/"):
            return None
        if expected_size is not None and body.get("size") not in (None, expected_size):
            return None
        return stored

    def _media_url(self, stored: str) -> str:
        prefix = urllib.parse.urlsplit(self.url).path.rstrip("/")
        return f"{prefix}/data/{urllib.parse.quote(stored)}"

    def _task(self, delivery: Delivery, config: "LabelConfig", image_url: str) -> dict[str, Any]:
        prediction, decision = delivery.prediction, delivery.decision
        task = labelstudio_format.task(
            prediction, "", config.from_name, config.to_name,
            box_name=config.box_name, with_boxes=config.box_name is not None, id_seed=f"{delivery.key}/{display_path(delivery.image.name)}", score=decision.score,
            reasons=list(decision.reasons), tags=list(delivery.tags),
            source=delivery.image.source,
        )
        built = task["data"]
        data: dict[str, Any] = {config.image_key: image_url}
        for field in ("alpolicy_score", "alpolicy_reasons", "alpolicy_tags"):
            data[field] = built[field]
        if delivery.metadata.get("alpolicy_policy"):
            data["alpolicy_policy"] = delivery.metadata["alpolicy_policy"]
        data[KEY_FIELD] = delivery.key
        data["source"] = built["source"]
        return {"data": data, "predictions": task["predictions"]}

    def _create_task(self, task: dict[str, Any], key: str) -> tuple[int, int | None]:
        """The new task's id and how many predictions Label Studio stored with it.

        Imports are batched by group commit: each sender queues its task, and whichever sender
        holds the import lock imports everything queued (up to ``MAX_IMPORT_BATCH`` tasks) in one
        request. One import at a time also matters for correctness: Label Studio on SQLite (what
        ``label-studio start`` runs by default) answers *concurrent* imports 201 but drops their
        predictions (seen with 1.23.2); the caller re-adds a dropped prediction.
        """
        entry = _PendingTask(task, key)
        with self._queue_lock:
            self._queue.append(entry)
        while not entry.done:
            with self._import_lock:
                if entry.done:
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_IMPORT_BATCH], self._queue[MAX_IMPORT_BATCH:]
                if batch:
                    self._import_batch(batch)
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    def _import_batch(self, batch: list["_PendingTask"]) -> None:
        """Import queued tasks in one request, exactly once each; resolves every entry of ``batch``."""
        try:
            self._import_pending(list(batch))
        except BaseException as error:  # every waiting sender learns why
            for entry in batch:
                if not entry.done:
                    entry.error, entry.done = error, True
            if not isinstance(error, Exception):
                raise

    def _import_pending(self, pending: list["_PendingTask"]) -> None:
        def attempt() -> requests.Response | None:
            nonlocal pending
            try:
                return self._request(
                    "POST", f"/api/projects/{self.project_id}/import", what="creating the tasks", once=True,
                    params={"return_task_ids": "true"}, json=[entry.task for entry in pending],
                )
            except AttemptFailed:  # no answer, or a 5xx: some tasks may exist anyway
                pending = [entry for entry in pending if not self._resolve_if_found(entry)]
                if not pending:
                    return None
                raise

        try:
            response = self.client.with_retries(attempt, what="creating the tasks", exhausted=RetryableError)
        except RetryableError as error:
            for entry in pending:
                entry.error, entry.done = error, True
            return
        if response is None:  # every task turned out to exist
            return
        self.import_requests += 1
        if response.status_code == 404:
            raise UsageError(f"Label Studio project {self.project_id} no longer exists at {self.url}")
        if response.status_code != 201:
            if len(pending) > 1:  # one bad task must not fail the others: import them one by one
                for entry in pending:
                    self._import_batch([entry])
                return
            raise self._refused(response, "creating the task")
        self._resolve_created(pending, self._json(response, "creating the tasks"))

    def _resolve_if_found(self, entry: "_PendingTask") -> bool:
        found = self._find_task(entry.key)
        if found is not None:
            entry.result, entry.done = found, True
        return found is not None

    def _resolve_created(self, pending: list["_PendingTask"], body: Any) -> None:
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if isinstance(ids, list) and len(ids) == len(pending):
            stored = body.get("prediction_count")
            every_prediction_kept = isinstance(stored, int) and stored == len(pending)
            for entry, task_id in zip(pending, ids):
                if every_prediction_kept:
                    entry.result, entry.done = (int(task_id), 1), True
                elif not self._resolve_if_found(entry):  # read each task's own prediction count
                    entry.result, entry.done = (int(task_id), None), True
            return
        # An asynchronous import (Label Studio Enterprise answers {"import": id}): wait for the tasks.
        for _ in range(30):
            pending = [entry for entry in pending if not self._resolve_if_found(entry)]
            if not pending:
                return
            time.sleep(1.0)
        error = RetryableError("Label Studio accepted the tasks but they did not appear within 30 s")
        for entry in pending:
            entry.error, entry.done = error, True

    def _add_prediction(self, task_id: int, prediction: dict[str, Any]) -> None:
        """``POST /api/predictions/`` for a task that has none (checked again after a lost answer)."""
        def create() -> requests.Response:
            return self._request(
                "POST", "/api/predictions/", what="adding the prediction", once=True,
                json={"task": task_id, **prediction},
            )

        def made() -> bool | None:
            response = self._request("GET", "/api/predictions/", what="reading the predictions", params={"task": task_id})
            body = self._json(response, "reading the predictions")
            return True if isinstance(body, list) and body else None

        response, found = self._once(create, made, "adding the prediction")
        if found is None and response is not None and response.status_code != 201:
            raise self._refused(response, f"adding the prediction to task {task_id}")
        log.info("re-added the prediction Label Studio dropped from task %s", task_id)

    def _once(self, create: Callable[[], requests.Response], made: Callable[[], Any], what: str) -> tuple[requests.Response | None, Any]:
        """Run a non-idempotent request with the client's retries; after a failed attempt, ask
        ``made()`` whether it took effect anyway before trying again.

        Returns ``(response, None)`` when the request was answered (any status), or
        ``(None, found)`` when an unanswered attempt turned out to have succeeded.
        """
        def attempt() -> tuple[requests.Response | None, Any]:
            try:
                return create(), None
            except AttemptFailed:  # no answer, or a 5xx: it may have been done anyway
                found = made()
                if found is not None:
                    return None, found
                raise

        return self.client.with_retries(attempt, what=what, exhausted=RetryableError)

    def _task_url(self, task_id: int) -> str:
        return f"{self.url}/projects/{self.project_id}/data?task={task_id}"

    # -- HTTP --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, what: str, once: bool = False, **kwargs: Any) -> requests.Response:
        """A request with the token, retried -- or with ``once``, a single attempt (see :meth:`_once`);
        a refused access token is renewed once, then AuthError."""
        send = self.client.attempt if once else self.client.request
        for attempt in (1, 2):
            authorization = self.credentials.authorization()
            response = send(
                method, f"{self.url}{path}", what=what, ok_statuses=(401, 403),
                headers={"Authorization": authorization}, **kwargs,
            )
            if response.status_code == 401 and attempt == 1 and self.credentials.renewable:
                self.credentials.expire(authorization)
                continue
            if response.status_code in (401, 403):
                raise AuthError(
                    f"Label Studio at {self.url} refused the {self.credentials.kind} during {what} "
                    f"(HTTP {response.status_code}): {server_message(response)}; check {API_KEY_ENV}"
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, response: requests.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise self._refused(response, what)
        try:
            return response_json(response, what="Label Studio")
        except JsonError:
            raise PermanentError(f"Label Studio answered {what} with something that is not JSON (HTTP {response.status_code})") from None

    def _refused(self, response: requests.Response, what: str) -> Exception:
        message = f"Label Studio: {what} failed (HTTP {response.status_code}): {server_message(response)}"
        if response.status_code in (408, 409, 423, 429) or response.status_code >= 500:
            return RetryableError(message)
        return PermanentError(message)


# -- tokens ----------------------------------------------------------------------------------


class _Credentials:
    """A legacy token (``Token``), or a personal access token exchanged for ``Bearer`` access tokens."""

    def __init__(self, token: str, url: str, client: HttpClient) -> None:
        self.token = secret(token)
        self.url = url
        self.client = client
        self.renewable = token.count(".") == 2  # a JWT: header.payload.signature
        self.kind = "personal access token" if self.renewable else "legacy API token"
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires: float = 0.0

    def authorization(self) -> str:
        if not self.renewable:
            return f"Token {self.token}"
        with self._lock:
            if self._access is None or (self._expires and time.time() >= self._expires):
                self._refresh()
            return f"Bearer {self._access}"

    def expire(self, authorization: str) -> None:
        """Forget the access token a refused request used (unless another thread renewed it already)."""
        with self._lock:
            if authorization == f"Bearer {self._access}":
                self._access = None

    def _refresh(self) -> None:
        """``POST /api/token/refresh/ {"refresh": token}`` -> ``{"access": ...}``; 401 -> AuthError."""
        response = self.client.request(
            "POST", f"{self.url}/api/token/refresh/", what="exchanging the personal access token", ok_statuses=(401, 403),
            json={"refresh": self.token},
        )
        if response.status_code in (401, 403):
            raise AuthError(
                f"Label Studio at {self.url} refused the personal access token (HTTP {response.status_code}): "
                f"{server_message(response)}; check {API_KEY_ENV}"
            )
        try:
            access = response_json(response, what="Label Studio")["access"]
        except (JsonError, KeyError, TypeError):
            raise ServiceError(
                f"Label Studio did not exchange the personal access token (HTTP {response.status_code}): {server_message(response)}"
            ) from None
        self._access = secret(str(access))
        expiry = _jwt_expiry(self._access)
        self._expires = expiry - ACCESS_MARGIN if expiry else 0.0


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (read, not verified: only to renew it in time)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


# -- labeling config -------------------------------------------------------------------------


class _NoControl(UsageError):
    """A labeling config without the control a task needs (a one-line UsageError)."""


#: How a task's model is named in messages.
_MODEL = {
    OBJECT_DETECTION: "an object-detection model",
    INSTANCE_SEGMENTATION: "an instance-segmentation model",
    KEYPOINT_DETECTION: "a keypoint-detection model",
    CLASSIFICATION: "a classification model",
    MULTI_LABEL_CLASSIFICATION: "a multi-label classification model",
}


@dataclass(frozen=True)
class LabelConfig:
    """What alpolicy needs from a labeling config for one task: the task's control on an Image
    (``from_name``; :data:`alpolicy.formats.labelstudio.CONTROLS`) and, for a pose model, the
    RectangleLabels of its boxes on that Image when there is one (``box_name``)."""

    xml: str
    from_name: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]
    task: str = OBJECT_DETECTION
    box_name: str | None = None
    box_labels: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        """The control's tag (``RectangleLabels``, ``PolygonLabels``, ``KeyPointLabels``, ``Choices``)."""
        return CONTROLS[self.task]

    @classmethod
    def parse(cls, xml: str, where: str, preferred: str | None = None, task: str = OBJECT_DETECTION) -> "LabelConfig":
        """The config's control for ``task`` (the first, or the one named ``preferred``); a
        config without one is a one-line :class:`UsageError` naming what it needs."""
        root = _root(xml, where)
        images = {el.get("name"): el for el in root.iter() if _tag(el) == "image" and el.get("name")}
        tag = CONTROLS[task]
        candidates = _controls(root, tag.lower(), images)
        if task == MULTI_LABEL_CLASSIFICATION:
            single = [c for c in candidates if c[0].get("choice") != "multiple"]
            candidates = [c for c in candidates if c[0].get("choice") == "multiple"]
        if preferred:
            candidates = [c for c in candidates if c[0].get("name") == preferred]
        if not candidates:
            which = f"{tag} control named {preferred!r}" if preferred else f"{tag} control"
            if task == MULTI_LABEL_CLASSIFICATION:
                which += ' with choice="multiple"'
            hint = ""
            if task == MULTI_LABEL_CLASSIFICATION and single and not preferred:
                hint = f' (its Choices {single[0][0].get("name")!r} takes one choice)'
            raise _NoControl(f"{where}: its labeling config has no {which} on an Image{hint}; "
                             f"alpolicy needs one for the pre-labels of {_MODEL[task]}")
        control, to_name = candidates[0]
        value = images[to_name].get("value") or ""
        if not value.startswith("$") or len(value) < 2:
            raise UsageError(f"{where}: the Image {to_name!r} takes its URL from {value!r}, not from a task field ($name)")
        box_name, box_labels = None, ()
        if task == KEYPOINT_DETECTION:  # the boxes go to a RectangleLabels on the same Image, if any
            boxes = [c for c, image in _controls(root, "rectanglelabels", images) if image == to_name]
            if boxes:
                box_name, box_labels = boxes[0].get("name"), _labels(boxes[0])
        return cls(xml, control.get("name"), to_name, value[1:], _labels(control), task,  # type: ignore[arg-type]
                   box_name, box_labels)

    @staticmethod
    def tasks(xml: str, where: str, preferred: str | None = None) -> list[str]:
        """The tasks whose pre-labels the config can take (those with a control, in :data:`TASKS` order)."""
        found = []
        for task in TASKS:
            try:
                LabelConfig.parse(xml, where, preferred, task)
            except _NoControl:
                continue
            found.append(task)
        return found

    def missing(self, classes: list[str], control: str | None = None) -> list[str]:
        """``classes`` that are not a label of the task's control (or of the box ``control``)."""
        known = set(self.box_labels if control is not None and control == self.box_name else self.labels)
        return [name for name in dict.fromkeys(classes) if name not in known]

    def with_labels(self, names: list[str], control: str | None = None) -> str:
        """The config with ``<Label value=...>`` (``<Choice>`` in a Choices) appended to the task's
        control, or to the one named ``control`` (comments are kept)."""
        root = _root(self.xml, "the labeling config", keep_comments=True)
        wanted = control or self.from_name
        element = next(el for el in root.iter() if _tag(el) in _CONTROL_TAGS and el.get("name") == wanted)
        item = "Choice" if _tag(element) == "choices" else "Label"
        children = list(element)
        closing = (children[-1].tail if children else element.text) or ""
        indent = (element.text if children and element.text and not element.text.strip() else None) or (closing + "  ")
        previous = children[-1] if children else None
        if previous is None:
            element.text = indent
        for name in names:
            if previous is not None:
                previous.tail = indent
            previous = ET.SubElement(element, item, {"value": name})
        assert previous is not None
        previous.tail = closing
        return ET.tostring(root, encoding="unicode")


def with_controls(xml: str, snippet: str) -> str:
    """The config with the control elements of ``snippet`` (XML text of elements) appended to its
    root View: how a project alpolicy made learns another task (comments are kept)."""
    root = _root(xml, "the labeling config", keep_comments=True)
    children = list(root)
    closing = (children[-1].tail if children else root.text) or "\n"
    for element in ET.fromstring(f"<View>{snippet}</View>"):
        if children:
            children[-1].tail = "\n  "
        else:
            root.text = "\n  "
        root.append(element)
        children.append(element)
    if children:
        children[-1].tail = closing
    return ET.tostring(root, encoding="unicode")


_CONTROL_TAGS = frozenset(tag.lower() for tag in CONTROLS.values())


def _root(xml: str, where: str, *, keep_comments: bool = False) -> ET.Element:
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True)) if keep_comments else None
    try:
        return ET.fromstring(xml, parser=parser)
    except ET.ParseError as error:
        raise UsageError(f"{where}: the labeling config is not valid XML ({error})") from None


def _controls(root: ET.Element, tag: str, images: dict[str | None, ET.Element]) -> list[tuple[ET.Element, str]]:
    """The controls ``tag`` with a name on an Image, with that Image's name (a per-region
    Choices classifies a region, not the image: skipped)."""
    found = []
    for control in root.iter():
        if _tag(control) != tag or not control.get("name") or (control.get("perRegion") or "").lower() == "true":
            continue
        for to_name in (part.strip() for part in (control.get("toName") or "").split(",")):
            if to_name in images:
                found.append((control, to_name))
                break
    return found


def _labels(control: ET.Element) -> tuple[str, ...]:
    item = "choice" if _tag(control) == "choices" else "label"
    return tuple(el.get("value") for el in control.iter() if _tag(el) == item and el.get("value") is not None)  # type: ignore[misc]


def _tag(element: ET.Element) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


# -- helpers ---------------------------------------------------------------------------------


def project_title(policy: str, model: str) -> str:
    """``alpolicy <policy>: <model>``, the model's start cut to fit Label Studio's 50 characters."""
    head = f"alpolicy {policy}"[: TITLE_MAX - 10]
    room = TITLE_MAX - len(head) - 2
    tail = model if len(model) <= room else "…" + model[-(room - 1):]
    return f"{head}: {tail}"


def _needed(prediction: Prediction, config: LabelConfig) -> dict[str, list[str]]:
    """The labels each control must have for a prediction's regions (by control name)."""
    if config.task == KEYPOINT_DETECTION:
        needed = {config.from_name: labelstudio_format.keypoint_names(prediction)}
        if config.box_name is not None:
            needed[config.box_name] = prediction.classes
        return needed
    return {config.from_name: prediction.classes}


def _new_config(prediction: Prediction, task: str) -> str:
    """The labeling config of a project made for ``prediction``'s model: its task's control with
    the classes seen (a classifier's every class), the keypoint names of a pose model."""
    if prediction.is_classification:
        classes = sorted({entry["class"] for entry in prediction.class_scores})
    else:
        classes = sorted(prediction.classes)
    keypoints = labelstudio_format.keypoint_names(prediction)
    return labelstudio_format.config(classes, "label", "image", task=task, keypoints=keypoints)


#: The name of a control alpolicy adds for a task, when ``label`` is taken.
_CONTROL_NAMES = {OBJECT_DETECTION: "box", INSTANCE_SEGMENTATION: "polygon", KEYPOINT_DETECTION: "keypoints",
                  CLASSIFICATION: "class", MULTI_LABEL_CLASSIFICATION: "classes"}


def _free_name(taken: set[str | None], *bases: str) -> str:
    """The first of ``bases`` not ``taken``, else the last one numbered (``name_2``...)."""
    for base in bases:
        if base not in taken:
            return base
    number = 2
    while f"{bases[-1]}_{number}" in taken:
        number += 1
    return f"{bases[-1]}_{number}"


def _upload_id(remote_id: str | None) -> int | None:
    if remote_id and remote_id.startswith("upload:") and remote_id[7:].isdigit():
        return int(remote_id[7:])
    return None


def _plural(items: list[str], one: str, many: str) -> str:
    return one if len(items) == 1 else many


def make_destination(target: str, options: DestinationOptions) -> LabelStudioDestination:
    return LabelStudioDestination(target, options)


#: The destination's own ``extra`` settings (``--to-opt KEY=VALUE``; the flags named in each
#: description are aliases), checked by :mod:`alpolicy.plugin_options` before it is built.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "labelstudio destination options",
    "type": "object",
    "properties": {
        "labelstudio_url": {"type": "string", "minLength": 1,
                            "description": f"the Label Studio server (--labelstudio-url; default ${URL_ENV} or {DEFAULT_URL})"},
        "add_missing_labels": {"type": "boolean", "default": False,
                               "description": "add predicted classes missing from the labeling config instead of "
                               "failing those images (--add-missing-labels)"},
        "labelstudio_from_name": {"type": "string", "minLength": 1,
                                  "description": "the control to fill (RectangleLabels, PolygonLabels, KeyPointLabels or Choices, "
                                  "as the model's task needs), in a config with several (default: the first)"},
    },
}


@hookimpl
def alpolicy_destinations(register: Callable[[DestinationSpec], None]) -> None:
    register(DestinationSpec(
        "labelstudio", make_destination,
        f"A Label Studio project (token from {API_KEY_ENV}, server from --labelstudio-url): labelstudio:PROJECT_ID or labelstudio:new",
        options_schema=OPTIONS_SCHEMA,
    ))
