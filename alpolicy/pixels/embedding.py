"""The built-in ``pixels`` embedder: a cheap vector of an image, from its pixels, for diversity.

The ``diversity`` sampling rule (:mod:`alpolicy.rules.diversity`) picks images far apart in an
embedding space. This one needs nothing but Pillow and a few milliseconds per image, in the
run's worker threads (as the perceptual hashes): the image decoded small (JPEGs at 1/8 scale by
libjpeg, :meth:`PIL.Image.Image.draft`), then two halves of equal weight:

* **layout**: a 16x12 greyscale thumbnail, its mean subtracted (a brighter copy of a frame stays
  close), normalised -- where the light and dark masses are: the scene's structure;
* **colour**: a 4x4x4 RGB histogram of a 32x24 thumbnail, square-rooted (the Hellinger
  embedding: a large uniform area does not drown the rest), normalised -- the scene's palette.

The vector (192 + 64 = 256 numbers) has length 1, so cosine and euclidean distances order pairs
alike. Frames of one scene land close, frames of different scenes far apart
(``tests/test_diversity.py`` measures it on the synthetic footage of ``alpolicy-onnx``); it is
not semantic (two different streets in the same light may be near): use ``clip`` for that.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from PIL import Image

from ..hookspecs import hookimpl
from ..io.images import ImageFile, open_image
from ..registry import EmbedderSpec

#: The layout thumbnail (4:3, as most footage) and the colour thumbnail.
LAYOUT_SIZE = (16, 12)
COLOUR_SIZE = (32, 24)
#: Histogram bins per channel (4 -> 64 bins).
BINS = 4
DIMENSIONS = LAYOUT_SIZE[0] * LAYOUT_SIZE[1] + BINS**3


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] if norm > 0 else [0.0] * len(values)


def pixel_embedding(image: ImageFile | str) -> list[float]:
    """The ``pixels`` embedding of an image (a list of :data:`DIMENSIONS` floats, length 1).
    Raises :class:`~alpolicy.io.images.ImageDecodeError` for a file that cannot be decoded."""
    path = image.path if isinstance(image, ImageFile) else image
    with open_image(path) as opened:
        opened.draft("RGB", (COLOUR_SIZE[0] * 2, COLOUR_SIZE[1] * 2))
        rgb = opened.convert("RGB")
        colour = rgb.resize(COLOUR_SIZE, Image.Resampling.BOX)
        grey = colour.convert("L").resize(LAYOUT_SIZE, Image.Resampling.BOX)
        layout = list(grey.tobytes())
        raw = colour.tobytes()
    mean = sum(layout) / len(layout)
    structure = _unit([value - mean for value in layout])
    shift = 8 - BINS.bit_length() + 1  # 256 levels -> BINS levels
    counts = [0] * BINS**3
    for r, g, b in zip(raw[0::3], raw[1::3], raw[2::3]):
        counts[((r >> shift) * BINS + (g >> shift)) * BINS + (b >> shift)] += 1
    palette = _unit([math.sqrt(count) for count in counts])
    half = 1 / math.sqrt(2)
    return [v * half for v in structure] + [v * half for v in palette]


class PixelsEmbedder:
    """The ``pixels`` embedder: :func:`pixel_embedding` (no options, no state: thread-safe)."""

    name = "pixels"

    def embed(self, image: ImageFile) -> list[float]:
        return pixel_embedding(image)


def make_pixels(options: dict[str, Any]) -> PixelsEmbedder:
    return PixelsEmbedder()


@hookimpl
def alpolicy_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(EmbedderSpec("pixels", make_pixels,
                          "Built in, local and cheap: a 16x12 grey layout and a coarse colour histogram of the pixels.",
                          options_schema={"type": "object", "properties": {}}))
