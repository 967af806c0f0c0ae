"""Perceptual hashes: 64-bit fingerprints that stay close when an image is only slightly changed.

Footage is full of near-identical consecutive frames. A content hash (SHA-256) sees two of them
as unrelated; a perceptual hash summarises the *coarse structure* of the picture instead, so two
frames that a person would call "the same" get hashes a few bits apart, while different scenes
land about half of the 64 bits apart. Comparing two hashes is one XOR and a popcount
(:func:`hamming`), so millions of comparisons are cheap (see :mod:`alpolicy.pixels.hashindex` for search).

How both hashes work: the image is decoded small (JPEGs with libjpeg's DCT scaling, see
:func:`thumbnail`), turned to grayscale and squashed to a tiny fixed grid. Everything that only
changes fine detail -- resizing, JPEG recompression, sensor noise, a shift of a few pixels, a
small brightness or contrast change -- barely moves that grid. Each bit compares two
quantities of the grid with each other (not with an absolute level), so a brightness or
contrast change flips bits only where it clips highlights or shadows.

* :func:`phash` (the default) -- DCT hash: the 8x8 lowest-frequency coefficients of a 2-D DCT of
  the 32x32 thumbnail; a bit is 1 when its coefficient is above the median of the 63 AC
  coefficients. The most robust of the two to recompression, noise and brightness changes.
* :func:`dhash` -- difference hash: on a 9x8 grid, a bit is 1 when a pixel is darker than its
  right-hand neighbour (horizontal gradient signs). Cheaper, a little less robust.

What a distance means (Hamming distance between two 64-bit phashes; measured in
``tests/test_imagehash.py`` and on 40 synthetic cluttered 640x480 scenes -- phash distances are
always even, because exactly 31 AC bits are set in every hash):

* 0-4: near-identical. The same frame resized to half size or recompressed at JPEG quality 40:
  0-2; decoded with or without JPEG draft mode: 0-2; consecutive frames of still footage: 0-4.
* 4-8: the same frame slightly edited: shifted 2-3 pixels, brightened 10 %: up to 6.
  :data:`NEAR_DUPLICATE_DISTANCE` = 8 is the near-duplicate threshold these justify.
* 8-12: the same scene with a visible change: shifted 4-8 pixels or brightened 15 % (up to
  10-14), an object passing in front of the camera.
* 16 and above: different pictures. Unrelated scenes are 32 +- 4 bits apart on average and
  never closer than 16 in the measurements (:data:`MIN_DIFFERENT_DISTANCE`); frames of
  different scenes of one synthetic footage, never closer than 20.

dhash is as good on recompression and shifts but flips more bits on brightness changes (a 10 %
brightening: up to 12), so its threshold has less margin; use phash unless speed is critical.

Limits: perceptual hashes are not rotation-, crop- or flip-invariant (a 90-degree turn or a
mirror image is a different picture to them), and a nearly uniform frame (black, white, thick
fog) is hashed on whatever faint structure or noise is left, so its distances mean little --
gate those with :mod:`alpolicy.pixels.quality` first.
"""

from __future__ import annotations

import math
import os
from operator import add, mul, sub
from typing import Union

from PIL import Image, ImageOps

from ..io.images import DEFAULT_MAX_PIXELS, ImageFile, open_image

__all__ = [
    "HASH_KINDS",
    "MIN_DIFFERENT_DISTANCE",
    "NEAR_DUPLICATE_DISTANCE",
    "dhash",
    "hamming",
    "image_hash",
    "phash",
    "thumbnail",
]

#: Near-duplicate threshold for phash: above every distance measured between lightly transformed
#: copies of one frame (resized, recompressed at JPEG quality 40, shifted 3 px, brightened 10 %:
#: at most 6), half the closest distance measured between different scenes.
NEAR_DUPLICATE_DISTANCE = 8
#: Smallest phash distance the tests require between genuinely different scenes.
MIN_DIFFERENT_DISTANCE = 16

