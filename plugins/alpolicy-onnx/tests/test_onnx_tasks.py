"""Every Ultralytics task through real ONNX Runtime sessions: segment, pose, classify (and detect).

The models are small graphs built here with the ``onnx`` helper API whose outputs are known:
constants (broadcast over a dynamic batch axis) or, for the classifier, the mean colour of its
input. Each decoded answer is checked against geometry computed by hand through the letterbox,
and read back with ``Prediction.from_json(check=True)``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image, ImageDraw

import alpolicy
from alpolicy import ModelOptions, Prediction
from alpolicy.io.images import ImageFile
from alpolicy_onnx.tasks import COCO_KEYPOINTS, classify_input, tell_task

NAMES = "{0: 'cat', 1: 'dog'}"


# ------------------------------------------------------------------------------------ models


def constant_model(outputs: list[np.ndarray], input_hw: tuple[int, int], metadata: dict[str, str] | None = None,
                   dynamic: bool = True) -> onnx.ModelProto:
    """A model answering the constants ``outputs`` (each ``[1, ...]``), repeated along its batch axis.

    Each output is ``constant + 0 x mean(image)`` so that ONNX Runtime broadcasts it to the batch."""
    batch = "batch" if dynamic else 1
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),  # [B, 1, 1, 1]
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    graph_outputs = []
    for number, value in enumerate(outputs):
        rank = value.ndim
        nodes.append(helper.make_node("Constant", [], [f"const{number}"], value=helper.make_tensor(
            f"v{number}", TensorProto.FLOAT, value.shape, value.astype(np.float32).ravel().tolist())))
        nodes.append(helper.make_node("Constant", [], [f"shape{number}"], value=helper.make_tensor(
            f"s{number}", TensorProto.INT64, [rank], [-1] + [1] * (rank - 1))))
        nodes.append(helper.make_node("Reshape", ["nothing", f"shape{number}"], [f"zeros{number}"]))
        nodes.append(helper.make_node("Add", [f"const{number}", f"zeros{number}"], [f"output{number}"]))
        graph_outputs.append(helper.make_tensor_value_info(f"output{number}", TensorProto.FLOAT,
                                                           [batch, *value.shape[1:]]))
    graph = helper.make_graph(nodes, "constant_model",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])],
                              graph_outputs)
    return _finish(graph, metadata)


def colour_classifier(input_hw: tuple[int, int], metadata: dict[str, str] | None = None,
                      scale: float = 1.0) -> onnx.ModelProto:
    """A 'classifier' whose scores are the mean red, green and blue of its input (x ``scale``)."""
    nodes = [helper.make_node("ReduceMean", ["images"], ["means"], axes=[2, 3], keepdims=0),  # [B, 3]
             helper.make_node("Constant", [], ["scale"], value=helper.make_tensor("k", TensorProto.FLOAT, [], [scale])),
             helper.make_node("Mul", ["means", "scale"], ["output0"])]
    graph = helper.make_graph(nodes, "colour_classifier",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *input_hw])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 3])])
    return _finish(graph, metadata)


def _finish(graph: onnx.GraphProto, metadata: dict[str, str] | None) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> str:
    onnx.save(model, str(path))
    return str(path)


def backend(target: str, confidence: float = 25, **extra):
    spec = alpolicy.get_registry().backends["onnx"]
    return spec.factory(target, ModelOptions(confidence=confidence, overlap=45, extra=extra))


def predict(model, tmp_path: Path, image: Image.Image, name: str = "frame.png") -> Prediction:
    image.save(tmp_path / name)
    return model.predict(ImageFile.from_path(tmp_path / name))


def geometry(image_wh: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, float, float]:
    """(ratio, pad_left, pad_top) of Ultralytics' letterbox, computed by hand."""
    (width, height), (in_h, in_w) = image_wh, input_hw
    ratio = min(in_h / height, in_w / width)
    new_w, new_h = round(width * ratio), round(height * ratio)
    return ratio, round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)


def to_input(box: tuple[float, float, float, float], ratio: float, left: float, top: float) -> tuple[float, ...]:
    """An original-pixel box x1, y1, x2, y2 as the model's cx, cy, w, h in input pixels."""
    x1, y1, x2, y2 = (box[0] * ratio + left, box[1] * ratio + top, box[2] * ratio + left, box[3] * ratio + top)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def roundtrip(prediction: Prediction, task: str) -> None:
    """The answer is a valid Roboflow document of ``task`` on its own (without the backend's hint)."""
    document = prediction.to_json()
    again = Prediction.from_json(document, check=True)
    assert prediction.task == task and again.task == task


