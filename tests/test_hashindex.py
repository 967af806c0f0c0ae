"""HashIndex against a brute-force scan: exact answers at every distance, for every layout."""

from __future__ import annotations

import doctest
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import alpolicy.pixels.hashindex
from alpolicy.pixels.hashindex import HashIndex

BACKGROUND = 20_000


def brute_force(stored: list[tuple[int, str]], query: int, max_distance: int) -> tuple[int, str] | None:
    """The specification: the closest stored hash within max_distance, the first added on ties."""
    best = None
    for h, key in stored:
        distance = (h ^ query).bit_count()
        if distance <= max_distance and (best is None or distance < best[0]):
            best = (distance, key)
    return best


def flip_bits(rng: random.Random, h: int, count: int) -> int:
    for bit in rng.sample(range(64), count):
        h ^= 1 << bit
    return h


@pytest.fixture(scope="module")
def background() -> list[tuple[int, str]]:
    rng = random.Random(11)
    return [(rng.getrandbits(64), f"bg{i}") for i in range(BACKGROUND)]


@pytest.mark.parametrize(
    "max_distance, chunks",
    [
        (0, None),  # one 64-bit chunk: a plain dict lookup
        (3, None),
        (8, None),  # the default near-duplicate threshold: 4 chunks probed within 1-2 bits
        (8, 9),  # the textbook layout: d + 1 chunks, exact chunk match
        (10, None),
        (13, 5),  # uneven chunk widths and radii
        (16, None),
        (24, None),  # linear scan
    ],
)
def test_matches_brute_force_with_planted_neighbours(background, max_distance, chunks):
    rng = random.Random(max_distance * 100 + (chunks or 0))
    index = HashIndex(max_distance, chunks=chunks)
    stored = list(background)
    queries = []
    # for each distance 0..d+2, a few queries each with one stored hash exactly that far away
    for distance in range(max_distance + 3):
        for copy in range(3):
            query = rng.getrandbits(64)
            stored.append((flip_bits(rng, query, distance), f"planted{distance}-{copy}"))
            queries.append((query, distance))
    queries += [(rng.getrandbits(64), None) for _ in range(30)]  # mostly nothing within d
    rng.shuffle(stored)
    for h, key in stored:
        index.add(h, key)
    assert len(index) == len(stored) == BACKGROUND + 3 * (max_distance + 3)

    for query, planted in queries:
        expected = brute_force(stored, query, max_distance)
        assert index.nearest(query) == expected, (query, planted, index.strategy)
        if planted is not None and planted <= max_distance:
            assert expected is not None and expected[0] <= planted  # no false negatives within d
        if expected is not None:
            assert expected[0] <= max_distance  # and nothing beyond d


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    max_distance=st.integers(0, 12),
    chunks=st.integers(0, 13),
    size=st.integers(0, 60),
)
def test_any_layout_is_exact_on_clustered_hashes(seed, max_distance, chunks, size):
    """Hashes clustered around one centre, so many fall near the query and ties are common."""
    assume(chunks <= max_distance + 1)
    try:
        index = HashIndex(max_distance, chunks=chunks)
    except ValueError:  # too many probe masks for that layout
        assume(False)
    rng = random.Random(seed)
    centre = rng.getrandbits(64)
    stored = [(flip_bits(rng, centre, rng.randint(0, 2 * max_distance + 2)), f"k{i}") for i in range(size)]
    for h, key in stored:
        index.add(h, key)
    for _ in range(5):
        query = flip_bits(rng, centre, rng.randint(0, max_distance + 2))
        assert index.nearest(query) == brute_force(stored, query, max_distance)


def test_ties_go_to_the_first_added_and_duplicates_are_kept():
    index = HashIndex(4)
    index.add(0b1111, "first")
    index.add(0b1111, "second")
    index.add(0b0111, "one-off")
    assert len(index) == 3
    assert index.nearest(0b1111) == (0, "first")
    assert index.nearest(0b1110) == (1, "first")  # 1 from "first" and 2 from "one-off"
    assert index.nearest(0b0011) == (1, "one-off")


def test_empty_index_and_misses():
    index = HashIndex(8)
    assert len(index) == 0
    assert index.nearest(123) is None
    index.add(0, "zero")
    assert index.nearest((1 << 9) - 1) is None  # 9 bits away
    assert index.nearest((1 << 8) - 1) == (8, "zero")


def test_layout_choice_and_strategy():
    assert HashIndex(0).strategy.startswith("multi-index hashing: 1 chunks of 64 bits")
    assert "4 chunks of 16 bits" in HashIndex(8).strategy
    assert HashIndex(24).strategy.startswith("linear scan")  # no chunking beats a scan at 100,000
    assert HashIndex(8, chunks=0).strategy.startswith("linear scan")
    assert "exact chunk match" in HashIndex(8, chunks=9).strategy
    assert "HashIndex(0 hashes" in repr(HashIndex(8))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_distance"):
        HashIndex(65)
    with pytest.raises(ValueError, match="max_distance"):
        HashIndex(-1)
    with pytest.raises(ValueError, match="chunks"):
        HashIndex(4, chunks=6)  # more chunks than d + 1 would leave some never probed
    with pytest.raises(ValueError, match="too many"):
        HashIndex(20, chunks=1)  # every 64-bit value within 20 bits
    index = HashIndex(4)
    for bad in (-1, 1 << 64, "ff"):
        with pytest.raises(ValueError, match="2\\*\\*64"):
            index.add(bad, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="2\\*\\*64"):
            index.nearest(bad)  # type: ignore[arg-type]


def test_docstring_examples():
    assert doctest.testmod(alpolicy.pixels.hashindex).failed == 0
