"""Perceptual hashes on real (synthetic, cluttered) images: near for copies, far for other scenes.

The thresholds in :mod:`alpolicy.pixels.imagehash` are justified here: every lightly transformed copy
of a scene stays within ``NEAR_DUPLICATE_DISTANCE`` of the original, every pair of different
scenes is at least ``MIN_DIFFERENT_DISTANCE`` apart, and the closest pair of different scenes
is farther apart than the farthest pair of copies.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, JpegImagePlugin

from alpolicy.io.images import ImageDecodeError, ImageFile
from alpolicy.pixels.imagehash import (
    MIN_DIFFERENT_DISTANCE,
    NEAR_DUPLICATE_DISTANCE,
    dhash,
    hamming,
    image_hash,
    phash,
    thumbnail,
)

SCENES = 12
# Scenes are rendered a few pixels larger than 640x480 so a shifted 640x480 view has real content
# entering at the edge (a camera nudged by a few pixels), not padding.
RENDER = (646, 484)
VIEW = (640, 480)


@pytest.fixture(scope="module")
def synthetic():
    import alpolicy_onnx.synthetic  # installed by `make test` (the demo's scene generator); never skipped

    return alpolicy_onnx.synthetic


@pytest.fixture(scope="module")
def scene_files(synthetic, tmp_path_factory):
    """Per scene: the 640x480 original (JPEG 95) and its lightly transformed copies."""
    folder = tmp_path_factory.mktemp("scenes")
    scenes = []
    for seed in range(SCENES):
        render, _ = synthetic.random_scene(seed, RENDER)
        base = render.crop((0, 0, *VIEW))
        copies = {
            "resized 320x240": (base.resize((320, 240), Image.Resampling.LANCZOS), 95),
            "JPEG quality 40": (base, 40),
            "shifted 3x2 px": (render.crop((3, 2, 3 + VIEW[0], 2 + VIEW[1])), 95),
            "brightened 10%": (ImageEnhance.Brightness(base).enhance(1.10), 95),
            "contrast -10%": (ImageEnhance.Contrast(base).enhance(0.90), 95),
        }
        original = folder / f"scene{seed:02d}.jpg"
        base.save(original, quality=95)
        paths = {}
        for index, (name, (image, quality)) in enumerate(copies.items()):
            paths[name] = folder / f"scene{seed:02d}_copy{index}.jpg"
            image.save(paths[name], quality=quality)
        scenes.append((original, paths))
    return scenes


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- the hash functions


def test_hamming_counts_differing_bits():
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, (1 << 64) - 1) == 64


def test_hashes_are_deterministic_64_bit_ints(scene_files):
    original, _ = scene_files[0]
    for kind in ("phash", "dhash"):
        first = image_hash(original, kind)
        assert first == image_hash(original, kind)
        assert isinstance(first, int) and 0 <= first < 1 << 64
    # a byte-identical copy under another name, and an ImageFile, hash identically
    small = thumbnail(original)
    assert (small.mode, small.size) == ("L", (32, 32))
    assert phash(small) == image_hash(original) == image_hash(ImageFile.from_path(original))


def test_identical_images_are_distance_zero(scene_files, tmp_path):
    original, _ = scene_files[1]
    copy = tmp_path / "copy.jpg"
    shutil.copyfile(original, copy)
    assert hamming(image_hash(original), image_hash(copy)) == 0
    assert hamming(image_hash(original, "dhash"), image_hash(copy, "dhash")) == 0


def test_phash_dct_matches_the_textbook_definition():
    """The folded, separable, 8x8-only DCT equals the double sum of the DCT-II definition."""
    from alpolicy.pixels.imagehash import _dct_low

    rng = random.Random(3)
    pixels = bytes(rng.randrange(256) for _ in range(32 * 32))
    expected = [
        sum(pixels[y * 32 + x] * math.cos((2 * x + 1) * u * math.pi / 64) * math.cos((2 * y + 1) * v * math.pi / 64)
            for y in range(32) for x in range(32))
        for v in range(8) for u in range(8)
    ]
    assert _dct_low(pixels) == pytest.approx(expected, abs=1e-6)
    # bits: coefficient > median of the 63 AC coefficients, first coefficient in the top bit
    median = sorted(expected[1:])[31]
    bits = "".join("1" if c > median else "0" for c in expected)
    assert phash(Image.frombytes("L", (32, 32), pixels)) == int(bits, 2)


def test_dhash_compares_neighbours_row_by_row():
    # a horizontal ramp brightening to the right: every pixel is darker than its right neighbour
    ramp = Image.frombytes("L", (9, 8), bytes(x * 30 for _ in range(8) for x in range(9)))
    assert dhash(ramp) == (1 << 64) - 1
    assert dhash(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == 0
    assert dhash(ramp, bits=256) == (1 << 256) - 1  # a 17x16 grid
    with pytest.raises(ValueError):
        dhash(ramp, bits=60)


def test_unknown_hash_kind_is_refused(scene_files):
    with pytest.raises(ValueError, match="unknown hash kind"):
        image_hash(scene_files[0][0], "ahash")


# ---------------------------------------------------------------- the thresholds, with data


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_copies_are_near_and_different_scenes_are_far(scene_files, kind):
    originals = [image_hash(original, kind) for original, _ in scene_files]
    copy_distances: dict[str, list[int]] = {}
    for (original, copies), original_hash in zip(scene_files, originals):
        for name, path in copies.items():
            copy_distances.setdefault(name, []).append(hamming(original_hash, image_hash(path, kind)))
    cross = [hamming(a, b) for i, a in enumerate(originals) for b in originals[i + 1:]]
    worst_copy = max(max(values) for values in copy_distances.values())
    report = f"{kind}: copies {copy_distances}; different scenes min {min(cross)} mean {sum(cross) / len(cross):.1f}"

    # the separation that makes a threshold meaningful at all
    assert min(cross) > worst_copy, report
    assert min(cross) >= MIN_DIFFERENT_DISTANCE, report
    if kind == "phash":
        # the documented near-duplicate threshold covers every light transformation...
        assert worst_copy <= NEAR_DUPLICATE_DISTANCE, report
        # ...and resizing or recompression barely registers
        assert max(copy_distances["resized 320x240"] + copy_distances["JPEG quality 40"]) <= 4, report
    # unrelated scenes are about half the bits apart
    assert 26 <= sum(cross) / len(cross) <= 38, report


def test_footage_consecutive_frames_are_near_scenes_are_far(synthetic, tmp_path):
    """write_footage: a still camera and slowly drifting shapes within a scene, new scenes between."""
    truth = json.loads(synthetic.write_footage(tmp_path, n_frames=180, seed=3, size=(320, 240)).read_text())
    frames = truth["frames"]
    hashes = [image_hash(tmp_path / frame["file"]) for frame in frames]
    clean = [i for i, frame in enumerate(frames) if not frame["tags"]]  # no blur, fog, darkness, occluder
    consecutive = [hamming(hashes[i - 1], hashes[i]) for i in clean
                   if i - 1 in clean and frames[i - 1]["scene"] == frames[i]["scene"]]
    across = [hamming(hashes[i], hashes[j]) for i in clean for j in clean
              if i < j and frames[i]["scene"] != frames[j]["scene"]]
    assert len({frame["scene"] for frame in frames}) == 3 and len(consecutive) > 100 and across
    assert max(consecutive) <= 4 < NEAR_DUPLICATE_DISTANCE, consecutive
    assert min(across) >= MIN_DIFFERENT_DISTANCE, min(across)


# ---------------------------------------------------------------- draft decoding


def test_draft_and_full_decoding_give_nearly_the_same_hash(synthetic, tmp_path, monkeypatch):
    scales = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original_draft(self, mode, size)
        scales.append(self.decoderconfig[0] if result else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    for seed in range(3):
        path = tmp_path / f"big{seed}.jpg"
        synthetic.random_scene(100 + seed, (1280, 960))[0].save(path, quality=90)
        for kind in ("phash", "dhash"):
            drafted = image_hash(path, kind, draft=True)
            full = image_hash(path, kind, draft=False)
            assert hamming(drafted, full) <= 4, (kind, seed)
    # with draft, libjpeg decoded at 1/4 scale (1280x960 -> 320x240 for a 32 px hash); without, never asked
    assert scales == [4] * 6


def pinned_pattern(size: tuple[int, int]) -> Image.Image:
    """A deterministic colour picture drawn with Pillow only (no random generator, no plugin)."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(12):
        x, y, r = (i * 397) % width, (i * 211) % height, 40 + (i * 53) % (height // 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=((i * 80) % 256, (i * 150) % 256, (i * 40) % 256))
        draw.rectangle((width - x - r, height - y - r // 2, width - x + r, height - y + r // 2),
                       fill=((i * 30) % 256, 255 - (i * 20) % 256, (i * 90) % 256))
    return image


def test_hash_values_are_pinned_so_stored_hashes_stay_comparable(tmp_path, monkeypatch):
    """Journals keep sampled hashes (``sampled_hashes``) and compare them with new ones in later runs.

    Any change to how a hash is computed -- the draft scale asked of libjpeg, the resampling
    filter, the grid, the DCT -- moves these values, and hashes stored before it would no longer
    compare exactly with new ones. If this fails, the hash definition changed: version it (and
    the stored hashes) rather than updating the numbers. A 1080p JPEG is decoded straight to
    1/8 scale in grayscale (``draft("L", ...)``), a PNG in full.
    """
    drafts = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original_draft(self, mode, size)
        drafts.append((mode, self.decoderconfig[0], self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    picture = pinned_pattern((1920, 1080))
    picture.save(tmp_path / "pinned.jpg", quality=90)
    picture.save(tmp_path / "pinned.png")
    values = {(name, kind): image_hash(tmp_path / name, kind) for name in ("pinned.jpg", "pinned.png")
              for kind in ("phash", "dhash")}
    assert {key: f"{value:016x}" for key, value in values.items()} == {
        ("pinned.jpg", "phash"): "c335497cba072e1d",
        ("pinned.jpg", "dhash"): "d7d3494959c1d9e9",
        ("pinned.png", "phash"): "c335497cba47261d",
        ("pinned.png", "dhash"): "c7d3494959c1d9e9",
    }
    assert drafts == [("L", 8, (240, 135))] * 2


def test_thumbnail_applies_exif_orientation_and_keeps_aspect(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees: portrait
    Image.new("RGB", (200, 100), (200, 30, 30)).save(path, exif=exif.tobytes())
    assert thumbnail(path, 64, keep_aspect=True).size == (32, 64)
    assert thumbnail(path, 64, keep_aspect=True, draft=False).size == (32, 64)
    small = thumbnail(tmp_path / "rotated.jpg", 16)
    assert (small.mode, small.size) == ("L", (16, 16))


def test_png_and_other_modes_decode(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (120, 90), (10, 200, 30, 128)).save(path)
    assert thumbnail(path).size == (32, 32)
    assert isinstance(image_hash(path, "dhash"), int)


# ---------------------------------------------------------------- guarded decoding


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets images.py's filter
def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    above_limit = png_header_only(tmp_path / "bomb.png", 10_000, 10_000)  # 100 Mpx: above the 89 Mpx limit
    with pytest.raises(ImageDecodeError, match="safety limit"):
        thumbnail(above_limit)
    huge = png_header_only(tmp_path / "huge.png", 40_000, 40_000)  # 1.6 Gpx: Pillow refuses at open
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        image_hash(huge)
    # the limit is the caller's to lower
    small = tmp_path / "small.png"
    Image.new("L", (100, 100)).save(small)
    with pytest.raises(ImageDecodeError, match="safety limit"):
        thumbnail(small, max_pixels=5_000)


def test_unreadable_files_are_image_decode_errors(scene_files, tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    with pytest.raises(ImageDecodeError, match="not an image"):
        image_hash(not_an_image)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(scene_files[0][0].read_bytes()[:2000])
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        image_hash(truncated)
    with pytest.raises(ImageDecodeError, match="cannot open"):
        image_hash(tmp_path / "missing.jpg")
