"""Videos written by PyAV for the tests: each frame shows a moving square and a colour that
encodes its index, so frames differ and a frame's content can be told apart."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
from PIL import Image, ImageDraw


def frame_picture(index: int, size: tuple[int, int]) -> Image.Image:
    width, height = size
    picture = Image.new("RGB", size, ((index * 37) % 256, (index * 11) % 256, 90))
    x = (index * 3) % max(1, width - 12)
    ImageDraw.Draw(picture).rectangle([x, height // 3, x + 10, height // 3 + 10], fill=(255, 255, 255))
    return picture


def write_video(path: Path, frames: int, fps: int = 25, *, size: tuple[int, int] = (64, 48), codec: str = "mpeg4",
                pts_ms: Sequence[int] | None = None, seed: int = 0) -> Path:
    """A constant-rate video (``fps``), or with ``pts_ms`` a variable-rate one: frame i shown at
    ``pts_ms[i]`` milliseconds. ``seed`` shifts the pictures (another video of the same length)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(frames):
            frame = av.VideoFrame.from_image(frame_picture(index + seed, size))
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
