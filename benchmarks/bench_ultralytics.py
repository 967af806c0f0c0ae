"""alpolicy vs Ultralytics' own predictor: the same YOLOv8n ONNX file, the same frames, one run.

What a user would otherwise pick to run a YOLO export over a folder is Ultralytics::

    YOLO("model.onnx", task="detect").predict(source=FOLDER, stream=True, conf=0.25, iou=0.7)

This benchmark times that (a subprocess of the Ultralytics virtualenv, ``.venv-ultralytics``,
built by ``make ultralytics``) against ``alpolicy run FOLDER --dry-run --model onnx:model.onnx
--journal J --confidence 25 --overlap 70`` (a subprocess of this Python): wall time from spawning
the process to its exit, so start-up (imports, model load), alpolicy's journal, policy and
decisions log are all included. Images/s of each and the ratio alpolicy / Ultralytics are
printed per frame size, as the median over rounds whose order alternates (a busy machine slows
whichever runs at a bad moment; the median of alternating rounds is robust to it), with the CPU
time per image of each (user + system of the process): on a machine shared with other work, a
process with more runnable threads gets a larger share of the cores, so images/s there flatter
the multi-threaded side; CPU time per image measures the work done, and the ratio of images/s
is only meaningful on a quiet machine.

The model: nothing is downloaded. A YOLOv8n is built from ``yolov8n.yaml`` in the Ultralytics
environment with random but fixed weights (``torch.manual_seed``) and exported to ONNX (imgsz 640,
``dynamic=True``: the batch axis alpolicy stacks requests on, and dynamic height/width, with which
both tools pad each frame only to a multiple of 32 -- Ultralytics' ``LetterBox(auto=True)``,
alpolicy's minimal padding). The same file feeds both. Ultralytics' own initialisation gives
every anchor the same tiny score (its class biases start at about -9, and activations through
random layers fade), so no box would reach any threshold: the convolutions are re-drawn
Kaiming-normal and the class head scaled (x100, bias -6) so that, at Ultralytics' default
``conf=0.25``, a 640x480 frame has about 60-140 candidates before NMS and 20-35 boxes after, on
both sides -- comparable NMS work, the order of a real detector's. The temp folder holding the
model and frames is removed at the end.

Frames: ``python -m alpolicy_onnx.synthetic`` JPEGs at 640x480 (the model's size: nothing to
reduce) and 1920x1080 (three times larger: alpolicy decodes it at 960x540 in JPEG draft mode).

Threads: neither side is told a thread count; ONNX Runtime runs with one intra-op thread per core
on both (Ultralytics' default session; alpolicy's ``threads`` default is the core count).

    python benchmarks/bench_ultralytics.py [--frames 100] [--rounds 3] [--sizes 640x480,1920x1080]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-ultralytics"

#: Run in the Ultralytics environment: build the seeded YOLOv8n and export it (prints its path).
BUILD_MODEL = r"""
import sys, torch
from ultralytics import YOLO
from ultralytics.nn.modules.block import DFL
torch.manual_seed(int(sys.argv[1]))
model = YOLO("yolov8n.yaml")
fixed = {id(m.conv) for m in model.model.modules() if isinstance(m, DFL)}  # DFL's weights are not learnt
with torch.no_grad():
    for m in model.model.modules():
        if isinstance(m, torch.nn.Conv2d) and id(m) not in fixed:
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                m.bias.zero_()
    for branch in model.model.model[-1].cv3:  # the class head: scores spread over 0..1
        branch[-1].weight.mul_(100.0)
        branch[-1].bias.fill_(-6.0)
print(model.export(format="onnx", imgsz=640, dynamic=True, simplify=True))
"""

#: Run in the Ultralytics environment: the predictor over the folder; prints what it saw.
PREDICT = r"""
import json, sys
from ultralytics import YOLO
model = YOLO(sys.argv[1], task="detect")
images = boxes = 0
for result in model.predict(source=sys.argv[2], stream=True, conf=0.25, iou=0.7, imgsz=640, verbose=False):
    images += 1
    boxes += len(result.boxes)
print(json.dumps({"images": images, "boxes": boxes}))
"""


def ultralytics_env(work: Path) -> dict[str, str]:
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(work / "ultralytics-settings"))
    env.pop("PYTHONPATH", None)  # its own packages only
    return env


#: CPU seconds (user + system) of the last process :func:`run` waited for.
last_cpu = 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds from spawn to exit, and what the process printed (its CPU time: ``last_cpu``)."""
    global last_cpu
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    last_cpu = _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done.stdout.strip()