# ------------------------------------------------------------------------------------ segmentation

SEG_INPUT = (128, 128)  # protos 32 x 32: stride 4
#: prototype channels: the column index, the row index, 1 -- any linear logit field is a combination
PROTOS = np.stack([np.tile(np.arange(32, dtype=np.float32), (32, 1)), np.tile(np.arange(32, dtype=np.float32)[:, None], (1, 32)),
                   np.ones((32, 32), np.float32)])[None]


def half_plane(threshold: float, ratio: float, left: float, top: float) -> tuple[float, float, float]:
    """Coefficients of the logit ``ratio / 4 * (x + y - threshold)`` in original pixels ``x, y``.

    Prototype index ``p`` has its centre at input coordinate ``(p + 0.5) * 4``, i.e. original
    ``x = ((p + 0.5) * 4 - left) / ratio``: the logit is linear in the prototype indices."""
    return 1.0, 1.0, ((2 - left) + (2 - top)) / 4 - threshold * ratio / 4


def seg_output(rows: list[tuple], num_classes: int = 2, anchors: int = 64) -> np.ndarray:
    """``[1, 4 + nc + 3, anchors]`` from rows ``(cx, cy, w, h, class_id, score, coefficients)``."""
    raw = np.zeros((1, 4 + num_classes + 3, anchors), np.float32)
    raw[0, :4] = 1.0
    for a, (cx, cy, w, h, cls, score, coefficients) in enumerate(rows):
        raw[0, :4, a] = (cx, cy, w, h)
        raw[0, 4 + cls, a] = score
        raw[0, 4 + num_classes:, a] = coefficients
    return raw


def polygon_mask(points: list[dict], size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon([(p["x"], p["y"]) for p in points], fill=1)
    return np.asarray(canvas, dtype=bool)


@pytest.mark.parametrize("image_wh", [(400, 200), (200, 400), (333, 250)])
def test_segment_polygons_match_the_known_mask_at_original_resolution(tmp_path, image_wh):
    """Mask = box and ``x + y > T``: through a non-square letterbox, the polygon in original pixels
    covers that region (IoU against the exact region) and its vertices hug the true edges."""
    ratio, left, top = geometry(image_wh, SEG_INPUT)
    width, height = image_wh
    box = (0.25 * width, 0.25 * height, 0.875 * width, 0.9 * height)
    threshold = 0.55 * (width + height)
    vanished = (0.05 * width, 0.05 * height, 0.2 * width, 0.2 * height)
    raw = seg_output([(*to_input(box, ratio, left, top), 1, 0.9, half_plane(threshold, ratio, left, top)),
                      (*to_input(vanished, ratio, left, top), 0, 0.8, (0.0, 0.0, -5.0))])
    path = save(constant_model([raw, PROTOS], SEG_INPUT, {"task": "segment", "names": NAMES}), tmp_path / "seg.onnx")
    model = backend(path)
    try:
        prediction = predict(model, tmp_path, Image.new("RGB", image_wh, (90, 90, 90)))
    finally:
        model.close()
    assert model.task == "instance-segmentation" and model.fingerprint_settings["task"] == "instance-segmentation"
    roundtrip(prediction, "instance-segmentation")
    dog, cat = prediction.detections
    assert (dog["class"], cat["class"]) == ("dog", "cat")
    assert (dog["x"] - dog["width"] / 2, dog["y"] - dog["height"] / 2) == pytest.approx(box[:2], abs=1e-3)

    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    truth = (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3]) & (xs + ys > threshold)
    drawn = polygon_mask(dog["points"], image_wh)
    iou = (drawn & truth).sum() / (drawn | truth).sum()
    assert iou > 0.97, iou
    polygon_area = 0.5 * abs(sum(p["x"] * q["y"] - q["x"] * p["y"]
                                 for p, q in zip(dog["points"], dog["points"][1:] + dog["points"][:1])))
    assert polygon_area == pytest.approx(truth.sum(), rel=0.03)
    for point in dog["points"]:  # each vertex on the diagonal edge or on the box
        on_edge = abs(point["x"] + point["y"] - threshold) < 2.5
        on_box = min(abs(point["x"] - box[0]), abs(point["x"] - box[2]), abs(point["y"] - box[1]),
                     abs(point["y"] - box[3])) < 1.0
        assert on_edge or on_box, point
    # A mask that vanishes keeps its detection with an empty polygon, as Roboflow Inference answers.
    assert cat["points"] == [] and cat["confidence"] == pytest.approx(0.8)


