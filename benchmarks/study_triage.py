"""Which scores predict the model's errors? A study with ``alpolicy evaluate`` (issue #16).

For each STUDY seed: synthetic footage like ``make demo`` (300 frames, 640x480, with its COCO
ground truth), the demo detector's predictions stored once (``alpolicy run FRAMES --model
onnx:demo --confidence 20 --dry-run --journal J``, the demo's confidence), then one
``alpolicy evaluate --json --budget K`` (K = 10% of the frames) over every candidate policy
below. Prints one row per candidate: its efficiency per seed ((captured - random) / (oracle -
random)), the mean, and the mean errors and misses its picks hold; best first.

The seeds here choose the recommended policy, so they must never be the ones that measure it:
``benchmarks/bench_triage.py`` measures on held-out seeds (101..103).

    python benchmarks/study_triage.py [--seeds 1 2 3 4] [--frames 300] [--work DIR]

Footage and journals are kept in ``--work`` (default ``benchmarks/.triage-study``) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The demo policy before the study (examples/demo-policy.json until issue #16).
OLD_DEMO: dict[str, Any] = {
    "detection": [
        {"rule": "confidence", "min": 0.35, "max": 0.55},
        {"rule": "box_area", "min": 900},
    ],
    "image": {"any": [
        {"rule": "witnesses", "min": 2},
        {"all": [{"rule": "distinct_classes", "min": 3}, {"rule": "witnesses", "min": 1}]},
    ]},
}


def _uncertainty(measure: str, reduce: str, **extra: Any) -> dict[str, Any]:
    return {"rule": "uncertainty", "measure": measure, "reduce": reduce, **extra}


def candidates() -> dict[str, dict[str, Any]]:
    """Every candidate policy body (without version/name), by a short name."""
    found: dict[str, dict[str, Any]] = {"old demo policy": OLD_DEMO}
    for measure in ("least_confidence", "entropy", "margin"):
        for reduce in ("max", "mean", "sum"):
            found[f"{measure} {reduce}"] = {"image": _uncertainty(measure, reduce)}
    window = [{"rule": "confidence", "min": 0.2, "max": 0.6}]
    for measure in ("least_confidence", "entropy", "margin"):
        for reduce in ("max", "sum"):
            found[f"{measure} {reduce} of witnesses 0.2-0.6"] = {
                "detection": window, "image": _uncertainty(measure, reduce, of="witnesses")}
    found["least_confidence sum of witnesses < 0.5"] = {
        "detection": [{"rule": "confidence", "max": 0.5}],
        "image": _uncertainty("least_confidence", "sum", of="witnesses")}
    found["least_confidence sum, box_area >= 900"] = {
        "detection": [{"rule": "box_area", "min": 900}],
        "image": _uncertainty("least_confidence", "sum", of="witnesses")}
    found["least_confidence sum, box_area < 900"] = {
        "detection": [{"rule": "box_area", "max": 900}],
        "image": _uncertainty("least_confidence", "sum", of="witnesses")}
    found["least_confidence sum, detection_count >= 3"] = {
        "image": {"all": [{"rule": "detection_count", "min": 3}, _uncertainty("least_confidence", "sum")]}}
    found["least_confidence max, detection_count >= 5"] = {
        "image": {"all": [{"rule": "detection_count", "min": 5}, _uncertainty("least_confidence", "max")]}}
    found["diversity (pixels) alone"] = {"sampling": [{"rule": "diversity", "fraction": 1.0}]}
    found["least_confidence sum + diversity"] = {
        "image": _uncertainty("least_confidence", "sum"), "sampling": [{"rule": "diversity", "fraction": 1.0}]}
    found["least_confidence sum >= 2 + diversity"] = {
        "image": _uncertainty("least_confidence", "sum", min_score=2),
        "sampling": [{"rule": "diversity", "fraction": 1.0}]}
    return found


def run(args: list[str]) -> str:
    """One alpolicy command, in this interpreter (so the worktree's package is the one measured)."""
    done = subprocess.run([sys.executable, "-m", "alpolicy", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"alpolicy {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def footage(work: Path, seed: int, frames: int) -> tuple[Path, Path]:
    """Footage of ``seed`` and the journal of the demo model's predictions on it (made once)."""
    where = work / f"seed-{seed}-{frames}"
    truth, journal = where / "frames" / "ground_truth.coco.json", where / "journal.sqlite"
    if not (truth.exists() and journal.exists()):
        subprocess.run([sys.executable, "-m", "alpolicy_onnx.synthetic", str(where / "frames"),
                        "--frames", str(frames), "--seed", str(seed)], check=True, capture_output=True)
        journal.unlink(missing_ok=True)
        run(["run", str(where / "frames"), "--model", "onnx:demo", "--confidence", "20", "--dry-run",
             "--journal", str(journal)])
    return truth, journal


def evaluate(truth: Path, journal: Path, policies: list[Path], budget: int) -> dict[str, Any]:
    args = ["evaluate", "--ground-truth", str(truth), "--journal", str(journal), "--budget", str(budget), "--json"]
    for policy in policies:
        args += ["--policy", str(policy)]
    return json.loads(run(args))


def write_policies(work: Path, bodies: dict[str, dict[str, Any]]) -> dict[str, Path]:
    folder = work / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for index, (name, body) in enumerate(bodies.items()):
        path = folder / f"candidate-{index:02d}.json"
        path.write_text(json.dumps({"version": 1, "name": name, **body}, indent=2))
        paths[name] = path
    return paths


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".triage-study")
    args = parser.parse_args(argv)
    budget = max(1, round(args.frames * 0.10))
    paths = write_policies(args.work, candidates())
    rows: dict[str, dict[str, list[float]]] = {name: {"eff": [], "cap": [], "miss": []} for name in paths}
    context = []
    for seed in args.seeds:
        truth, journal = footage(args.work, seed, args.frames)
        document = evaluate(truth, journal, list(paths.values()), budget)
        kinds = document["errors_total_by_kind"]
        context.append(f"seed {seed}: {document['evaluated']} images, {document['errors_total']} errors "
                       f"({kinds['miss']} misses, {kinds['false_positive']} false positives, "
                       f"{kinds['wrong_class']} wrong-class pairs), oracle {document['oracle']}")
        for name, entry in zip(paths, document["policies"]):
            rows[name]["eff"].append(entry["efficiency"] if entry["efficiency"] is not None else 0.0)
            rows[name]["cap"].append(entry["errors_captured"])
            rows[name]["miss"].append(entry["by_kind"]["miss"])
    print(f"Triage study: seeds {args.seeds}, {args.frames} frames each, onnx:demo at confidence 20, "
          f"budget {budget} (10%)")
    for line in context:
        print(f"  {line}")
    seeds = " ".join(f"{'s' + str(s):>6}" for s in args.seeds)
    print(f"\n{'policy':<48} {seeds} {'mean':>6} {'errors':>7} {'misses':>6}")
    for name, row in sorted(rows.items(), key=lambda item: -statistics.mean(item[1]["eff"])):
        cells = " ".join(f"{e:6.2f}" for e in row["eff"])
        print(f"{name:<48} {cells} {statistics.mean(row['eff']):6.2f} "
              f"{statistics.mean(row['cap']):7.1f} {statistics.mean(row['miss']):6.1f}")
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
