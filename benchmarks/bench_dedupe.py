"""Near-duplicate building blocks, side by side: draft vs full JPEG decoding, HashIndex vs a scan.

1. Hashing: perceptual hashes per second of N synthetic 1920x1080 footage frames (JPEG quality
   90, from ``alpolicy_onnx.synthetic.write_footage``: cluttered scenes with sensor noise,
   near-duplicate consecutive frames), with libjpeg draft decoding (1/8 scale, grayscale) and
   with a full decode, and the ratio. Also the quality measurement (256 px thumbnail) both ways,
   and how far the draft and full hashes are apart. Generation time is excluded; files are read
   once before timing, so both modes see a warm page cache. ``--source scenes`` hashes
   independent ``random_scene`` frames instead (no near-duplicates). A draft decode still
   entropy-decodes every DCT coefficient of the file -- only the inverse DCT, upsampling and
   colour conversion shrink -- so the ratio depends on the content and stays near 3x here.
2. Lookups: median microseconds per ``HashIndex.nearest`` at 100,000 stored random 64-bit hashes
   (half the queries have a stored hash within the distance, half do not) vs the fastest plain
   Python scan (a list comprehension of popcounts, then min), answers checked equal.
3. What it means for the footage: frames kept by greedy near-duplicate suppression
   (keep a frame unless a kept frame is within NEAR_DUPLICATE_DISTANCE).

Targets: hashing with draft decoding >= 3x faster than with full decoding; lookups under 1 ms
(median) at 100,000 hashes for the near-duplicate threshold (max_distance 8).

    python benchmarks/bench_dedupe.py [--images 200] [--source footage|scenes] [--hashes 100000]
                                      [--queries 300] [--brute 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from alpolicy.hashindex import HashIndex
from alpolicy.imagehash import NEAR_DUPLICATE_DISTANCE, hamming, image_hash
from alpolicy.quality import measure


def best_rate(function: Callable[[Path], object], paths: list[Path], repeat: int) -> float:
    """Best of `repeat` passes over all files, in files per second (best-of filters scheduler noise)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for path in paths:
            function(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


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


def bench_hashing(folder: Path, repeat: int) -> float:
    paths = sorted(folder.glob("*.jpg"))
    for path in paths:
        path.read_bytes()  # warm the page cache for both modes alike
    print(f"images: {len(paths)} JPEGs, 1920x1080, quality 90, "
          f"{sum(p.stat().st_size for p in paths) / len(paths) / 1e3:.0f} kB average")
    print(f"{'':34}{'draft':>12}{'full decode':>14}   draft/full")
    ratios = {}
    for label, function in (
        ("phash (32 px thumbnail)", lambda draft: (lambda p: image_hash(p, "phash", draft=draft))),
        ("dhash (32 px thumbnail)", lambda draft: (lambda p: image_hash(p, "dhash", draft=draft))),
        ("quality.measure (256 px)", lambda draft: (lambda p: measure(p, draft=draft))),
    ):
        fast = best_rate(function(True), paths, repeat)
        slow = best_rate(function(False), paths, repeat)
        ratios[label] = fast / slow
        print(f"{label:34}{fast:9,.0f}/s{slow:12,.0f}/s   {fast / slow:6.2f}x")
    apart = [hamming(image_hash(p, draft=True), image_hash(p, draft=False)) for p in paths]
    print(f"phash draft vs full decode: max {max(apart)} bits apart, "
          f"{sum(d == 0 for d in apart)}/{len(apart)} identical")

    hashes = [image_hash(p) for p in paths]
    kept = HashIndex(NEAR_DUPLICATE_DISTANCE, expected_size=len(paths))
    for path, h in zip(paths, hashes):
        if kept.nearest(h) is None:
            kept.add(h, path.name)
    print(f"greedy near-duplicate suppression (phash, distance <= {NEAR_DUPLICATE_DISTANCE}): "
          f"{len(kept)} of {len(paths)} frames kept")
    return ratios["phash (32 px thumbnail)"]


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
    parser.add_argument("--repeat", type=int, default=3, help="hashing passes; the best one counts")
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
        ratio = bench_hashing(Path(folder), args.repeat)
    lookup = bench_lookups(args.hashes, args.queries, min(args.brute, args.queries))

    print()
    print(f"target: phash with draft decoding >= 3x faster than full decoding -> {ratio:.2f}x "
          f"{'PASS' if ratio >= 3 else 'FAIL'}")
    print(f"target: median lookup < 1 ms at {args.hashes:,} hashes, max_distance {NEAR_DUPLICATE_DISTANCE} -> "
          f"{lookup:,.0f} us {'PASS' if lookup < 1000 else 'FAIL'}")


if __name__ == "__main__":
    main()
