"""A dry run decides as a real run would, from the journal's usage so far, and spends nothing:
no budget, no near-duplicate history, no top_k count that a later run reads back."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alpolicy_onnx.synthetic import random_scene  # the demo's scene generator: distinct real pixels

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import Journal
from alpolicy.runtime.sampler import Sampler

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .helpers import det, pred


def with_sidecars(paths: list[Path], confidences: list[float] | None = None) -> None:
    """A ``replay:sidecar`` prediction beside each image (one car, at the given confidence)."""
    for index, path in enumerate(paths):
        confidence = confidences[index] if confidences else 0.5
        path.with_suffix(".json").write_text(json.dumps(pred(det(confidence=confidence))))


def scenes(folder: Path, seeds: list[int], quality: int = 90) -> list[Path]:
    """One JPEG per seed: different seeds are different scenes, the same seed a near-duplicate."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        image, _ = random_scene(seed, (320, 240))
        path = folder / f"scene{seed}-q{quality}.jpg"
        image.save(path, quality=quality)
        paths.append(path)
    with_sidecars(paths)
    return paths


class Runs:
    """Runs of one policy against one journal and one folder destination."""

    def __init__(self, tmp_path: Path, policy: dict) -> None:
        self.policy, self.journal, self.out = policy, str(tmp_path / "journal.sqlite"), tmp_path / "out"

    def __call__(self, folder: Path, *, dry_run: bool) -> alpolicy.RunReport:
        options = RunOptions(journal=self.journal, progress=False, dry_run=dry_run, concurrency=2)
        return alpolicy.run(str(folder), self.policy, model="replay:sidecar", destination=f"folder:{self.out}", options=options)

    def sent_names(self) -> list[str]:
        folder = self.out / "images"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_issue_a_dry_run_does_not_spend_a_total_limit(roboflow, env, tmp_path):
    """#11 item 2: a --dry-run with a limit of 3 per total, then a real run on other images sends 3."""
    monday, tuesday = tmp_path / "monday", tmp_path / "tuesday"
    with_sidecars(make_frames(monday, 5, seed=1))
    with_sidecars(make_frames(tuesday, 5, seed=2))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "sampling": [{"rule": "limit", "max": 3, "per": "total"}]}))
    common = ("--model", "replay:sidecar", "--to", "roboflow:queue", "--policy", str(policy),
              "--journal", str(tmp_path / "journal.sqlite"))
    dry = alpolicy_cli("run", str(monday), *common, "--dry-run", env=env)
    assert dry.code == 0, dry.err
    assert re.search(r"would send +3\n", dry.out), dry.out
    assert roboflow.requests["upload"].total == 0
    real = alpolicy_cli("run", str(tuesday), *common, env=env)
    assert real.code == 0, real.err
    assert roboflow.requests["upload"].total == 3
    assert len(roboflow.images("queue")) == 3


def test_a_dry_run_stops_at_its_limit_reads_real_usage_and_records_none(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with_sidecars(make_frames(first, 5, seed=1))
    with_sidecars(make_frames(second, 5, seed=2))
    run = Runs(tmp_path, {"version": 1, "sampling": [{"rule": "limit", "max": 3, "per": "total"}]})
    for _ in range(2):  # within a dry run its own picks count; a second dry run starts from the same usage
        dry = run(first, dry_run=True)
        assert (dry.would_send, dry.rejected_by["limit"]) == (3, 2)
    real = run(second, dry_run=False)
    assert (real.sent, real.rejected_by["limit"]) == (3, 2)
    after = run(first, dry_run=True)  # the budget a real run spent is spent for a dry run too
    assert (after.would_send, after.rejected_by["limit"]) == (0, 5)
    assert len(run.sent_names()) == 3


def test_dry_run_usage_is_its_own_even_on_the_same_journal_connection():
    policy = Policy.from_dict({"version": 1, "image": {"rule": "detection_count", "min": 0},
                               "sampling": [{"rule": "limit", "max": 2, "per": "total"}]})
    decision = policy.evaluate(pred(det()))
    journal = Journal()  # one connection: the TEMP tables of a dry run are visible on it, yet not used by others

    def took(sampler: Sampler, names: str) -> str:
        return "".join(name for name in names if sampler.admit(ImageFile(f"/f/{name}.jpg", 1, 1), decision).sampled)

    first_dry, second_dry = Sampler(policy, journal, 1, dry_run=True), Sampler(policy, journal, 2, dry_run=True)
    assert took(first_dry, "abc") == "ab"
    assert took(second_dry, "xyz") == "xy"  # not the first dry run's usage either
    assert took(Sampler(policy, journal, 3), "cd") == "cd"
    assert took(Sampler(policy, journal, 4, dry_run=True), "ef") == ""  # a real run's usage counts
    assert took(Sampler(policy, journal, 5, dry_run=True), "c") == "c"  # a resume holds its place


def test_a_dry_run_does_not_charge_a_strategy_limit(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with_sidecars(make_frames(first, 4, seed=1))
    with_sidecars(make_frames(second, 4, seed=2))
    run = Runs(tmp_path, {"version": 1, "sampling": [
        {"rule": "random", "name": "daily", "rate": 1.0, "limits": [{"type": "daily", "value": 2}]},
    ]})
    dry = run(first, dry_run=True)
    assert (dry.would_send, dry.rejected_by["sampling"]) == (2, 2)
    real = run(second, dry_run=False)
    assert (real.sent, real.rejected_by["sampling"]) == (2, 2)


def test_a_dry_run_leaves_no_near_duplicate_history(tmp_path):
    run = Runs(tmp_path, {"version": 1, "sampling": [{"rule": "near_duplicate", "scope": "all"}]})
    scenes(tmp_path / "both", [21, 22])
    scenes(tmp_path / "both", [21], quality=60)  # a near-duplicate of scene 21, in the same folder
    dry = run(tmp_path / "both", dry_run=True)  # within the dry run, duplicates are still dropped
    assert (dry.would_send, dry.rejected_by["near_duplicate"]) == (2, 1)
    copies = scenes(tmp_path / "copies", [21, 22], quality=60)
    real = run(tmp_path / "copies", dry_run=False)  # the dry run's picks are no history
    assert (real.sent, real.rejected_by["near_duplicate"]) == (2, 0)
    assert run.sent_names() == sorted(p.name for p in copies)
    again = run(tmp_path / "both", dry_run=True)  # the real run's picks are
    assert (again.would_send, again.rejected_by["near_duplicate"]) == (0, 3)


def test_a_dry_run_spends_no_top_k_and_counts_what_was_sent(tmp_path):
    folder = tmp_path / "frames"
    paths = make_frames(folder, 6, seed=3)
    with_sidecars(paths, [0.9, 0.45, 0.8, 0.52, 0.7, 0.6])
    run = Runs(tmp_path, {"version": 1, "image": {"rule": "uncertainty"}, "sampling": [{"rule": "top_k", "k": 2}]})
    dry = run(folder, dry_run=True)
    assert (dry.would_send, dry.rejected_by["top_k"]) == (2, 4)
    real = run(folder, dry_run=False)
    assert real.sent == 2 and run.sent_names() == ["frame_00001.jpg", "frame_00003.jpg"]
    after = run(folder, dry_run=True)  # as a real run would: the 2 already sent fill k
    assert (after.already_sent, after.would_send) == (2, 0)
