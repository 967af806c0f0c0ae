"""A video triaged frame by frame through the real ``alpolicy run`` (videos written by PyAV here)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from alpolicy.testing import SEND_EVERYTHING
from tests.cli import alpolicy
from videos import write_video

pytestmark = pytest.mark.slow


def run_video(tmp_path: Path, source: str, *flags: str, out: str = "out", journal: str = "j.sqlite"):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(SEND_EVERYTHING))
    return alpolicy("run", source, *flags, "--model", "onnx:demo", "--policy", str(policy),
                    "--to", f"folder:{tmp_path / out}", "--journal", str(tmp_path / journal), "--json")


def sent_names(folder: Path) -> list[str]:
    return sorted(path.name for path in (folder / "images").iterdir())


def records(folder: Path) -> dict[str, dict]:
    """The folder destination's records, by file name."""
    found = {}
    for path in (folder / ".alpolicy" / "records").glob("*.json"):
        record = json.loads(path.read_text())
        found[record["file_name"]] = record
    return found


def test_every_nth_frame_is_sent_named_by_its_timestamp_and_keyed_by_the_video(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 30, fps=25)
    result = run_video(tmp_path, str(clip), "--every", "7")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    # frames 0, 7, 14, 21, 28 of a 25 fps video: at 0, 0.28, 0.56, 0.84, 1.12 s
    stamps = ["000000.000", "000000.280", "000000.560", "000000.840", "000001.120"]
    assert sent_names(tmp_path / "out") == [f"clip_t{stamp}.jpg" for stamp in stamps]
    # every decoded frame is accounted for: 5 seen, 25 between samples
    assert (report["seen"], report["sent"], report["failed"]) == (5, 5, 0)
    assert sum(report["skipped"].values()) == 25 and len(report["skipped"]) == 1, report["skipped"]
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        keys = sorted(row[0] for row in db.execute("SELECT image_key FROM deliveries"))
    from alpolicy.io.images import sha256_file

    content = sha256_file(clip)
    seconds = ["0.000", "0.280", "0.560", "0.840", "1.120"]
    assert keys == sorted(f"{clip}/clip_t{stamp}.jpg|{content}@{second}" for stamp, second in zip(stamps, seconds))
    found = records(tmp_path / "out")
    metadata = [found[name]["metadata"] for name in sorted(found)]
    assert [(m["timestamp"], m["frame"], m["video"]) for m in metadata] == [
        (0.0, 0, str(clip)), (0.28, 7, str(clip)), (0.56, 14, str(clip)), (0.84, 21, str(clip)), (1.12, 28, str(clip))]

    again = run_video(tmp_path, str(clip), "--every", "7")
    assert again.code == 0, again.err
    rerun = json.loads(again.out)
    assert (rerun["sent"], rerun["already_sent"]) == (0, 5), "a rerun recognises every frame"

    write_video(clip, 30, fps=25, seed=5)  # other content, same name and length
    changed = run_video(tmp_path, str(clip), "--every", "7")
    assert changed.code == 0, changed.err
    assert json.loads(changed.out)["sent"] == 5, "a changed video gives new images"


def test_fps_samples_a_variable_frame_rate_video_by_presentation_time(tmp_path):
    shown_at = [0, 100, 150, 480, 520, 1000, 1010, 1490, 2600, 2700]  # ms
    clip = write_video(tmp_path / "vfr.mkv", len(shown_at), codec="libx264", pts_ms=shown_at)
    result = run_video(tmp_path, str(clip), "--fps", "2")
    assert result.code == 0, result.err
    # slots every 0.5 s: 0 -> 0.000; 0.5 -> 0.520; 1.0 -> 1.000; 1.5 -> 2.600 (the gap's end);
    # after 2.600 the next slot is 3.0: nothing
    assert sent_names(tmp_path / "out") == [f"vfr_t{s}.jpg" for s in ("000000.000", "000000.520", "000001.000", "000002.600")]
    report = json.loads(result.out)
    assert report["seen"] + sum(report["skipped"].values()) == len(shown_at)


def test_a_folder_of_videos_is_the_video_scheme_and_a_plain_folder_stays_images(tmp_path):
    cams = tmp_path / "cams"
    cams.mkdir()
    write_video(cams / "a.mp4", 10, fps=10)
    write_video(cams / "b.mov", 10, fps=10, seed=3)
    result = run_video(tmp_path, f"video:{cams}", "--every", "5")
    assert result.code == 0, result.err
    assert sent_names(tmp_path / "out") == ["a_t000000.000.jpg", "a_t000000.500.jpg", "b_t000000.000.jpg", "b_t000000.500.jpg"]
    plain = run_video(tmp_path, str(cams), out="out2", journal="j2.sqlite")
    assert plain.code == 2 and plain.err.startswith("alpolicy: error: no images in"), plain.err


def test_mistakes_are_one_line(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 5)
    frames = tmp_path / "frames"
    frames.mkdir()
    (tmp_path / "broken.mp4").write_bytes(clip.read_bytes()[: len(clip.read_bytes()) // 2])
    cases = {
        (str(frames), "--every", "3"): "--every: the folder source does not take it (sources taking it: video)",
        (str(clip), "--every", "0"): "--every: ",
        (str(clip), "--fps", "0"): "--fps: ",
        (str(clip), "--every", "2", "--fps", "1"): "not allowed with argument",
        (str(tmp_path / "broken.mp4"),): "is not a readable video",
    }
    for args, expected in cases.items():
        result = run_video(tmp_path, *args)
        assert result.code == 2, (args, result)
        assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
        assert expected in result.err, (args, result.err)
