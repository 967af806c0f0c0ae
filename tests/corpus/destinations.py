"""What a destination answers, or holds, turned hostile: the answers come from outside too.

* The Roboflow API (the loopback server, :meth:`FakeRoboflow.answer_uploads` /
  :meth:`~FakeRoboflow.answer_annotations`) answers one image's upload or pre-label with 100,000
  nested brackets (which ``response.json()`` turned into a ``RecursionError``), an HTML page, or
  JSON holding ``NaN``: that image fails at the send, in one line; the others are sent.
* A ``folder:`` destination's own files, edited or written by someone else: a record in
  ``.alpolicy/records/`` or the marker ``.alpolicy/folder.json`` holding 100,000 brackets, and,
  with ``--to-opt merge=true``, the user's ``annotations.coco.json`` or
  ``labelstudio-tasks.json`` holding them. A broken record is skipped (the image is placed
  again, the indexes rebuilt); a broken marker or user file refuses the run in one line, exit 2.

``make()`` returns a :class:`Case`: where the hostile bytes go and the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ACCEPTED, Entry, expect, fails, refused
from .predictions import NESTED


@dataclass(frozen=True)
class Case:
    #: ``upload`` / ``annotate``: the loopback Roboflow API's answer for one image;
    #: ``record`` / ``marker`` / ``coco`` / ``tasks``: a file of a ``folder:`` destination.
    place: str
    body: bytes


def _case(place: str, body: bytes):
    return lambda: Case(place, body)


HTML = b"<!doctype html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def entries() -> list[Entry]:
    return [
        Entry("upload-answered-with-100000-brackets", "destinations", _case("upload", NESTED),
              expect(fails("send", r"^upload refused \(HTTP 200\): \[\[\[\[")), extra={"destination": "roboflow"}),
        Entry("upload-answered-with-an-html-page", "destinations", _case("upload", HTML),
              expect(fails("send", r"^upload refused \(HTTP 200\): \(an HTML page\)$")), extra={"destination": "roboflow"}),
        Entry("upload-answered-with-nan", "destinations", _case("upload", b'{"success": true, "id": NaN}'),
              expect(fails("send", r'^upload refused \(HTTP 200\): \{"success": true, "id": NaN\}$')),
              extra={"destination": "roboflow"}),
        Entry("pre-label-answered-with-100000-brackets", "destinations", _case("annotate", NESTED),
              expect(fails("send", r"^annotation refused \(HTTP 200\): \[\[\[\[")), extra={"destination": "roboflow"}),
        Entry("folder-record-with-100000-brackets", "destinations", _case("record", NESTED), expect(ACCEPTED),
              notes="skipped with a warning: the image is placed again under its name", extra={"destination": "folder"}),
        Entry("folder-marker-with-100000-brackets", "destinations", _case("marker", NESTED),
              expect(refused("destination", r"^alpolicy: error: folder .* has a \.alpolicy/folder\.json that this "
                                            r"alpolicy did not write: choose another folder$")),
              extra={"destination": "folder"}),
        Entry("merged-coco-with-100000-brackets", "destinations", _case("coco", NESTED),
              expect(refused("destination", r"^alpolicy: error: folder .*: annotations\.coco\.json is not JSON \(nested too deeply "
                                            r"to read .*\); merge it by hand$")),
              extra={"destination": "folder"}),
        Entry("merged-tasks-with-100000-brackets", "destinations", _case("tasks", NESTED),
              expect(refused("destination", r"^alpolicy: error: folder .*: labelstudio-tasks\.json is not JSON \(nested too deeply "
                                            r"to read .*\); merge it by hand$")),
              extra={"destination": "folder"}),
    ]
