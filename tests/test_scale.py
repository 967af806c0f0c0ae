"""A 100,000-image folder: memory stays flat (dry run, replay backend, real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

IMAGES = 100_000
MAX_RSS_MB = 150


def build_folder(root: Path, count: int) -> tuple[Path, Path]:
    """``count`` images and as many stored predictions, as hard links to two small files (fast, tiny on disk)."""
    frames, predictions = root / "frames", root / "predictions"
    frames.mkdir()
    predictions.mkdir()
    template_image = root / "template.jpg"
    Image.new("RGB", (64, 48), (90, 120, 30)).save(template_image)
    template_prediction = root / "template.json"
    detections = [
        {"x": 10 + i, "y": 10, "width": 8, "height": 8, "confidence": 0.2 + 0.15 * i, "class": "car", "class_id": 0, "detection_id": str(i)}
        for i in range(4)
    ]
    template_prediction.write_text(json.dumps({"image": {"width": 64, "height": 48}, "predictions": detections}))
    for index in range(count):
        if index % 50_000 == 0:  # a file system allows ~65,000 links per inode: start fresh copies
            image_source = root / f"template-{index}.jpg"
            prediction_source = root / f"template-{index}.json"
            image_source.write_bytes(template_image.read_bytes())
            prediction_source.write_bytes(template_prediction.read_bytes())
        os.link(image_source, frames / f"f{index:06d}.jpg")
        os.link(prediction_source, predictions / f"f{index:06d}.json")
    return frames, predictions


#: Runs ``python -m alpolicy ...`` and reports the process's own peak RSS (VmHWM) on exit.
#: ``ru_maxrss`` from wait4() would not do: Linux carries the parent's peak across fork+exec,
#: so a child of a large pytest process would inherit pytest's footprint.
_MEASURE = """
import runpy, sys
sys.argv = ["alpolicy", *sys.argv[1:]]
try:
    runpy.run_module("alpolicy", run_name="__main__")
finally:
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
    print(f"PEAK_RSS_KB {peak}", file=sys.stderr)
"""


def run_measured(args: list[str], workdir: Path) -> tuple[int, str, str, float]:
    """Run ``alpolicy ARGS``; return (exit code, stdout, stderr, peak RSS in MB of that process)."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, cwd=workdir)
    lines = result.stderr.splitlines()
    peak_kb = int(lines[-1].split()[1])
    return result.returncode, result.stdout, "\n".join(lines[:-1]), peak_kb / 1024


@pytest.mark.slow
def test_a_100k_image_dry_run_keeps_memory_flat(tmp_path):
    frames, predictions = build_folder(tmp_path, IMAGES)
    code, out, err, peak_mb = run_measured(
        ["run", str(frames), "--model", f"replay:{predictions}", "--dry-run",
         "--journal", str(tmp_path / "journal.sqlite"), "--no-progress", "--json"],
        tmp_path,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["seen"] == IMAGES and report["inferred"] == IMAGES and report["failed"] == 0
    assert report["would_send"] == report["qualified"] == IMAGES
    assert peak_mb < MAX_RSS_MB, f"peak RSS {peak_mb:.0f} MB for {IMAGES} images"
