"""Decoder tests: known raw outputs, run through real ONNX Runtime sessions, become known detections."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import onnx  # the "test" extra
import onnxruntime as ort
from onnx import TensorProto, helper

from alpolicy_onnx.decode import (
    LETTERBOX_FILL,
    class_names_from_metadata,
    decode,
    detect_layout,
    letterbox,
    nms,
)

NAMES = ["circle", "square", "triangle"]


# ------------------------------------------------------------------------------------ helpers


def _session(model: "onnx.ModelProto") -> "ort.InferenceSession":
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _passthrough_model(shape: list, metadata: dict[str, str] | None = None) -> "onnx.ModelProto":
    """A graph whose output ``output0`` is its input ``raw``: a stand-in for a detector's head."""
    node = helper.make_node("Identity", ["raw"], ["output0"])
    graph = helper.make_graph(
        [node], "passthrough",
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def _constant_detector(raw: np.ndarray, input_hw: tuple[int, int]) -> "onnx.ModelProto":
    """A 'detector' taking ``images [1, 3, H, W]`` and answering the constant ``raw`` (plus 0 x the image mean)."""
    const = helper.make_node("Constant", [], ["const"], value=helper.make_tensor(
        "value", TensorProto.FLOAT, raw.shape, raw.astype(np.float32).ravel().tolist()))
    mean = helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0)
    zero = helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]))
    scaled = helper.make_node("Mul", ["mean", "zero"], ["nothing"])
    out = helper.make_node("Add", ["const", "nothing"], ["output0"])
    graph = helper.make_graph(
        [const, mean, zero, scaled, out], "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(raw: np.ndarray) -> np.ndarray:
    session = _session(_passthrough_model(list(raw.shape)))
    (out,) = session.run(None, {"raw": raw.astype(np.float32)})
    return out


def _v8(rows: list[tuple], num_classes: int = 3, anchors: int = 16) -> np.ndarray:
    """``[1, 4 + C, anchors]`` from rows ``(cx, cy, w, h, class_id, score)``; other anchors score 0."""
    raw = np.zeros((1, 4 + num_classes, anchors), dtype=np.float32)
    raw[0, :4, :] = 1.0  # harmless tiny boxes with zero scores
    for a, (cx, cy, w, h, cls, score) in enumerate(rows):
        raw[0, :4, a] = (cx, cy, w, h)
        raw[0, 4 + cls, a] = score
    return raw


def _v5(rows: list[tuple], num_classes: int = 3, anchors: int = 16) -> np.ndarray:
    """``[1, anchors, 5 + C]`` from rows ``(cx, cy, w, h, objectness, class_id, class_prob)``."""
    raw = np.zeros((1, anchors, 5 + num_classes), dtype=np.float32)
    raw[0, :, :4] = 1.0
    for a, (cx, cy, w, h, obj, cls, prob) in enumerate(rows):
        raw[0, a, :5] = (cx, cy, w, h, obj)
        raw[0, a, 5 + cls] = prob
    return raw


def _decode1(raw, layout=None, conf=0.25, iou=0.45, ratio=1.0, pad=(0.0, 0.0), size=(640, 640), **kw):
    layout = layout or detect_layout(raw.shape)
    result = decode(raw, layout, conf, iou, ratio, pad, size, names=kw.pop("names", NAMES), **kw)
    assert len(result) == raw.shape[0]
    return result[0]


def _xyxy(d: dict) -> tuple[float, float, float, float]:
    return (d["x"] - d["width"] / 2, d["y"] - d["height"] / 2, d["x"] + d["width"] / 2, d["y"] + d["height"] / 2)


# ------------------------------------------------------------------------------------ known tensors


def test_yolov8_known_tensor_gives_known_boxes():
    raw = _run(_v8([(100, 120, 40, 60, 1, 0.9), (300, 200, 20, 10, 2, 0.6), (50, 50, 10, 10, 0, 0.1)]))
    dets = _decode1(raw)
    assert [(d["class"], d["class_id"]) for d in dets] == [("square", 1), ("triangle", 2)]
    assert dets[0]["x"] == pytest.approx(100) and dets[0]["y"] == pytest.approx(120)
    assert dets[0]["width"] == pytest.approx(40) and dets[0]["height"] == pytest.approx(60)
    assert dets[0]["confidence"] == pytest.approx(0.9)
    assert _xyxy(dets[1]) == pytest.approx((290, 195, 310, 205))
    assert dets[1]["confidence"] == pytest.approx(0.6)
    for d in dets:
        assert set(d) == {"x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"}
        assert all(type(d[k]) is float for k in ("x", "y", "width", "height", "confidence"))
        assert type(d["class_id"]) is int and isinstance(d["detection_id"], str) and d["detection_id"]
    assert dets[0]["detection_id"] != dets[1]["detection_id"]


def test_yolov8_best_class_per_anchor():
    raw = _v8([(100, 100, 50, 50, 0, 0.4)])
    raw[0, 4 + 2, 0] = 0.7  # the same anchor scores triangle higher
    [det] = _decode1(_run(raw))
    assert det["class"] == "triangle" and det["confidence"] == pytest.approx(0.7)


def test_yolov5_known_tensor_gives_known_boxes_with_objectness_times_class():
    raw = _run(_v5([
        (100, 120, 40, 60, 0.9, 0, 0.8),   # 0.72
        (300, 200, 20, 10, 0.5, 2, 0.9),   # 0.45
        (400, 400, 30, 30, 0.2, 1, 1.0),   # 0.20: below 0.25
        (500, 100, 30, 30, 1.0, 1, 0.2),   # 0.20: below 0.25
    ]))
    assert detect_layout(raw.shape) == "yolov5"
    dets = _decode1(raw)
    assert [d["class"] for d in dets] == ["circle", "triangle"]
    assert [d["confidence"] for d in dets] == pytest.approx([0.72, 0.45])
    assert _xyxy(dets[0]) == pytest.approx((80, 90, 120, 150))


def test_constant_detector_session_end_to_end_on_a_letterboxed_image():
    # an original 200x100 image in a 64x64 input: ratio 0.32, resized to 64x32, 16 px of padding on top
    image = Image.new("RGB", (200, 100), (10, 200, 30))
    tensor, ratio, pad = letterbox(image, (64, 64))
    assert ratio == pytest.approx(0.32) and pad == (0.0, 16.0)
    # a box of the original image at x 50..150, y 25..75 is, in input pixels, x 16..48, y 24..40
    raw = _v8([(32, 32, 32, 16, 0, 0.8)], anchors=84)
    session = _session(_constant_detector(raw, (64, 64)))
    (out,) = session.run(None, {"images": tensor[None]})
    [[det]] = decode(out, detect_layout(out.shape), 0.5, 0.45, ratio, pad, image.size, names=NAMES)
    assert _xyxy(det) == pytest.approx((50, 25, 150, 75), abs=1e-4)
    assert det["class"] == "circle"


# ------------------------------------------------------------------------------------ NMS


def test_same_class_overlap_keeps_the_best_one():
    raw = _run(_v8([(100, 100, 50, 50, 0, 0.8), (104, 102, 50, 50, 0, 0.9)]))
    [det] = _decode1(raw)
    assert det["confidence"] == pytest.approx(0.9) and det["x"] == pytest.approx(104)


def test_different_classes_overlapping_are_both_kept():
    raw = _run(_v8([(100, 100, 50, 50, 0, 0.8), (100, 100, 50, 50, 1, 0.9), (101, 100, 50, 50, 2, 0.7)]))
    dets = _decode1(raw)
    assert [d["class"] for d in dets] == ["square", "circle", "triangle"]


def test_iou_exactly_at_threshold_is_kept_and_just_above_is_suppressed():
    # boxes x1y1x2y2 (0,0,10,10) and (0,0,10,5): intersection 50, union 100, IoU exactly 0.5
    raw = _run(_v8([(5, 5, 10, 10, 0, 0.9), (5, 2.5, 10, 5, 0, 0.8)]))
    assert len(_decode1(raw, iou=0.5)) == 2
    assert len(_decode1(raw, iou=0.4999)) == 1
    # the same through nms() directly
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float64)
    assert nms(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.49).tolist() == [0]
    assert nms(boxes, np.array([0.9, 0.8]), 0.49, class_ids=np.array([0, 1])).tolist() == [0, 1]


