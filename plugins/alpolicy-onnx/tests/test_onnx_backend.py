"""The ``onnx:`` backend through alpolicy's registry: real ONNX Runtime sessions, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import alpolicy
from alpolicy import ModelOptions, UsageError
from alpolicy.io.images import ImageFile
from alpolicy_onnx.synthetic import random_scene, write_footage
from test_onnx_decode import _constant_detector, _v8


def backend(target: str, **extra) -> "alpolicy_onnx.backend.OnnxBackend":  # noqa: F821
    spec = alpolicy.get_registry().backends["onnx"]
    return spec.factory(target, ModelOptions(confidence=25, overlap=45, extra=extra))


def save(model: onnx.ModelProto, path: Path) -> str:
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def demo():
    model = backend("demo")
    yield model
    model.close()


def frame(tmp_path: Path, seed: int, name: str = "frame.jpg") -> ImageFile:
    image, _ = random_scene(seed, (640, 480))
    path = tmp_path / name
    image.save(path, quality=95)
    return ImageFile.from_path(path)


def test_the_plugin_is_registered_through_its_entry_point():
    assert alpolicy.get_registry().backends["onnx"].plugin == "onnx"


def test_demo_predictions_have_the_canonical_shape(demo, tmp_path):
    prediction = demo.predict(frame(tmp_path, 3))
    assert (prediction.width, prediction.height) == (640, 480)
    assert prediction.model_id == "onnx:demo-shapes" and prediction.detections
    for detection in prediction.detections:
        assert set(detection) == {"x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"}
        assert detection["class"] in ("circle", "square", "triangle") and 0.25 <= detection["confidence"] <= 1
        assert 0 <= detection["x"] <= 640 and 0 <= detection["y"] <= 480
    alpolicy.Policy.from_conditionals({}).evaluate(prediction)  # every rule reads it unchanged


def test_exif_orientation_is_applied_before_inference(demo, tmp_path):
    upright = frame(tmp_path, 5, "upright.jpg")
    stored = Image.open(upright.path).transpose(Image.Transpose.ROTATE_90)  # what a camera stores...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with the tag that says "rotate 90° clockwise to display"
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    a = demo.predict(upright)
    b = demo.predict(ImageFile.from_path(tmp_path / "rotated.jpg"))
    assert (b.width, b.height) == (640, 480)
    assert sorted(d["class"] for d in a.detections) == sorted(d["class"] for d in b.detections)
    for d in a.detections:
        match = min(b.detections, key=lambda e: abs(e["x"] - d["x"]) + abs(e["y"] - d["y"]))
        assert abs(match["x"] - d["x"]) < 6 and abs(match["y"] - d["y"]) < 6


def test_concurrent_callers_are_batched_without_changing_answers(tmp_path):
    model = backend("demo", batch=8)
    images = [frame(tmp_path, seed, f"f{seed}.jpg") for seed in range(24)]
    alone = [model.predict(image) for image in images]
    assert model.largest_batch == 1
    results: dict[int, alpolicy.Prediction] = {}
    start = threading.Barrier(12)

    def call(index: int) -> None:
        start.wait()
        for i in range(index, len(images), 12):
            results[i] = model.predict(images[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model.close()
    assert model.largest_batch > 1, "concurrent requests were never stacked"
    for i, prediction in enumerate(alone):
        together = results[i].detections
        assert [d["class"] for d in together] == [d["class"] for d in prediction.detections]
        assert np.allclose([d["confidence"] for d in together], [d["confidence"] for d in prediction.detections], atol=1e-4)


def test_a_static_batch_model_runs_one_image_at_a_time_and_labels_name_classes(tmp_path):
    raw = _v8([(32, 32, 20, 10, 1, 0.9)], num_classes=3, anchors=16)
    path = save(_constant_detector(raw, (64, 64)), tmp_path / "static.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    model = backend(path, labels=str(labels))
    Image.new("RGB", (128, 64), (0, 0, 0)).save(tmp_path / "wide.png")
    prediction = model.predict(ImageFile.from_path(tmp_path / "wide.png"))
    model.close()
    assert model.max_batch == 1
    (detection,) = prediction.detections
    assert detection["class"] == "dog" and detection["class_id"] == 1
    # 64x64 input, 128x64 image: ratio 0.5, padded 16 px top -> centre (64, 32), 40x20 px
    assert (detection["x"], detection["y"], detection["width"], detection["height"]) == pytest.approx((64, 32, 40, 20))


def test_clear_errors_for_wrong_models_and_labels(tmp_path):
    with pytest.raises(UsageError, match="no ONNX model at"):
        backend(str(tmp_path / "absent.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load junk.onnx with ONNX Runtime"):
        backend(str(tmp_path / "junk.onnx"))
    # ([1, 16] is a classifier's output now: see test_onnx_tasks.py)
    grid = save(_constant_detector(np.zeros((1, 3, 4, 4), np.float32), (32, 32)), tmp_path / "grid.onnx")
    with pytest.raises(UsageError, match=r"^grid.onnx: cannot tell the task from outputs \[1, 3, 4, 4\]; expected "
                                         r"detect: \[batch, 4 \+ classes, anchors\] \(YOLOv8/YOLO11\)"):
        backend(grid)
    good = save(_constant_detector(_v8([], num_classes=3, anchors=16), (32, 32)), tmp_path / "good.onnx")
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(UsageError, match="names 2 classes but the model outputs 3"):
        backend(good, labels=str(tmp_path / "two.txt"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    for name, problem in [("absent.txt", "does not exist"), ("blank.txt", "names no class"), (".", "is a folder"),
                          ("latin1.txt", "is not UTF-8 text")]:
        with pytest.raises(UsageError, match=f"^the labels file .*{name}' {problem}"):
            backend(good, labels=str(tmp_path / name))


def test_a_wrong_labels_file_is_one_line_on_the_command_line(tmp_path):
    write_footage(tmp_path / "frames", n_frames=2, seed=3)
    result = subprocess.run(
        [sys.executable, "-m", "alpolicy", "run", str(tmp_path / "frames"), "--model", "onnx:demo", "--dry-run",
         "--labels", str(tmp_path / "missing.txt"), "--journal", ":memory:"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"alpolicy: error: the labels file {str(tmp_path / 'missing.txt')!r} does not exist\n"


def test_a_bad_image_is_an_image_error_not_a_crash(demo, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.raises(alpolicy.backends.ImageError, match="cannot open the image|not an image"):
        demo.predict(ImageFile.from_path(tmp_path / "broken.jpg"))


@pytest.mark.slow
def test_alpolicy_run_with_the_demo_model_end_to_end(tmp_path):
    write_footage(tmp_path / "frames", n_frames=150, seed=7)
    out = tmp_path / "queue"
    result = subprocess.run(
        [sys.executable, "-m", "alpolicy", "run", str(tmp_path / "frames"), "--model", "onnx:demo", "--confidence", "20",
         "--policy", str(Path(__file__).resolve().parents[3] / "examples" / "demo-policy.json"),
         "--to", f"folder:{out}", "--journal", str(tmp_path / "j.sqlite"), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["seen"] == report["inferred"] == 150
    assert 0 < report["sent"] < 150, "the demo policy should triage, not send everything or nothing"
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == report["sent"] and coco["annotations"]
    assert {c["name"] for c in coco["categories"]} <= {"circle", "square", "triangle"}


# ---------------------------------------------------------------------- the model fingerprint
def fingerprint_of(target: str, confidence: float = 25, overlap: float = 45, **extra) -> tuple[str, dict]:
    spec = alpolicy.get_registry().backends["onnx"]
    model = spec.factory(target, ModelOptions(confidence=confidence, overlap=overlap, extra=extra))
    model.close()
    return model.fingerprint, model.fingerprint_settings


def test_the_fingerprint_follows_the_file_content_and_every_setting_that_changes_answers(tmp_path):
    from alpolicy.io.images import sha256_file

    raw = _v8([(32, 32, 20, 10, 1, 0.9)], num_classes=3, anchors=16)
    path = save(_constant_detector(raw, (64, 64)), tmp_path / "model.onnx")
    (tmp_path / "abc.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "xyz.txt").write_text("cat\ndog\nfish\n")
    base, settings = fingerprint_of(path, labels=str(tmp_path / "abc.txt"))
    assert base.startswith("onnx:model.onnx@") and settings["sha256"] == sha256_file(path)
    assert settings["labels"] == ["cat", "dog", "bird"] and settings["input_size"] == [64, 64]

    (tmp_path / "copy").mkdir()
    copied = tmp_path / "copy" / "model.onnx"
    copied.write_bytes(Path(path).read_bytes())
    same, same_settings = fingerprint_of(str(copied), labels=str(tmp_path / "abc.txt"), batch=1, threads=1)
    assert same == base and same_settings["sha256"] == settings["sha256"], "a copied file keeps its predictions"
    renamed = tmp_path / "copy" / "other-name.onnx"
    renamed.write_bytes(Path(path).read_bytes())
    assert fingerprint_of(str(renamed), labels=str(tmp_path / "abc.txt"))[1]["sha256"] == settings["sha256"]

    changed = {
        "confidence": fingerprint_of(path, confidence=60, labels=str(tmp_path / "abc.txt"))[0],
        "overlap": fingerprint_of(path, overlap=70, labels=str(tmp_path / "abc.txt"))[0],
        "labels": fingerprint_of(path, labels=str(tmp_path / "xyz.txt"))[0],
        "no labels file": fingerprint_of(path)[0],
        "weights": fingerprint_of(save(_constant_detector(_v8([(30, 30, 20, 10, 1, 0.9)], num_classes=3, anchors=16), (64, 64)),
                                       (tmp_path / "other").mkdir() or tmp_path / "other" / "model.onnx"), labels=str(tmp_path / "abc.txt"))[0],
    }
    assert base not in changed.values() and len(set(changed.values())) == len(changed), changed
    assert all(value.startswith("onnx:model.onnx@") for value in changed.values())


def test_a_run_at_another_confidence_runs_the_onnx_model_again(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for seed in range(4):
        frame(folder, seed, f"f{seed}.jpg")
    spec = alpolicy.get_registry().backends["onnx"]

    def run(confidence: float) -> tuple[int, alpolicy.RunReport]:
        model = spec.factory("demo", ModelOptions(confidence=confidence, extra={"batch": 1}))
        options = alpolicy.RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True, concurrency=1)
        report = alpolicy.run(str(folder), alpolicy.Policy.from_conditionals({}), model=model, options=options)
        return model.batches_run, report

    assert run(20)[0] == 4
    batches, again = run(20.0)
    assert batches == 0 and again.reused == 4
    batches, other = run(60)
    assert batches == 4 and other.inferred == 4 and other.fingerprint != again.fingerprint


@pytest.mark.parametrize("score, reason", [
    (float("inf"), r"predictions\[0\]\.confidence: Infinity is not a finite number"),
    (57.0, r"predictions\[0\]\.confidence: 57\.0 is outside 0\.\.1"),  # logits exported without a sigmoid
])
def test_a_broken_model_fails_the_image_with_the_place_of_the_bad_value(tmp_path, score, reason):
    """ONNX Runtime computes what the graph says: a model answering infinite or > 1 scores must
    fail its image, located, rather than hand the rules a confidence no threshold can judge."""
    raw = _v8([(32, 32, 20, 10, 1, score)], num_classes=3, anchors=16)
    model = backend(save(_constant_detector(raw, (64, 64)), tmp_path / "broken.onnx"))
    Image.new("RGB", (64, 64), (0, 0, 0)).save(tmp_path / "frame.png")
    try:
        with pytest.raises(alpolicy.backends.ImageError, match=reason) as caught:
            model.predict(ImageFile.from_path(tmp_path / "frame.png"))
    finally:
        model.close()
    assert str(caught.value).startswith("the model produced an invalid detection: ")
