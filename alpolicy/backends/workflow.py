"""A Roboflow Workflow as the model, hosted or on a local Inference server (``workflow:WORKSPACE/WORKFLOW_ID``).

One request per image, the route and body ``inference_sdk``'s ``run_workflow`` sends (and the
inference server's ``infer_from_predefined_workflow`` serves)::

    POST {base}/{workspace}/workflows/{workflow_id}
    {"api_key": KEY, "use_cache": true, "enable_profiling": false,
     "inputs": {"image": {"type": "base64", "value": "<the file, base64>"}, NAME: VALUE, ...}}

answered ``{"outputs": [{OUTPUT: VALUE, ...}], ...}`` (one entry per input image: one here). The
image is sent as it is on disk, as the ``roboflow:`` backend does. The predictions are the
output named by ``--model-opt output=NAME``, else the only output that holds predictions (a
dict with ``predictions``, or a step's ``*`` output holding one: ``{"predictions":
{"image": ..., "predictions": [...]}}``); none or several is a one-line usage error naming the
outputs found. An output that is ``null`` (its step did not run for this image: a condition)
is an empty prediction. Any task's shape is taken: a Workflow serialises detections as
``serialise_sv_detections`` does (``points`` of a segmentation, ``keypoints``, ``rle_mask``),
which :func:`alpolicy.backends.roboflow.normalised` brings to the canonical shape.

Options (``--model-opt KEY=VALUE``): the reserved ``output``, ``image_input`` (the Workflow's
image input, default ``image``), ``use_cache`` (let the server cache the Workflow's definition,
default true), ``workflow_version_id``, ``task`` (the chosen output's task, when every answer
alone cannot tell it: an empty one), ``parameters`` (an object of Workflow parameters, for a
parameter named like a reserved option); any other ``NAME=VALUE`` is a Workflow parameter,
sent in ``inputs`` as the JSON value it parses as (``confidence=0.5``, ``classes='["car"]'``).
``--confidence``/``--overlap`` are not sent: a Workflow's thresholds are its parameters.

Fingerprint: the Workflow's id, its parameters, the output, the image input and the version id
if given. A saved Workflow's definition can change on the server without its id changing, and
the route answers no version or hash of it: the fingerprint cannot see such a change. Pin
``workflow_version_id`` to make one visible (a new version id is a new fingerprint), or run with
a fresh journal after editing the Workflow.

The API key travels in the JSON body, not the URL: it is registered for redaction, so an error
body echoing the request (FastAPI's 422 quotes the whole body) shows only the mask.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..io import checks
from ..io.http import ERROR_BODY_LIMIT, AttemptFailed, BodyTooLarge, HttpClient, read_body, server_message
from ..io.images import ImageDecodeError, ImageFile
from ..io.jsonsafe import JsonError, loads
from ..policy.prediction import TASKS, Prediction
from ..registry import InferenceBackendSpec, did_you_mean
from . import ImageError, InferenceBackend, ModelOptions, fingerprint
from .roboflow import HOSTED_INFERENCE_URL, INFERENCE_URL_ENV, api_key_from, read_prediction

#: The options the backend reads itself; every other ``--model-opt`` is a Workflow parameter.
RESERVED = ("output", "image_input", "use_cache", "workflow_version_id", "task", "parameters")

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "workflow backend options",
    "type": "object",
    "properties": {
        "output": {"type": "string", "minLength": 1,
                   "description": "the Workflow output holding the predictions (default: the only one that does)"},
        "image_input": {"type": "string", "minLength": 1, "default": "image",
                        "description": "the name of the Workflow's image input"},
        "use_cache": {"type": "boolean", "default": True,
                      "description": "let the server cache the Workflow's definition (false: fetched for every image)"},
        "workflow_version_id": {"type": "string", "minLength": 1,
                                "description": "run this version of the Workflow (and key stored predictions by it)"},
        "task": {"enum": list(TASKS),
                 "description": "the task of the chosen output (default: each answer's shape tells)"},
        "parameters": {"type": "object",
                       "description": "Workflow parameters as one JSON object (for one named like a reserved option)"},
    },
    "additionalProperties": {"description": "any other NAME=VALUE: a Workflow parameter, sent in inputs as the JSON "
                                            "value it parses as"},
}


def parse_workflow_target(target: str) -> tuple[str, str]:
    workspace, sep, workflow_id = target.strip("/").partition("/")
    if not sep or not workspace or not workflow_id or "/" in workflow_id:
        raise UsageError(f"workflow model {target!r} should be WORKSPACE/WORKFLOW_ID, e.g. workflow:my-workspace/detect-cars")
    return workspace, workflow_id


def prediction_document(value: Any) -> Any:
    """The prediction an output's value holds, or ``None``: a dict with ``predictions`` (a list
    or a multi-label dict), or a step's ``*`` output with such a dict under ``predictions``."""
    if not isinstance(value, dict) or "predictions" not in value:
        return None
    inner = value["predictions"]
    if isinstance(inner, dict) and "predictions" in inner and ("image" in inner or isinstance(inner["predictions"], list)):
        return inner
    return value if isinstance(inner, (list, dict)) else None


