"""The ``onnx:`` inference backend: YOLO-style ONNX models on ONNX Runtime, on the CPU.

``onnx:PATH`` loads a YOLOv8 / YOLO11 / YOLOv5 export of any Ultralytics task (detect, segment,
pose, classify: :mod:`alpolicy_onnx.tasks` tells which and decodes it); ``onnx:demo`` (``onnx:demo-seg``)
loads the small shape detector (segmenter) shipped with this plugin. Images are decoded (EXIF orientation applied, JPEG
draft mode when the model needs fewer pixels) and letterboxed in the pipeline's threads
(:mod:`alpolicy_onnx.preprocess`), while one worker feeds ONNX Runtime: when the model has a
dynamic batch axis, the requests waiting at that moment are stacked into one batch (those of one
input shape: a model with dynamic spatial axes gets each image padded only to a stride multiple,
as Ultralytics does). Decoding thus overlaps inference, and ``session.run`` (which releases the
GIL) keeps the cores busy.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from alpolicy import InferenceBackend, Prediction, UsageError
from alpolicy.policy.prediction import PredictionFormatError
from alpolicy.backends import ImageError, ModelOptions, fingerprint
from alpolicy.io.images import ImageDecodeError, ImageFile, sha256_file

from .decode import class_names_from_metadata
from .preprocess import Prepared, prepare
from .plugin import DEFAULT_MAX_BATCH
from .tasks import (TaskDecoder, answers_logits, classify_input, keypoint_names_from_metadata, multi_label_from,
                    tell_task)

DEMO_MODEL = "demo"
#: ``onnx:NAME`` of each shipped demo model -> (its file in ``models/``, its model id). Trained by
#: training/train_demo_detector.py (detect) and training/train_demo_segmenter.py (segment).
DEMO_MODELS = {"demo": ("demo-shapes.onnx", "onnx:demo-shapes"),
               "demo-seg": ("demo-shapes-seg.onnx", "onnx:demo-shapes-seg")}


def demo_model_path(name: str = DEMO_MODEL) -> Path:
    """A shipped demo model (circle / square / triangle): ``demo`` detects, ``demo-seg`` segments."""
    return Path(str(resources.files("alpolicy_onnx").joinpath("models", DEMO_MODELS[name][0])))


@dataclass
class _Request:
    tensor: np.ndarray
    future: Future


class OnnxBackend(InferenceBackend):
    """Thread-safe: many callers, one inference worker."""

    def __init__(self, target: str, options: ModelOptions) -> None:
        path = demo_model_path(target) if target in DEMO_MODELS else Path(target).expanduser()
        if not path.is_file():
            raise UsageError(f"no ONNX model at {str(path)!r} (onnx:PATH, or onnx:demo / onnx:demo-seg for the shipped ones)")
        self.model_id = DEMO_MODELS[target][1] if target in DEMO_MODELS else f"onnx:{path.name}"
        labels = options.extra.get("labels")
        names_from_file = _read_labels(labels) if labels else None  # before the (slow) model load
        self.session = _session(path, options)
        model_input = self.session.get_inputs()[0]
        if len(model_input.shape) != 4:
            raise UsageError(f"{path.name}: expected an image input [batch, 3, H, W], got {model_input.shape}")
        self.input_name = model_input.name
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.input_size = _input_size(model_input.shape, metadata)
        #: Pad only to a multiple of the model's stride when its spatial axes are dynamic (fewer
        #: pixels to infer, as Ultralytics' predictor does); ``None``: the full fixed input size.
        self.stride = _stride(metadata) if _dynamic_spatial(model_input.shape) else None
        self.dynamic_batch = not isinstance(model_input.shape[0], int)
        self.max_batch = int(options.extra.get("batch", DEFAULT_MAX_BATCH)) if self.dynamic_batch else 1
        self.confidence = options.confidence / 100.0
        self.max_detections = options.max_detections
        self.iou = options.overlap / 100.0
        # A letterbox-grey probe: its outputs' shapes tell the task, and a classifier answering
        # values outside 0..1 for it answers logits.
        probe = np.full((1, 3, *self.input_size), 114 / 255, np.float32)
        outputs = self.session.run(None, {self.input_name: probe})
        self.decoder = _decoder(path.name, metadata, outputs, names_from_file, labels, options, self.input_size)
        self.layout = self.decoder.model.layout
        self.names = self.decoder.names
        #: The Roboflow task of the model (alpolicy.policy.prediction.TASKS), from its metadata or outputs.
        self.task = self.decoder.task
        #: Everything that changes a prediction: the weights (by content, so a copied or moved file
        #: keeps its stored predictions), the thresholds, the class names, the input size, the
        #: output layout and the task's decoding settings. Batching and threads do not change
        #: answers and are left out.
        self.fingerprint_settings = {
            "sha256": _model_hash(path), "confidence": float(options.confidence), "overlap": float(options.overlap),
            "labels": list(self.names), "input_size": list(self.input_size), "layout": self.layout,
            **self.decoder.settings(),
        }
        if self.decoder.model.kind not in ("detect", "pose"):
            # Classifiers take a centre crop of the input size; segmentation masks are decoded
            # against the full input's prototypes: both keep the fixed input size.
            self.stride = None
        if self.stride is not None:  # what the model sees changed: other predictions (dynamic models only)
            self.fingerprint_settings["letterbox_stride"] = self.stride
        if self.decoder.model.kind != "classify":
            # JPEG draft decoding moves scores a little (up to ~0.03 on the demo model): a
            # prediction of the full-decode days is another model's answer, never reused for this one.
            self.fingerprint_settings["jpeg_draft"] = True
        self.fingerprint = fingerprint("onnx", self.model_id, self.fingerprint_settings)
        #: Diagnostics: ``session.run`` calls and the largest batch stacked so far.
        self.batches_run = 0
        self.largest_batch = 0
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._serve, name="alpolicy-onnx", daemon=True)
        self._worker.start()

    def predict(self, image: ImageFile) -> Prediction:
        try:
            if self.decoder.model.is_classification:  # a centre crop of the whole picture, no letterbox
                picture = image.load()
                prepared = Prepared(classify_input(picture, self.input_size), 1.0, (0.0, 0.0), picture.size)
            else:
                prepared = prepare(image, self.input_size, stride=self.stride)
        except ImageDecodeError as error:
            raise ImageError(str(error)) from None
        future: Future = Future()
        self._queue.put(_Request(prepared.tensor, future))
        outputs = future.result()
        document = self.decoder.decode(outputs, prepared.ratio, prepared.pad, prepared.size)
        document["model_id"] = self.model_id
        try:
            # A broken or mis-exported model (infinite scores, logits instead of probabilities)
            # fails this image with the place of the bad value, instead of reaching the rules.
            return Prediction.from_json(document, check=True, max_detections=self.max_detections, task=self.task)
        except PredictionFormatError as error:
            raise ImageError(f"the model produced an invalid detection: {error}") from None

    def _serve(self) -> None:
        """Run batches: everything queued right now, up to ``max_batch``, of one input shape.

        A request of another shape (minimal padding, frames of another aspect) ends the batch and
        starts the next one, so requests are still answered in the order they came.
        """
        held: _Request | None = None
        while True:
            first = held if held is not None else self._queue.get()
            held = None
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                if more.tensor.shape != first.tensor.shape:
                    held = more
                    break
                batch.append(more)
            try:
                tensors = [request.tensor for request in batch]
                stacked = tensors[0][None] if len(tensors) == 1 else np.stack(tensors)  # a view, or one copy
                outputs = self.session.run(None, {self.input_name: stacked})
            except Exception as error:  # every waiting caller learns why
                for request in batch:
                    request.future.set_exception(ImageError(f"ONNX Runtime failed: {error}"))
                continue
            self.batches_run += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            for index, request in enumerate(batch):
                request.future.set_result([output[index : index + 1] for output in outputs])

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)


def _decoder(model: str, metadata: dict[str, str], outputs: list[np.ndarray], names_from_file: list[str] | None,
             labels: Any, options: ModelOptions, input_size: tuple[int, int]) -> TaskDecoder:
    """The model's task (metadata and output shapes must agree) and the decoder of its outputs;
    every inconsistency is one line naming the model file."""
    try:
        found = tell_task(metadata, [output.shape for output in outputs])
        multi_label = multi_label_from(metadata, options.extra.get("multi_label"))
        if multi_label and not found.is_classification:
            raise ValueError(f"multi_label applies to classifiers; this is a {found.kind} model")
        names = _class_names(names_from_file, labels, metadata, found.num_classes, model)
        keypoint_names = (keypoint_names_from_metadata(metadata, found.kpt_shape, found.num_classes)
                          if found.kpt_shape else [])
    except ValueError as error:
        raise UsageError(f"{model}: {error}") from None
    return TaskDecoder(
        found, names, options.confidence / 100.0, options.overlap / 100.0, input_size, multi_label=multi_label,
        keypoint_names=keypoint_names, keypoint_confidence=float(options.extra.get("keypoint_confidence", 0.0)),
        logits=found.is_classification and answers_logits(outputs[0]),
    )


def _session(path: Path, options: ModelOptions) -> ort.InferenceSession:
    settings = ort.SessionOptions()
    # Intra-op threads = cores: inference is the CPU-bound stage; image decoding runs in the
    # pipeline's threads meanwhile (mostly outside the GIL).
    settings.intra_op_num_threads = int(options.extra.get("threads", os.cpu_count() or 1))
    settings.inter_op_num_threads = 1
    # ORT's idle intra-op threads spin by default, burning the cores the image decoders need.
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise UsageError(f"cannot load {path.name} with ONNX Runtime: {str(error).splitlines()[0]}") from None


def _model_hash(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as error:
        raise UsageError(f"cannot read {path.name}: {error.strerror or error}") from None


def _input_size(shape: list[Any], metadata: dict[str, str]) -> tuple[int, int]:
    """(height, width) of the model input; from the metadata ``imgsz`` when the axes are dynamic."""
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    size = metadata.get("imgsz", "").strip("[]() ")
    parts = [int(p) for p in size.replace(",", " ").split()] if size else []
    if len(parts) == 2:
        return parts[0], parts[1]
    return 640, 640


def _dynamic_spatial(shape: list[Any]) -> bool:
    """The model takes any input height and width (an Ultralytics ``dynamic=True`` export)."""
    return not (isinstance(shape[2], int) and isinstance(shape[3], int))


def _stride(metadata: dict[str, str]) -> int:
    """The model's largest stride (Ultralytics' ``stride`` metadata), 32 (YOLO's) when absent or odd."""
    try:
        stride = int(str(metadata.get("stride", "32")).strip())
    except ValueError:
        return 32
    return stride if 0 < stride <= 1024 else 32


def _read_labels(labels: Any) -> list[str]:
    """Class names, one per line, from ``--labels``; a wrong file is one line, not a traceback."""
    where = f"the labels file {str(labels)!r}"
    path = Path(labels).expanduser()
    if not path.exists():
        raise UsageError(f"{where} does not exist")
    if path.is_dir():
        raise UsageError(f"{where} is a folder")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text") from None
    except OSError as error:
        raise UsageError(f"{where} cannot be read: {error.strerror or error}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UsageError(f"{where} names no class (one name per line)")
    return names


def _class_names(names: list[str] | None, labels: Any, metadata: dict[str, str], classes: int, model: str) -> list[str]:
    if names is not None:
        source = f"labels file {labels}"
    else:
        names = class_names_from_metadata(metadata) or [str(i) for i in range(classes)]
        source = f"{model} metadata"
    if len(names) != classes:
        raise UsageError(f"{source} names {len(names)} classes but the model outputs {classes}")
    return names