def test_segment_largest_contour_wins_and_a_speck_is_no_polygon(tmp_path):
    """Two blobs in one box: the polygon outlines the larger (by area)."""
    input_hw, image_wh = (64, 64), (64, 64)  # no letterbox: original pixel = input pixel, protos 16 x 16
    protos = np.full((1, 1, 16, 16), -10.0, np.float32)
    protos[0, 0, 2:4, 2:4] = 10.0  # a small blob (several ragged vertices after upsampling)
    protos[0, 0, 8:14, 6:14] = 10.0  # a large rectangle
    raw = seg_output([(32, 32, 64, 64, 0, 0.9, (1.0,))], num_classes=1)[:, :6]
    path = save(constant_model([raw, protos], input_hw, {"task": "segment"}), tmp_path / "blobs.onnx")
    model = backend(path)
    try:
        (detection,) = predict(model, tmp_path, Image.new("RGB", image_wh)).detections
    finally:
        model.close()
    xs = [p["x"] for p in detection["points"]]
    ys = [p["y"] for p in detection["points"]]
    # the large blob: proto columns 6..13, rows 8..13 -> pixels 24..56 x 32..56 (edges where logits cross 0)
    assert min(xs) == pytest.approx(24, abs=2.5) and max(xs) == pytest.approx(56, abs=2.5)
    assert min(ys) == pytest.approx(32, abs=2.5) and max(ys) == pytest.approx(56, abs=2.5)


def test_segment_batches_on_a_dynamic_axis_keep_each_images_geometry(tmp_path):
    """Concurrent images of different sizes stacked into batches: each gets its own un-letterboxing."""
    sizes = [(400, 200), (200, 400), (128, 128), (300, 120)]
    # one box per image size would need per-image outputs; one constant box decoded through each
    # image's letterbox gives each image a different polygon, which batching must not mix up.
    raw = seg_output([(64, 64, 60, 40, 0, 0.9, (1.0, 1.0, -30.0))])
    path = save(constant_model([raw, PROTOS], SEG_INPUT, {"task": "segment", "names": NAMES}), tmp_path / "dyn.onnx")
    images = []
    for number in range(16):
        size = sizes[number % len(sizes)]
        Image.new("RGB", size, (50, 50, 50)).save(tmp_path / f"f{number}.png")
        images.append(ImageFile.from_path(tmp_path / f"f{number}.png"))
    model = backend(path, batch=8)
    try:
        alone = [model.predict(image) for image in images]
        results: dict[int, Prediction] = {}
        start = threading.Barrier(8)

        def call(index: int) -> None:
            start.wait()
            for number in range(index, len(images), 8):
                results[number] = model.predict(images[number])

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        model.close()
    assert model.dynamic_batch and model.largest_batch > 1, "concurrent requests were never stacked"
    for number, prediction in enumerate(alone):
        ((x, y), (w, h)) = ((prediction.width, prediction.height), sizes[number % len(sizes)])
        assert (x, y) == (w, h)
        (mine,), (together,) = prediction.detections, results[number].detections
        assert [(p["x"], p["y"]) for p in together["points"]] == [(p["x"], p["y"]) for p in mine["points"]]
        assert together["points"], "the mask is not empty"
    assert len({p.detections[0]["x"] for p in alone[:4]}) == 4, "each size has its own geometry"


def test_yolov5_seg_layout_is_read_too(tmp_path):
    """YOLOv5-seg: ``[B, anchors, 5 + nc + nm]`` with objectness; same protos."""
    rows = np.zeros((1, 64, 5 + 2 + 3), np.float32)
    rows[0, :, :4] = 1.0
    rows[0, 0, :5] = (64, 64, 40, 40, 0.9)
    rows[0, 0, 6] = 1.0  # class 1
    rows[0, 0, 7:] = (0.0, 0.0, 1.0)  # the whole box
    path = save(constant_model([rows, PROTOS], SEG_INPUT, {"names": NAMES}), tmp_path / "v5seg.onnx")
    model = backend(path)
    try:
        (detection,) = predict(model, tmp_path, Image.new("RGB", (128, 128))).detections
    finally:
        model.close()
    assert model.task == "instance-segmentation" and model.layout == "yolov5"
    assert detection["class"] == "dog"
    drawn = polygon_mask(detection["points"], (128, 128))
    assert drawn.sum() == pytest.approx(40 * 40, rel=0.06)