class WorkflowInference(InferenceBackend):
    """Thread-safe: one pooled HTTP session; the chosen output is remembered once found."""

    def __init__(self, target: str, options: ModelOptions) -> None:
        self.workspace, self.workflow_id = parse_workflow_target(target)
        self.api_key = api_key_from(options.api_key, "a roboflow workflow")
        base = checks.configured_url(options.inference_url, "inference_url", INFERENCE_URL_ENV, HOSTED_INFERENCE_URL,
                                     secret="API key", allow_insecure_http=options.allow_insecure_http)
        extra = dict(options.extra)
        self.output: str | None = extra.get("output")
        self.image_input: str = extra.get("image_input") or "image"
        self.use_cache: bool = extra.get("use_cache", True) is not False
        self.version_id: str | None = extra.get("workflow_version_id")
        given_task = extra.get("task")
        if given_task is not None and given_task not in TASKS:
            raise UsageError(f"--model-opt task: {given_task!r} is not one of {', '.join(TASKS)}")
        self.task = given_task
        parameters = dict(extra.get("parameters") or {})
        parameters.update({key: value for key, value in extra.items() if key not in RESERVED})
        if self.image_input in parameters:
            raise UsageError(f"--model-opt {self.image_input}: the image input is the image; give another parameter name")
        self.parameters = parameters
        self.url = f"{base}/{self.workspace}/workflows/{self.workflow_id}"
        self.model_id = f"{self.workspace}/{self.workflow_id}"
        settings: dict[str, Any] = {"parameters": parameters, "image_input": self.image_input}
        for key, value in (("output", self.output), ("workflow_version_id", self.version_id), ("task", given_task)):
            if value is not None:
                settings[key] = value
        #: The output's name, the image input, the parameters and the version id change the answer;
        #: the URL and use_cache do not (hosted and local run the same definition).
        self.fingerprint_settings = settings
        self.fingerprint = fingerprint("workflow", self.model_id, settings)
        self.client = HttpClient(timeout=options.timeout, retry=options.retry_policy(), service="inference server")
        self.max_response_bytes = options.max_response_bytes
        self.max_detections = options.max_detections

    def predict(self, image: ImageFile) -> Prediction:
        try:
            image.check()  # refuse non-images and bombs locally, before spending a request
            content = image.read_bytes()
        except ImageDecodeError as error:
            raise ImageError(str(error)) from None
        body = self._body(content)
        raw = self.client.with_retries(lambda: self._run_once(body), what="running the workflow")
        value = self._chosen(self._outputs(raw))
        if value is None:  # the step did not run for this image: nothing predicted
            value = {"image": {"width": None, "height": None}, "predictions": []}
        prediction = read_prediction(value, task=self.task, max_detections=self.max_detections, content=content,
                                     problem=f"the workflow's output {self.output!r} is not a prediction")
        prediction.model_id = self.model_id
        return prediction

    def _body(self, content: bytes) -> bytes:
        """The request body as ``run_workflow`` builds it (the key in it: see the module docstring)."""
        payload: dict[str, Any] = {
            "api_key": self.api_key,
            "use_cache": self.use_cache,
            "enable_profiling": False,
            "inputs": {self.image_input: {"type": "base64", "value": base64.b64encode(content).decode("ascii")},
                       **self.parameters},
        }
        if self.version_id is not None:
            payload["workflow_version_id"] = self.version_id
        return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def _run_once(self, body: bytes) -> bytes:
        """One attempt: the answer's bytes within ``max_response_bytes``; 404 (no such Workflow)
        and 400/422 (a missing input, a refused parameter) stop the run -- every image would get
        the same answer -- other 4xx fail this image."""
        response = self.client.attempt("POST", self.url, what="running the workflow", data=body,
                                       headers={"Content-Type": "application/json"}, stream=True)
        status = response.status_code
        if status >= 400:
            kind, message = _error(response)
            if status == 404:
                raise UsageError(f"the inference server has no workflow {self.model_id!r} (HTTP 404): "
                                 "check the workspace and the workflow id")
            if status == 422 or kind in _INPUT_ERRORS:
                raise UsageError(f"the inference server refused to run workflow {self.model_id!r} "
                                 f"(HTTP {status}): {message}")
            raise ImageError(f"the inference server rejected the image (HTTP {status}): {message}")
        try:
            return read_body(response, self.max_response_bytes, what="running the workflow")
        except BodyTooLarge as error:
            raise ImageError(f"the workflow answered something that is not a prediction: {error}") from None

    def _outputs(self, raw: bytes) -> dict[str, Any]:
        """The one image's outputs (``outputs[0]``) of the answer."""
        try:
            answer = loads(raw, max_bytes=None, finite=False)
        except JsonError as error:
            raise ImageError(f"the workflow answered something that is not a prediction: {error}") from None
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
            raise ImageError('the workflow answered something that is not a prediction: "outputs" should be a list '
                             "of one object (the outputs for the one image sent)")
        return outputs[0]

    def _chosen(self, outputs: dict[str, Any]) -> Any:
        """The predictions of the output chosen (``output``, else the only one holding predictions,
        remembered for the next images); ``None`` when that output is empty for this image."""
        names = ", ".join(sorted(outputs)) or "none"
        if self.output is None:
            candidates = sorted(name for name, value in outputs.items() if prediction_document(value) is not None)
            if len(candidates) != 1:
                which = "no output holds" if not candidates else f"several outputs hold ({', '.join(candidates)})"
                raise UsageError(f"{which} predictions in workflow {self.model_id!r}'s answer; its outputs: {names}: "
                                 "choose one with --model-opt output=NAME")
            self.output = candidates[0]
        if self.output not in outputs:
            raise UsageError(f"workflow {self.model_id!r} has no output {self.output!r}"
                             f"{did_you_mean(self.output, list(outputs))}; its outputs: {names}")
        value = outputs[self.output]
        if value is None:
            return None
        document = prediction_document(value)
        if document is None:
            holding = sorted(name for name, other in outputs.items() if prediction_document(other) is not None)
            raise UsageError(f"workflow {self.model_id!r}'s output {self.output!r} holds no predictions (a "
                             f"{type(value).__name__}); outputs holding predictions: {', '.join(holding) or 'none'}")
        return document

    def close(self) -> None:
        self.client.close()


