"""The synthetic frame generator: deterministic, correct ground truth, footage-shaped.

Its speed is measured in ``benchmarks/bench_test_speeds.py`` (side by side with plain Pillow
saves), not asserted here: a wall-clock threshold flakes on a busy machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alpolicy_onnx.synthetic import CLASS_NAMES, COCO_FILE, main, random_scene, write_footage


def test_random_scene_is_deterministic_and_seeds_differ():
    a_image, a_truth = random_scene(np.random.default_rng(7), (320, 240), hard=True)
    b_image, b_truth = random_scene(7, (320, 240), hard=True)
    assert a_truth == b_truth
    assert np.array_equal(np.asarray(a_image), np.asarray(b_image))
    c_image, _ = random_scene(8, (320, 240), hard=True)
    assert not np.array_equal(np.asarray(a_image), np.asarray(c_image))


def test_random_scene_ground_truth_is_inside_the_frame_and_well_formed():
    rng = np.random.default_rng(3)
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for k in range(40):
        size = (640, 480) if k % 2 else (300, 400)
        image, truths = random_scene(rng, size, hard=k % 3 == 0)
        assert image.size == size and image.mode == "RGB"
        for t in truths:
            assert set(t) == {"x", "y", "width", "height", "class", "class_id"}
            assert CLASS_NAMES[t["class_id"]] == t["class"]
            assert t["width"] > 0 and t["height"] > 0
            assert t["x"] - t["width"] / 2 >= -0.01 and t["x"] + t["width"] / 2 <= size[0] + 0.01
            assert t["y"] - t["height"] / 2 >= -0.01 and t["y"] + t["height"] / 2 <= size[1] + 0.01
            counts[t["class"]] += 1
    assert all(n > 10 for n in counts.values()), counts


def test_random_scene_polygons_outline_each_box_without_changing_the_frame():
    """``polygons=True`` (the segmentation ground truth) draws the same frame; each outline fits its box."""
    rng_plain, rng_poly = np.random.default_rng(11), np.random.default_rng(11)
    n_points = dict.fromkeys(CLASS_NAMES, 0)
    cut_by_the_border = 0
    for k in range(30):
        size = (640, 480) if k % 2 else (300, 400)
        plain_image, plain = random_scene(rng_plain, size, hard=k % 3 == 0)
        image, truths = random_scene(rng_poly, size, hard=k % 3 == 0, polygons=True)
        assert np.array_equal(np.asarray(plain_image), np.asarray(image))
        assert [{key: v for key, v in t.items() if key != "points"} for t in truths] == plain
        for t in truths:
            xs = [p["x"] for p in t["points"]]
            ys = [p["y"] for p in t["points"]]
            assert min(xs) >= 0 and max(xs) <= size[0] and min(ys) >= 0 and max(ys) <= size[1]
            # the box is the outline's extent (rounded to 0.01 px both ways)
            assert abs((min(xs) + max(xs)) / 2 - t["x"]) <= 0.02 and abs(max(xs) - min(xs) - t["width"]) <= 0.02
            assert abs((min(ys) + max(ys)) / 2 - t["y"]) <= 0.02 and abs(max(ys) - min(ys) - t["height"]) <= 0.02
            n_points[t["class"]] = max(n_points[t["class"]], len(t["points"]))
            cut_by_the_border += int(min(xs) == 0 or min(ys) == 0 or max(xs) == size[0] or max(ys) == size[1])
    assert n_points["circle"] >= 48 and n_points["square"] >= 4 and n_points["triangle"] >= 3, n_points
    assert cut_by_the_border > 0  # clipping was exercised


def test_write_footage_frames_and_ground_truth(tmp_path):
    path = write_footage(tmp_path, n_frames=60, seed=5, size=(320, 240))
    frames = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert frames == [f"frame_{i:05d}.jpg" for i in range(1, 61)]
    document = json.loads(path.read_text())
    assert document["classes"] == list(CLASS_NAMES) and document["size"] == [320, 240]
    assert [f["file"] for f in document["frames"]] == frames
    tags = {tag for f in document["frames"] for tag in f["tags"]}
    assert tags <= {"blur", "fog", "dark", "occluder"}
    for frame in document["frames"]:
        for b in frame["boxes"]:
            assert b["class"] in CLASS_NAMES and b["width"] > 0
    # consecutive frames of a scene are near-duplicates; the boxes move a little
    same_scene = [(a, b) for a, b in zip(document["frames"], document["frames"][1:])
                  if a["scene"] == b["scene"] and a["boxes"] and len(a["boxes"]) == len(b["boxes"])]
    assert same_scene
    for a, b in same_scene:
        for ba, bb in zip(a["boxes"], b["boxes"]):
            assert abs(ba["x"] - bb["x"]) < 10 and abs(ba["y"] - bb["y"]) < 10
    # the same seed and length write the same frames
    again = tmp_path / "again"
    write_footage(again, n_frames=60, seed=5, size=(320, 240))
    for name in ("frame_00003.jpg", "frame_00060.jpg", "ground_truth.json", COCO_FILE):
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes()


def test_footage_cli(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--frames", "12", "--seed", "2", "--width", "160", "--height", "120"]) == 0
    assert len(list((tmp_path / "out").glob("frame_*.jpg"))) == 12
    assert "wrote 12 frames" in capsys.readouterr().out


def test_footage_ground_truth_as_coco_reads_back_through_pycocotools(tmp_path):
    """``ground_truth.coco.json`` holds the same boxes as ``ground_truth.json``, in COCO's
    corner form, read by the reference implementation (and by ``alpolicy evaluate``)."""
    from pycocotools.coco import COCO

    frames = json.loads(write_footage(tmp_path, n_frames=20, seed=3, size=(160, 120)).read_text())["frames"]
    coco = COCO(str(tmp_path / COCO_FILE))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
    assert sorted(image["file_name"] for image in coco.loadImgs(coco.getImgIds())) == [f["file"] for f in frames]
    assert len(coco.getAnnIds()) == sum(len(f["boxes"]) for f in frames) > 0
    for image_id, frame in enumerate(frames, start=1):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert coco.loadImgs([image_id])[0]["file_name"] == frame["file"]
        assert len(annotations) == len(frame["boxes"])
        for annotation, b in zip(annotations, frame["boxes"]):
            x0, y0, w, h = annotation["bbox"]
            assert coco.loadCats([annotation["category_id"]])[0]["name"] == b["class"]
            assert (x0 + w / 2, y0 + h / 2, w, h) == pytest.approx((b["x"], b["y"], b["width"], b["height"]), abs=0.01)

    from alpolicy.evaluation import read_ground_truth

    truth = read_ground_truth(tmp_path / COCO_FILE)
    assert [len(truth.images[f["file"]].detections) for f in frames] == [len(f["boxes"]) for f in frames]
