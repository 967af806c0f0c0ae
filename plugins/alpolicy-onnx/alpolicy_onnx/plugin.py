"""The plugin module named by the ``alpolicy`` entry point: registers the ``onnx`` backend."""

from __future__ import annotations

from typing import Any, Callable

import alpolicy
from alpolicy import InferenceBackendSpec, ModelOptions

#: Largest batch stacked for one ``session.run`` (dynamic-batch models only).
DEFAULT_MAX_BATCH = 8

#: The backend's own settings (``ModelOptions.extra``, ``--model-opt KEY=VALUE``), checked by alpolicy
#: before the backend is built; ``alpolicy options onnx`` lists them.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "onnx backend options",
    "type": "object",
    "properties": {
        "labels": {"type": "string", "minLength": 1,
                   "description": "a file of class names, one per line, for models without names in their metadata (--labels)"},
        "batch": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_BATCH,
                  "description": "the largest batch stacked for one ONNX Runtime call (models with a dynamic batch axis)"},
        "threads": {"type": "integer", "minimum": 1,
                    "description": "ONNX Runtime intra-op threads (default: the number of cores)"},
        "multi_label": {"type": "boolean",
                        "description": "a classifier is multi-label (sigmoid per class): predicted_classes are those at or above the confidence"},
        "keypoint_confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0,
                                "description": "pose models: keypoints whose visibility is below this are left out (default 0: all)"},
    },
}


def make_backend(target: str, options: ModelOptions):
    from .backend import OnnxBackend  # onnxruntime loads only when an onnx: model is used

    return OnnxBackend(target, options)


@alpolicy.hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "onnx", make_backend,
            "YOLOv8/YOLO11/YOLOv5 ONNX exports (detect, segment, pose, classify) on ONNX Runtime (CPU): onnx:MODEL.onnx, or onnx:demo",
            options_schema=OPTIONS_SCHEMA,
        )
    )
