"""Pre-processing: the one-copy letterbox, JPEG draft mode and minimal padding keep every box where
a full decoding puts it, in pixels of the original image (real JPEG files, the shipped demo model,
real ONNX Runtime sessions)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import alpolicy
from alpolicy import ModelOptions
from alpolicy.io.images import ImageFile
from alpolicy_onnx import decode as decode_module
from alpolicy_onnx.decode import decode
from alpolicy_onnx.preprocess import LETTERBOX_FILL, fitted_size, letterbox, prepare
from alpolicy_onnx.synthetic import random_scene


def previous_letterbox(image: Image.Image, size: tuple[int, int]):
    """The letterbox as it was before this module (canvas image, float array, transposed copy)."""
    out_h, out_w = int(size[0]), int(size[1])
    width, height = image.size
    if image.mode != "RGB":
        image = image.convert("RGB")
    ratio = min(out_h / height, out_w / width)
    new_w = max(1, min(out_w, int(round(width * ratio))))
    new_h = max(1, min(out_h, int(round(height * ratio))))
    dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    canvas = Image.new("RGB", (out_w, out_h), LETTERBOX_FILL)
    canvas.paste(image, (left, top))
    array = np.asarray(canvas, dtype=np.float32)
    tensor = np.ascontiguousarray(array.transpose(2, 0, 1))
    tensor *= np.float32(1.0 / 255.0)
    return tensor, float(ratio), (float(left), float(top))


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    return image.convert(mode) if mode != "RGB" else image


def test_decode_letterbox_is_the_preprocess_letterbox():
    assert decode_module.letterbox is letterbox
    assert decode_module.LETTERBOX_FILL == LETTERBOX_FILL


@pytest.mark.parametrize("image_size, input_size, mode", [
    ((640, 480), (640, 640), "RGB"),   # shrink-free, pad top and bottom
    ((1920, 1080), (640, 640), "RGB"),  # shrink
    ((101, 37), (64, 96), "RGB"),      # odd padding (the odd pixel goes right/bottom), enlarge
    ((300, 500), (320, 320), "L"),     # portrait, grey
    ((257, 129), (128, 128), "RGBA"),  # alpha dropped as before
    ((64, 64), (64, 64), "P"),         # nothing to do
])
def test_the_letterbox_equals_the_previous_implementation_exactly(image_size, input_size, mode):
    # Same Pillow resize, and the same float32 products (uint8 -> float32, x float32(1/255)):
    # one pass instead of three copies changes no value.
    image = noise(image_size, mode)
    tensor, ratio, pad = letterbox(image, input_size)
    old_tensor, old_ratio, old_pad = previous_letterbox(image, input_size)
    assert tensor.dtype == np.float32 and tensor.flags.c_contiguous
    assert tensor.shape == old_tensor.shape == (3, *input_size)
    assert np.array_equal(tensor, old_tensor)
    assert (ratio, pad) == (old_ratio, old_pad)


@pytest.mark.parametrize("image_size, tensor_hw, pad", [
    ((640, 480), (480, 640), (0.0, 0.0)),     # already a multiple of 32
    ((1920, 1080), (384, 640), (0.0, 12.0)),  # 640x360 fitted, padded to 384 (Ultralytics' auto=True)
    ((480, 640), (640, 480), (0.0, 0.0)),
    ((1000, 333), (224, 640), (0.0, 5.0)),    # 640x213 fitted: 11 rows of padding, 5 above
])
def test_minimal_padding_pads_only_to_the_stride(image_size, tensor_hw, pad):
    tensor, ratio, got_pad = letterbox(noise(image_size), (640, 640), stride=32)
    assert tensor.shape == (3, *tensor_hw) and got_pad == pad
    assert ratio == min(640 / image_size[0], 640 / image_size[1])
    full, _, (full_left, full_top) = letterbox(noise(image_size), (640, 640))
    # The picture itself is the same pixels as in the square input, only the grey border differs.
    width, height = fitted_size(image_size, (640, 640))
    left, top = int(pad[0]), int(pad[1])
    picture = tensor[:, top:top + height, left:left + width]
    assert np.array_equal(picture, full[:, int(full_top):int(full_top) + height, int(full_left):int(full_left) + width])
    assert np.all(np.delete(tensor, np.s_[top:top + height], axis=1) == np.float32(114) * np.float32(1 / 255))


def scene_file(tmp_path: Path, size: tuple[int, int], name: str, seed: int = 4, orientation: int = 1,
               fmt: str = "JPEG") -> tuple[ImageFile, Image.Image]:
    """A synthetic scene saved at ``size``; with ``orientation`` 6 the pixels are stored rotated
    and the EXIF tag says how to turn them upright (as a phone does)."""
    image, _ = random_scene(seed, size)
    stored = image.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else image
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    path = tmp_path / name
    stored.save(path, fmt, **({"quality": 95, "exif": exif} if fmt == "JPEG" else {}))
    return ImageFile.from_path(path), image


@pytest.fixture(scope="module")
def demo():
    model = alpolicy.get_registry().backends["onnx"].factory("demo", ModelOptions(confidence=25, overlap=45))
    yield model
    model.close()


def full_decoding_prediction(model, image: ImageFile) -> list[dict]:
    """The reference: decode every pixel (ImageFile.load), letterbox, infer, map back."""
    picture = image.load()
    tensor, ratio, pad = letterbox(picture, model.input_size)
    output = model.session.run(None, {model.input_name: tensor[None]})[0]
    (detections,) = decode(output, model.layout, model.confidence, model.iou, ratio, pad, picture.size,
                           names=model.names)
    return detections


def assert_same_boxes(got: list[dict], expected: list[dict], size: tuple[int, int]) -> None:
    """Every confident box of the full decoding is found, same class, within 1% of the frame."""
    confident = [d for d in expected if d["confidence"] >= 0.5]
    assert confident, "the scene should give the demo model something to find"
    tolerance = 0.01 * max(size)
    for d in confident:
        same_class = [e for e in got if e["class"] == d["class"]]
        assert same_class, f"no {d['class']} found with draft decoding"
        match = min(same_class, key=lambda e: abs(e["x"] - d["x"]) + abs(e["y"] - d["y"]))
        for key in ("x", "y", "width", "height"):
            assert abs(match[key] - d[key]) <= tolerance, (key, match, d)
        assert abs(match["confidence"] - d["confidence"]) < 0.1


@pytest.mark.parametrize("size, orientation, scale", [
    ((1280, 960), 1, 4),   # 4:3 into the demo's 320x320: 320x240 is a quarter
    ((1280, 720), 1, 4),   # 16:9: 320x180 fitted
    ((1000, 700), 1, 2),   # not a multiple of the scale: the last block row/column is partial
    ((1280, 720), 6, 4),   # stored portrait (720x1280), shown landscape: boxes in shown pixels
])
def test_draft_decoding_gives_boxes_in_original_pixels(demo, tmp_path, size, orientation, scale):
    image, upright = scene_file(tmp_path, size, "scene.jpg", orientation=orientation)
    prepared = prepare(image, demo.input_size)
    assert prepared.draft_scale == scale and prepared.size == size == upright.size
    full = prepare(image, demo.input_size, draft=False)
    assert full.draft_scale == 1
    # The same geometry: the reduced picture is resized to the size the original would be.
    assert (prepared.ratio, prepared.pad, prepared.tensor.shape) == (full.ratio, full.pad, full.tensor.shape)
    assert np.abs(prepared.tensor - full.tensor).mean() < 0.02  # resampling differs, not the content
    prediction = demo.predict(image)
    assert (prediction.width, prediction.height) == size
    assert_same_boxes(prediction.detections, full_decoding_prediction(demo, image), size)


def test_a_rotated_photo_and_its_upright_twin_give_the_same_boxes(demo, tmp_path):
    rotated, _ = scene_file(tmp_path, (1280, 720), "rotated.jpg", orientation=6)
    upright, _ = scene_file(tmp_path, (1280, 720), "upright.jpg")
    assert_same_boxes(demo.predict(rotated).detections, full_decoding_prediction(demo, upright), (1280, 720))


def test_a_small_jpeg_is_decoded_fully(demo, tmp_path):
    image, _ = scene_file(tmp_path, (500, 400), "small.jpg")  # 320x256 fitted: more than half of it
    prepared = prepare(image, demo.input_size)
    assert prepared.draft_scale == 1
    tensor, ratio, pad = letterbox(image.load(), demo.input_size)
    assert np.array_equal(prepared.tensor, tensor) and (prepared.ratio, prepared.pad) == (ratio, pad)


@pytest.mark.parametrize("fmt, name", [("PNG", "scene.png"), ("WEBP", "scene.webp"), ("BMP", "scene.bmp")])
def test_other_formats_are_decoded_as_before(demo, tmp_path, fmt, name):
    image, _ = scene_file(tmp_path, (1280, 960), name, fmt=fmt)
    prepared = prepare(image, demo.input_size)
    tensor, ratio, pad = letterbox(image.load(), demo.input_size)
    assert prepared.draft_scale == 1 and prepared.size == (1280, 960)
    assert np.array_equal(prepared.tensor, tensor) and (prepared.ratio, prepared.pad) == (ratio, pad)


# ------------------------------------------------------------- minimal padding in the backend


def corner_detector(tmp_path: Path) -> str:
    """A detector with dynamic batch, height and width answering, for every image, one 16x16 box
    at the input's top-left corner: where it lands in the original tells the padding used."""
    anchors, classes = 8, 2
    raw = np.zeros((1, 4 + classes, anchors), dtype=np.float32)
    raw[0, :4, :] = 1.0
    raw[0, :4, 0] = (8, 8, 16, 16)
    raw[0, 4, 0] = 0.9
    nodes = [
        helper.make_node("Constant", [], ["const"], value=helper.make_tensor(
            "value", TensorProto.FLOAT, raw.shape, raw.ravel().tolist())),
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),  # [batch, 1, 1, 1]
        helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [3], [-1, 1, 1])),
        helper.make_node("Reshape", ["mean", "shape"], ["per_image"]),                    # [batch, 1, 1]
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Mul", ["per_image", "zero"], ["nothing"]),
        helper.make_node("Add", ["const", "nothing"], ["output0"]),                       # [batch, 6, anchors]
    ]
    graph = helper.make_graph(
        nodes, "corner_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + classes, anchors])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"imgsz": "[64, 64]", "stride": "32", "names": "{0: 'a', 1: 'b'}"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path = tmp_path / "corner.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_a_dynamic_model_gets_minimal_padding_and_batches_of_one_shape(tmp_path):
    # 64x64 input, stride 32. wide 256x96 -> fitted 64x24, padded to 64x32 (4 rows above): the
    # corner box (input 0..16) is original x 0..64, y 0..(16-4)*4 = 48. A square 64x64 input would
    # pad 20 rows above and leave y 0..0: no box. tall 96x256 -> 24x64 padded to 32x64 (4 left).
    sizes = {"wide": (256, 96), "tall": (96, 256), "square": (128, 128)}
    expected = {"wide": (32, 24, 64, 48), "tall": (24, 32, 48, 64), "square": (16, 16, 32, 32)}
    images = {}
    for name, size in sizes.items():
        Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
        images[name] = ImageFile.from_path(tmp_path / f"{name}.png")
    model = alpolicy.get_registry().backends["onnx"].factory(corner_detector(tmp_path), ModelOptions(
        confidence=25, overlap=45, extra={"batch": 8}))
    assert model.stride == 32 and model.fingerprint_settings["letterbox_stride"] == 32
    order = [name for _ in range(6) for name in sizes]  # shapes interleaved: every batch must split
    results: dict[int, alpolicy.Prediction] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def call(index: int) -> None:
        start.wait()
        for i in range(index, len(order), 9):
            try:
                results[i] = model.predict(images[order[i]])
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.close()
    assert not errors
    for i, name in enumerate(order):
        (detection,) = results[i].detections
        assert (detection["x"], detection["y"], detection["width"], detection["height"]) == pytest.approx(expected[name])
        assert (results[i].width, results[i].height) == sizes[name]
