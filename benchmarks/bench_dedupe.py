"""Near-duplicate building blocks, side by side: draft vs full JPEG decoding, HashIndex vs a scan.

1. Hashing: perceptual hashes per second of N synthetic 1920x1080 footage frames (JPEG quality
   90, from ``alpolicy_onnx.synthetic.write_footage``: cluttered scenes with sensor noise,
   near-duplicate consecutive frames), with libjpeg draft decoding (1/8 scale, grayscale) and
   with a full decode, and the ratio. Also the quality measurement (256 px thumbnail) both ways,
   the bare JPEG decode both ways (what the hashing can at best gain), and how far the draft and
   full hashes are apart. The two variants are timed side by side: image by image, alternating
   (and alternating which goes first), over ``--repeat`` passes; a pass's ratio is its full-decode
   time over its draft time, and the median pass counts (the range is printed too). On a shared
   machine, load from other processes then slows both variants alike instead of whichever
   happened to run during a busy second. Generation time is excluded; files are read once before
   timing (warm page cache). ``--source scenes`` hashes independent ``random_scene`` frames
   instead (no near-duplicates). A draft decode still entropy-decodes every DCT coefficient of
   the file -- only the inverse DCT, upsampling and colour conversion shrink -- so the ratio
   depends on the content: 2.9-3.2x for phash on these frames, while the bare decode gains 2.3x
   (the rest is the grayscale conversion and resize of 2 Mpx that the full path still has to do).
2. Lookups: median microseconds per ``HashIndex.nearest`` at 100,000 stored random 64-bit hashes
   (half the queries have a stored hash within the distance, half do not) vs the fastest plain
   Python scan (a list comprehension of popcounts, then min), answers checked equal.
3. What it means for the footage: frames kept by greedy near-duplicate suppression
   (keep a frame unless a kept frame is within NEAR_DUPLICATE_DISTANCE).

Targets: hashing with draft decoding >= 3x faster than with full decoding; lookups under 1 ms
(median) at 100,000 hashes for the near-duplicate threshold (max_distance 8).

    python benchmarks/bench_dedupe.py [--images 200] [--source footage|scenes] [--hashes 100000]
                                      [--queries 300] [--brute 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from alpolicy.pixels.hashindex import HashIndex
from alpolicy.pixels.imagehash import NEAR_DUPLICATE_DISTANCE, hamming, image_hash
from alpolicy.pixels.quality import measure


@dataclass
class SideBySide:
    """Per-pass totals of two variants timed image by image (wall and CPU seconds), last pass's results."""

    fast: list[float] = field(default_factory=list)
    slow: list[float] = field(default_factory=list)
    fast_cpu: list[float] = field(default_factory=list)
    slow_cpu: list[float] = field(default_factory=list)
    fast_results: list[object] = field(default_factory=list)
    slow_results: list[object] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [slow / fast for fast, slow in zip(self.fast, self.slow)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(slow / fast for fast, slow in zip(self.fast_cpu, self.slow_cpu))


def side_by_side(fast: Callable[[Path], object], slow: Callable[[Path], object], paths: list[Path],
                 passes: int) -> SideBySide:
    """Time both variants on each file in turn, alternating which one goes first, ``passes`` times.

    Interleaving at the scale of one decode (milliseconds) exposes both variants to the same
    background load; taking the median pass (not the best one per variant, measured at different
    moments) keeps one disturbed pass from deciding the ratio. CPU time (``thread_time``) is kept
    too: it leaves out the time spent waiting for a core, though not a busy neighbour's effect on
    caches.
    """
    result = SideBySide()
    for number in range(passes):
        wall = {fast: 0.0, slow: 0.0}
        cpu = {fast: 0.0, slow: 0.0}
        outputs: dict[Callable[[Path], object], list[object]] = {fast: [], slow: []}
        for index, path in enumerate(paths):
            for function in ((fast, slow) if (index + number) % 2 == 0 else (slow, fast)):
                start, start_cpu = time.perf_counter(), time.thread_time()
                output = function(path)
                cpu[function] += time.thread_time() - start_cpu
                wall[function] += time.perf_counter() - start
                outputs[function].append(output)
        result.fast.append(wall[fast])
        result.slow.append(wall[slow])
        result.fast_cpu.append(cpu[fast])
        result.slow_cpu.append(cpu[slow])
        result.fast_results, result.slow_results = outputs[fast], outputs[slow]
    return result


def jpeg_decode(draft: bool) -> Callable[[Path], object]:
    """The bare decode the hashing starts with: 1/8 scale grayscale (as for a 32 px hash) or full RGB."""

    def decode(path: Path) -> object:
        with Image.open(path) as image:
            if draft:
                image.draft("L", (128, 128))
            image.load()
            return image.size

    return decode


def median_us(function: Callable[[int], object], queries: list[int]) -> float:
    times = []
    for query in queries:
        start = time.perf_counter()
        function(query)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def brute_force(hashes: list[int], keys: list[str], query: int, max_distance: int) -> tuple[int, str] | None:
    """The fastest plain-Python exact scan: popcounts in a list comprehension, then min."""
    distances = [(query ^ h).bit_count() for h in hashes]
    best = min(distances)
    return (best, keys[distances.index(best)]) if best <= max_distance else None


def flip_bits(rng: random.Random, h: int, count: int) -> int:
    for bit in rng.sample(range(64), count):
        h ^= 1 << bit
    return h


def bench_hashing(folder: Path, passes: int) -> SideBySide:
    paths = sorted(folder.glob("*.jpg"))
    for path in paths:
        path.read_bytes()  # warm the page cache for both modes alike
    print(f"images: {len(paths)} JPEGs, 1920x1080, quality 90, "
          f"{sum(p.stat().st_size for p in paths) / len(paths) / 1e3:.0f} kB average")
    print(f"timed side by side, image by image, {passes} passes: median rates and ratio, "
          f"range of the passes' ratios, ratio in CPU time")
    print(f"{'':34}{'draft':>10}{'full decode':>14}{'draft/full':>12}{'passes':>13}{'CPU time':>10}")
    compared = {}
    for label, variant in (
        ("phash (32 px thumbnail)", lambda draft: (lambda p: image_hash(p, "phash", draft=draft))),
        ("dhash (32 px thumbnail)", lambda draft: (lambda p: image_hash(p, "dhash", draft=draft))),
        ("quality.measure (256 px)", lambda draft: (lambda p: measure(p, draft=draft))),
        ("JPEG decode alone (1/8 L, RGB)", jpeg_decode),
    ):
        runs = compared[label] = side_by_side(variant(True), variant(False), paths, passes)
        fast = len(paths) / statistics.median(runs.fast)
        slow = len(paths) / statistics.median(runs.slow)
        spread = f"{min(runs.ratios):.2f}-{max(runs.ratios):.2f}x"
        print(f"{label:34}{fast:8,.0f}/s{slow:12,.0f}/s{runs.ratio:11.2f}x{spread:>13}{runs.cpu_ratio:9.2f}x")
    phashes = compared["phash (32 px thumbnail)"]
    apart = [hamming(a, b) for a, b in zip(phashes.fast_results, phashes.slow_results)]
    print(f"phash draft vs full decode: max {max(apart)} bits apart, "
          f"{sum(d == 0 for d in apart)}/{len(apart)} identical")

    kept = HashIndex(NEAR_DUPLICATE_DISTANCE, expected_size=len(paths))
    for path, h in zip(paths, phashes.fast_results):
        if kept.nearest(h) is None:
            kept.add(h, path.name)
    print(f"greedy near-duplicate suppression (phash, distance <= {NEAR_DUPLICATE_DISTANCE}): "
          f"{len(kept)} of {len(paths)} frames kept")
    return phashes


def bench_lookups(count: int, n_queries: int, n_brute: int) -> float:
    rng = random.Random(5)
    hashes = [rng.getrandbits(64) for _ in range(count)]
    keys = [f"frame_{i:06d}.jpg" for i in range(count)]
    print(f"\nlookups: {count:,} stored random 64-bit hashes, {n_queries} queries "
          f"(half with a stored hash within the distance); brute force on {n_brute} of them")
    print(f"{'max_distance':>12}{'build':>9}{'HashIndex':>13}{'brute force':>14}{'brute/index':>13}   layout")
    medians = {}
    for max_distance in (4, 8, 10, 16):
        index = HashIndex(max_distance, expected_size=count)
        start = time.perf_counter()
        for h, key in zip(hashes, keys):
            index.add(h, key)
        build = time.perf_counter() - start
        queries = [flip_bits(rng, rng.choice(hashes), rng.randint(0, max_distance)) for _ in range(n_queries // 2)]
        queries += [rng.getrandbits(64) for _ in range(n_queries - len(queries))]
        rng.shuffle(queries)
        checked = queries[:n_brute]
        for query in checked:
            assert index.nearest(query) == brute_force(hashes, keys, query, max_distance), "index and scan disagree"
        fast = median_us(index.nearest, queries)
        slow = median_us(lambda q: brute_force(hashes, keys, q, max_distance), checked)
        medians[max_distance] = fast
        print(f"{max_distance:>12}{build:8.2f}s{fast:10,.0f} us{slow:11,.0f} us{slow / fast:12,.1f}x   {index.strategy}")
    return medians[NEAR_DUPLICATE_DISTANCE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="1920x1080 JPEGs to generate and hash")
    parser.add_argument("--hashes", type=int, default=100_000, help="hashes stored for the lookup benchmark")
    parser.add_argument("--queries", type=int, default=300, help="HashIndex lookups timed per distance")
    parser.add_argument("--brute", type=int, default=40, help="of those, how many the brute-force scan also runs")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved hashing passes; the median one counts")
    parser.add_argument("--source", choices=("footage", "scenes"), default="footage",
                        help="write_footage frames (default) or independent random_scene frames")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        from alpolicy_onnx.synthetic import random_scene, write_footage
    except ImportError:
        sys.exit("bench_dedupe needs the frame generator of plugins/alpolicy-onnx (make install)")

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench_dedupe_") as folder:
        start = time.perf_counter()
        if args.source == "footage":
            write_footage(folder, n_frames=args.images, seed=args.seed, size=(1920, 1080), quality=90)
        else:
            for number in range(args.images):
                image, _ = random_scene(args.seed * 100_000 + number, (1920, 1080))
                image.save(Path(folder) / f"scene_{number:05d}.jpg", quality=90)
        print(f"generated {args.images} {args.source} frames in {time.perf_counter() - start:.1f}s (not timed below)")
        hashing = bench_hashing(Path(folder), args.repeat)
    lookup = bench_lookups(args.hashes, args.queries, min(args.brute, args.queries))

    print()
    ratio = math.floor(hashing.ratio * 100) / 100  # shown truncated: 2.998x is not "3.00x PASS"
    print(f"target: phash with draft decoding >= 3x faster than full decoding -> {ratio:.2f}x "
          f"(passes {min(hashing.ratios):.2f}-{max(hashing.ratios):.2f}x) {'PASS' if ratio >= 3 else 'FAIL'}")
    print(f"target: median lookup < 1 ms at {args.hashes:,} hashes, max_distance {NEAR_DUPLICATE_DISTANCE} -> "
          f"{lookup:,.0f} us {'PASS' if lookup < 1000 else 'FAIL'}")


if __name__ == "__main__":
    main()
