"""The plugin module named by the ``alpolicy`` entry point: registers the ``video`` source."""

from __future__ import annotations

import os
from typing import Callable

import alpolicy
from alpolicy.registry import SourceSpec
from alpolicy.sources import SourceOptions

from .selection import VIDEO_EXTENSIONS


def claims(path: str) -> bool:
    """A plain path that is a video file, by its extension (cheap: no file is opened). A folder
    stays the folder source's (built in, asked first): a folder of videos is ``video:DIR``."""
    return path.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(path)


def make_source(target: str, options: SourceOptions):
    from .source import VideoSource  # PyAV loads only when a video is the source

    return VideoSource(target, options)


@alpolicy.hookimpl
def alpolicy_sources(register: Callable[[SourceSpec], None]) -> None:
    register(SourceSpec(
        "video", make_source,
        "Frames of a video file (CLIP.mp4) or of the videos of a folder (video:DIR), PyAV: --every N or --fps F (default 1 per second)",
        claims=claims, options=("every", "fps", "spool_frames"),
    ))
