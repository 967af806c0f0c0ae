"""The ``clip`` embedder: OpenAI CLIP image embeddings from a Roboflow Inference server.

``POST {inference_url}/clip/embed_image?api_key=...`` with the JSON body
``{"api_key": ..., "image": {"type": "base64", "value": <the file's bytes>}}`` (plus
``"clip_version_id"`` when ``clip_version`` is given) answers ``{"embeddings": [[...]], ...}``:
Inference's ``ClipImageEmbeddingRequest`` and ``ClipEmbeddingResponse``, the request
``inference_sdk``'s ``InferenceHTTPClient.get_clip_image_embeddings`` makes. The server is
``embedder_options.inference_url``, else ``$ROBOFLOW_INFERENCE_URL``, else Roboflow's hosted
one; the key is ``$ROBOFLOW_API_KEY`` (registered for redaction: never in a log or a message).

Failures, as the Roboflow backend's: connection errors, 429 and 5xx are retried by the one retry
loop (:mod:`alpolicy.io.http`), then a :class:`ServiceError` (the run defers the image and tries
it again at the end of the stream, as an inference); 401/403 an :class:`AuthError`; 404 -- a
server without CLIP (``inference`` started without the CLIP core model) -- a one-line
:class:`UsageError` that stops the run; another 4xx or an answer without one embedding an
:class:`ImageDecodeError` for that image (it is not embedded, and not picked).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Callable

from ..errors import ServiceError, UsageError
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import HttpClient, RetryPolicy, server_message
from ..io.images import ImageDecodeError, ImageFile
from ..io.jsonsafe import JsonError, response_json
from ..registry import EmbedderSpec
from .roboflow import HOSTED_INFERENCE_URL, INFERENCE_URL_ENV, api_key_from

ROUTE = "/clip/embed_image"

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "clip embedder options",
    "type": "object",
    "properties": {
        "inference_url": {"type": "string",
                          "description": f"the Roboflow Inference server (default ${INFERENCE_URL_ENV} or {HOSTED_INFERENCE_URL})"},
        "clip_version": {"type": "string", "description": "Inference's clip_version_id (e.g. ViT-B-16); the server's default if not given"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60, "description": "seconds to wait for one answer"},
        "attempts": {"type": "integer", "minimum": 1, "default": 5, "description": "attempts per image on connection errors, 429 and 5xx"},
        "retry_backoff": {"type": "number", "minimum": 0, "default": 0.5, "description": "first wait between attempts, in seconds (doubled each time)"},
        "allow_insecure_http": {"type": "boolean", "default": False,
                                "description": "let the API key go to a plain http:// server on another machine"},
    },
}


class ClipEmbedder:
    """Thread-safe: one pooled session shared by the worker threads."""

    name = "clip"

    def __init__(self, options: dict[str, Any]) -> None:
        self.api_key = api_key_from(None, "the clip embedder")
        base = checks.configured_url(options.get("inference_url"), "embedder_options.inference_url", INFERENCE_URL_ENV,
                                     HOSTED_INFERENCE_URL, secret="API key",
                                     allow_insecure_http=bool(options.get("allow_insecure_http", False)))
        self.url = f"{base.rstrip('/')}{ROUTE}"
        self.clip_version: str | None = options.get("clip_version")
        retry = RetryPolicy(attempts=int(options.get("attempts", 5)), backoff=float(options.get("retry_backoff", 0.5)))
        self.client = HttpClient(timeout=float(options.get("timeout", 60)), retry=retry, service="CLIP server")

    def embed(self, image: ImageFile) -> list[float]:
        image.check()  # a non-image or a bomb is refused here, before a request is spent
        content = image.read_bytes()
        body: dict[str, Any] = {"api_key": self.api_key,
                                "image": {"type": "base64", "value": base64.b64encode(content).decode("ascii")}}
        if self.clip_version:
            body["clip_version_id"] = self.clip_version
        data = json.dumps(body).encode("utf-8")
        response = self.client.request("POST", self.url, what="CLIP embedding", params={"api_key": self.api_key},
                                       data=data, headers={"Content-Type": "application/json"})
        if response.status_code == 404:
            raise UsageError(f"the inference server at {self.url.removesuffix(ROUTE)} has no CLIP ({ROUTE}: HTTP 404): "
                             "use a server with the CLIP model, or the pixels embedder")
        if response.status_code >= 400:
            raise ImageDecodeError(f"the CLIP server refused the image (HTTP {response.status_code}): {server_message(response)}")
        return _embedding(response)

    def close(self) -> None:
        self.client.close()


def _embedding(response: Any) -> list[float]:
    """The one vector of ``{"embeddings": [[...]]}``, checked (finite numbers)."""
    try:
        body = response_json(response, what="the CLIP server")
    except JsonError as error:
        raise ServiceError(f"CLIP embedding: {error}") from None
    vectors = body.get("embeddings") if isinstance(body, dict) else None
    vector = vectors[0] if isinstance(vectors, list) and len(vectors) == 1 else None
    if (not isinstance(vector, list) or not vector
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vector)):
        raise ImageDecodeError("the CLIP server answered no embedding for the image")
    return [float(v) for v in vector]


def make_clip(options: dict[str, Any]) -> ClipEmbedder:
    return ClipEmbedder(options)


@hookimpl
def alpolicy_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(EmbedderSpec("clip", make_clip,
                          "CLIP image embeddings from a Roboflow Inference server (POST /clip/embed_image; ROBOFLOW_API_KEY).",
                          options_schema=OPTIONS_SCHEMA))
