"""Nearest-hash search under Hamming distance that stays fast at 100,000+ hashes, in pure Python.

Suppressing near-duplicates means asking, for every new frame, "is there a stored hash within
``max_distance`` bits of this one?". Comparing against every stored hash costs about 65 ns a
hash in Python -- 6.5 ms a frame at 100,000 hashes, more than decoding and hashing the frame.
:class:`HashIndex` answers the same question exactly in microseconds to a few hundred
microseconds with **multi-index hashing** (Norouzi, Punjani and Fleet, "Fast search in Hamming
space with multi-index hashing", CVPR 2012):

* The 64 bits are split into ``m`` disjoint chunks, and each chunk has a dict mapping a chunk
  value to the stored hashes that have it.
* Pigeonhole: give chunk ``i`` a search radius ``r_i`` with ``sum(r_i + 1) = d + 1``. If two
  hashes differ in at most ``d`` bits, some chunk ``i`` differs in at most ``r_i`` bits (were
  every chunk ``r_i + 1`` or more apart, the total would be ``d + 1`` or more). With
  ``m = d + 1`` chunks every radius is 0 -- one chunk is *identical* and a lookup is ``m`` dict
  hits; with fewer, wider chunks each chunk also probes every value within ``r_i`` bits of the
  query's (precomputed XOR masks).
* Every hash found that way is a candidate, verified with an exact popcount; nothing outside the
  probed buckets can be within ``d``. Results are exact: no false negatives, no false positives.

Why not always ``m = d + 1``: with 100,000 random hashes and ``d = 10``, eleven chunks of 5-6
bits leave only ~64 values per chunk, so each bucket holds ~1,600 hashes and a lookup verifies
~17,000 candidates (~3 ms). Four 16-bit chunks probed within 1-2 bits take ~430 dict probes
and verify ~650 candidates (~0.4 ms). :class:`HashIndex` picks ``m`` with a cost model (dict
probes + expected candidates for ``expected_size`` uniformly spread hashes, costs measured on
this implementation) and falls back to a **linear scan** when no chunking beats it: at 100,000
hashes for ``max_distance`` 20 and above, where "near" no longer means near-duplicate anyway
(unrelated pictures are ~32 bits apart, rarely under 16). Lookups stay under a millisecond up
to ``max_distance`` ~10 at 100,000 hashes (~0.2 ms at 8); beyond that they grow towards the
linear scan. :attr:`HashIndex.strategy` says what was chosen; ``benchmarks/bench_dedupe.py``
measures it.

Memory: each stored hash is referenced from one bucket in each of the ``m`` dicts: ~60 MB for
100,000 hashes with 4 chunks and 20-character keys (measured with tracemalloc; mostly dict and
bucket-list overhead). Persistence is the caller's
business (store the hashes, ``add`` them back).
"""

from __future__ import annotations

from itertools import chain, combinations
from math import comb

__all__ = ["HashIndex"]

BITS = 64
_MAX_HASH = (1 << BITS) - 1

# Relative costs in the layout model, measured at 100,000 hashes: a dict probe (~0.4 us: the
# tables are big, so mostly cache misses), verifying one candidate (~0.25 us: a popcount in a
# map() chain, on an int object somewhere in memory) and one hash of a linear scan (~0.065 us:
# a list comprehension of popcounts over ints allocated one after the other).
_PROBE_COST = 1.0
_CANDIDATE_COST = 0.6
_SCAN_COST = 0.15
# Most XOR masks a layout may precompute per chunk (bounds memory and set-up time).
_MAX_MASKS = 50_000


def _widths(chunks: int) -> list[int]:
    """64 bits split into ``chunks`` contiguous chunks as equal as possible (wider ones first)."""
    base, extra = divmod(BITS, chunks)
    return [base + 1] * extra + [base] * (chunks - extra)


def _radii(chunks: int, max_distance: int) -> list[int]:
    """Search radius per chunk: the smallest radii with sum(r + 1) = max_distance + 1 (pigeonhole).

    If every chunk were at least ``r_i + 1`` bits apart the hashes would be ``max_distance + 1``
    or more apart, so some chunk is within its ``r_i``. The larger radii go to the wider chunks.
    """
    q, rem = divmod(max_distance + 1, chunks)
    return [q] * rem + [q - 1] * (chunks - rem)


def _ball(width: int, radius: int) -> int:
    """Number of ``width``-bit values within ``radius`` bits of a given one."""
    return sum(comb(width, k) for k in range(min(radius, width) + 1))


def _layout_cost(chunks: int, max_distance: int, size: int) -> float:
    cost = 0.0
    for width, radius in zip(_widths(chunks), _radii(chunks, max_distance)):
        probes = _ball(width, radius)
        cost += probes * (_PROBE_COST + size / (1 << width) * _CANDIDATE_COST)
    return cost


def _choose_chunks(max_distance: int, size: int) -> int | None:
    """The cheapest number of chunks for ``max_distance`` at ``size`` hashes, or None for a linear scan."""
    best: tuple[float, int] | None = None
    for chunks in range(1, min(max_distance + 1, BITS) + 1):
        if any(_ball(w, r) > _MAX_MASKS for w, r in zip(_widths(chunks), _radii(chunks, max_distance))):
            continue
        cost = _layout_cost(chunks, max_distance, size)
        if best is None or cost < best[0]:
            best = (cost, chunks)
    if best is None or best[0] >= size * _SCAN_COST:
        return None
    return best[1]


