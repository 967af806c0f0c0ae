"""near_duplicate and quality gates on real pixels: footage, transformed copies, bad frames."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageFilter

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import Journal
from alpolicy.runtime.sampler import Sampler
from alpolicy_onnx.synthetic import random_scene, write_footage  # the demo's footage generator

from .helpers import det, pred


def admitted(policy: Policy, paths: list[Path], journal: Journal | None = None, run_id: int = 1) -> list[str]:
    sampler = Sampler(policy, journal or Journal(), run_id)
    decision = policy.evaluate(pred(det()))
    return [p.name for p in paths if sampler.admit(ImageFile.from_path(p), decision).sampled]


def gate(rule: dict) -> Policy:
    return Policy.from_dict({"version": 1, "image": {"rule": "detection_count", "min": 0}, "sampling": [rule]})


def test_consecutive_footage_frames_collapse_and_distinct_scenes_survive(tmp_path):
    truth = json.loads(write_footage(tmp_path, n_frames=120, seed=3).read_text())
    frames = sorted(tmp_path.glob("frame_*.jpg"))
    kept = admitted(gate({"rule": "near_duplicate", "max_distance": 6}), frames)
    scenes = {record["file"]: record["scene"] for record in (truth["frames"] if isinstance(truth, dict) else truth)}
    assert len(kept) < len(frames) / 3, f"{len(kept)} of {len(frames)} kept: consecutive frames did not collapse"
    assert {scenes[name] for name in kept} == set(scenes.values()), "a scene lost all its frames"


def test_transformed_copies_are_duplicates_and_different_scenes_are_not(tmp_path):
    paths = []
    for seed in range(6):
        image, _ = random_scene(seed, (640, 480))
        original = tmp_path / f"s{seed}-original.jpg"
        image.save(original, quality=92)
        image.resize((320, 240)).save(tmp_path / f"s{seed}-resized.jpg", quality=92)
        image.save(tmp_path / f"s{seed}-recompressed.jpg", quality=40)
        image.crop((4, 3, 640, 480)).resize((640, 480)).save(tmp_path / f"s{seed}-shifted.jpg", quality=92)
        paths += [original, *(tmp_path / f"s{seed}-{kind}.jpg" for kind in ("resized", "recompressed", "shifted"))]
    kept = admitted(gate({"rule": "near_duplicate", "max_distance": 8}), paths)
    assert kept == [f"s{seed}-original.jpg" for seed in range(6)]


def test_previous_frame_mode_with_a_timeout_takes_every_nth_identical_frame(tmp_path):
    image, _ = random_scene(9, (320, 240))
    paths = []
    for index in range(7):
        path = tmp_path / f"same{index}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    kept = admitted(gate({"rule": "near_duplicate", "against": "previous", "timeout": 3}), paths)
    assert kept == ["same0.jpg", "same3.jpg", "same6.jpg"]


def test_scope_all_remembers_images_sampled_by_earlier_runs(tmp_path):
    image, _ = random_scene(12, (320, 240))
    image.save(tmp_path / "monday.jpg", quality=90)
    image.save(tmp_path / "tuesday.jpg", quality=60)
    journal = Journal(tmp_path / "journal.sqlite")
    policy = gate({"rule": "near_duplicate", "scope": "all"})
    assert admitted(policy, [tmp_path / "monday.jpg"], journal, run_id=1) == ["monday.jpg"]
    assert admitted(policy, [tmp_path / "tuesday.jpg"], journal, run_id=2) == []
    assert admitted(gate({"rule": "near_duplicate"}), [tmp_path / "tuesday.jpg"], journal, run_id=3) == ["tuesday.jpg"]


def test_quality_keeps_out_black_blank_and_smeared_frames(tmp_path):
    sharp, _ = random_scene(4, (640, 480))
    sharp.save(tmp_path / "sharp.jpg", quality=92)
    sharp.filter(ImageFilter.GaussianBlur(8)).save(tmp_path / "smeared.jpg", quality=92)
    Image.new("RGB", (640, 480), (2, 2, 2)).save(tmp_path / "black.jpg")
    Image.new("RGB", (640, 480), (250, 250, 250)).save(tmp_path / "blank.jpg")
    paths = [tmp_path / name for name in ("sharp.jpg", "smeared.jpg", "black.jpg", "blank.jpg")]
    rule = {"rule": "quality", "min_sharpness": 20, "max_dark_fraction": 0.8, "max_bright_fraction": 0.8}
    assert admitted(gate(rule), paths) == ["sharp.jpg"]
    assert admitted(gate({**rule, "keep": "bad"}), paths) == ["smeared.jpg", "black.jpg", "blank.jpg"]


def test_the_pipeline_hashes_in_its_workers_and_suppresses_duplicates(tmp_path):
    write_footage(tmp_path / "frames", n_frames=60, seed=5)
    for frame in (tmp_path / "frames").glob("*.jpg"):
        (frame.with_suffix(".json")).write_text(json.dumps(pred(det(confidence=0.5), width=640, height=480)))
    policy = {"version": 1, "sampling": [{"rule": "near_duplicate", "max_distance": 6}]}
    report = alpolicy.run(str(tmp_path / "frames"), policy, model="replay:sidecar", destination=f"folder:{tmp_path / 'out'}",
                          options=RunOptions(journal=None, progress=False, concurrency=4))
    assert report.seen == 60 and report.failed == 0
    assert 0 < report.sent < 20 and report.rejected_by["near_duplicate"] == 60 - report.sent


def with_hash(name: str, value: int) -> ImageFile:
    image = ImageFile(f"/frames/{name}.jpg", 1, 1)
    image.derived["hash:phash"] = value  # the measurement the worker thread would have cached
    return image


def test_near_duplicate_at_and_beside_max_distance():
    policy = gate({"rule": "near_duplicate", "max_distance": 6})
    sampler = Sampler(policy, Journal(), 1)
    decision = policy.evaluate(pred(det()))
    base = 0x0F0F_0F0F_F0F0_F0F0
    assert sampler.admit(with_hash("base", base), decision).sampled
    assert not sampler.admit(with_hash("six", base ^ 0b111111), decision).sampled  # 6 bits: a duplicate
    answer = sampler.admit(with_hash("seven", base ^ 0b1111111), decision)  # 7 bits: different
    assert answer.sampled and answer.reason == ""


def test_quality_at_and_beside_its_bounds():
    from alpolicy.pixels.quality import Quality

    policy = gate({"rule": "quality", "min_sharpness": 20, "max_dark_fraction": 0.5})
    sampler = Sampler(policy, Journal(), 1)
    decision = policy.evaluate(pred(det()))

    def frame(sharpness: float, dark: float) -> ImageFile:
        image = ImageFile(f"/frames/{sharpness}-{dark}.jpg", 1, 1)
        image.derived["quality"] = Quality(sharpness=sharpness, brightness=100.0, dark_fraction=dark, bright_fraction=0.0)
        return image

    results = [sampler.admit(frame(s, d), decision).sampled for s, d in [(20, 0.5), (19.9, 0.5), (20, 0.51), (80, 0.1)]]
    assert results == [True, False, False, True]
