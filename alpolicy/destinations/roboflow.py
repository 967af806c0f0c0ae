"""Upload to a Roboflow project, with the prediction attached as a pre-label (``roboflow:PROJECT``).

Two requests per image, as the Roboflow REST API documents them:

1. ``POST {api}/dataset/{project}/upload?api_key=…&batch=…&tag=…`` (multipart ``name``, ``split``,
   ``file``, ``metadata``) answers ``{"success": true, "id": …}`` or, for content already in the
   project, ``{"duplicate": true, "id": …}`` -- success too: that is what makes a retry after a
   lost response safe (Roboflow deduplicates by content).
2. ``POST {api}/dataset/{project}/annotate/{id}?api_key=…&name=…&prediction=true`` with the
   inference JSON as the annotation file, so the image enters the labeling flow pre-labelled.
   409 "already annotated" means an earlier attempt got there: success.

After step 1 the destination checkpoints the id, so a resume after a crash only re-annotates.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePath
from typing import Any, Callable

from ..backends.roboflow import API_KEY_ENV, api_key_from
from ..errors import UsageError
from ..hookspecs import hookimpl
from ..http import HttpClient, RetryPolicy, server_message
from ..images import ImageDecodeError
from ..registry import DestinationSpec
from . import Delivery, DestinationOptions, PermanentError, Receipt

API_URL = "https://api.roboflow.com"
API_URL_ENV = "ROBOFLOW_API_URL"
SPLITS = ("train", "valid", "test")


class RoboflowDestination:
    def __init__(self, target: str, options: DestinationOptions) -> None:
        self.project = target.strip("/")
        if not self.project or "/" in self.project:
            raise UsageError(f"roboflow destination {target!r} should be a project id, e.g. roboflow:my-project")
        if options.split not in SPLITS:
            raise UsageError(f"split {options.split!r} should be one of {', '.join(SPLITS)}")
        self.api_key = api_key_from(options.api_key, "uploading to roboflow")
        self.api = (options.api_url or os.environ.get(API_URL_ENV) or API_URL).rstrip("/")
        self.name = f"roboflow:{self.project}"
        self.split = options.split
        self.batch = options.batch or "alpolicy"
        self.client = HttpClient(timeout=options.timeout, retry=RetryPolicy(attempts=options.attempts, backoff=options.retry_backoff), service="Roboflow API")

    def check(self) -> None:
        """``GET {api}/?api_key=…``: a refused key stops the run before any image is processed."""
        self.client.request("GET", f"{self.api}/", what="checking the API key", params={"api_key": self.api_key})

    def send(self, delivery: Delivery) -> Receipt:
        duplicate = False
        remote_id = delivery.remote_id
        if remote_id is None:
            remote_id, duplicate = self._upload(delivery)
            delivery.checkpoint(remote_id)
        self._annotate(delivery, remote_id)
        return Receipt(remote_id, url=f"https://app.roboflow.com/{self.project}/images/{remote_id}", duplicate=duplicate)

    def _upload(self, delivery: Delivery) -> tuple[str, bool]:
        try:
            content = delivery.image.read_bytes()
        except ImageDecodeError as error:
            raise PermanentError(str(error)) from None
        params: dict[str, Any] = {"api_key": self.api_key, "batch": self.batch}
        if delivery.tags:
            params["tag"] = list(delivery.tags)
        fields = {
            "name": (None, delivery.image.name),
            "split": (None, self.split),
            "metadata": (None, json.dumps(delivery.metadata, ensure_ascii=False, default=str)),
            "file": (delivery.image.name, content),
        }
        response = self.client.request(
            "POST", f"{self.api}/dataset/{self.project}/upload", what="upload", params=params, files=fields
        )
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("id"):
            if body.get("success") or body.get("duplicate"):
                return str(body["id"]), bool(body.get("duplicate"))
        raise PermanentError(f"upload refused (HTTP {response.status_code}): {server_message(response)}")

    def _annotate(self, delivery: Delivery, remote_id: str) -> None:
        name = PurePath(delivery.image.name).stem + ".json"
        annotation = {"annotationFile": json.dumps(delivery.prediction.to_json()), "labelmap": None}
        response = self.client.request(
            "POST", f"{self.api}/dataset/{self.project}/annotate/{remote_id}", what="annotation",
            params={"api_key": self.api_key, "name": name, "prediction": "true"}, json=annotation,
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
    try:
        return response.json()
    except ValueError:
        return None


def make_destination(target: str, options: DestinationOptions) -> RoboflowDestination:
    return RoboflowDestination(target, options)


@hookimpl
def alpolicy_destinations(register: Callable[[DestinationSpec], None]) -> None:
    register(DestinationSpec("roboflow", make_destination, f"A Roboflow project (key from {API_KEY_ENV}): roboflow:PROJECT"))
