"""Symbolic links in the source folder (issue #12 item 3): links leaving it are not followed.

A real ``alpolicy run`` with the loopback Roboflow model into a ``folder:`` destination; what was
read is counted at the server (inference requests), what was sent is the destination's images.

The tree, in ``src/`` (``outside/`` beside it)::

    frame_00000.jpg .. frame_00005.jpg
    escape.jpg -> ../outside/secret.jpg     leaves the folder
    outdir     -> ../outside/dir            leaves the folder (a folder: only with --recursive)
    gone.jpg   -> missing.jpg               broken
    latest.jpg -> frame_00003.jpg           inside, to an image the scan takes anyway
    pick.jpg   -> sub/s1.jpg                inside; taken anyway only with --recursive
    sub/s1.jpg
    sub_link   -> sub                       inside, to a folder --recursive visits anyway
    .hidden/h.jpg, hidden_link -> .hidden   inside, to a folder the scan never visits: followed
    notes.txt  -> /etc/hostname             not an image: neither taken nor counted
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

import alpolicy
from alpolicy.io.images import iter_folder

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .corpus.folders import broken_link, folder_link_out, link_out

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="POSIX symlinks")

TAKE_ALL = '{"version": 1, "image": {"rule": "detection_count", "min": 0}}'
OUTSIDE = "symbolic links leaving the source folder: pass --follow-symlinks to include them"
BROKEN = "broken symbolic links"
DUPLICATE = "symbolic links to images the folder holds anyway: taken once, under their own names"


def make_tree(tmp_path: Path) -> Path:
    src, outside = tmp_path / "src", tmp_path / "outside"
    make_frames(src, 6, seed=1)
    link_out(src, outside)  # escape.jpg
    folder_link_out(src, outside)  # outdir
    broken_link(src, outside)  # gone.jpg
    make_frames(src / "sub", 1, seed=4)
    (src / "sub" / "frame_00000.jpg").rename(src / "sub" / "s1.jpg")
    make_frames(src / ".hidden", 1, seed=5)
    (src / ".hidden" / "frame_00000.jpg").rename(src / ".hidden" / "h.jpg")
    os.symlink("frame_00003.jpg", src / "latest.jpg")
    os.symlink("sub/s1.jpg", src / "pick.jpg")
    os.symlink("sub", src / "sub_link")
    os.symlink(".hidden", src / "hidden_link")
    os.symlink("/etc/hostname", src / "notes.txt")
    return src


def triage(src: Path, tmp_path: Path, env: dict, *flags: str):
    out, journal = tmp_path / "out", tmp_path / "journal.sqlite"
    policy = tmp_path / "take-all.json"
    policy.write_text(TAKE_ALL)
    result = alpolicy_cli("run", str(src), "--model", "roboflow:vehicles/3", "--to", f"folder:{out}", "--policy", str(policy),
                          "--journal", str(journal), "--no-progress", *flags, env=env)
    assert result.code == 0, result.err
    with sqlite3.connect(journal) as db:
        summary = json.loads(db.execute("SELECT summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    sent = sorted(p.name for p in (out / "images").iterdir())
    return result, summary, sent


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


FRAMES = [f"frame_{i:05d}.jpg" for i in range(6)]


def test_links_leaving_the_folder_are_skipped_and_counted(roboflow, env, tmp_path):
    src = make_tree(tmp_path)
    result, summary, sent = triage(src, tmp_path, env)
    # pick.jpg leads to sub/, which a scan without --recursive does not take: followed.
    assert sent == sorted([*FRAMES, "pick.jpg"])
    assert roboflow.requests["infer"].total == 7 and summary["seen"] == 7
    assert summary["skipped"] == {"symlink_broken": 1, "symlink_duplicate": 1, "symlink_outside": 1}
    assert re.search(rf"^  skipped +1  \({re.escape(OUTSIDE)}\)$", result.out, re.M), result.out
    assert re.search(rf"^  skipped +1  \({re.escape(BROKEN)}\)$", result.out, re.M)
    assert re.search(rf"^  skipped +1  \({re.escape(DUPLICATE)}\)$", result.out, re.M)
    stored = {sha(path) for path in (tmp_path / "out" / "images").iterdir()}
    assert sha(tmp_path / "outside" / "secret.jpg") not in stored


def test_recursive_does_not_scan_a_linked_folder_outside(roboflow, env, tmp_path):
    src = make_tree(tmp_path)
    result, summary, sent = triage(src, tmp_path, env, "--recursive")
    # sub/ once (not again as sub_link/), pick.jpg and latest.jpg not again; the hidden folder
    # only through its link; nothing from outside/.
    assert sent == sorted([*FRAMES, "s1.jpg", "h.jpg"])
    assert roboflow.requests["infer"].total == 8 and summary["seen"] == 8
    assert summary["skipped"] == {"symlink_broken": 1, "symlink_duplicate": 3, "symlink_outside": 2}
    assert re.search(rf"^  skipped +2  \({re.escape(OUTSIDE)}\)$", result.out, re.M), result.out
    paths = {Path(p).relative_to(src).as_posix() for p in summary_paths(tmp_path / "journal.sqlite")}
    assert paths == {*FRAMES, "sub/s1.jpg", "hidden_link/h.jpg"}
    stored = {sha(path) for path in (tmp_path / "out" / "images").iterdir()}
    assert not stored & {sha(p) for p in (tmp_path / "outside").rglob("*.jpg")}


def summary_paths(journal: Path) -> list[str]:
    with sqlite3.connect(journal) as db:
        return [row[0] for row in db.execute("SELECT path FROM decisions")]


def test_follow_symlinks_includes_them(roboflow, env, tmp_path):
    src = make_tree(tmp_path)
    result, summary, _ = triage(src, tmp_path, env, "--recursive", "--follow-symlinks")
    paths = sorted(Path(p).relative_to(src).as_posix() for p in summary_paths(tmp_path / "journal.sqlite"))
    # Every link followed, as glob would; sub/ and sub_link/ are one folder: visited once.
    assert paths == sorted([*FRAMES, "escape.jpg", "latest.jpg", "pick.jpg", "outdir/frame_00000.jpg",
                            "outdir/frame_00001.jpg", "sub/s1.jpg", "hidden_link/h.jpg"])
    assert roboflow.requests["infer"].total == 13
    assert summary["skipped"] == {"symlink_broken": 1}
    assert not re.search(re.escape(OUTSIDE), result.out)
    stored = {sha(path) for path in (tmp_path / "out" / "images").iterdir()}
    assert sha(tmp_path / "outside" / "secret.jpg") in stored


def test_iter_folder_counts_what_it_skips(tmp_path):
    src = make_tree(tmp_path)
    skipped: Counter[str] = Counter()
    names = [Path(image.path).relative_to(src).as_posix() for image in iter_folder(str(src), skipped=skipped)]
    assert names == [*FRAMES, "pick.jpg"]
    assert skipped == {"symlink_outside": 1, "symlink_broken": 1, "symlink_duplicate": 1}
    # The source named through a link of its own: the boundary is where it really is.
    os.symlink(src, tmp_path / "alias")
    names = [Path(image.path).name for image in iter_folder(str(tmp_path / "alias"))]
    assert names == [*FRAMES, "pick.jpg"]


def test_a_folder_of_only_links_leaving_it_says_why_it_is_empty(tmp_path, env):
    src = tmp_path / "links"
    src.mkdir()
    make_frames(tmp_path / "elsewhere", 2)
    for name in ("frame_00000.jpg", "frame_00001.jpg"):
        os.symlink(tmp_path / "elsewhere" / name, src / name)
    result = alpolicy_cli("run", str(src), "--model", "roboflow:vehicles/3", "--dry-run", "--journal",
                          str(tmp_path / "journal.sqlite"), "--no-progress", env=env)
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"alpolicy: error: no images in {str(src)!r} with extension .jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff "
        f"(sub-folders not searched: --recursive); skipped 2 {OUTSIDE}"]


def test_the_sdk_drop_in_follows_links_as_its_glob_does(roboflow, env, tmp_path):
    src = make_tree(tmp_path)
    results = alpolicy.active_learning(
        raw_data_location=str(src), raw_data_extension=".jpg", inference_endpoint=["vehicles", 3],
        upload_destination="", conditionals={}, dry_run=True, journal=None, progress=False,
    )
    glob_names = {os.path.basename(p) for p in glob.glob(str(src) + "/*.jpg") if os.path.exists(p)}  # no broken link
    assert {os.path.basename(r["image"]) for r in results} == glob_names
    assert "escape.jpg" in glob_names and "latest.jpg" in glob_names
