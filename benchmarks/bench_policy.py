"""Decisions per second: alpolicy's engine vs a hand-written inline function, side by side.

Both decide the SDK-default conditionals (``{}``) on the same randomised predictions with 0-6
detections each, and both produce what a decision is: whether the image qualifies *and* its
witnesses (the detections that justify it). The inline function is what one would write by hand
for exactly the SDK-default policy -- at least one detection, at least one distinct class, and
the detections whose ``confidence * 100`` lies in [30, 99] (the SDK's percent arithmetic), of
which at least one is needed. The engine is measured twice: on typed ``Prediction`` objects (what
the pipeline feeds it, parsing done by the backend) and on raw Roboflow JSON dicts (what
``policy.evaluate(dict)`` callers pass).

Timing: the three are measured in turns, chunk by chunk, best of ``--repeat`` per chunk, in CPU
time of this process -- on a shared machine wall time also counts other processes' turns.

Target (issue #11): the engine within 3x of the inline function.

    python benchmarks/bench_policy.py [--images 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from typing import Any, Callable

from alpolicy import Policy, Prediction

CLASSES = ["car", "person", "bicycle", "dog"]


def make_predictions(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    predictions = []
    for _ in range(count):
        detections = [
            {
                "x": rng.uniform(0, 640), "y": rng.uniform(0, 480),
                "width": rng.uniform(4, 300), "height": rng.uniform(4, 300),
                "confidence": round(rng.uniform(0.2, 1.0), 3),
                "class": rng.choice(CLASSES), "class_id": 0, "detection_id": "d",
            }
            for _ in range(rng.randint(0, 6))
        ]
        predictions.append({"image": {"width": 640, "height": 480}, "predictions": detections})
    return predictions


def inline_sdk_default(prediction: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    """The SDK-default decision written by hand: (qualifies, witnesses), as the engine decides it."""
    detections = prediction["predictions"]
    witnesses = [d for d in detections if 30 <= d["confidence"] * 100 <= 99]
    qualifies = len(detections) >= 1 and len({d["class"] for d in detections}) >= 1 and len(witnesses) >= 1
    return qualifies, witnesses


def best_rates(functions: dict[str, tuple[Callable[[Any], Any], list[Any]]], repeat: int, chunk: int = 2000) -> dict[str, float]:
    """Decisions per second of each function: chunk by chunk, the functions in turns (so a busy
    spell of the machine hits all of them), the best of ``repeat`` runs per chunk, in CPU time."""
    seconds = dict.fromkeys(functions, 0.0)
    count = len(next(iter(functions.values()))[1])
    for start in range(0, count, chunk):
        for name, (function, items) in functions.items():
            part, best = items[start:start + chunk], float("inf")
            for _ in range(repeat):
                began = time.process_time()
                for item in part:
                    function(item)
                best = min(best, time.process_time() - began)
            seconds[name] += best
    return {name: count / spent for name, spent in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    raw = make_predictions(args.images)
    typed = [Prediction.from_json(p) for p in raw]
    policy = Policy.from_conditionals({})

    expected = [inline_sdk_default(p) for p in raw]
    decisions = [policy.evaluate(p) for p in typed]
    assert [(d.qualifies, d.witnesses) for d in decisions] == expected, "engine and inline disagree"

    rates = best_rates({
        "inline": (inline_sdk_default, raw), "typed": (policy.evaluate, typed), "raw": (policy.evaluate, raw),
    }, args.repeat)
    inline, engine_typed, engine_raw = rates["inline"], rates["typed"], rates["raw"]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"images: {args.images} (0-6 detections each), {sum(q for q, _ in expected)} qualify")
    print(f"inline function          {inline:12,.0f} decisions/s")
    print(f"engine, Prediction input {engine_typed:12,.0f} decisions/s   inline/engine = {inline / engine_typed:.2f}x")
    print(f"engine, JSON dict input  {engine_raw:12,.0f} decisions/s   inline/engine = {inline / engine_raw:.2f}x")
    verdict = "PASS" if inline / engine_typed < 3 and inline / engine_raw < 3 else "FAIL"
    print(f"target: engine within 3x of inline -> {verdict}")


if __name__ == "__main__":
    main()