class HashIndex:
    """Exact nearest-neighbour search over 64-bit hashes within ``max_distance`` bits.

    >>> index = HashIndex(max_distance=8)
    >>> index.add(0xFFFF_0000_FFFF_0000, "frame_0001.jpg")
    >>> index.nearest(0xFFFF_0000_FFFF_0003)
    (2, 'frame_0001.jpg')
    >>> index.nearest(0x0123_4567_89AB_CDEF) is None
    True

    ``expected_size`` only tunes the chunk layout (wider chunks pay off for bigger indexes); the
    answers are exact at any size, only slower far from it. ``chunks`` forces the number of
    chunks (1 to ``max_distance + 1``; ``0`` forces a linear scan), for tests and benchmarks.
    """

    def __init__(self, max_distance: int, *, expected_size: int = 100_000, chunks: int | None = None) -> None:
        if not isinstance(max_distance, int) or not 0 <= max_distance <= BITS:
            raise ValueError(f"max_distance must be an int from 0 to {BITS}, not {max_distance!r}")
        if chunks is None:
            chunks = _choose_chunks(max_distance, max(1, expected_size)) or 0
        elif not 0 <= chunks <= min(max_distance + 1, BITS):
            raise ValueError(f"chunks must be from 0 (linear scan) to max_distance + 1 ({max_distance + 1})")
        elif chunks and any(_ball(w, r) > _MAX_MASKS for w, r in zip(_widths(chunks), _radii(chunks, max_distance))):
            raise ValueError(f"{chunks} chunks for max_distance {max_distance} would probe too many values a lookup")
        self.max_distance = max_distance
        self._hashes: list[int] = []
        self._keys: list[str] = []
        # one (table, shift, width mask, probe masks) per chunk; empty for a linear scan
        self._chunks: list[tuple[dict[int, list[int]], int, int, tuple[int, ...]]] = []
        self._radii = _radii(chunks, max_distance) if chunks else []
        shift = BITS
        for width, radius in zip(_widths(chunks) if chunks else [], self._radii):
            shift -= width
            masks = tuple(
                sum(1 << bit for bit in flipped)
                for k in range(min(radius, width) + 1)
                for flipped in combinations(range(width), k)
            )
            self._chunks.append(({}, shift, (1 << width) - 1, masks))

    @property
    def strategy(self) -> str:
        """What lookups do, in words (for logs and benchmarks)."""
        if not self._chunks:
            return f"linear scan (max_distance {self.max_distance})"
        widths = sorted({(mask + 1).bit_length() - 1 for _, _, mask, _ in self._chunks})
        radii = sorted(set(self._radii))
        width_text = "-".join(str(w) for w in widths)
        probe = ("exact chunk match" if radii == [0] else
                 f"chunks probed within {'-'.join(str(r) for r in radii)} bits")
        return (f"multi-index hashing: {len(self._chunks)} chunks of {width_text} bits, {probe} "
                f"(max_distance {self.max_distance})")

    def __len__(self) -> int:
        return len(self._hashes)

    def __repr__(self) -> str:
        return f"HashIndex({len(self)} hashes, {self.strategy})"

    def add(self, h: int, key: str) -> None:
        """Store hash ``h`` (an int from 0 to 2**64 - 1) under ``key``. Duplicates are kept."""
        if not isinstance(h, int) or not 0 <= h <= _MAX_HASH:
            raise ValueError(f"a hash must be an int from 0 to 2**64 - 1, not {h!r}")
        index = len(self._hashes)
        self._hashes.append(h)
        self._keys.append(key)
        if not self._chunks:
            return
        # bucket entries pack the insertion index above the hash (one int object, shared by
        # every chunk's bucket), so a lookup verifies candidates without leaving C (see nearest)
        entry = (index << BITS) | h
        for table, shift, width_mask, _ in self._chunks:
            value = (h >> shift) & width_mask
            bucket = table.get(value)
            if bucket is None:
                table[value] = [entry]
            else:
                bucket.append(entry)

    def nearest(self, h: int) -> tuple[int, str] | None:
        """``(distance, key)`` of the closest stored hash within ``max_distance`` bits, else None.

        Among equally close hashes, the one added first wins.
        """
        if not isinstance(h, int) or not 0 <= h <= _MAX_HASH:
            raise ValueError(f"a hash must be an int from 0 to 2**64 - 1, not {h!r}")
        if not self._hashes:
            return None
        if not self._chunks:
            distances = [(h ^ stored).bit_count() for stored in self._hashes]
            best = min(distances)
            return (best, self._keys[distances.index(best)]) if best <= self.max_distance else None
        # Gather every candidate entry of every probed bucket, then compute all the distances
        # with map() chains: no Python-level loop runs per probe or per candidate.
        candidates: list[int] = []
        extend = candidates.extend
        for table, shift, width_mask, masks in self._chunks:
            value = (h >> shift) & width_mask
            if len(masks) == 1:
                bucket = table.get(value)
                if bucket:
                    extend(bucket)
            else:
                extend(chain.from_iterable(filter(None, map(table.get, map(value.__xor__, masks)))))
        if not candidates:
            return None
        # (entry ^ h) & _MAX_HASH drops the packed index: what is left differs where the hashes do
        distances = list(map(int.bit_count, map(_MAX_HASH.__and__, map(h.__xor__, candidates))))
        best = min(distances)
        if best > self.max_distance:
            return None
        first = min(entry >> BITS for entry, distance in zip(candidates, distances) if distance == best)
        return best, self._keys[first]
