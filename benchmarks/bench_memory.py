"""Peak RSS of ``alpolicy run --dry-run`` over a 100,000-image folder (replay backend).

Folders are listed lazily and at most a bounded window of images is in flight, so memory must
not grow with the folder: the same run over 1,000 and over 100,000 images is measured side by
side, in one run. Target (issue #3): under 150 MB at 100,000 images.

    python benchmarks/bench_memory.py [--images 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_scale import build_folder, run_measured  # noqa: E402


def measure(count: int) -> tuple[float, float, dict]:
    work = Path(tempfile.mkdtemp(prefix="alpolicy-mem-"))
    try:
        frames, predictions = build_folder(work, count)
        started = time.perf_counter()
        code, out, err, peak = run_measured(
            ["run", str(frames), "--model", f"replay:{predictions}", "--dry-run",
             "--journal", str(work / "journal.sqlite"), "--no-progress", "--json"],
            work,
        )
        elapsed = time.perf_counter() - started
        if code != 0:
            raise SystemExit(err)
        return peak, elapsed, json.loads(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    args = parser.parse_args()
    small_peak, small_time, _ = measure(1000)
    peak, elapsed, report = measure(args.images)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"     1,000 images: peak RSS {small_peak:6.1f} MB, {1000 / small_time:7.0f} images/s")
    print(f"{args.images:>10,} images: peak RSS {peak:6.1f} MB, {args.images / elapsed:7.0f} images/s "
          f"({report['seen']} seen, {report['would_send']} would be sent)")
    print(f"growth: {peak / small_peak:.2f}x for {args.images // 1000}x the images; target < 150 MB -> "
          f"{'PASS' if peak < 150 else 'FAIL'}")


if __name__ == "__main__":
    main()
