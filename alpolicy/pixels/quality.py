"""Image quality gates: is a frame too blurred (smeared), too dark, too bright or blank?

Cheap measurements, Pillow only, on one small grayscale decode of the file (a 256 px thumbnail,
JPEGs decoded at reduced scale by libjpeg -- see :func:`alpolicy.pixels.imagehash.thumbnail`):

* :func:`sharpness` -- variance of the Laplacian (the classic focus measure): edges and texture
  give large second derivatives of brightness, blur and blank areas give ~0. Measured on the
  256 px thumbnail, it compares images of any resolution on the same scale and is far less
  sensitive to the pixel-level sensor noise and JPEG artefacts a full-resolution measure would
  take for detail (strong noise still counts: see the dark frames below).
* :func:`exposure` -- mean brightness and the fractions of near-black and near-white pixels.
* :func:`measure` -- both, from one decode: a :class:`Quality`.

Typical values (``measure`` on 640x480 synthetic frames from ``alpolicy_onnx.synthetic``, JPEG 90):

* sharp cluttered frames: sharpness 137-753; the same frames blurred with a Gaussian of radius
  3 px: 4-33, of radius 8 px: 1.5-3.6; a uniform (blank) frame: exactly 0.
* synthetic footage (``write_footage``, 360 frames): clean frames 147-417, frames tagged
  ``blur`` 10-54, ``fog`` 22-76, ``dark`` frames ~50 (their sensor noise) with brightness 12-13
  and ``dark_fraction`` 0.92-0.94.
* a black frame: ``dark_fraction`` 1.0; a white frame: ``bright_fraction`` 1.0.

Thresholds belong to the policy (what counts as "too blurred" depends on the footage); these
functions only measure.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageStat

from ..io.images import DEFAULT_MAX_PIXELS
from .imagehash import PathLike, thumbnail

__all__ = ["DARK_LEVEL", "BRIGHT_LEVEL", "QUALITY_SIZE", "Quality", "exposure", "measure", "sharpness"]

#: Longest side of the thumbnail :func:`measure` works on.
QUALITY_SIZE = 256
#: Gray levels at or below this count as near-black, at or above :data:`BRIGHT_LEVEL` as near-white.
DARK_LEVEL = 16
BRIGHT_LEVEL = 239

# The 4-neighbour Laplacian. Pillow clamps a filtered "L" image to 0..255, which would cut every
# negative response (the dark side of each edge) to 0; the offset of 128 moves a zero response to
# mid-gray so both signs survive (only responses beyond +-127 are clipped, rare on a thumbnail).
# A constant offset does not change a variance, so no correction is needed afterwards.
_LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)


def _grayscale(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def sharpness(thumbnail: Image.Image) -> float:
    """Variance of the Laplacian of a grayscale thumbnail: ~0 for blank or smeared, large for sharp.

    The value depends on the thumbnail's scale (compare images measured at the same size, as
    :func:`measure` does). Pillow's 3x3 filter leaves the outermost ring of pixels unfiltered
    (a copy of the input), so that ring is cropped before the variance is taken.
    """
    gray = _grayscale(thumbnail)
    width, height = gray.size
    if width < 3 or height < 3:
        return 0.0
    filtered = gray.filter(_LAPLACIAN).crop((1, 1, width - 1, height - 1))
    return float(ImageStat.Stat(filtered).var[0])


def exposure(
    thumbnail: Image.Image, *, dark_level: int = DARK_LEVEL, bright_level: int = BRIGHT_LEVEL
) -> tuple[float, float, float]:
    """``(mean brightness 0..255, fraction of near-black pixels, fraction of near-white pixels)``.

    Near-black: gray level <= ``dark_level``; near-white: >= ``bright_level``. Computed from one
    256-bin histogram of the grayscale thumbnail.
    """
    histogram = _grayscale(thumbnail).histogram()
    total = sum(histogram)
    if total == 0:
        return 0.0, 0.0, 0.0
    mean = sum(level * count for level, count in enumerate(histogram)) / total
    dark = sum(histogram[: dark_level + 1]) / total
    bright = sum(histogram[bright_level:]) / total
    return mean, dark, bright


@dataclass(frozen=True)
class Quality:
    """What :func:`measure` found: sharpness (Laplacian variance), brightness (0..255), exposure fractions."""

    sharpness: float
    brightness: float
    dark_fraction: float
    bright_fraction: float


def measure(
    path: PathLike, *, size: int = QUALITY_SIZE, draft: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Quality:
    """Sharpness and exposure of an image file from one guarded, small decode.

    The image is decoded to fit in ``size`` x ``size`` (aspect ratio kept, JPEGs at reduced
    scale when ``draft``) in grayscale, EXIF orientation applied. Raises
    :class:`~alpolicy.io.images.ImageDecodeError` for unreadable files and decompression bombs.
    """
    small = thumbnail(path, size, draft=draft, keep_aspect=True, max_pixels=max_pixels)
    brightness, dark, bright = exposure(small)
    return Quality(sharpness(small), brightness, dark, bright)
