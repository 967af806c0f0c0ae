"""Decisions per second: alpolicy's engine vs a hand-written inline function, side by side.

Both decide the SDK-default conditionals (``{}``) on the same randomised predictions with 0-6
detections each. The inline function is what one would write by hand for exactly these
semantics (the SDK's own loop, without printing). The engine is measured twice: on typed
``Prediction`` objects (what the pipeline feeds it, parsing done by the backend) and on raw
Roboflow JSON dicts (what ``policy.evaluate(dict)`` callers pass).

Target (issue #2): the engine within 5x of the inline function.

    python benchmarks/bench_policy.py [--images 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
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


def inline_sdk_default(prediction: dict[str, Any]) -> bool:
    """The SDK's decision for conditionals={} written by hand (what the engine is measured against)."""
    detections = prediction["predictions"]
    if len(detections) < 1:
        return False
    if len({d["class"] for d in detections}) < 1:
        return False
    for d in detections:
        if not (float("inf") > d["height"] * d["width"] > float("-inf")):
            continue
        if 30 <= d["confidence"] * 100 <= 99:
            return True
    return False


def best_rate(function: Callable[[Any], Any], items: list[Any], repeat: int) -> float:
    """Best of `repeat` runs, in decisions per second (best-of filters scheduler noise)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    raw = make_predictions(args.images)
    typed = [Prediction.from_json(p) for p in raw]
    policy = Policy.from_conditionals({})

    expected = [inline_sdk_default(p) for p in raw]
    assert [policy.evaluate(p).qualifies for p in typed] == expected, "engine and inline disagree"

    inline = best_rate(inline_sdk_default, raw, args.repeat)
    engine_typed = best_rate(policy.evaluate, typed, args.repeat)
    engine_raw = best_rate(policy.evaluate, raw, args.repeat)

    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}")
    print(f"images: {args.images} (0-6 detections each), {sum(expected)} qualify")
    print(f"inline function          {inline:12,.0f} decisions/s")
    print(f"engine, Prediction input {engine_typed:12,.0f} decisions/s   inline/engine = {inline / engine_typed:.2f}x")
    print(f"engine, JSON dict input  {engine_raw:12,.0f} decisions/s   inline/engine = {inline / engine_raw:.2f}x")
    verdict = "PASS" if inline / engine_typed <= 5 and inline / engine_raw <= 5 else "FAIL"
    print(f"target: engine within 5x of inline -> {verdict}")


if __name__ == "__main__":
    main()