#: The execution engine's ``error_type`` for inputs the request lacks or gives wrong: the same for
#: every image (a usage error), unlike an image the server cannot load (that image's failure).
_INPUT_ERRORS = frozenset({"RuntimeInputError", "InvalidInputTypeError", "WorkflowSyntaxError"})


def _error(response: Any) -> tuple[str | None, str]:
    """An error answer's ``error_type`` (the inference server's workflow errors carry one) and its
    message on one line, secrets masked (:func:`alpolicy.io.http.server_message`)."""
    kind = None
    try:
        raw = read_body(response, ERROR_BODY_LIMIT, what="error message")
        response._content = raw  # requests' own cache of a read body: server_message reads it there
        body = loads(raw, max_bytes=None)
        kind = body.get("error_type") if isinstance(body, dict) else None
    except (BodyTooLarge, AttemptFailed, JsonError):
        pass
    message = server_message(response)
    response.close()
    return (kind if isinstance(kind, str) else None), message


def make_backend(target: str, options: ModelOptions) -> WorkflowInference:
    return WorkflowInference(target, options)


@hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "workflow", make_backend,
            "a Roboflow Workflow, hosted or on a local Inference server: workflow:WORKSPACE/WORKFLOW_ID",
            options_schema=OPTIONS_SCHEMA,
        )
    )
