"""Pre-processing for YOLO-family ONNX models: an image file to the model's input tensor, cheaply.

One image goes through :func:`prepare`::

    prepared = prepare(image_file, (input_height, input_width), stride=32)
    output = session.run(None, {"images": prepared.tensor[None]})[0]
    [detections] = decode(output, layout, conf, iou, prepared.ratio, prepared.pad, prepared.size)

What makes it cheap, each without changing where a box lands in the original image:

* **JPEG draft mode.** A JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg scales in the
  DCT, skipping most of the work) when the model's input needs at most that many pixels: a
  1920x1080 frame for a 640 input is decoded at 960x540. The letterbox geometry (``ratio``,
  ``pad``) is still computed for the *original* size, and the reduced picture is resized to the
  same fitted size the original would be, so boxes map back to original pixels with the same
  transform as a full decode: the draft scale only changes how many pixels are read, not the
  coordinates. (A reduced decoding covers ``ceil(W / scale) * scale`` original columns; the
  difference, under one original pixel across the whole frame, is within the resampling.)
* **EXIF orientation** is applied after decoding (the draft request is made in the stored
  orientation, so a rotated phone photo is reduced as much as an upright one).
* **One copy into the tensor.** The fitted picture is converted to float and moved from HWC to
  CHW in one NumPy pass, written straight into the padded tensor whose border is filled with the
  letterbox grey: no padded canvas image, no intermediate float array.
* **Minimal padding** (``stride``): for a model whose spatial axes are dynamic, the input is the
  fitted picture padded only up to a multiple of the stride (640x480 stays 640x480, 1920x1080
  becomes 640x384), as Ultralytics' predictor does for such models (``LetterBox(auto=True)``):
  fewer pixels, less inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from alpolicy.io.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageFile, open_image

__all__ = ["LETTERBOX_FILL", "Prepared", "fitted_size", "letterbox", "prepare"]

#: Grey used for the letterbox padding, as Ultralytics does.
LETTERBOX_FILL = (114, 114, 114)

_SCALE = np.float32(1.0 / 255.0)
#: The padding's value in the tensor: the same float32 product a grey pixel of the image gives.
_FILL = np.float32(LETTERBOX_FILL[0]) * _SCALE

#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Geometry:
    """Where the image goes in the input: ``ratio`` (input pixels per original pixel), the fitted
    size ``(width, height)`` and the ``(left, top)`` padding, in an input of ``(width, height)``."""

    ratio: float
    fitted: tuple[int, int]
    pad: tuple[int, int]
    input: tuple[int, int]


def _geometry(source: tuple[int, int], size: tuple[int, int], stride: int | None) -> Geometry:
    out_h, out_w = int(size[0]), int(size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"letterbox size must be positive (height, width), got {tuple(size)}")
    width, height = source
    if width <= 0 or height <= 0:
        raise ValueError(f"cannot letterbox an empty image of size {tuple(source)}")
    ratio = min(out_h / height, out_w / width)
    new_w = max(1, min(out_w, int(round(width * ratio))))
    new_h = max(1, min(out_h, int(round(height * ratio))))
    if stride:  # pad only up to the next multiple of the stride (Ultralytics' auto=True)
        out_w = new_w + (out_w - new_w) % stride
        out_h = new_h + (out_h - new_h) % stride
    dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
    left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
    return Geometry(float(ratio), (new_w, new_h), (left, top), (out_w, out_h))


def fitted_size(source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The ``(width, height)`` an image of ``source`` = ``(width, height)`` is resized to inside an
    input of ``size`` = ``(height, width)``: the fewest pixels a decoder must deliver."""
    return _geometry(source, size, None).fitted