def time_ultralytics(python: str, model: Path, frames: Path, work: Path) -> tuple[float, int]:
    elapsed, out = run([python, "-c", PREDICT, str(model), str(frames)], ultralytics_env(work), work)
    return elapsed, json.loads(out.splitlines()[-1])["images"]


def time_alpolicy(model: Path, frames: Path, work: Path, round_: int) -> tuple[float, int]:
    journal = work / f"journal-{frames.name}-{round_}.sqlite"  # a fresh journal: nothing to resume
    command = [sys.executable, "-m", "alpolicy", "run", str(frames), "--dry-run", "--model", f"onnx:{model}",
               "--journal", str(journal), "--confidence", "25", "--overlap", "70", "--json"]
    elapsed, out = run(command, dict(os.environ), work)
    return elapsed, json.loads(out)["inferred"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_frames(folder: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    subprocess.run([sys.executable, "-m", "alpolicy_onnx.synthetic", str(folder), "--frames", str(frames),
                    "--seed", str(seed), "--width", str(size[0]), "--height", str(size[1])],
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--seed", type=int, default=0, help="weights and frames seed")
    parser.add_argument("--ultralytics-python", default=str(DEFAULT_VENV / "bin" / "python"))
    args = parser.parse_args()
    python = args.ultralytics_python
    if not Path(python).exists():
        sys.exit(f"no Ultralytics environment at {python}: run `make ultralytics` first")
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="alpolicy-vs-ultralytics-"))
    try:
        _, out = run([python, "-c", BUILD_MODEL, str(args.seed)], ultralytics_env(work), work)
        model = work / Path(out.splitlines()[-1])
        versions = run([python, "-c", "import ultralytics, onnxruntime, torch; print(ultralytics.__version__, "
                        "onnxruntime.__version__, torch.__version__)"], ultralytics_env(work), work)[1].split()
        cores = os.cpu_count() or 1
        print(f"machine: {cpu_model()}, {cores} cores, {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}")
        print(f"Ultralytics {versions[0]} (onnxruntime {versions[1]}, torch {versions[2]}); "
              f"model: YOLOv8n, random fixed weights (seed {args.seed}), ONNX imgsz 640, dynamic axes; "
              f"conf 0.25, IoU 0.7 on both sides")
        print(f"{args.frames} frames per size, {args.rounds} rounds, order alternating, median shown; "
              "wall time per process, start-up included")
        for size in sizes:
            frames = work / f"frames-{size[0]}x{size[1]}"
            make_frames(frames, args.frames, size, args.seed)
            ours: list[float] = []
            theirs: list[float] = []
            cpu: dict[str, list[float]] = {"ultralytics": [], "alpolicy": []}
            for round_ in range(args.rounds):
                order = ("ultralytics", "alpolicy") if round_ % 2 == 0 else ("alpolicy", "ultralytics")
                for tool in order:
                    if tool == "ultralytics":
                        elapsed, images = time_ultralytics(python, model, frames, work)
                        theirs.append(images / elapsed)
                    else:
                        elapsed, images = time_alpolicy(model, frames, work, round_)
                        ours.append(images / elapsed)
                    cpu[tool].append(last_cpu / images)
                    if images != args.frames:
                        sys.exit(f"{tool} processed {images} of {args.frames} frames")
            mine, other = statistics.median(ours), statistics.median(theirs)
            print(f"{size[0]}x{size[1]} JPEG   Ultralytics predict {other:6.2f} images/s   "
                  f"alpolicy run --dry-run {mine:6.2f} images/s   alpolicy / Ultralytics {mine / other:5.2f}x"
                  f"   (rounds: {' '.join(f'{a / b:.2f}' for a, b in zip(ours, theirs))})", flush=True)
            their_cpu, my_cpu = statistics.median(cpu["ultralytics"]), statistics.median(cpu["alpolicy"])
            print(f"{'':16} CPU per image: Ultralytics {their_cpu * 1000:5.0f} ms, alpolicy {my_cpu * 1000:5.0f} ms"
                  f"   (Ultralytics / alpolicy {their_cpu / my_cpu:4.2f}x: the work, whatever the machine's load)",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
