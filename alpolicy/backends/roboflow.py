"""Roboflow inference, hosted or on a self-hosted Inference server (``roboflow:PROJECT/VERSION``).

The documented legacy route both answer: ``POST {base}/{project}/{version}?api_key=…&confidence=…
&overlap=…&format=json`` with the image file base64-encoded as the body. The bytes are sent as
they are on disk (no re-encode: no quality loss, EXIF orientation kept for the server to apply),
so boxes come back in the pixels of the oriented original.
"""

from __future__ import annotations

import base64
import os
from typing import Callable

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import BodyTooLarge, HttpClient, read_body, server_message
from ..io.images import ImageDecodeError, ImageFile
from ..io.secrets import Secret, secret
from ..plugin_options import NO_OPTIONS
from ..policy.prediction import Prediction, PredictionFormatError, parse_prediction
from ..registry import InferenceBackendSpec
from . import ImageError, InferenceBackend, ModelOptions, fingerprint

HOSTED_INFERENCE_URL = "https://serverless.roboflow.com"
INFERENCE_URL_ENV = "ROBOFLOW_INFERENCE_URL"
API_KEY_ENV = "ROBOFLOW_API_KEY"


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


class RoboflowInference(InferenceBackend):
    """Thread-safe: one pooled HTTP session shared by the pipeline's threads."""

    def __init__(self, target: str, options: ModelOptions) -> None:
        self.project, self.version = parse_model_target(target)
        self.api_key = api_key_from(options.api_key, "roboflow inference")
        base = checks.configured_url(options.inference_url, "inference_url", INFERENCE_URL_ENV, HOSTED_INFERENCE_URL,
                                     secret="API key", allow_insecure_http=options.allow_insecure_http)
        self.url = f"{base}/{self.project}/{self.version}"
        self.model_id = f"{self.project}/{self.version}"
        self.params = {
            "api_key": self.api_key,
            "confidence": _percent(options.confidence),
            "overlap": _percent(options.overlap),
            "format": "json",
        }
        #: What changes the answer for one image: the model (project/version) and the thresholds
        #: the server applies. The URL is not in it: hosted and self-hosted serve the same weights.
        self.fingerprint_settings = {"confidence": float(options.confidence), "overlap": float(options.overlap)}
        self.fingerprint = fingerprint("roboflow", self.model_id, self.fingerprint_settings)
        self.client = HttpClient(
            timeout=options.timeout, retry=options.retry_policy(), service="inference server"
        )
        self.max_response_bytes = options.max_response_bytes
        self.max_detections = options.max_detections

    def predict(self, image: ImageFile) -> Prediction:
        try:
            image.check()  # refuse non-images and bombs locally, before spending a request
            body = base64.b64encode(image.read_bytes())
        except ImageDecodeError as error:
            raise ImageError(str(error)) from None
        answer = self.client.with_retries(lambda: self._infer_once(body), what="inference")
        try:
            prediction = parse_prediction(answer, max_bytes=None, max_detections=self.max_detections)
        except PredictionFormatError as error:
            raise ImageError(f"the inference server answered something that is not a prediction: {error}") from None
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


def _percent(value: float) -> str:
    return f"{value:g}"


def make_backend(target: str, options: ModelOptions) -> RoboflowInference:
    return RoboflowInference(target, options)


@hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "roboflow", make_backend,
            "Roboflow hosted inference or a local Inference server: roboflow:PROJECT/VERSION",
            options_schema=NO_OPTIONS,  # every setting it has is a ModelOptions field
        )
    )