def letterbox(
    image: Image.Image,
    size: tuple[int, int],
    *,
    source_size: tuple[int, int] | None = None,
    stride: int | None = None,
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize ``image`` into ``size`` = ``(height, width)`` keeping its aspect ratio, pad with grey.

    Returns ``(tensor, ratio, pad)``: ``tensor`` is float32 ``[3, height, width]`` RGB in 0..1
    (add the batch axis with ``tensor[None]``), ``ratio`` the scale applied (input pixels per
    original pixel), ``pad`` the ``(left, top)`` padding in input pixels. The image is centred as in
    Ultralytics' ``LetterBox`` (the odd pixel of padding goes right/bottom) and the padding is
    grey 114. Resizing is Pillow's bilinear filter, antialiased when shrinking (Ultralytics uses
    OpenCV's, which is not; scores of real YOLO exports barely differ). Any image mode is
    converted to RGB; EXIF orientation is not applied here (that is the caller's job).

    ``source_size``: the ``(width, height)`` of the original when ``image`` is a reduced decoding
    of it (JPEG draft mode); ``ratio`` and ``pad`` are then those of the original, so boxes map
    back to its pixels. ``stride``: pad only up to a multiple of it (a model with dynamic spatial
    axes); the tensor is then at most ``size``.
    """
    geometry = _geometry(source_size or image.size, size, stride)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != geometry.fitted:
        image = image.resize(geometry.fitted, Image.BILINEAR)
    pixels = np.asarray(image)  # uint8 HWC: Pillow's one copy out
    (out_w, out_h), (left, top), (new_w, new_h) = geometry.input, geometry.pad, geometry.fitted
    tensor = np.empty((3, out_h, out_w), dtype=np.float32)
    if top:
        tensor[:, :top] = _FILL
    if top + new_h < out_h:
        tensor[:, top + new_h:] = _FILL
    if left:
        tensor[:, top:top + new_h, :left] = _FILL
    if left + new_w < out_w:
        tensor[:, top:top + new_h, left + new_w:] = _FILL
    # uint8 -> float32, HWC -> CHW, x 1/255: one pass, straight into the padded tensor.
    np.multiply(pixels.transpose(2, 0, 1), _SCALE, out=tensor[:, top:top + new_h, left:left + new_w])
    return tensor, geometry.ratio, (float(left), float(top))


@dataclass(frozen=True)
class Prepared:
    """An image ready for the model: ``tensor`` ``[3, H, W]``, and how to map boxes back."""

    tensor: np.ndarray
    #: Input pixels per pixel of the original (oriented) image.
    ratio: float
    #: ``(left, top)`` padding in input pixels.
    pad: tuple[float, float]
    #: ``(width, height)`` of the original image, EXIF orientation applied: the prediction's size.
    size: tuple[int, int]
    #: 1 for a full decoding; 2, 4 or 8 when JPEG draft mode decoded fewer pixels.
    draft_scale: int = 1


def prepare(
    image: ImageFile,
    size: tuple[int, int],
    *,
    stride: int | None = None,
    draft: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Prepared:
    """Decode ``image`` (EXIF orientation applied) and letterbox it into ``size`` = ``(height, width)``.

    Goes through :func:`alpolicy.io.images.open_image` (the pixel limit, one-line
    :class:`ImageDecodeError` for any Pillow failure), as :meth:`ImageFile.load` does, and gives
    the same oriented RGB picture, except that a JPEG is decoded in draft mode (``draft=True``)
    when the fitted size is at most half of it (see the module docstring).
    """
    if image.size == 0:
        raise ImageDecodeError("the file is empty")
    with open_image(image.path, max_pixels=max_pixels) as picture:
        stored = picture.size
        orientation = picture.getexif().get(_EXIF_ORIENTATION, 1)
        swapped = orientation in _SWAPPING_ORIENTATIONS
        original = (stored[1], stored[0]) if swapped else stored
        if draft and picture.format == "JPEG":
            fit_w, fit_h = fitted_size(original, size)
            # Pillow picks the largest scale (of 1/2, 1/4, 1/8) leaving at least this size.
            picture.draft("RGB", (fit_h, fit_w) if swapped else (fit_w, fit_h))
        decoded = picture.size
        picture.load()
        if orientation not in (None, 1):
            picture = ImageOps.exif_transpose(picture)
        tensor, ratio, pad = letterbox(picture, size, source_size=original, stride=stride)
    return Prepared(tensor, ratio, pad, original, _draft_scale(stored, decoded))


def _draft_scale(stored: tuple[int, int], decoded: tuple[int, int]) -> int:
    for scale in (1, 2, 4, 8):
        if decoded == (-(-stored[0] // scale), -(-stored[1] // scale)):
            return scale
    return 1
