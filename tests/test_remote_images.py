"""Images that are not local files (an object in a bucket, a frame of a video): an ImageFile
with an ``origin``, fetched on demand into a local copy by its source's fetcher (issue #15's
contract, shared by the object-storage and video sources)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import alpolicy
from alpolicy.errors import ServiceError
from alpolicy.io.images import ImageFile
from alpolicy.runtime.pipeline import RunOptions
from alpolicy.testing import SEND_EVERYTHING, StaticBackend, image_folder


@dataclass
class Store:
    """A 'bucket' (a folder) and a fetcher that copies objects into a spool, counting fetches."""

    bucket: Path
    spool: Path
    fetches: dict[str, int] = field(default_factory=dict)
    fail_first: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, image: ImageFile) -> None:
        name = image.origin.rsplit("/", 1)[1]
        with self.lock:
            self.fetches[name] = self.fetches.get(name, 0) + 1
            first = self.fetches[name] == 1
        if name in self.broken:
            raise KeyError(name)
        if first and name in self.fail_first:
            raise ServiceError(f"{image.origin}: 503 Slow Down")
        temporary = Path(image.path + ".part")
        shutil.copyfile(self.bucket / name, temporary)
        temporary.replace(image.path)

    def images(self) -> list[ImageFile]:
        self.spool.mkdir(exist_ok=True)
        return [ImageFile(str(self.spool / f"{index:04d}.jpg"), path.stat().st_size, 0,
                          origin=f"s3://bucket/frames/{path.name}", version=f"etag-{index}", fetcher=self)
                for index, path in enumerate(sorted(self.bucket.iterdir()))]


def test_remote_images_are_fetched_in_workers_shown_by_origin_and_sent_whole(tmp_path):
    image_folder(tmp_path / "bucket", 4)
    store = Store(tmp_path / "bucket", tmp_path / "spool")
    images = store.images()
    journal = tmp_path / "j.sqlite"
    report = alpolicy.run(images, SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'queue'}",
                          options=RunOptions(journal=str(journal), progress=False, retry_for=0))
    assert report.sent == 4 and not report.failures
    assert store.fetches == {f"frame_{i:05d}.jpg": 1 for i in range(4)}, "each object fetched once"
    sent = sorted(p.name for p in (tmp_path / "queue" / "images").iterdir())
    assert sent == [f"frame_{i:05d}.jpg" for i in range(4)], "named after the origin, not the spool copy"
    for name in sent:
        assert (tmp_path / "queue" / "images" / name).read_bytes() == (tmp_path / "bucket" / name).read_bytes()
    with sqlite3.connect(journal) as db:
        paths = sorted(row[0] for row in db.execute("SELECT path FROM predictions"))
        keys = sorted(row[0] for row in db.execute("SELECT image_key FROM deliveries"))
    assert paths == [f"s3://bucket/frames/frame_{i:05d}.jpg" for i in range(4)]
    assert keys == [f"s3://bucket/frames/frame_{i:05d}.jpg|etag-{i}" for i in range(4)]
    records = [json.loads(line) for line in (tmp_path / "decisions" / "j-run-1.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in records) == paths
    coco = json.loads((tmp_path / "queue" / "annotations.coco.json").read_text())
    assert {entry["file_name"] for entry in coco["images"]} == {f"images/{name}" for name in sent}


def test_an_evicted_copy_is_fetched_again_and_a_rerun_recognises_the_objects(tmp_path):
    image_folder(tmp_path / "bucket", 3)
    store = Store(tmp_path / "bucket", tmp_path / "spool")
    journal = str(tmp_path / "j.sqlite")
    options = RunOptions(journal=journal, progress=False, retry_for=0)
    first = alpolicy.run(store.images(), SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'q'}",
                         options=options)
    assert first.sent == 3
    shutil.rmtree(tmp_path / "spool")  # the source's cache evicted every copy
    second = alpolicy.run(store.images(), SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'q'}",
                          options=options)
    assert second.sent == 0 and second.already_sent == 3, "same origin and version: the same images"
    changed = store.images()
    changed[0].version = "etag-new"
    third = alpolicy.run(changed, SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'q'}",
                         options=options)
    assert third.sent == 1, "a new version of an object is a new image"
    assert store.fetches["frame_00000.jpg"] == 2


def test_a_slow_down_is_fetched_again_in_a_deferred_round_and_a_fetcher_bug_fails_its_image(tmp_path):
    image_folder(tmp_path / "bucket", 3)
    store = Store(tmp_path / "bucket", tmp_path / "spool", fail_first={"frame_00001.jpg"}, broken={"frame_00002.jpg"})
    report = alpolicy.run(store.images(), SEND_EVERYTHING, model=StaticBackend(), destination=f"folder:{tmp_path / 'q'}",
                          options=RunOptions(journal=None, progress=False, retry_for=30, decisions_log=""))
    assert report.sent == 2
    assert [(f["path"], f["error"]) for f in report.failures] == [
        ("s3://bucket/frames/frame_00002.jpg", "cannot fetch s3://bucket/frames/frame_00002.jpg: KeyError: 'frame_00002.jpg'")]
    assert store.fetches["frame_00001.jpg"] == 2
