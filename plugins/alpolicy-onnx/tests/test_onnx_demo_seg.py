"""The shipped demo segmentation model (``onnx:demo-seg``), run as a user would: through the backend.

Frames come from seeds that training never used (training draws from seed 0, its validation from
999 and 1000, the detector's test from 424242 and 424243; these use 424244 and 424245). Masks are
judged as a labeller gets them: the decoded ``points`` polygons, in pixels of the frame, against the
shapes' exact outlines (``random_scene(polygons=True)``), with :func:`alpolicy_onnx.metrics.polygon_iou`.
Each bound is the figure measured on these frames (in the test's comment) less a margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import alpolicy
from alpolicy import ModelOptions
from alpolicy.io.images import ImageFile
from alpolicy_onnx.decode import class_names_from_metadata, letterbox
from alpolicy_onnx.metrics import mean_average_precision, per_class_average_precision, polygon_iou
from alpolicy_onnx.synthetic import CLASS_NAMES, random_scene, write_footage

MODEL = Path(__file__).resolve().parents[1] / "alpolicy_onnx" / "models" / "demo-shapes-seg.onnx"
POLICY = Path(__file__).resolve().parents[3] / "examples" / "demo-seg-policy.json"
CLEAN_SEED = 424244
HARD_SEED = 424245


@pytest.fixture(scope="module")
def session():
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def demo_seg():
    """``onnx:demo-seg`` from alpolicy's registry, answering down to confidence 0.01 (for the mAP)."""
    model = alpolicy.get_registry().backends["onnx"].factory(
        "demo-seg", ModelOptions(confidence=1, overlap=50, extra={"threads": 1}))
    yield model
    model.close()


def _frames(tmp_path: Path, seed: int, count: int, hard: bool):
    """``count`` 640x480 frames saved losslessly, with their ground truth (outlines included)."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        image, truth = random_scene(rng, (640, 480), hard=hard, polygons=True)
        path = tmp_path / f"{seed}-{k:03d}.png"
        image.save(path)
        yield ImageFile.from_path(path), truth


def _mean_best_iou(predictions, truths, min_confidence: float = 0.25) -> float:
    """Each ground-truth shape's best polygon IoU with a detection of its class (0 when none), averaged."""
    best = []
    for preds, image_truths in zip(predictions, truths):
        for name in CLASS_NAMES:
            theirs = [t for t in image_truths if t["class"] == name]
            mine = [p for p in preds if p["class"] == name and p["confidence"] >= min_confidence]
            if theirs:
                best.extend(polygon_iou(mine, theirs).max(0) if mine else [0.0] * len(theirs))
    return float(np.mean(best))


def _run(demo_seg, tmp_path: Path, seed: int, count: int, hard: bool):
    predictions, truths = [], []
    for image, truth in _frames(tmp_path, seed, count, hard):
        predictions.append(demo_seg.predict(image).detections)
        truths.append(truth)
    return predictions, truths


def test_shipped_file_has_the_ultralytics_seg_layout_and_metadata(session):
    assert 500_000 < MODEL.stat().st_size < 3_000_000
    [model_input] = session.get_inputs()
    boxes, protos = session.get_outputs()
    assert model_input.name == "images" and model_input.shape[1:] == [3, 320, 320]
    assert isinstance(model_input.shape[0], str)  # dynamic batch
    assert (boxes.name, boxes.shape[1:]) == ("output0", [4 + 3 + 32, 1600])
    assert (protos.name, protos.shape[1:]) == ("output1", [32, 80, 80])
    assert isinstance(boxes.shape[0], str) and isinstance(protos.shape[0], str)
    metadata = session.get_modelmeta().custom_metadata_map
    assert class_names_from_metadata(metadata) == list(CLASS_NAMES)
    assert metadata["task"] == "segment" and metadata["imgsz"] == "[320, 320]" and metadata["stride"] == "8"
    assert metadata["description"] and metadata["author"] == "alpolicy" and metadata["version"]


def test_batched_inference_matches_single_images(session):
    rng = np.random.default_rng(CLEAN_SEED + 10)
    tensors = [letterbox(random_scene(rng, (640, 480))[0], (320, 320))[0] for _ in range(3)]
    batched = session.run(None, {"images": np.stack(tensors)})
    for k, tensor in enumerate(tensors):
        single = session.run(None, {"images": tensor[None]})
        for many, one in zip(batched, single):
            np.testing.assert_allclose(many[k], one[0], atol=1e-4)


def test_the_backend_answers_instance_segmentation(demo_seg, tmp_path):
    assert demo_seg.task == "instance-segmentation" and demo_seg.model_id == "onnx:demo-shapes-seg"
    [(image, truth)] = list(_frames(tmp_path, CLEAN_SEED + 20, 1, hard=False))
    prediction = demo_seg.predict(image)
    confident = [d for d in prediction.detections if d["confidence"] >= 0.5]
    assert confident and len(confident) <= len(truth) + 1
    for detection in confident:
        assert len(detection["points"]) >= 3
        assert all(0 <= p["x"] <= 640 and 0 <= p["y"] <= 480 for p in detection["points"])
    alpolicy.Policy.from_conditionals({}).evaluate(prediction)  # every rule reads it unchanged


def test_clean_frames_masks_follow_the_shapes(demo_seg, tmp_path):
    predictions, truths = _run(demo_seg, tmp_path, CLEAN_SEED, 120, hard=False)
    box_map = mean_average_precision(predictions, truths)
    mask_map = mean_average_precision(predictions, truths, overlap=polygon_iou)
    per_class = per_class_average_precision(predictions, truths, overlap=polygon_iou)
    mean_iou = _mean_best_iou(predictions, truths)
    print(f"clean: box mAP@0.5 {box_map:.3f}, mask mAP@0.5 {mask_map:.3f} {per_class}, mean mask IoU {mean_iou:.3f}")
    # measured on these frames: box 0.960, mask 0.957 (circle 0.991, square 0.946, triangle 0.933), mean mask IoU 0.876
    assert set(per_class) == set(CLASS_NAMES)
    assert box_map >= 0.9 and mask_map >= 0.9 and mean_iou >= 0.8, per_class


def test_hard_frames_masks_still_overlap_the_shapes(demo_seg, tmp_path):
    predictions, truths = _run(demo_seg, tmp_path, HARD_SEED, 60, hard=True)
    mask_map = mean_average_precision(predictions, truths, overlap=polygon_iou)
    mean_iou = _mean_best_iou(predictions, truths)
    print(f"hard: mask mAP@0.5 {mask_map:.3f}, mean mask IoU {mean_iou:.3f}")
    # measured on these frames: mask 0.847, mean mask IoU 0.765
    assert mask_map >= 0.75 and mean_iou >= 0.68


def test_alpolicy_run_with_the_demo_segmentation_model_and_policy(tmp_path):
    write_footage(tmp_path / "frames", n_frames=40, seed=7)
    out = tmp_path / "queue"
    result = subprocess.run(
        [sys.executable, "-m", "alpolicy", "run", str(tmp_path / "frames"), "--model", "onnx:demo-seg",
         "--confidence", "20", "--policy", str(POLICY), "--to", f"folder:{out}",
         "--journal", str(tmp_path / "j.sqlite"), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["seen"] == report["inferred"] == 40
    assert 0 < report["sent"] < 40, "the demo policy should triage, not send everything or nothing"
    sent = [json.loads(path.read_text()) for path in (out / "predictions").glob("*.json")]
    assert len(sent) == report["sent"]
    assert all(len(d["points"]) >= 3 for doc in sent for d in doc["predictions"] if d["confidence"] >= 0.5)
