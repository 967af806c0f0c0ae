"""Which frames of a video are taken, and what each is called: pure functions, no PyAV.

Frames are chosen by their *presentation timestamps* (``pts * time_base``, exact fractions), not by
a nominal frame rate, so a variable-frame-rate video (a phone's, a screen recording) is sampled in
video time as a player shows it:

* ``every=N``: the 1st, (N+1)-th, (2N+1)-th ... frame in presentation order;
* ``fps=F``: for each slot ``k/F`` seconds (k = 0, 1, 2 ...), the first frame at or after it; a
  gap in the video longer than a slot takes one frame, at its end (slots inside the gap are empty).

The default, neither given, is ``fps=1``: one frame per second of video, the sampling Roboflow's
video inference uses too (consecutive frames are near-duplicates: a labeler's time is better spent
on frames a second apart; ``--every 1`` takes them all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

from alpolicy.errors import UsageError

#: Extensions a plain path is claimed by (and, in a folder, taken by), lower-case.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                    ".m2ts", ".wmv", ".flv", ".3gp", ".ogv")

#: Frames per second when neither ``every`` nor ``fps`` is given.
DEFAULT_FPS = 1

#: Frames kept in the spool (local JPEG copies) before the oldest is evicted: an evicted frame
#: still needed (a ``top_k`` budget sends at the end, a deferred round) is decoded again by seeking.
DEFAULT_SPOOL_FRAMES = 512


@dataclass(frozen=True)
class Sampling:
    """``every`` frames, or ``fps`` frames per second of video time (exactly one is set)."""

    every: int | None = None
    fps: Fraction | None = None

    @classmethod
    def from_settings(cls, extra: Mapping[str, Any]) -> "Sampling":
        """From ``SourceOptions.extra``: checked here too, for Python callers (one line each)."""
        every, fps = extra.get("every"), extra.get("fps")
        if every is not None and fps is not None:
            raise UsageError("give the video's sampling as every (N-th frame) or fps (frames per second), not both")
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise UsageError(f"every should be a whole number of frames, 1 or more, not {every!r}")
            return cls(every=every)
        if fps is None:
            return cls(fps=Fraction(DEFAULT_FPS))
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise UsageError(f"fps should be a number of frames per second above 0, not {fps!r}")
        # The decimal the user typed (2.5, 29.97) as an exact fraction: slots never drift.
        return cls(fps=Fraction(str(fps)))

    def selector(self) -> "Selector":
        return Selector(self)

    def describe(self) -> str:
        return f"every {self.every} frames" if self.every is not None else f"{self.fps} frames per second"


class Selector:
    """Decides, frame by frame in presentation order, which frames are taken (one per video)."""

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.index = 0  # frames seen
        self.slot = 0  # fps: the next slot k (its time is k / fps)

    def take(self, seconds: Fraction) -> bool:
        """Whether the next frame, at ``seconds`` of video time, is taken."""
        index, self.index = self.index, self.index + 1
        if self.sampling.every is not None:
            return index % self.sampling.every == 0
        fps = self.sampling.fps
        assert fps is not None
        if seconds * fps < self.slot:
            return False
        self.slot = math.floor(seconds * fps) + 1  # the first slot after this frame
        return True


def milliseconds(seconds: Fraction) -> int:
    """Seconds rounded to the millisecond (half up), exactly: the frame's name and timestamp."""
    return math.floor(seconds * 1000 + Fraction(1, 2))


def stamp(ms: int) -> str:
    """``12345`` -> ``000012.345``: six digits of seconds (names sort by time up to 11 days)."""
    return f"{ms // 1000:06d}.{ms % 1000:03d}"


def frame_name(video_stem: str, ms: int) -> str:
    """``VIDEO_t000012.345.jpg``: the name a destination gives the frame."""
    return f"{video_stem}_t{stamp(ms)}.jpg"
