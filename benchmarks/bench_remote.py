"""alpolicy run vs the SDK's sequential loop, against a loopback Roboflow server with latency.

Starts the project's fake Roboflow server (tests/servers/roboflow.py) in its own process with
50 ms inference, 50 ms upload and 50 ms annotation latency, writes 1,000 distinct frames, then
measures, in one run:

* the SDK's loop: one inference request at a time (base64 body, no connection reuse, as
  ``requests.post``), the SDK's decision for ``conditionals={}``, one upload when it qualifies
  (the SDK uploads no annotation: we give it that head start);
* ``alpolicy run`` at default settings (a subprocess, start-up included), which also attaches
  every prediction as a pre-label.

Targets (issue #3): alpolicy >= 10x the sequential loop, and >= 80% of the ideal throughput
(concurrency / inference latency).

    python benchmarks/bench_remote.py [--frames 1000] [--sequential-frames 200]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alpolicy.runtime.pipeline import DEFAULT_CONCURRENCY  # noqa: E402
from tests.sdk_reference import sdk_would_upload  # noqa: E402

KEY = "bench-key-0001"
LATENCY = 0.05


def make_frames(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for index in range(count):
        image = Image.new("RGB", (320, 240), tuple(rng.randrange(256) for _ in range(3)))
        image.putpixel((index % 320, index // 320), (255, 255, 255))
        image.save(folder / f"frame_{index:05d}.jpg", quality=90)


def start_server() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.roboflow", "--api-key", KEY, "--model", "bench/1",
         "--inference-latency", str(LATENCY), "--upload-latency", str(LATENCY), "--annotate-latency", str(LATENCY)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline().split()
    assert line and line[0] == "READY", line
    return process, line[1]


def sequential_sdk_loop(url: str, frames: list[Path]) -> float:
    started = time.perf_counter()
    for path in frames:
        body = base64.b64encode(path.read_bytes())
        response = requests.post(f"{url}/bench/1", params={"api_key": KEY, "confidence": 40, "overlap": 30, "format": "json"},
                                 data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        predictions = response.json()["predictions"]
        if sdk_would_upload(predictions, {}):
            requests.post(f"{url}/dataset/sdk-loop/upload", params={"api_key": KEY, "batch": "sdk"},
                          files={"name": (None, path.name), "split": (None, "train"), "file": (path.name, path.read_bytes())})
    return len(frames) / (time.perf_counter() - started)


def alpolicy_run(url: str, folder: Path, work: Path, concurrency: int) -> tuple[float, str]:
    env = {**os.environ, "ROBOFLOW_API_KEY": KEY, "ROBOFLOW_INFERENCE_URL": url, "ROBOFLOW_API_URL": url}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "alpolicy", "run", str(folder), "--model", "roboflow:bench/1", "--to", "roboflow:al",
         "--journal", str(work / "journal.sqlite"), "--no-progress", "--concurrency", str(concurrency)],
        env=env, capture_output=True, text=True, check=True,
    )
    elapsed = time.perf_counter() - started
    return len(list(folder.iterdir())) / elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--sequential-frames", type=int, default=200, help="frames timed for the (slow) sequential loop")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="default: alpolicy's default")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="alpolicy-bench-"))
    server, url = start_server()
    try:
        folder = work / "frames"
        make_frames(folder, args.frames)
        frames = sorted(folder.iterdir())
        sequential = sequential_sdk_loop(url, frames[: args.sequential_frames])
        rate, summary = alpolicy_run(url, folder, work, args.concurrency)
        sent = requests.get(f"{url}/__state").json()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    ideal = args.concurrency / LATENCY
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"latency: inference {LATENCY * 1000:.0f} ms, upload {LATENCY * 1000:.0f} ms, annotation {LATENCY * 1000:.0f} ms")
    print(f"SDK-style sequential loop  {sequential:8.1f} images/s  (first {args.sequential_frames} frames)")
    label = "defaults" if args.concurrency == DEFAULT_CONCURRENCY else f"--concurrency {args.concurrency}"
    print(f"alpolicy run ({label})".ljust(27) + f"{rate:8.1f} images/s  ({args.frames} frames, concurrency {args.concurrency}, start-up included)")
    print(f"speed-up                   {rate / sequential:8.1f}x   (target >= 10x)")
    print(f"of ideal {ideal:.0f} images/s    {rate / ideal:8.0%}    (target >= 80%)")
    uploads = sum(len(p.get("images", [])) for name, p in sent.get("projects", {}).items() if name == "al") if isinstance(sent.get("projects"), dict) else "?"
    print(f"alpolicy uploaded {uploads} images, each with its prediction")
    print("\n".join("  " + line for line in summary.strip().splitlines()[:8]))


if __name__ == "__main__":
    main()
