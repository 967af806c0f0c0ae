"""Quality gates on real frames: black, white, blank, blurred and sharp order as they should."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from PIL import Image, ImageFilter

import alpolicy.pixels.quality
from alpolicy.io.images import ImageDecodeError
from alpolicy.pixels.quality import Quality, exposure, measure, sharpness


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Sharp cluttered frames, the same blurred (Gaussian radius 8), and black/white/gray frames, as JPEG 90."""
    import alpolicy_onnx.synthetic as synthetic  # installed by `make test`; never skipped
    folder = tmp_path_factory.mktemp("quality")
    paths: dict[str, list] = {"sharp": [], "blurred": []}
    for seed in range(4):
        scene, _ = synthetic.random_scene(seed)
        for name, image in (("sharp", scene), ("blurred", scene.filter(ImageFilter.GaussianBlur(8)))):
            path = folder / f"{name}{seed}.jpg"
            image.save(path, quality=90)
            paths[name].append(path)
    for name, colour in (("black", (0, 0, 0)), ("white", (255, 255, 255)), ("gray", (128, 128, 128))):
        path = folder / f"{name}.jpg"
        Image.new("RGB", (640, 480), colour).save(path, quality=90)
        paths[name] = [path]
    return paths


def test_sharp_blurred_blank_order(frames):
    sharp = [measure(path).sharpness for path in frames["sharp"]]
    blurred = [measure(path).sharpness for path in frames["blurred"]]
    for path in frames["black"] + frames["white"] + frames["gray"]:
        assert measure(path).sharpness < 0.5  # blank: no edges at all
    assert min(sharp) > 100, sharp
    assert max(blurred) < 10, blurred
    for s, b in zip(sharp, blurred):
        assert b * 20 < s  # the same frame, blurred: far less sharp


def test_exposure_of_black_white_gray_and_scenes(frames):
    black = measure(frames["black"][0])
    white = measure(frames["white"][0])
    gray = measure(frames["gray"][0])
    assert black.brightness < 2 and black.dark_fraction == pytest.approx(1.0) and black.bright_fraction == 0
    assert white.brightness > 253 and white.bright_fraction == pytest.approx(1.0) and white.dark_fraction == 0
    assert 120 < gray.brightness < 136 and gray.dark_fraction == 0 and gray.bright_fraction == 0
    for path in frames["sharp"]:
        scene = measure(path)
        assert 20 < scene.brightness < 235 and scene.dark_fraction < 0.2 and scene.bright_fraction < 0.2


def test_exposure_counts_pixels():
    half = Image.new("L", (100, 50), 0)
    half.paste(255, (50, 0, 100, 50))
    assert exposure(half) == (127.5, 0.5, 0.5)
    assert exposure(Image.new("RGB", (10, 10), (16, 16, 16))) == (16.0, 1.0, 0.0)  # at dark_level counts
    assert exposure(Image.new("L", (10, 10), 17)) == (17.0, 0.0, 0.0)
    assert exposure(Image.new("L", (10, 10), 100), dark_level=100) == (100.0, 1.0, 0.0)


def test_sharpness_ignores_the_unfiltered_border():
    # Pillow leaves the outer ring of a 3x3-filtered image unfiltered; a uniform image must still be 0
    assert sharpness(Image.new("L", (40, 30), 50)) == 0.0
    assert sharpness(Image.new("L", (2, 2), 50)) == 0.0
    # an edge counts whichever side is darker (the offset keeps negative responses)
    left = Image.new("L", (40, 40), 60)
    left.paste(160, (20, 0, 40, 40))  # a step of 100: responses +100 and -100, neither clipped
    right = left.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # two of the 38 filtered columns are +-100, the rest 0: variance 2/38 * 100**2
    assert sharpness(left) == pytest.approx(sharpness(right)) == pytest.approx(2 / 38 * 100**2)


def test_measure_decodes_once_and_draft_barely_matters(frames, monkeypatch):
    calls = []
    real = alpolicy.pixels.quality.thumbnail

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(alpolicy.pixels.quality, "thumbnail", counting)
    quality = measure(frames["sharp"][0])
    assert len(calls) == 1 and calls[0]["keep_aspect"] is True
    assert isinstance(quality, Quality) and dataclasses.is_dataclass(quality)
    full = measure(frames["sharp"][0], draft=False)
    assert full.brightness == pytest.approx(quality.brightness, abs=2)


def test_measure_refuses_bombs_and_non_images(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    with pytest.raises(ImageDecodeError, match="bomb"):
        measure(bomb)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageDecodeError):
        measure(text)
