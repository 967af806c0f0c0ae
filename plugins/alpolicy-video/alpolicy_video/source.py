"""The ``video`` source: the frames of a video file, or of the videos of a folder, decoded as a stream.

Decoding is one generator (:meth:`VideoSource._frames_of`): PyAV demuxes and decodes one frame at a
time, the frames the sampling takes (:mod:`alpolicy_video.selection`) are encoded as JPEG into a
spool folder as they come, and the rest are dropped at once -- memory stays flat whatever the
video's length (an hour of 1080p as ten seconds of it: see the README's measurement). The spool is
bounded too: past ``spool_frames`` copies the oldest is deleted; a frame still needed after that
(held for a ``top_k`` budget, retried in a deferred round) is decoded again by its fetcher
(:class:`FrameFetcher`: seek to the keyframe before it, decode forward to its exact timestamp),
byte for byte the same JPEG. The spool is deleted by ``close()``.

Identity: a frame's key is ``VIDEO/STEM_tSSSSSS.mmm.jpg|SHA256@S.mmm`` -- its origin (the video's
path, the frame's name) and version (the video's sha256, hashed once per video, and the
timestamp): a rerun recognises every frame, a re-encoded or edited video (other content) gives new
images, a video renamed or moved gives new origins.

Accounting: every decoded frame is either yielded or counted in ``skipped`` by reason (not
sampled, no timestamp, before the start, same millisecond as the previous one), and a video that
cannot be read, or ends before the frames its container lists, is counted and warned about in one
line: the run's summary shows each count, nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter, deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import av

from alpolicy.errors import UsageError
from alpolicy.io.images import DEFAULT_EXTENSIONS, ImageDecodeError, ImageFile, display_path, iter_folder, sha256_file
from alpolicy.sources import Source, SourceOptions

from .selection import DEFAULT_SPOOL_FRAMES, VIDEO_EXTENSIONS, Sampling, frame_name, milliseconds

log = logging.getLogger("alpolicy.video")

#: JPEG quality of the frames sent (Pillow's scale; 4:2:0 subsampling, as the video itself).
JPEG_QUALITY = 90

#: Why a frame or a video was left out: the words the run's summary shows next to the count.
NOT_SAMPLED = "video frames between samples (--every N / --fps F; default 1 per second)"
UNTIMED = "video frames without a timestamp"
BEFORE_START = "video frames before the video's start (negative timestamps)"
SAME_MILLISECOND = "video frames in the same millisecond as the frame before"
UNREADABLE = "videos that cannot be read (see the warnings)"
CUT_SHORT = "videos that end early: a decoding error or fewer frames than the container lists (see the warnings)"


@dataclass
class VideoStats:
    """What one pass over one video did: decoded = yielded + the frames counted as skipped."""

    video: str
    decoded: int = 0
    yielded: int = 0
    listed: int | None = None  # the frame count the container states (None: it does not)
    #: The container's stated duration (s) when it states no frame count, and the last frame's time.
    duration: float | None = None
    last_seconds: float | None = None
    error: str | None = None

    def ended_early(self) -> str | None:
        """Why the video ended before its container says it does (a truncated file decodes what
        it holds and stops without an error), or ``None``."""
        if self.listed is not None:
            return f"{self.decoded} frames decoded of the {self.listed} its container lists" if self.decoded < self.listed else None
        if self.duration is not None and (self.last_seconds or 0) < self.duration - max(0.5, 0.05 * self.duration):
            last = "no frame" if self.last_seconds is None else f"the last frame decoded is at {self.last_seconds:.3f} s"
            return f"{last} of a {self.duration:.3f} s video"
        return None


@dataclass(frozen=True)
class FrameFetcher:
    """Makes a frame's JPEG again at ``image.path`` (evicted from the spool, or on another
    machine): picklable, it holds only the video's path, identity and the frame's ``pts``."""

    video: str
    stream: int
    pts: int
    size: int
    mtime_ns: int
    quality: int = JPEG_QUALITY

    def __call__(self, image: ImageFile) -> None:
        stat = os.stat(self.video)
        if (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns):
            raise ImageDecodeError(f"cannot fetch {image.display_path}: the video changed since it was listed")
        try:
            frame = self._decode()
        except av.FFmpegError as error:
            raise ImageDecodeError(f"cannot fetch {image.display_path}: {_reason(error)}") from None
        if frame is None:
            raise ImageDecodeError(f"cannot fetch {image.display_path}: no frame at pts {self.pts} in the video")
        write_jpeg(frame, image.path, self.quality)

    def _decode(self) -> Any:
        """The frame at ``pts``: seek to the keyframe at or before it, decode forward; from the
        start if the container's seek lands past it (no index)."""
        with av.open(self.video) as container:
            stream = next(s for s in container.streams if s.index == self.stream)
            container.seek(self.pts, stream=stream, backward=True, any_frame=False)
            frame, overshot = _decode_to(container, stream, self.pts)
            if frame is None and overshot:
                container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
                frame, _ = _decode_to(container, stream, self.pts)
            return frame