def test_nms_chain_is_greedy():
    # A overlaps B, B overlaps C, A does not overlap C: B is suppressed, C survives
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]], dtype=np.float64)
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.2).tolist() == [0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_empty_output_gives_no_detections():
    for raw in (np.zeros((1, 7, 0), np.float32), np.zeros((1, 0, 8), np.float32)):
        layout = "yolov8" if raw.shape[1] == 7 else "yolov5"
        assert decode(raw, layout, 0.25, 0.45, 1.0, (0, 0), (64, 64), names=NAMES) == [[]]
    assert decode(np.zeros((0, 7, 100), np.float32), "yolov8", 0.25, 0.45, 1.0, (0, 0), (64, 64)) == []


def test_all_below_confidence_gives_no_detections():
    raw = _run(_v8([(100, 100, 50, 50, 0, 0.2), (300, 100, 50, 50, 1, 0.249)]))
    assert _decode1(raw, conf=0.25) == []
    assert len(_decode1(raw, conf=0.2)) == 2  # the threshold itself is kept


def test_max_detections_keeps_the_most_confident():
    rows = [(20 + 40 * i, 50, 20, 20, i % 3, 0.3 + 0.02 * i) for i in range(15)]
    dets = _decode1(_run(_v8(rows)), max_detections=4)
    assert [d["confidence"] for d in dets] == pytest.approx([0.58, 0.56, 0.54, 0.52])


def test_non_finite_boxes_are_ignored():
    raw = _v8([(100, 100, 50, 50, 0, 0.9), (np.nan, 100, 50, 50, 1, 0.9), (100, np.inf, 50, 50, 2, 0.9)])
    assert [d["class"] for d in _decode1(_run(raw))] == ["circle"]


# ------------------------------------------------------------------------------------ letterbox & mapping


def test_letterbox_pads_with_grey_and_keeps_aspect():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    tensor, ratio, pad = letterbox(image, (64, 64))
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    grey = LETTERBOX_FILL[0] / 255
    assert np.allclose(tensor[:, :16, :], grey) and np.allclose(tensor[:, 48:, :], grey)
    assert np.allclose(tensor[0, 16:48, :], 1.0) and np.allclose(tensor[1:, 16:48, :], 0.0)
    # portrait image, non-square input (height 32, width 64): ratio 0.32 -> 16x32, 24 px on the left
    image = Image.new("L", (50, 100), 255)
    tensor, ratio, pad = letterbox(image, (32, 64))
    assert tensor.shape == (3, 32, 64) and ratio == pytest.approx(0.32) and pad == (24.0, 0.0)
    assert np.allclose(tensor[:, :, 24:40], 1.0) and np.allclose(tensor[:, :, :24], grey)
    assert np.allclose(tensor[:, :, 40:], grey)
    # odd padding: the extra pixel goes right/bottom, as Ultralytics does
    tensor, ratio, pad = letterbox(Image.new("RGB", (10, 7), 0), (10, 10))
    assert pad == (0.0, 1.0) and np.allclose(tensor[:, 1:8, :], 0.0) and np.allclose(tensor[:, 8:, :], grey)
    # RGBA and palette images become RGB
    assert letterbox(Image.new("RGBA", (20, 10)), (16, 16))[0].shape == (3, 16, 16)
    assert letterbox(Image.new("P", (20, 10)), (16, 16))[0].shape == (3, 16, 16)


@pytest.mark.parametrize("original, input_hw", [((640, 480), (320, 320)), ((480, 640), (320, 320)),
                                                 ((1280, 720), (256, 320)), ((333, 517), (160, 96))])
def test_boxes_map_back_to_original_pixels_for_non_square_images(original, input_hw):
    image = Image.new("RGB", original, (0, 0, 0))
    _, ratio, (px, py) = letterbox(image, input_hw)
    w, h = original
    truth = [(0.1 * w, 0.2 * h, 0.4 * w, 0.5 * h), (0.5 * w, 0.6 * h, 0.9 * w, 0.95 * h)]
    rows = []
    for k, (x1, y1, x2, y2) in enumerate(truth):
        ix1, iy1, ix2, iy2 = x1 * ratio + px, y1 * ratio + py, x2 * ratio + px, y2 * ratio + py
        rows.append(((ix1 + ix2) / 2, (iy1 + iy2) / 2, ix2 - ix1, iy2 - iy1, k, 0.9 - 0.1 * k))
    dets = _decode1(_run(_v8(rows, anchors=32)), ratio=ratio, pad=(px, py), size=original)
    for det, box in zip(dets, truth):
        assert _xyxy(det) == pytest.approx(box, abs=0.02)


def test_boxes_are_clipped_to_the_original_image_and_padding_only_boxes_dropped():
    image = Image.new("RGB", (200, 100))
    _, ratio, pad = letterbox(image, (64, 64))  # padding rows 0..16 and 48..64
    raw = _v8([(4, 32, 16, 16, 0, 0.9),     # sticks out to the left of the image
               (32, 8, 10, 6, 1, 0.9)],     # entirely inside the top padding
              anchors=32)
    [det] = _decode1(_run(raw), ratio=ratio, pad=pad, size=image.size)
    x1, y1, x2, y2 = _xyxy(det)
    assert x1 == 0.0 and x2 == pytest.approx(12 / 0.32)
    assert (y1, y2) == pytest.approx(((24 - 16) / 0.32, (40 - 16) / 0.32))


def test_batch_with_per_image_ratio_pad_and_size():
    raw = np.concatenate([_v8([(32, 32, 16, 16, 0, 0.9)]), _v8([(32, 32, 16, 16, 1, 0.8)])])
    out = _run(raw)
    first, second = decode(out, "yolov8", 0.5, 0.5, [1.0, 0.5], [(0, 0), (0, 16)], [(64, 64), (128, 64)],
                           names=NAMES)
    assert _xyxy(first[0]) == pytest.approx((24, 24, 40, 40))
    assert _xyxy(second[0]) == pytest.approx((48, 16, 80, 48))
    with pytest.raises(ValueError, match="2 entries for a batch of 1"):
        decode(out[:1], "yolov8", 0.5, 0.5, [1.0, 0.5], (0, 0), (64, 64))


def test_without_names_the_class_is_the_id():
    [det] = _decode1(_run(_v8([(32, 32, 16, 16, 2, 0.9)])), names=None)
    assert det["class"] == "2" and det["class_id"] == 2


def test_names_must_match_the_number_of_classes():
    with pytest.raises(ValueError, match="outputs 3 classes but 2 class names"):
        _decode1(_v8([(32, 32, 16, 16, 2, 0.9)]), names=["a", "b"])


# ------------------------------------------------------------------------------------ layouts


@pytest.mark.parametrize("shape, layout", [
    ((1, 84, 8400), "yolov8"), ((4, 7, 1600), "yolov8"), ((1, 5, 2100), "yolov8"),
    (("batch", 7, 1600), "yolov8"), ((None, 84, "anchors"), "yolov8"),
    ((1, 25200, 85), "yolov5"), ((1, 6300, 6), "yolov5"), (("batch", "anchors", 85), "yolov5"),
])
def test_detect_layout(shape, layout):
    assert detect_layout(shape) == layout


@pytest.mark.parametrize("shape", [(84, 8400), (1, 1, 84, 8400), (1, 84, 84), (1, 4, 8400), (1, 8400, 5),
                                   ("batch", "channels", "anchors"), (1, 3, 4)])
def test_bad_layout_raises_a_clear_value_error(shape):
    with pytest.raises(ValueError) as info:
        detect_layout(shape)
    message = str(info.value)
    assert "\n" not in message
    assert str(list(shape)) in message
    assert "[batch, 4 + classes, anchors]" in message and "[batch, anchors, 5 + classes]" in message


def test_decode_rejects_bad_layout_and_rank():
    with pytest.raises(ValueError, match="unknown layout"):
        decode(np.zeros((1, 7, 10)), "yolov7", 0.5, 0.5, 1.0, (0, 0), (10, 10))
    with pytest.raises(ValueError, match=r"rank-2 output of shape \[7, 10\]"):
        decode(np.zeros((7, 10)), "yolov8", 0.5, 0.5, 1.0, (0, 0), (10, 10))
    with pytest.raises(ValueError, match="no class scores"):
        decode(np.zeros((1, 10, 5)), "yolov5", 0.5, 0.5, 1.0, (0, 0), (10, 10))


def test_layout_from_a_real_session_output_shape():
    session = _session(_passthrough_model(["batch", 7, 1600]))
    assert detect_layout(session.get_outputs()[0].shape) == "yolov8"
    session = _session(_passthrough_model(["batch", "anchors", 85]))
    assert detect_layout(session.get_outputs()[0].shape) == "yolov5"


# ------------------------------------------------------------------------------------ metadata names


def test_class_names_from_ultralytics_metadata_in_a_real_model():
    model = _passthrough_model([1, 7, 16], {"names": "{0: 'circle', 1: 'square', 2: 'triangle'}",
                                            "imgsz": "[320, 320]", "task": "detect"})
    metadata = _session(model).get_modelmeta().custom_metadata_map
    assert class_names_from_metadata(metadata) == NAMES


@pytest.mark.parametrize("text, names", [
    ("{0: 'person', 1: 'bicycle'}", ["person", "bicycle"]),
    ("{1: 'b', 0: 'a'}", ["a", "b"]),
    ('{"0": "person", "1": "car"}', ["person", "car"]),
    ("['x', 'y']", ["x", "y"]),
    ("  {0: 'only'}\n", ["only"]),
])
def test_class_names_variants(text, names):
    assert class_names_from_metadata({"names": text}) == names


def test_class_names_absent():
    assert class_names_from_metadata({}) is None
    assert class_names_from_metadata(None) is None
    assert class_names_from_metadata({"imgsz": "[640, 640]"}) is None


@pytest.mark.parametrize("text", [
    "{0: 'a', 2: 'c'}",            # ids not 0..n-1
    "{'0': 'a', 0: 'b'}",          # the same id twice, once as a string
    "{-1: 'a'}",
    "{0: 3}",
    "{0: ''}",
    "{True: 'a'}",
    "{0.5: 'a'}",
    "{}",
    "'person'",
    "{0: 'a'",
    "",
])
def test_invalid_class_names_raise(text):
    with pytest.raises(ValueError, match="names"):
        class_names_from_metadata({"names": text})


def test_malicious_names_are_rejected_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    for text in (
        f"__import__('os').system('touch {marker}')",
        f"{{0: __import__('os').system('touch {marker}')}}",
        f"(lambda: open('{marker}', 'w'))()",
        "[x for x in ().__class__.__bases__[0].__subclasses__()]",
        "{0: 'a'} if open('" + str(marker) + "', 'w') else {}",
    ):
        with pytest.raises(ValueError, match="names"):
            class_names_from_metadata({"names": text})
    assert not marker.exists()
    assert not os.path.exists(str(marker))


def test_overlong_or_deep_names_are_rejected():
    with pytest.raises(ValueError, match="too long"):
        class_names_from_metadata({"names": "{0: '" + "a" * 2_000_000 + "'}"})
    with pytest.raises(ValueError, match="names"):
        class_names_from_metadata({"names": "[" * 100_000 + "]" * 100_000})