# ------------------------------------------------------------------------------------ pose

POSE_INPUT = (96, 160)


def pose_output(keypoints_input: np.ndarray, box: tuple, num_classes: int = 1, dims: int = 3) -> np.ndarray:
    count = keypoints_input.shape[0]
    raw = np.zeros((1, 4 + num_classes + count * dims, 100), np.float32)
    raw[0, :4] = 1.0
    raw[0, :4, 0] = box
    raw[0, 4, 0] = 0.9
    raw[0, 4 + num_classes:, 0] = keypoints_input[:, :dims].ravel()
    return raw


@pytest.mark.parametrize("image_wh", [(640, 200), (150, 480)])
def test_pose_keypoints_are_unletterboxed_and_named(tmp_path, image_wh):
    ratio, left, top = geometry(image_wh, POSE_INPUT)
    width, height = image_wh
    rng = np.random.default_rng(5)
    truth = np.column_stack([rng.uniform(0, width, 17), rng.uniform(0, height, 17), rng.uniform(0, 1, 17)])
    truth[3, :2] = (width + 40, -25)  # outside the image: clipped, as Ultralytics clips
    inside = truth.copy()
    inside[:, 0] = truth[:, 0] * ratio + left
    inside[:, 1] = truth[:, 1] * ratio + top
    box = to_input((0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height), ratio, left, top)
    metadata = {"task": "pose", "kpt_shape": "[17, 3]", "names": "{0: 'person'}"}
    path = save(constant_model([pose_output(inside, box)], POSE_INPUT, metadata), tmp_path / "pose.onnx")
    model = backend(path)
    try:
        prediction = predict(model, tmp_path, Image.new("RGB", image_wh))
    finally:
        model.close()
    assert model.task == "keypoint-detection"
    roundtrip(prediction, "keypoint-detection")
    (person,) = prediction.detections
    keypoints = person["keypoints"]
    assert [k["class"] for k in keypoints] == list(COCO_KEYPOINTS) and [k["class_id"] for k in keypoints] == list(range(17))
    expected = truth.copy()
    expected[3, :2] = (width, 0)
    found = np.array([(k["x"], k["y"], k["confidence"]) for k in keypoints])
    assert found == pytest.approx(expected, abs=1e-3)


def test_pose_names_from_metadata_two_dims_and_the_keypoint_threshold(tmp_path):
    points = np.array([[10, 20, 0.9], [30, 40, 0.2], [50, 60, 0.6]], np.float32)
    metadata = {"task": "pose", "kpt_shape": "[3, 3]", "kpt_names": "{0: ['head', 'hand', 'foot']}"}
    path = save(constant_model([pose_output(points, (40, 40, 60, 60))], POSE_INPUT, metadata), tmp_path / "k.onnx")
    model = backend(path, keypoint_confidence=0.5)
    try:
        (detection,) = predict(model, tmp_path, Image.new("RGB", (160, 96))).detections
    finally:
        model.close()
    assert [(k["class"], k["class_id"]) for k in detection["keypoints"]] == [("head", 0), ("foot", 2)]
    assert model.fingerprint_settings["keypoint_confidence"] == 0.5

    metadata = {"task": "pose", "kpt_shape": "[3, 2]"}  # no visibility: names "0", "1", "2", confidence 1
    path = save(constant_model([pose_output(points, (40, 40, 60, 60), dims=2)], POSE_INPUT, metadata), tmp_path / "k2.onnx")
    model = backend(path)
    try:
        (detection,) = predict(model, tmp_path, Image.new("RGB", (160, 96))).detections
    finally:
        model.close()
    assert [(k["class"], k["x"], k["y"], k["confidence"]) for k in detection["keypoints"]] == [
        ("0", 10, 20, 1.0), ("1", 30, 40, 1.0), ("2", 50, 60, 1.0)]


# ------------------------------------------------------------------------------------ classification


def test_classify_input_is_resize_then_centre_crop_not_letterbox():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    ImageDraw.Draw(image).rectangle((100, 0, 199, 99), fill=(0, 0, 255))  # the centre third is blue
    tensor = classify_input(image, (50, 50))  # shorter side 100 -> 50: 150 x 50, then the centre 50 x 50
    assert tensor.shape == (3, 50, 50) and tensor.dtype == np.float32
    assert tensor[2, :, 2:-2].min() == pytest.approx(1.0) and tensor[0, :, 2:-2].max() == pytest.approx(0.0)
    tall = classify_input(Image.new("RGB", (101, 333), (0, 255, 0)), (64, 64))
    assert tall.shape == (3, 64, 64) and tall[1].min() == pytest.approx(1.0)  # no grey padding anywhere
    exact = classify_input(Image.new("RGB", (40, 10), (0, 0, 0)), (32, 48))  # non-square: resized exactly
    assert exact.shape == (3, 32, 48)


