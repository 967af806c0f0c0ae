"""Does the recommended policy pick the frames that hold the model's errors? (issue #16)

On HELD-OUT seeds (never used by ``benchmarks/study_triage.py``, which chose the policy): synthetic
footage like ``make demo`` (300 frames, 640x480, with its COCO ground truth), the demo detector's
predictions stored once (``onnx:demo``, confidence 20, dry run), then ``alpolicy evaluate`` at a
budget of 10% of the frames for the recommended policy (``examples/demo-policy.json``), least
confidence alone (max over the boxes, the usual default) and the demo policy before the study.
Prints per seed and the mean: errors captured, random_mean, oracle, efficiency; then the target
line (the issue: the recommended policy goes at least halfway from random picks to the oracle).

    python benchmarks/bench_triage.py [--seeds 101 102 103] [--frames 300] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_triage import OLD_DEMO, ROOT, evaluate, footage, machine  # noqa: E402

TARGET = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".triage-bench")
    args = parser.parse_args(argv)
    budget = max(1, round(args.frames * 0.10))
    args.work.mkdir(parents=True, exist_ok=True)
    least = args.work / "least-confidence.json"
    least.write_text(json.dumps({"version": 1, "name": "least confidence",
                                 "image": {"rule": "uncertainty", "measure": "least_confidence", "reduce": "max"}}))
    old = args.work / "old-demo-policy.json"
    old.write_text(json.dumps({"version": 1, "name": "old demo policy", **OLD_DEMO}))
    policies = {"recommended (examples/demo-policy.json)": ROOT / "examples" / "demo-policy.json",
                "least confidence (max)": least, "old demo policy": old}
    print(f"Triage benchmark: held-out seeds {args.seeds}, {args.frames} frames each, onnx:demo at "
          f"confidence 20, budget {budget} (10%)")
    print(f"{'policy':<42} {'seed':>5} {'captured':>8} {'random':>7} {'oracle':>6} {'efficiency':>10}")
    efficiencies: dict[str, list[float]] = {name: [] for name in policies}
    sums: dict[str, list[tuple[float, float, float]]] = {name: [] for name in policies}
    for seed in args.seeds:
        truth, journal = footage(args.work, seed, args.frames)
        document = evaluate(truth, journal, list(policies.values()), budget)
        for name, entry in zip(policies, document["policies"]):
            efficiency = entry["efficiency"] if entry["efficiency"] is not None else 0.0
            efficiencies[name].append(efficiency)
            sums[name].append((entry["errors_captured"], entry["random_mean"], entry["oracle"]))
            print(f"{name:<42} {seed:>5} {entry['errors_captured']:>8} {entry['random_mean']:>7.1f} "
                  f"{entry['oracle']:>6} {efficiency:>10.2f}")
    for name in policies:
        captured, random_mean, oracle = (statistics.mean(column) for column in zip(*sums[name]))
        print(f"{name:<42} {'mean':>5} {captured:>8.1f} {random_mean:>7.1f} {oracle:>6.1f} "
              f"{statistics.mean(efficiencies[name]):>10.2f}")
    recommended = statistics.mean(efficiencies["recommended (examples/demo-policy.json)"])
    print(f"recommended efficiency {recommended:.2f} >= {TARGET} -> {'PASS' if recommended >= TARGET else 'FAIL'}")
    print(f"machine: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
