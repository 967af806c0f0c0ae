"""Hostile things in the source folder itself: links out of it, broken links, link loops, files
that are not files.

Each entry's ``make()`` returns a builder ``build(src, outside)`` that adds its thing to the
source folder ``src`` (``outside`` is a folder beside it, for links to lead to). None of them is
an image to the lister: a link leaving the folder, a broken one or one leading back inside is
*skipped* and counted under its reason (the run's ``skipped``), never read; a FIFO, a folder
named like an image and a hidden file are *ignored* (not counted, never opened: opening the FIFO
would block the run). The runs list folders recursively, so the linked folders are looked into.
``tests/test_symlinks.py`` builds its tree with :func:`link_out`, :func:`folder_link_out` and
:func:`broken_link`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..conftest import make_frames
from . import IGNORED, Entry, expect, skipped
from .images import noise

Builder = Callable[[Path, Path], None]


def _save(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise((30 + seed, 20), 30 + seed).save(path, "JPEG")


def link_out(src: Path, outside: Path) -> None:
    """``escape.jpg -> <outside>/secret.jpg`` (relative)."""
    make_frames(outside, 1, seed=2)
    (outside / "frame_00000.jpg").rename(outside / "secret.jpg")
    os.symlink(os.path.relpath(outside / "secret.jpg", src), src / "escape.jpg")


def folder_link_out(src: Path, outside: Path) -> None:
    """``outdir -> <outside>/dir`` (relative), a folder of two images."""
    make_frames(outside / "dir", 2, seed=3)
    os.symlink(os.path.relpath(outside / "dir", src), src / "outdir")


def _absolute_link_out(src: Path, outside: Path) -> None:
    os.symlink("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd", src / "etc.jpg")


def broken_link(src: Path, outside: Path) -> None:
    os.symlink("missing.jpg", src / "gone.jpg")


def _self_loop(src: Path, outside: Path) -> None:
    os.symlink("self.jpg", src / "self.jpg")  # ELOOP when opened


def _folder_loop(src: Path, outside: Path) -> None:
    (src / "deeper").mkdir(exist_ok=True)
    os.symlink("..", src / "deeper" / "loop")  # deeper/loop -> src: the folder is visited once


def _fifo(src: Path, outside: Path) -> None:
    os.mkfifo(src / "pipe.jpg")


def _folder_named_jpg(src: Path, outside: Path) -> None:
    (src / "folder.jpg").mkdir()


def _hidden(src: Path, outside: Path) -> None:
    _save(src / ".hidden.jpg", 4)


def _proc_mem(src: Path, outside: Path) -> None:
    os.symlink("/proc/self/mem", src / "mem.jpg")


def _entry(entry_id: str, build: Builder, outcome, notes: str = "") -> Entry:
    return Entry(entry_id, "folders", lambda: build, expect(outcome), notes=notes)


def entries() -> list[Entry]:
    made = [
        _entry("link-out-of-the-folder", link_out, skipped("symlink_outside")),
        _entry("folder-link-out-of-the-folder", folder_link_out, skipped("symlink_outside")),
        _entry("absolute-link-to-etc", _absolute_link_out, skipped("symlink_outside")),
        _entry("broken-link", broken_link, skipped("symlink_broken")),
        _entry("link-to-itself", _self_loop, skipped("symlink_broken"), "ELOOP: a link that resolves to nothing"),
        _entry("folder-link-loop", _folder_loop, skipped("symlink_duplicate"), "deeper/loop -> ..: visited once"),
        _entry("fifo", _fifo, IGNORED, "opening it would block the run"),
        _entry("folder-named-like-an-image", _folder_named_jpg, IGNORED),
        _entry("hidden-file", _hidden, IGNORED),
    ]
    if os.path.exists("/proc/self/mem"):
        made.append(_entry("link-to-proc-self-mem", _proc_mem, skipped("symlink_outside"),
                           "stat says 0 bytes and every read fails: never opened"))
    return made