def test_single_label_classifier_from_probabilities(tmp_path):
    path = save(colour_classifier((64, 64), {"task": "classify", "names": "{0: 'red', 1: 'green', 2: 'blue'}"}),
                tmp_path / "cls.onnx")
    image = Image.new("RGB", (300, 100), (255, 0, 0))  # red sides...
    ImageDraw.Draw(image).rectangle((100, 0, 199, 99), fill=(0, 0, 230))  # ...a blue centre: the crop sees blue
    model = backend(path)
    try:
        prediction = predict(model, tmp_path, image)
    finally:
        model.close()
    assert model.task == "classification" and model.fingerprint_settings["multi_label"] is False
    roundtrip(prediction, "classification")
    document = prediction.to_json()
    assert document["top"] == "blue" and document["confidence"] == pytest.approx(230 / 255, abs=0.02)
    assert [p["class"] for p in document["predictions"]] == ["blue", "red", "green"]
    assert [(d["class"], d["class_id"]) for d in prediction.detections] == [("blue", 2)]


def test_logits_get_a_softmax_and_multi_label_thresholds(tmp_path):
    path = save(colour_classifier((32, 32), {"names": "{0: 'red', 1: 'green', 2: 'blue'}"}, scale=10.0),
                tmp_path / "logits.onnx")  # no task metadata: [B, 3] says classify; scale 10: logits
    image = Image.new("RGB", (32, 32), (255, 255, 0))  # red and green full, no blue
    model = backend(path)
    try:
        document = predict(model, tmp_path, image).to_json()
    finally:
        model.close()
    assert model.fingerprint_settings["logits"] is True
    expected = np.exp([10.0, 10.0, 0.0]) / np.exp([10.0, 10.0, 0.0]).sum()
    assert [p["confidence"] for p in document["predictions"]] == pytest.approx(sorted(expected, reverse=True), abs=1e-4)
    assert document["top"] == "red"  # a tie: the lower class id first

    model = backend(save(colour_classifier((32, 32), {"names": "{0: 'red', 1: 'green', 2: 'blue'}"}),
                         tmp_path / "multi.onnx"), confidence=50, multi_label=True)
    try:
        prediction = predict(model, tmp_path, Image.new("RGB", (32, 32), (200, 100, 150)))
    finally:
        model.close()
    assert model.task == "multi-label-classification"
    roundtrip(prediction, "multi-label-classification")
    document = prediction.to_json()
    assert document["predicted_classes"] == ["red", "blue"]  # 200/255 and 150/255 >= 0.5, not 100/255
    assert document["predictions"]["green"] == {"confidence": pytest.approx(100 / 255, abs=1e-3), "class_id": 1}


def test_classifier_batches_keep_each_images_answer(tmp_path):
    path = save(colour_classifier((32, 32), {"task": "classify", "names": "{0: 'red', 1: 'green', 2: 'blue'}"}),
                tmp_path / "cls.onnx")
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    images = []
    for number in range(18):
        name = list(colours)[number % 3]
        Image.new("RGB", (40 + number, 30), colours[name]).save(tmp_path / f"{number}.png")
        images.append((name, ImageFile.from_path(tmp_path / f"{number}.png")))
    model = backend(path, batch=6)
    results: dict[int, Prediction] = {}
    start = threading.Barrier(6)

    def call(index: int) -> None:
        start.wait()
        for number in range(index, len(images), 6):
            results[number] = model.predict(images[number][1])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.close()
    assert model.largest_batch > 1
    assert [results[number].top for number in range(len(images))] == [name for name, _ in images]


# ------------------------------------------------------------------------------------ telling the task


