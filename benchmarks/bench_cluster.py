"""Images/s of the ONNX demo detector locally vs on Dask workers (``dask-local:1``, ``dask-local:2``).

The same synthetic frames (``python -m alpolicy_onnx.synthetic``), the same policy (one that
measures pixels: quality and perceptual hash run where inference runs), a dry run with an
in-memory journal, so that only the stateless stage and the driver's own work are timed.

Threads are set fairly, since ONNX Runtime on its own takes every core: each Dask worker is one
process with one ONNX Runtime intra-op thread (``--model-opt threads=1``); the local runs use 1
and 2 intra-op threads, the same total as ``dask-local:1`` and ``dask-local:2``. The cluster is
started by the benchmark (``LocalCluster``, joined as ``dask://...``) and warmed up with a short
run (the model loads once per worker), so its start and stop are not in the timings; a real
``--executor dask-local:N`` run pays them (seconds) on top.

Reported per configuration: images/s (wall clock), the driver's CPU time per image (this
process: for the local runs it includes the inference itself; for Dask runs it is the
coordinator's overhead -- batching, (un)pickling, deciding, journalling), and the scaling
efficiency throughput(dask-local:2) / (2 x throughput(dask-local:1)).

    python benchmarks/bench_cluster.py [--frames 240]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import alpolicy

POLICY = {
    "version": 1, "name": "bench-cluster",
    "detection": [{"rule": "confidence", "min": 0.2, "max": 0.7}],
    "image": {"rule": "witnesses", "min": 1},
    "sampling": [{"rule": "quality", "min_sharpness": 1, "max_dark_fraction": 0.99},
                 {"rule": "near_duplicate", "max_distance": 1, "scope": "run"}],
}


def machine() -> str:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def timed(frames: Path, executor: str | None, threads: int) -> tuple[float, float, int]:
    options = alpolicy.RunOptions(model_options=alpolicy.ModelOptions(confidence=20, extra={"threads": threads}))
    wall, cpu = time.perf_counter(), time.process_time()
    report = alpolicy.run(frames, POLICY, model="onnx:demo", executor=executor, dry_run=True, journal=None,
                          decisions_log="", progress=False, options=options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert report.failed == 0 and report.inferred == report.seen, report.summary()
    return report.seen / wall, 1000 * cpu / report.seen, report.would_send


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    args = parser.parse_args()
    import distributed

    print(f"machine: {machine()}")
    print(f"frames: {args.frames} synthetic 640x480 JPEGs, model onnx:demo, 1 ONNX Runtime thread per worker")
    with tempfile.TemporaryDirectory() as tmp:
        frames, warm = Path(tmp) / "frames", Path(tmp) / "warm"
        for folder, count, seed in ((frames, args.frames, 11), (warm, 16, 12)):
            subprocess.run([sys.executable, "-m", "alpolicy_onnx.synthetic", str(folder), "--frames", str(count),
                            "--seed", str(seed)], check=True, capture_output=True)
        rows: list[tuple[str, float, float, int]] = []
        for threads in (1, 2):
            timed(warm, None, threads)
            rows.append((f"local, threads executor, {threads} ONNX thread{'s' if threads > 1 else ''}",
                         *timed(frames, None, threads)))
        for workers in (1, 2):
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=None, silence_logs=logging.ERROR) as cluster:
                spec = "dask:" + cluster.scheduler_address.removeprefix("tcp:")
                timed(warm, spec, 1)
                rows.append((f"dask-local:{workers} (as dask://, warm)", *timed(frames, spec, 1)))
    sends = {row[3] for row in rows}
    assert len(sends) == 1, f"the executors decided differently: {rows}"
    print(f"{'configuration':<46} {'images/s':>9} {'driver CPU ms/image':>20}")
    for name, rate, cpu, _ in rows:
        print(f"{name:<46} {rate:>9.1f} {cpu:>20.2f}")
    one, two = rows[2][1], rows[3][1]
    print(f"scaling efficiency dask-local:2 vs dask-local:1: {two / (2 * one):.0%}; "
          f"every configuration chose the same {sends.pop()} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
