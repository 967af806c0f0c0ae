r"""Hostile file names: each a good image whose *name* is the hostile part.

A backslash and a newline are ordinary characters on POSIX, a leading dash looks like an option,
a name may be up to 255 bytes (``NAME_MAX``), and on Linux a name is bytes (``bad\xff.jpg`` is
not UTF-8). Each must be processed like any other image, into every destination, and named in
every record as text. ``tests/test_hostile_names.py`` and ``tests/test_non_utf8_names.py`` take
their names from here.

The one route that cannot take the longest names is ``replay:DIR``: the prediction file of a
255-byte image name (``<stem>.json``) would be longer than a file name may be, so such an image
has no stored prediction; it fails alone, saying so ("File name too long").
"""

from __future__ import annotations

import functools
import io
import os

from PIL import Image

from . import ACCEPTED, Entry, expect, fails

NAME_MAX = 255


def long_name(stem_char: str, total_bytes: int, ext: str = ".jpg") -> str:
    """A name of exactly ``total_bytes`` UTF-8 bytes: ``stem_char`` repeated, ``x`` to pad."""
    room = total_bytes - len(ext.encode())
    count = room // len(stem_char.encode())
    return stem_char * count + "x" * (room - count * len(stem_char.encode())) + ext


#: Legal POSIX names that once failed or were mangled (issue #12, item 4).
NAMES = [
    "back\\slash.jpg",
    "a\\..\\..\\up.jpg",  # a Windows traversal, just characters here
    "line\nbreak.jpg",
    "-rf --all.jpg",
    "é漢字 100%#?&.png",
    long_name("a", 249),
    long_name("b", 255),
    long_name("漢", 255, ext=".png"),  # 83 three-byte characters: a cut must not split one
    long_name("c", 251, ext=".jpeg"),  # 255 bytes too
]

#: Good names around two that are not UTF-8 (a lone continuation byte, a Latin-1 "é").
NON_UTF8_NAMES = [b"a_1.jpg", b"bad\xff.jpg", b"c_2.jpg", b"caf\xe9.jpg", b"d_3.jpg"]


def name_bytes(name: str | bytes) -> int:
    return len(name if isinstance(name, bytes) else os.fsencode(name))


def picture(index: int, name: str | bytes) -> bytes:
    """A distinct good image for the ``index``-th name, in the format its extension says."""
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    buffer = io.BytesIO()
    Image.effect_noise((40 + index, 30), 50).convert("RGB").save(buffer, "PNG" if text.endswith(".png") else "JPEG")
    return buffer.getvalue()


def _replay_has_no_room(name: str | bytes) -> bool:
    stem = os.fsencode(name).rsplit(b".", 1)[0]
    return len(stem) + len(b".json") > NAME_MAX


_IDS = ["backslash", "windows-traversal", "newline", "leading-dash", "unicode-and-url-characters",
        "249-bytes", "255-bytes", "255-bytes-of-cjk", "255-bytes-jpeg"]


def entries() -> list[Entry]:
    made = []
    names: list[str | bytes] = [*NAMES, b"bad\xff.jpg", b"caf\xe9.jpg", b"\xe9t\xe9 -- \\n.png"]
    ids = [*_IDS, "not-utf-8-lone-byte", "not-utf-8-latin-1", "not-utf-8-with-backslash-n"]
    for index, (entry_id, name) in enumerate(zip(ids, names)):
        assert name_bytes(name) <= NAME_MAX
        outcome = expect(ACCEPTED)
        if _replay_has_no_room(name):
            outcome["replay"] = fails("inference", r"^cannot read the stored prediction .*\.json: File name too long$")
        made.append(Entry(f"name-{entry_id}", "names", functools.partial(picture, index, name), outcome, name=name))
    return made