@pytest.mark.parametrize("metadata, shapes, task, classes", [
    ({}, [(1, 7, 100)], "object-detection", 3),
    ({}, [(1, 100, 8)], "object-detection", 3),  # YOLOv5
    ({"task": "detect"}, [(1, 84, 8400)], "object-detection", 80),
    ({}, [(1, 116, 8400), (1, 32, 160, 160)], "instance-segmentation", 80),
    ({"task": "segment"}, [(1, 38, 8400), (1, 32, 160, 160)], "instance-segmentation", 2),
    ({"task": "pose", "kpt_shape": "[17, 3]"}, [(1, 56, 8400)], "keypoint-detection", 1),
    ({"kpt_shape": "[17, 3]"}, [(1, 56, 8400)], "keypoint-detection", 1),
    ({}, [(1, 1000)], "classification", 1000),
    ({"task": "classify"}, [(4, 10)], "classification", 10),
])
def test_the_task_from_metadata_and_shapes(metadata, shapes, task, classes):
    found = tell_task(metadata, shapes)
    assert (found.task, found.num_classes) == (task, classes)


@pytest.mark.parametrize("metadata, shapes, message", [
    ({"task": "segment"}, [(1, 7, 100)], r"the metadata says task 'segment' but the outputs are \[1, 7, 100\] \(no mask prototypes\)"),
    ({"task": "detect"}, [(1, 38, 100), (1, 32, 16, 16)], r"task 'detect' but the outputs are \[1, 38, 100\], \[1, 32, 16, 16\]"),
    ({"task": "classify"}, [(1, 7, 100)], r"task 'classify' but the outputs are \[1, 7, 100\]; a classify export has \[batch, classes\]"),
    ({"task": "pose"}, [(1, 56, 100)], r"no kpt_shape in the metadata"),
    ({"task": "pose", "kpt_shape": "[17, 3]"}, [(1, 55, 100)], r"55 channels leave no class scores"),
    ({"task": "segment"}, [(1, 36, 100), (1, 32, 16, 16)], r"36 channels leave no class scores beside 32 mask"),
    ({"task": "obb"}, [(1, 20, 100)], r"task 'obb', which is not supported"),
    ({}, [(1, 3, 16, 16)], r"cannot tell the task from outputs \[1, 3, 16, 16\]"),
    ({"end2end": "True"}, [(1, 300, 6)], r"end-to-end export .*\[1, 300, 6\]"),
    ({"args": "{'batch': 1, 'nms': True}"}, [(1, 300, 6)], r"end-to-end export"),
    ({"kpt_shape": "[17]"}, [(1, 56, 100)], r"kpt_shape '\[17\]' is not"),
])
def test_contradictions_and_unknown_layouts_are_clear(metadata, shapes, message):
    with pytest.raises(ValueError, match=message):
        tell_task(metadata, shapes)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real ``alpolicy`` command in a subprocess, as a user's shell runs it."""
    return subprocess.run([sys.executable, "-m", "alpolicy", *args], capture_output=True, text=True, timeout=300)


def test_a_contradiction_is_one_line_on_the_command_line(tmp_path):
    raw = np.zeros((1, 7, 16), np.float32)
    path = save(constant_model([raw], (32, 32), {"task": "segment"}), tmp_path / "liar.onnx")
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "frames" / "a.png")
    result = run_cli("run", str(tmp_path / "frames"), "--model", f"onnx:{path}", "--dry-run", "--journal", ":memory:")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "alpolicy: error: liar.onnx: the metadata says task 'segment' but the outputs are [1, 7, 16]"), result.stderr

    boxes = save(constant_model([raw], (32, 32)), tmp_path / "boxes.onnx")
    result = run_cli("run", str(tmp_path / "frames"), "--model", f"onnx:{boxes}", "--model-opt", "multi_label=true",
                     "--dry-run", "--journal", ":memory:")
    assert result.returncode == 2 and result.stderr == (
        "alpolicy: error: boxes.onnx: multi_label applies to classifiers; this is a detect model\n"), result.stderr


def test_a_detector_is_still_an_object_detector_with_its_task_in_the_fingerprint(tmp_path):
    raw = np.zeros((1, 6, 16), np.float32)
    raw[0, :4] = 1.0
    raw[0, :, 0] = (16, 16, 8, 8, 0.0, 0.9)
    model = backend(save(constant_model([raw], (32, 32), {"task": "detect", "names": NAMES}), tmp_path / "det.onnx"))
    try:
        prediction = predict(model, tmp_path, Image.new("RGB", (64, 32)))
    finally:
        model.close()
    assert model.task == "object-detection" and model.fingerprint_settings["task"] == "object-detection"
    roundtrip(prediction, "object-detection")
    (detection,) = prediction.detections
    assert detection["class"] == "dog" and (detection["x"], detection["width"]) == pytest.approx((32, 16))