PathLike = Union[str, "os.PathLike[str]", ImageFile]

_DCT_SIZE = 32  # phash input: 32x32 grayscale
_DCT_KEEP = 8  # the 8x8 lowest frequencies are kept

# _COS[u][x] = cos((2x + 1) u pi / 64): the DCT-II basis for the 8 lowest frequencies of a
# 32-sample row (or column). The constant factors of the DCT scale every coefficient alike
# and cannot change which side of the median it is on, so they are left out.
_COS: tuple[tuple[float, ...], ...] = tuple(
    tuple(math.cos((2 * x + 1) * u * math.pi / (2 * _DCT_SIZE)) for x in range(_DCT_SIZE))
    for u in range(_DCT_KEEP)
)
#: The first half of each basis vector (the second half mirrors it, with the sign of (-1)^u).
_HALF_COS: tuple[tuple[float, ...], ...] = tuple(basis[: _DCT_SIZE // 2] for basis in _COS)


def _fspath(path: PathLike) -> str:
    return path.path if isinstance(path, ImageFile) else os.fspath(path)


def thumbnail(
    path: PathLike,
    size: int = 32,
    *,
    draft: bool = True,
    keep_aspect: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode ``path`` small and grayscale (mode ``"L"``), EXIF orientation applied.

    The result is ``size`` x ``size`` (the aspect ratio is dropped, as hashes want), or with
    ``keep_aspect=True`` the image scaled to fit in a ``size`` x ``size`` box (never enlarged).

    ``draft=True`` lets libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale, in grayscale, straight
    from the DCT coefficients: a 1920x1080 JPEG is decoded as 240x135 without ever producing the
    full-size bitmap or its colour conversion, giving nearly the same pixels after the final resize.
    A 32 px hash of a 1080p frame is about 3x faster than with a full decode (2.9-3.2x for phash
    in ``benchmarks/bench_dedupe.py``): libjpeg still entropy-decodes every coefficient, which is
    most of what is left (the bare 1/8 decode is 2.3x faster than a full one). The
    scale is chosen so the decoded image is still at least 4 x ``size`` on each side
    (``keep_aspect``: at least ``size``), so the final antialiased resize has samples to average.
    Other formats are decoded in full. ``draft=False`` always decodes in full (for comparison).

    Decoding is guarded like :meth:`alpolicy.io.images.ImageFile.load`: the pixel count is checked
    from the header before anything is decoded (``max_pixels``, decompression bombs), and every
    failure is an :class:`~alpolicy.io.images.ImageDecodeError`.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    with open_image(_fspath(path), max_pixels=max_pixels) as image:
        if draft and image.format == "JPEG":
            want = size if keep_aspect else size * 4
            # the requested size is in stored orientation; a square request needs no swap,
            # and for keep_aspect the smaller side decides the scale either way
            image.draft("L", (want, want))
        image.load()
        oriented = ImageOps.exif_transpose(image)
        gray = oriented if oriented.mode == "L" else oriented.convert("L")
        if keep_aspect:
            width, height = gray.size
            factor = min(size / width, size / height, 1.0)
            target = (max(1, round(width * factor)), max(1, round(height * factor)))
        else:
            target = (size, size)
        if gray.size == target:
            return gray.copy() if gray is image else gray
        # reducing_gap: a fast integer box reduction first, then an exact antialiased
        # resample of the last factor (identical quality to a plain resize for hashing)
        return gray.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _gray(image: Image.Image, size: tuple[int, int]) -> bytes:
    """Grayscale pixels of ``image`` at ``size``, row-major, as bytes (one int per pixel)."""
    if image.mode != "L":
        image = image.convert("L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image.tobytes()


def dhash(image: Image.Image, bits: int = 64) -> int:
    """Difference hash: on a (side+1) x side grayscale grid, bit = pixel darker than its right neighbour.

    ``bits`` must be a square (64 -> 9x8 grid, 256 -> 17x16). Bits are row-major, first row in
    the most significant bits. ``image`` is any PIL image (a :func:`thumbnail` is the intended
    input); it is converted to grayscale and resized here.
    """
    side = math.isqrt(bits)
    if side < 1 or side * side != bits:
        raise ValueError("bits must be a perfect square (64, 256, ...)")
    pixels = _gray(image, (side + 1, side))
    value = 0
    width = side + 1
    for row in range(side):
        start = row * width
        for x in range(start, start + side):
            value = (value << 1) | (pixels[x] < pixels[x + 1])
    return value


def _fold(vector: bytes | list[float]) -> tuple[list, list]:
    """(v[x] + v[31-x], v[x] - v[31-x]) for x < 16: the halves even and odd DCT frequencies need."""
    head, tail = vector[:16], vector[:15:-1]
    return list(map(add, head, tail)), list(map(sub, head, tail))


def _dct_low(pixels: bytes) -> list[float]:
    """The 8x8 lowest-frequency coefficients of the 2-D DCT-II of a 32x32 image, row-major (v, u).

    Separable: each of the 32 rows is projected on the 8 horizontal basis vectors, then each of
    the 8 resulting columns on the 8 vertical ones; the other 1024 - 64 coefficients are never
    computed. The basis vectors are symmetric (even frequencies) or antisymmetric (odd ones)
    about the middle, so each row is folded once into sums and differences of mirrored samples
    and every dot product is 16 long instead of 32 (about 30 % faster). ``sum(map(mul, ...))``
    keeps the inner loops in C.
    """
    n = _DCT_SIZE
    folded = [_fold(pixels[y:y + n]) for y in range(0, n * n, n)]
    # projected[u][y] = sum_x p[y][x] cos((2x+1) u pi / 2n), from the row's sums (u even) or differences (u odd)
    projected = [[sum(map(mul, row[u & 1], _HALF_COS[u])) for row in folded] for u in range(_DCT_KEEP)]
    # coefficient (v, u) = sum_y projected[u][y] cos((2y+1) v pi / 2n)
    columns = [_fold(column) for column in projected]
    return [sum(map(mul, columns[u][v & 1], _HALF_COS[v])) for v in range(_DCT_KEEP) for u in range(_DCT_KEEP)]


def phash(image: Image.Image) -> int:
    """DCT hash: 64 bits, one per low-frequency DCT coefficient of the 32x32 grayscale image.

    The 8x8 top-left (lowest-frequency) coefficients of a 2-D DCT-II, row-major, first in the
    most significant bit; a bit is 1 when its coefficient is above the median of the 63 AC
    coefficients. The DC coefficient (the mean brightness) is left out of the median, as usual:
    its bit is 1 for any image that is not entirely black, so 63 bits carry information.
    ``image`` is any PIL image (a 32x32 :func:`thumbnail` is the intended input).
    """
    coefficients = _dct_low(_gray(image, (_DCT_SIZE, _DCT_SIZE)))
    median = sorted(coefficients[1:])[31]  # the middle one of the 63 AC coefficients
    value = 0
    for coefficient in coefficients:
        value = (value << 1) | (coefficient > median)
    return value


#: Hash kinds :func:`image_hash` accepts.
HASH_KINDS = ("phash", "dhash")


def image_hash(path: PathLike, kind: str = "phash", draft: bool = True, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The perceptual hash of an image file: one guarded, small decode (:func:`thumbnail`, 32 px) and a hash.

    ``kind`` is ``"phash"`` (default, more robust) or ``"dhash"``. Raises
    :class:`~alpolicy.io.images.ImageDecodeError` for unreadable files and decompression bombs.
    """
    if kind not in HASH_KINDS:
        raise ValueError(f"unknown hash kind {kind!r}: expected one of {', '.join(HASH_KINDS)}")
    small = thumbnail(path, _DCT_SIZE, draft=draft, max_pixels=max_pixels)
    return phash(small) if kind == "phash" else dhash(small)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes (0 = identical, 64 = complementary)."""
    return (a ^ b).bit_count()
