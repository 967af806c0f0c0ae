"""The ONNX backend inside the pipeline vs a bare inference loop, on the same 500 frames.

* bare loop: one thread; for each frame decode the JPEG (EXIF applied), letterbox,
  ``session.run``, decode boxes -- the least work that gets the predictions;
* ``alpolicy run --dry-run --model onnx:demo`` (in-process ``alpolicy.run``, journal on disk):
  the same work plus the journal, the policy and the decisions log, with image decoding in the
  pipeline's threads overlapping inference (dynamic batches stacked by the backend).

Both use the shipped demo detector and an ONNX Runtime session with one intra-op thread per
core. CPU utilisation = CPU time / (wall time x cores). Target (issue #4): the pipeline at
>= 90% of the bare loop's images/s.

    python benchmarks/bench_onnx.py [--frames 500]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
from PIL import Image, ImageOps

import alpolicy
from alpolicy_onnx.backend import demo_model_path
from alpolicy_onnx.decode import class_names_from_metadata, decode, detect_layout, letterbox
from alpolicy_onnx.synthetic import write_footage


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_loop(frames: list[Path]) -> tuple[float, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(demo_model_path()), options, providers=["CPUExecutionProvider"])
    names = class_names_from_metadata(session.get_modelmeta().custom_metadata_map)
    height, width = session.get_inputs()[0].shape[2:]
    layout = None
    wall, cpu = time.perf_counter(), cpu_seconds()
    for path in frames:
        with Image.open(path) as image:
            picture = ImageOps.exif_transpose(image).convert("RGB")
        tensor, ratio, pad = letterbox(picture, (height, width))
        output = session.run(None, {"images": tensor[None]})[0]
        layout = layout or detect_layout(output.shape)
        decode(output, layout, 0.25, 0.45, ratio, pad, picture.size, names=names)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def pipeline(folder: Path, work: Path) -> tuple[float, float, alpolicy.RunReport]:
    options = alpolicy.RunOptions(dry_run=True, journal=str(work / "journal.sqlite"), progress=False)
    options.model_options.confidence, options.model_options.overlap = 25, 45
    wall, cpu = time.perf_counter(), cpu_seconds()
    report = alpolicy.run(str(folder), alpolicy.Policy.from_conditionals({}), model="onnx:demo", options=options)
    return time.perf_counter() - wall, cpu_seconds() - cpu, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="alpolicy-onnx-bench-"))
    try:
        write_footage(work / "frames", n_frames=args.frames, seed=11)
        frames = sorted((work / "frames").glob("*.jpg"))
        bare_loop(frames[:20])  # warm the page cache and ONNX Runtime's allocator for both
        bare_wall, bare_cpu = bare_loop(frames)
        run_wall, run_cpu, report = pipeline(work / "frames", work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count() or 1
    bare_rate, run_rate = len(frames) / bare_wall, len(frames) / run_wall
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, onnxruntime {ort.__version__}")
    print(f"frames: {len(frames)} x 640x480 JPEG, demo detector (320x320 input)")
    print(f"bare loop (1 thread)        {bare_rate:7.1f} images/s   CPU {bare_cpu / (bare_wall * cores):4.0%} of {cores} cores")
    print(f"alpolicy run --dry-run      {run_rate:7.1f} images/s   CPU {run_cpu / (run_wall * cores):4.0%} of {cores} cores"
          f"   ({report.inferred} inferred, {report.qualified} qualify)")
    print(f"pipeline / bare loop        {run_rate / bare_rate:7.2f}x     (target >= 0.90)")


if __name__ == "__main__":
    main()
