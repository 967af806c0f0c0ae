"""The plugin module named by the ``alpolicy`` entry point: registers the ``onnx`` backend."""

from __future__ import annotations

from typing import Callable

import alpolicy
from alpolicy import InferenceBackendSpec, ModelOptions


def make_backend(target: str, options: ModelOptions):
    from .backend import OnnxBackend  # onnxruntime loads only when an onnx: model is used

    return OnnxBackend(target, options)


@alpolicy.hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "onnx", make_backend,
            "YOLOv8/YOLO11/YOLOv5 ONNX exports on ONNX Runtime (CPU): onnx:MODEL.onnx, or onnx:demo",
        )
    )
