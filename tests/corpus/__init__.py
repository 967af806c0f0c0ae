"""The hostile-input corpus (issue #12): every input from outside that once broke alpolicy, or
could, kept as generated data with the outcome it must have -- so that it stays broken-proof.

One module per kind of input, each entry made by a small function (no committed blobs):

* :mod:`.images`: image files -- truncated JPEG/PNG/GIF/BMP/WEBP/TIFF, zTXt/iCCP/iTXt bombs,
  huge declared sizes, a 144-Mpx PNG, an empty file, text with an image extension, a PNG named
  ``.jpg``, EXIF orientation oddities, and odd but good images;
* :mod:`.names`: file names -- backslash, newline, leading dash, 249- and 255-byte names,
  names that are not UTF-8, unicode;
* :mod:`.folders`: the source folder itself -- symbolic links leaving it, broken links, link
  loops, a FIFO, a directory named like an image, hidden files;
* :mod:`.predictions`: model answers and stored prediction files -- ``Infinity``, ``1e400``,
  ``NaN``, 100,000 nested brackets, width 0 / -5 / ``true``, confidence 57.0, a 40 MB answer,
  100,001 detections, an answer echoing the API key;
* :mod:`.policies`: policy files -- 400-deep ``not``, 4,400-digit integers, ``NaN``, duplicate
  keys, unknown rules;
* :mod:`.destinations`: what a destination answers or holds -- an upload or pre-label answered
  with 100,000 nested brackets, a folder destination's records, marker or user files broken.

Each :class:`Entry` has an id, a kind, the function making the input and its expected
:class:`Outcome` per route (backend and destination), which ``tests/test_corpus.py`` checks
through every backend and destination. The Hypothesis strategies that generate more of each kind
live beside the entries (``policies``, ``prediction documents``, ``mutated image bytes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

#: The kinds, in the order the tally prints them.
KINDS = ("images", "names", "folders", "predictions", "policies", "destinations")


@dataclass(frozen=True)
class Outcome:
    """What must become of one input on one route.

    ``accepted``: processed like any good input (an image inferred, decided, sent once; a policy
    valid). ``fails``: that input alone fails, at ``stage``, with one line matching the regex
    ``reason`` (the run goes on). ``refused``: the whole command refuses it before any image,
    in one line matching ``reason``, exit 2 (a policy, a destination folder that is not ours).
    ``skipped``: not an input at all (a broken link): counted under ``reason`` in the run's
    ``skipped``, never opened. ``ignored``: not an input, not counted (a FIFO, a folder named
    like an image, a hidden file).
    """

    verdict: str
    stage: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        assert self.verdict in ("accepted", "fails", "refused", "skipped", "ignored"), self.verdict

    def matches(self, stage: str | None, error: str) -> bool:
        """Whether a one-line failure (or refusal) at ``stage`` saying ``error`` is this outcome."""
        return (self.verdict in ("fails", "refused") and stage == self.stage and "\n" not in error.strip()
                and re.search(self.reason or "", error.strip()) is not None)

    def __str__(self) -> str:
        if self.verdict == "fails":
            return f"fails that input at {self.stage} with one line matching {self.reason!r}"
        if self.verdict == "refused":
            return f"refused ({self.stage}) in one line matching {self.reason!r}, exit 2"
        if self.verdict == "skipped":
            return f"skipped and counted as {self.reason}"
        return self.verdict


ACCEPTED = Outcome("accepted")
IGNORED = Outcome("ignored")


def fails(stage: str, reason: str) -> Outcome:
    return Outcome("fails", stage, reason)


def refused(stage: str, reason: str) -> Outcome:
    return Outcome("refused", stage, reason)


def skipped(reason: str) -> Outcome:
    return Outcome("skipped", None, reason)


@dataclass(frozen=True)
class Entry:
    """One hostile input.

    ``make()`` returns the input: a file's bytes (images, names), an answer's or a prediction
    file's bytes, a policy's text, or a builder (folders, destinations: see their modules).
    ``expect`` maps a route to its outcome; :meth:`outcome` looks up ``"backend>destination"``,
    then ``"backend"``, then ``">destination"``, then ``"*"``. ``name`` is the file name an image
    is stored under (``bytes`` when it is not UTF-8); ``size`` the width and height a stored
    prediction for it declares (``None``: the image's own).
    """

    id: str
    kind: str
    make: Callable[[], Any]
    expect: Mapping[str, Outcome]
    name: str | bytes | None = None
    size: tuple[int, int] | None = None
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def outcome(self, backend: str = "*", destination: str = "*") -> Outcome:
        for key in (f"{backend}>{destination}", backend, f">{destination}", "*"):
            if key in self.expect:
                return self.expect[key]
        raise KeyError(f"{self.id}: no expected outcome for {backend} into {destination}")


def expect(default: Outcome, **routes: Outcome) -> dict[str, Outcome]:
    """``{"*": default, **routes}`` with ``replay__folder`` spelt for ``replay>folder`` and
    ``_folder`` for ``>folder`` (keyword names cannot hold ``>``)."""
    table = {"*": default}
    for key, outcome in routes.items():
        table[key.replace("__", ">") if "__" in key else (">" + key[1:] if key.startswith("_") else key)] = outcome
    return table


def by_id(entries: list[Entry]) -> dict[str, Entry]:
    table = {entry.id: entry for entry in entries}
    assert len(table) == len(entries), "two corpus entries share an id"
    return table
