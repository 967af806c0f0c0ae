"""The video source itself: frames re-made byte for byte after eviction, a bounded spool deleted
at close, every decoded frame accounted for, a truncated video counted, memory flat over a long
video (decoding is streamed), and a frame's metadata reaching the destination."""

from __future__ import annotations

import os
import pickle
import resource
import tracemalloc
from pathlib import Path

import pytest

import alpolicy
from alpolicy.errors import UsageError
from alpolicy.runtime.pipeline import RunOptions
from alpolicy.sources import SourceOptions
from alpolicy.testing import SEND_EVERYTHING, StaticBackend
from alpolicy_video.source import CUT_SHORT, NOT_SAMPLED, VideoSource
from videos import write_video


def source(path: Path, **extra) -> VideoSource:
    made = VideoSource(str(path), SourceOptions(extra=extra))
    made.check()
    return made


def test_an_evicted_frame_is_decoded_again_to_the_same_bytes(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 120, fps=30, codec="libx264", size=(96, 64))
    video = source(clip, every=13, spool_frames=2)
    images = list(video)
    assert len(images) == 10  # frames 0, 13, ..., 117
    kept = [image for image in images if os.path.exists(image.path)]
    assert len(kept) == 2, "the spool holds spool_frames copies"
    first = Path(kept[-1].path).read_bytes()
    os.remove(kept[-1].path)
    assert Path(kept[-1].materialize().path).read_bytes() == first, "the same frame, the same JPEG"
    # the evicted ones too, through a pickled copy (a fetcher travels to another process)
    for image in images[:3]:
        clone = pickle.loads(pickle.dumps(image))
        assert not os.path.exists(clone.path)
        clone.materialize()
        assert os.path.getsize(clone.path) == image.size
    spool = os.path.dirname(images[0].path)
    video.close()
    assert not os.path.exists(spool), "close() deletes the spool"


def test_every_decoded_frame_is_yielded_or_counted(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 100, fps=25)
    video = source(clip, fps=3)
    images = list(video)
    stats = video.stats[0]
    assert stats.decoded == 100 and stats.yielded == len(images) == 12  # 4 s at 3 per second
    assert dict(video.skipped) == {NOT_SAMPLED: 88}
    assert [image.metadata["timestamp"] for image in images[:4]] == [0.0, 0.36, 0.68, 1.0]


def test_a_truncated_video_is_counted_and_its_frames_before_the_cut_are_used(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 200, fps=25, size=(160, 120))
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    video = source(cut, every=1)
    images = list(video)
    assert 0 < len(images) < 200
    assert video.skipped[CUT_SHORT] == 1
    assert "frames decoded of the 200" in video.stats[0].error


def test_a_truncated_matroska_video_without_a_frame_count_is_counted_too(tmp_path):
    clip = write_video(tmp_path / "clip.mkv", 200, fps=25, codec="libx264", size=(160, 120))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    video = source(cut, every=1)
    assert 0 < len(list(video)) < 200
    assert video.skipped[CUT_SHORT] == 1, video.stats
    whole = source(clip, every=1)
    assert len(list(whole)) == 200 and not whole.skipped.get(CUT_SHORT)


def test_settings_from_python_are_checked(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 3)
    for extra, message in (({"every": 0}, "every should be"), ({"fps": -1}, "fps should be"),
                           ({"every": 2, "fps": 1}, "not both"), ({"every": True}, "every should be"),
                           ({"spool_frames": 0}, "spool_frames should be")):
        with pytest.raises(UsageError, match=message):
            VideoSource(str(clip), SourceOptions(extra=extra))


def test_a_frame_carries_its_timestamp_to_the_destination(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 50, fps=25)
    report = alpolicy.run(str(clip), SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'q'}",
                          options=RunOptions(journal=None, progress=False, decisions_log=""), source_extra={"fps": 1})
    assert (report.seen, report.sent) == (2, 2)
    with pytest.raises(UsageError, match="source option every: the folder source does not take it"):
        alpolicy.run(str(tmp_path / "q"), SEND_EVERYTHING, model=StaticBackend(), source_extra={"every": 2},
                     options=RunOptions(journal=None, progress=False, decisions_log="", dry_run=True))


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_video(tmp_path):
    """2,000 frames of 320x240 (a retained frame is 230 kB of RGB: keeping them all would be
    ~460 MB): resident memory and Python's allocations after 300 frames and after 2,000 are the same."""
    clip = write_video(tmp_path / "long.mp4", 2000, fps=25, codec="libx264", size=(320, 240))
    video = source(clip, every=1, spool_frames=16)
    tracemalloc.start()
    try:
        at_300 = peak_300 = None
        worst = 0.0
        for count, image in enumerate(video, start=1):
            assert len(os.listdir(os.path.dirname(image.path))) <= 17  # the spool stays bounded
            if count == 300:
                at_300, peak_300 = rss_mib(), tracemalloc.get_traced_memory()[1]
            elif count > 300:
                worst = max(worst, rss_mib())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        video.close()
    assert count == 2000
    assert worst - at_300 < 40, f"resident memory grew {worst - at_300:.1f} MiB from frame 300 to 2000"
    assert peak < 2 * peak_300 + 2**20, f"Python peak {peak} vs {peak_300} after 300 frames"
    print(f"RSS after 300 frames {at_300:.1f} MiB, max after {worst:.1f} MiB; Python peak {peak_300} -> {peak} B; "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
