"""Upload to a Roboflow project, with the prediction attached as a pre-label (``roboflow:PROJECT``).

Two requests per image, as the Roboflow REST API documents them:

1. ``POST {api}/dataset/{project}/upload?api_key=…&batch=…&tag=…`` (multipart ``name``, ``split``,
   ``file``, ``metadata``) answers ``{"success": true, "id": …}`` or, for content already in the
   project, ``{"duplicate": true, "id": …}`` -- success too: that is what makes a retry after a
   lost response safe (Roboflow deduplicates by content).
2. ``POST {api}/dataset/{project}/annotate/{id}?api_key=…&name=…&prediction=true`` with the
   annotation file of the prediction's task, so the image enters the labeling flow pre-labelled:
   as Roboflow Inference's active learning registers it, the inference JSON as ``<stem>.json``
   for detection, segmentation (``points``) and pose (``keypoints``), the top class as
   ``<stem>.txt`` for a single-label classifier; for a multi-label classifier (which Inference
   cannot register) the predicted classes as a JSON list, as the Roboflow SDK uploads a
   multi-label label (see :func:`alpolicy.formats.roboflow.annotation`). The body is the SDK's
   ``{"annotationFile": TEXT, "labelmap": null}``. A classifier that predicted no class gets no
   annotation (nor does Inference register one). 409 "already annotated" means an earlier
   attempt got there: success.

After step 1 the destination checkpoints the id, so a resume after a crash only re-annotates.
Before any image, ``check()`` reads ``GET {api}/?api_key=…`` (the key's workspace) and
``GET {api}/{workspace}/{project}?api_key=…``: a project that does not exist stops the run.

Options (``DestinationOptions``): ``split``; ``batch`` (a name prefix, default ``alpolicy``) with
``extra["batch_recreation"]`` = ``never`` | ``daily`` | ``weekly`` | ``monthly``, named as Roboflow
Inference names its active-learning batches (``prefix_2026_11_27``: today, the week's Monday, the
month's first day, local time); ``extra["max_size"]`` (longest side, px) and
``extra["jpeg_quality"]`` to send a smaller JPEG, with the pre-label rescaled to match (boxes,
polygons and keypoints: :func:`alpolicy.formats.roboflow.scaled`).
Re-encoding is deterministic, so a retried upload is still recognised as a duplicate.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import PurePath
from typing import Any, Callable

from PIL import Image, ImageOps

from ..backends.roboflow import API_KEY_ENV, api_key_from, project_document
from ..errors import AlpolicyError, UsageError
from ..formats import roboflow as roboflow_format
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import HttpClient, server_message
from ..io.images import ImageDecodeError, display_path, open_image
from ..io.jsonsafe import JsonError, response_json
from ..policy.prediction import Prediction
from ..registry import DestinationSpec, did_you_mean
from . import Delivery, Destination, DestinationOptions, PermanentError, Receipt

API_URL = "https://api.roboflow.com"
API_URL_ENV = "ROBOFLOW_API_URL"
SPLITS = ("train", "valid", "test")
RECREATION_INTERVALS = ("never", "daily", "weekly", "monthly")

#: The destination's own ``extra`` settings (``--to-opt KEY=VALUE``; the flags named in each
#: description are aliases), checked by :mod:`alpolicy.plugin_options` before it is built.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "roboflow destination options",
    "type": "object",
    "properties": {
        "batch_recreation": {"enum": list(RECREATION_INTERVALS), "default": "never",
                             "description": "start a new batch every day/week/month: NAME_2026_11_27, as Roboflow "
                             "Inference (--batch-recreation)"},
        "max_size": {"type": "integer", "minimum": 1,
                     "description": "downscale uploads to this longest side in px, pre-labels rescaled (--max-size)"},
        "jpeg_quality": {"type": "integer", "minimum": 1, "maximum": 95,
                         "description": "re-encode uploads as JPEG at this quality (--jpeg-quality)"},
    },
}


def batch_name(prefix: str, recreation: str, today: date | None = None) -> str:
    """Roboflow Inference's batch naming: the prefix, plus the period's first day unless ``never``."""
    if recreation == "never":
        return prefix
    today = today or date.today()
    start = {
        "daily": today,
        "weekly": today - timedelta(days=today.weekday()),
        "monthly": today.replace(day=1),
    }[recreation]
    return f"{prefix}_{start.strftime('%Y_%m_%d')}"


def shrink(content: bytes, prediction: Prediction, max_size: int | None, quality: int) -> tuple[bytes, Prediction]:
    """A JPEG of at most ``max_size`` px on its longest side (EXIF orientation applied) and the
    prediction rescaled to it (:func:`alpolicy.formats.roboflow.scaled`: boxes, polygons, keypoints).

    Decoded through :func:`alpolicy.io.images.open_image`: a bomb is refused from its header before
    any pixel is decoded, and any decoder error is an :class:`ImageDecodeError` (that image fails).
    """
    with open_image(content) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
        if max_size and max(image.size) > max_size:
            scale = max_size / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), roboflow_format.scaled(prediction, image.width, image.height)


class RoboflowDestination(Destination):
    def __init__(self, target: str, options: DestinationOptions) -> None:
        self.project = target.strip("/")
        if not self.project or "/" in self.project:
            raise UsageError(f"roboflow destination {target!r} should be a project id, e.g. roboflow:my-project")
        if options.split not in SPLITS:
            raise UsageError(f"split {options.split!r} should be one of {', '.join(SPLITS)}")
        self.api_key = api_key_from(options.api_key, "uploading to roboflow")
        self.api = checks.configured_url(options.api_url, "api_url", API_URL_ENV, API_URL, secret="API key",
                                         allow_insecure_http=options.allow_insecure_http)
        self.name = f"roboflow:{self.project}"
        self.split = options.split
        self.batch_prefix = options.batch or "alpolicy"
        self.recreation = str(options.extra.get("batch_recreation") or "never")
        if self.recreation not in RECREATION_INTERVALS:
            raise UsageError(f"batch recreation {self.recreation!r} should be one of {', '.join(RECREATION_INTERVALS)}")
        size, quality = options.extra.get("max_size"), options.extra.get("jpeg_quality")
        self.max_size = checks.whole_number(size, "max_size", minimum=1) if size is not None else None
        self.jpeg_quality = checks.whole_number(quality, "jpeg_quality", minimum=1, maximum=95) if quality is not None else None
        self.reencode = self.max_size is not None or self.jpeg_quality is not None
        self.client = HttpClient(timeout=options.timeout, retry=options.retry_policy(), service="Roboflow API")

    def check(self) -> None:
        """Before any image is inferred, the two reads ``Roboflow().workspace().project()`` makes:
        ``GET {api}/?api_key=…`` (a refused key stops the run; the answer names the key's
        workspace) and ``GET {api}/{workspace}/{project}?api_key=…`` (404: the project does not
        exist there -- a typo in ``--to`` -- and every upload would fail). It writes nothing, so
        a dry run checks too."""
        workspace, found = project_document(self.client, self.api, self.api_key, self.project,
                                            what="looking up the project", hint=f"check --api-url / {API_URL_ENV}")
        if found is None:
            raise UsageError(
                f"Roboflow project {self.project!r} does not exist in workspace {workspace!r}{self._closest(workspace)}"
            )

    check_read_only = check

    def _closest(self, workspace: str) -> str:
        """`` (did you mean 'review'?)`` from the workspace's projects; nothing if they cannot be listed."""
        try:
            listed = self.client.request("GET", f"{self.api}/{workspace}", what="listing the projects", params={"api_key": self.api_key})
            projects = _json(listed)["workspace"]["projects"]
            names = [str(p.get("id", "")).rpartition("/")[2] for p in projects if isinstance(p, dict)]
        except (AlpolicyError, KeyError, TypeError):
            return ""
        return did_you_mean(self.project, names)

    def send(self, delivery: Delivery) -> Receipt:
        duplicate = False
        remote_id = delivery.remote_id
        content, prediction, name = self._payload(delivery)
        if remote_id is None:
            remote_id, duplicate = self._upload(delivery, content, name)
            delivery.checkpoint(remote_id)
        self._annotate(prediction, name, remote_id)
        return Receipt(remote_id, url=f"https://app.roboflow.com/{self.project}/images/{remote_id}", duplicate=duplicate)

    def _payload(self, delivery: Delivery) -> tuple[bytes, Prediction, str]:
        """The bytes to upload, the matching pre-label and the file name (re-encoded if asked)."""
        name = display_path(delivery.image.name)  # a name that is not UTF-8 cannot go in a form
        try:
            content = delivery.image.read_bytes()
            if not self.reencode:
                return content, delivery.prediction, name
            smaller, prediction = shrink(content, delivery.prediction, self.max_size, self.jpeg_quality or 90)
        except (ImageDecodeError, OSError) as error:
            raise PermanentError(f"cannot prepare the image: {error}") from None
        return smaller, prediction, PurePath(name).stem + ".jpg"

    def _upload(self, delivery: Delivery, content: bytes, name: str) -> tuple[str, bool]:
        params: dict[str, Any] = {"api_key": self.api_key, "batch": batch_name(self.batch_prefix, self.recreation)}
        if delivery.tags:
            params["tag"] = list(delivery.tags)
        fields = {
            "name": (None, name),
            "split": (None, self.split),
            "metadata": (None, json.dumps(delivery.metadata, ensure_ascii=False, default=str)),
            "file": (name, content),
        }
        response = self.client.request(
            "POST", f"{self.api}/dataset/{self.project}/upload", what="upload", params=params, files=fields
        )
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("id"):
            if body.get("success") or body.get("duplicate"):
                return str(body["id"]), bool(body.get("duplicate"))
        raise PermanentError(f"upload refused (HTTP {response.status_code}): {server_message(response)}")

    def _annotate(self, prediction: Prediction, image_name: str, remote_id: str) -> None:
        annotation = roboflow_format.annotation(prediction)
        if annotation is None:  # a classifier that predicted no class: nothing to pre-label
            return
        envelope = {"annotationFile": annotation.text, "labelmap": None}  # the SDK's body (rfapi.save_annotation)
        response = self.client.request(
            "POST", f"{self.api}/dataset/{self.project}/annotate/{remote_id}", what="annotation",
            params={"api_key": self.api_key, "name": annotation.name(PurePath(image_name).stem), "prediction": "true"},
            json=envelope,
        )
        if response.status_code == 409:  # already annotated: an earlier attempt's request got through
            return
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("success", True):
            return
        raise PermanentError(f"annotation refused (HTTP {response.status_code}): {server_message(response)}")

    def close(self) -> None:
        self.client.close()


def _json(response: Any) -> Any:
    """The answer's JSON, or ``None`` (the caller then quotes the body): read strictly, as every
    answer from outside is (an answer of 100,000 nested brackets is not a crash)."""
    try:
        return response_json(response, what="the Roboflow API")
    except JsonError:
        return None


def make_destination(target: str, options: DestinationOptions) -> RoboflowDestination:
    return RoboflowDestination(target, options)


@hookimpl
def alpolicy_destinations(register: Callable[[DestinationSpec], None]) -> None:
    register(DestinationSpec("roboflow", make_destination, f"A Roboflow project (key from {API_KEY_ENV}): roboflow:PROJECT",
                             options_schema=OPTIONS_SCHEMA))