def _decode_to(container: Any, stream: Any, pts: int) -> tuple[Any, bool]:
    """(the frame at ``pts`` or None, whether the first frame decoded was already past it)."""
    first = True
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        if frame.pts == pts:
            return frame, False
        if frame.pts > pts:
            return None, first
        first = False
    return None, first


def write_jpeg(frame: Any, path: str, quality: int = JPEG_QUALITY) -> None:
    """The frame as a JPEG at ``path``, atomically (a temporary file in the folder, renamed)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            frame.to_image().save(out, "JPEG", quality=quality)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class VideoSource(Source):
    """A video file's frames, or those of a folder's videos (natural order, as the folder source)."""

    def __init__(self, target: str, options: SourceOptions | None = None) -> None:
        options = options or SourceOptions()
        target = os.path.expanduser(target)
        if not os.path.exists(target):
            raise UsageError(f"the video {target!r} does not exist")
        self.target = target
        self.name = target
        self.folder = os.path.isdir(target)
        if not self.folder and not os.path.isfile(target):
            raise UsageError(f"{target!r} is not a video file nor a folder")
        self.sampling = Sampling.from_settings(options.extra)
        spool_frames = options.extra.get("spool_frames")
        if spool_frames is None:
            spool_frames = DEFAULT_SPOOL_FRAMES
        if isinstance(spool_frames, bool) or not isinstance(spool_frames, int) or spool_frames < 1:
            raise UsageError(f"spool_frames should be a whole number, 1 or more, not {spool_frames!r}")
        self.spool_frames = spool_frames
        # --extension names the video types of a folder; its default (image types) means "videos".
        given = tuple(options.extensions)
        self.extensions = VIDEO_EXTENSIONS if given == DEFAULT_EXTENSIONS else given
        self._listing = {"recursive": options.recursive, "case_sensitive": options.case_sensitive,
                         "follow_symlinks": options.follow_symlinks}
        self.skipped: Counter[str] = Counter()
        #: One entry per video read by the last listing (tests and the README's accounting).
        self.stats: list[VideoStats] = []
        self._spool: str | None = None
        self._spooled: deque[str] = deque()
        self._made = 0

    # -- the Source contract
    def check(self) -> None:
        """A folder without videos, or a file that is not a readable video: one line, exit 2."""
        if self.folder:
            if next(self._videos(), None) is None:
                where = "" if self._listing["recursive"] else " (sub-folders not searched: --recursive)"
                raise UsageError(f"no videos in {self.target!r} with extension {', '.join(self.extensions)}{where}")
            return
        try:
            with av.open(self.target) as container:
                if not container.streams.video:
                    raise UsageError(f"{self.target!r} is not a readable video: it holds no video stream")
        except av.FFmpegError as error:
            raise UsageError(f"{self.target!r} is not a readable video: {_reason(error)}") from None

    def __iter__(self) -> Iterator[ImageFile]:
        self.skipped = Counter()
        self.stats = []
        return self._frames()

    def close(self) -> None:
        """Delete the spool (every local copy)."""
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
            self._spooled.clear()

    # -- listing
    def _videos(self) -> Iterator[str]:
        if not self.folder:
            yield self.target
            return
        for image in iter_folder(self.target, self.extensions, skipped=self.skipped, **self._listing):
            yield image.path

    def _frames(self) -> Iterator[ImageFile]:
        for video in self._videos():
            yield from self._frames_of(video)

    def _frames_of(self, video: str) -> Iterator[ImageFile]:
        """The sampled frames of one video, decoded one at a time (see the module docstring)."""
        stats = VideoStats(display_path(video))
        self.stats.append(stats)
        try:
            stat = os.stat(video)
            content = sha256_file(video)  # once per video: the frames' version
            container = av.open(video)
        except (OSError, av.FFmpegError) as error:
            self._unreadable(stats, error)
            return
        try:
            if not container.streams.video:
                self._unreadable(stats, ValueError("no video stream"))
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stats.listed = stream.frames or None
            if stats.listed is None:
                stated = stream.duration * stream.time_base if stream.duration else None
                if stated is None and container.duration:
                    stated = Fraction(container.duration, av.time_base)
                stats.duration = float(stated) if stated is not None else None
            yield from self._sampled(video, stat, content, container, stream, stats)
        finally:
            container.close()
        if stats.error is None:
            stats.error = stats.ended_early()
        if stats.error is not None:
            self.skipped[CUT_SHORT] += 1
            log.warning("video %s ends early: %s (the frames before are used)", stats.video, stats.error)

    def _sampled(self, video: str, stat: os.stat_result, content: str, container: Any, stream: Any,
                 stats: VideoStats) -> Iterator[ImageFile]:
        selector = self.sampling.selector()
        start = stream.start_time or 0
        time_base = Fraction(stream.time_base)
        stem = os.path.splitext(os.path.basename(video))[0]
        previous_ms: int | None = None
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as error:
                stats.error = _reason(error)
                return
            stats.decoded += 1
            if frame.pts is None:
                self.skipped[UNTIMED] += 1
                continue
            seconds = (frame.pts - start) * time_base
            stats.last_seconds = float(seconds)
            if seconds < 0:
                self.skipped[BEFORE_START] += 1
                continue
            index = selector.index
            if not selector.take(seconds):
                self.skipped[NOT_SAMPLED] += 1
                continue
            ms = milliseconds(seconds)
            if ms == previous_ms:
                self.skipped[SAME_MILLISECOND] += 1
                continue
            previous_ms = ms
            image = self._image(video, stat, content, stream.index, frame.pts, ms, stem, index)
            write_jpeg(frame, image.path)
            image.size = os.path.getsize(image.path)
            self._spooled.append(image.path)
            self._evict()
            del frame
            stats.yielded += 1
            yield image

    def _image(self, video: str, stat: os.stat_result, content: str, stream: int, pts: int, ms: int,
               stem: str, index: int) -> ImageFile:
        seconds = f"{ms // 1000}.{ms % 1000:03d}"
        name = frame_name(stem, ms)
        fetcher = FrameFetcher(video, stream, pts, stat.st_size, stat.st_mtime_ns)
        return ImageFile(
            self._spool_path(), 0, 0, origin=f"{video}/{name}", version=f"{content}@{seconds}", fetcher=fetcher,
            metadata={"video": display_path(video), "timestamp": ms / 1000, "frame": index},
        )

    def _spool_path(self) -> str:
        if self._spool is None:
            self._spool = tempfile.mkdtemp(prefix="alpolicy-video-")
        self._made += 1
        return os.path.join(self._spool, f"{self._made:09d}.jpg")

    def _evict(self) -> None:
        """Past ``spool_frames`` copies, delete the oldest (its fetcher makes it again if needed)."""
        while len(self._spooled) > self.spool_frames:
            try:
                os.remove(self._spooled.popleft())
            except FileNotFoundError:
                pass

    def _unreadable(self, stats: VideoStats, error: BaseException) -> None:
        stats.error = _reason(error) if not isinstance(error, OSError) else (error.strerror or str(error))
        self.skipped[UNREADABLE] += 1
        log.warning("video %s cannot be read: %s", stats.video, stats.error)
