"""A local folder of images with their pre-labels (``folder:DIR``): the default, no server needed.

Layout::

    DIR/
      images/<name>                      the image, byte for byte as it was on disk
      predictions/<stem>.json            its prediction as Roboflow inference JSON
                                         (so ``replay:DIR/predictions`` replays a run)
      annotations.coco.json              COCO: every image and object              } rebuilt by
      labelstudio-tasks.json             Label Studio tasks with pre-labels       } close()
      labelstudio-config.xml             a labeling config listing every class    }
      labels/<stem>.txt, data.yaml       YOLO: one txt per image, class names      }
      classes/<CLASS>/<name>             a classifier's image, in its top class's folder }
      images/_classes.csv                a classifier's one-hot labels             }
      .alpolicy/records/<sha256>.json    one record per image: what close() builds from
      .alpolicy/folder.json              the marker: this folder is alpolicy's (or merged into)

What the index files hold follows the task of the predictions (``prediction.task``; one task per
folder, recorded in the marker: another task is refused in one line, see :mod:`.folder_merge`):

* object detection: COCO boxes, YOLO ``class cx cy w h`` lines;
* instance segmentation: COCO ``segmentation`` polygons (or the RLE mask) and their ``area``,
  YOLO-seg ``class x1 y1 x2 y2 ...`` lines (:mod:`alpolicy.formats.coco`, :mod:`~alpolicy.formats.yolo`);
* keypoints: COCO ``keypoints`` with the category's ``keypoints`` names, YOLO-pose lines and
  ``kpt_shape`` in ``data.yaml``;
* classification: no COCO nor YOLO file (a classifier has no objects: an empty COCO file would
  say "no object here" to every detection tool); ``classes/<CLASS>/<name>`` for a single-label
  model's top class (hard links to ``images/<name>``, a copy where links are not possible: what
  ``supervision.ClassificationDataset.from_folder_structure(DIR/classes)`` and Ultralytics read)
  and, for both single- and multi-label, Roboflow's one-hot ``images/_classes.csv``
  (:mod:`alpolicy.formats.classification`). The Label Studio files hold every task.

Why records: ``send`` runs on many threads and a run may crash at any point, so the index files
are never appended to. Each send writes its own record, last, atomically; ``close`` rebuilds the
three index files from *every* record in the folder. Images from earlier runs into the same DIR are
therefore kept, and a crash before ``close`` is repaired by the next run's ``close``.

Ownership: the folder must be empty, carry the marker, or hold records of an older alpolicy
(adopted); any other folder is refused in one line, unless ``merge`` (``--to-opt merge=true``)
asks to add to it, keeping every entry of the user's: see :mod:`.folder_merge`. Options
(``extra``, ``--to-opt KEY=VALUE``): :data:`OPTIONS_SCHEMA`; an unknown one is refused in one line.

Names: an image keeps its base name unless a different content already has it (or has the same
stem, compared case-insensitively, since ``predictions/<stem>.json`` and case-insensitive file
systems must not mix two images up); it is then stored as ``<stem>-<first 8 hex of sha256><ext>``.
The same content is always stored once, under the name it got first: sending it again (a resume
after a crash) rewrites the record and answers the same receipt, with ``duplicate=True``.
Any legal name is stored and indexed as it is (a backslash, a newline, a leading dash are
ordinary characters on POSIX; Label Studio URLs percent-encode them), except a name too long for
``predictions/<stem>.json`` to fit the file system's 255 bytes: its stem is cut to make room for
the hash suffix, so every file of an image fits (temp files have short fixed names).

Every file is written atomically (a hidden temp file in the same folder, fsync, ``os.replace``):
a reader, or a crash, never sees a partial file. One run at a time per DIR.

COCO category ids are the sorted class names numbered from 1 (0 is "background" to many COCO
tools, and model ``class_id`` values need not agree between the models of several runs); they are
consistent within the file, and may shift when a later run adds a class.

Label Studio: the task's image URL is ``options.extra["image_url_prefix"]`` (default empty) +
``images/<name>`` (URL-quoted). Label Studio must be able to load that URL, e.g. serve DIR over
HTTP (prefix ``http://host:port/``) or use local files storage with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` (prefix ``/data/local-files/?d=<DIR relative to
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT>/``). The region names default to ``label``/``image``
(``labelstudio_from_name``/``labelstudio_to_name`` in ``extra``); ``labelstudio-config.xml`` uses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Callable, Iterable

from ..errors import UsageError
from ..formats import classification, coco, labelstudio, roboflow, shapes, yolo
from ..hookspecs import hookimpl
from ..io.images import ImageDecodeError, display_path, sha256_file
from ..io.jsonsafe import loads, read_file
from ..policy.prediction import (CLASSIFICATION, KEYPOINT_DETECTION, OBJECT_DETECTION, ClassScore, Detection,
                                 Prediction, PredictionFormatError)
from ..registry import DestinationSpec
from . import Delivery, Destination, DestinationOptions, PermanentError, Receipt, RetryableError
from .folder_merge import (MARKER, Ownership, family, foreign_summary, marker_document, merge_classes_csv, merge_coco,
                           merge_data_yaml, merge_labelstudio_config, merge_tasks, parse_merge, read_coco,
                           read_labelstudio_config, read_marker, read_tasks, read_yaml_names, task_mismatch,
                           user_family, user_files)

log = logging.getLogger("alpolicy.folder")

IMAGES = "images"
PREDICTIONS = "predictions"
RECORDS = os.path.join(".alpolicy", "records")
COCO_FILE = "annotations.coco.json"
TASKS_FILE = "labelstudio-tasks.json"
CONFIG_FILE = "labelstudio-config.xml"
YOLO_LABELS = "labels"
YOLO_DATA_FILE = "data.yaml"
CLASS_FOLDERS = "classes"
CLASSES_CSV = f"{IMAGES}/{classification.CSV_FILE}"
RECORD_FORMAT = 1

#: The destination's own ``extra`` settings (``--to-opt KEY=VALUE``), checked by
#: :mod:`alpolicy.plugin_options` before the destination is built.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "folder destination options",
    "type": "object",
    "properties": {
        "merge": {"type": "boolean", "default": False,
                  "description": "add to a folder holding files alpolicy did not write, keeping its entries"},
        "image_url_prefix": {"type": "string", "default": "", "description": "what Label Studio task image URLs start with"},
        "labelstudio_from_name": {"type": "string", "minLength": 1, "default": "label",
                                  "description": "the RectangleLabels name in the tasks and config"},
        "labelstudio_to_name": {"type": "string", "minLength": 1, "default": "image",
                                "description": "the Image name in the tasks and config"},
    },
}
#: The index files a merged folder merges into (every other file of the user's is never written).
INDEX_FILES = (COCO_FILE, TASKS_FILE, CONFIG_FILE, YOLO_DATA_FILE, CLASSES_CSV)

#: The longest file name, in bytes, on every common file system (ext4, XFS, btrfs, APFS, NTFS).
NAME_MAX = 255
#: The longest suffix a stored image's stem gets in another folder: ``predictions/<stem>.json``.
_STEM_SUFFIX = len(".json")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECORD_NAME = re.compile(r"^[0-9a-f]{64}\.json$")
_CHUNK = 1 << 20
#: Sends of the same content are serialised by one of these (bounded memory, unlike a lock per key).
_STRIPES = 64


class FolderDestination(Destination):
    """Thread-safe: names are chosen under one lock, each content is written under its stripe lock.

    Choosing a name may hash an earlier file of the same stem and size (to tell "the same image,
    sent again" from "another image, same name"); that is rare and happens under the name lock.
    """

    def __init__(self, target: str, options: DestinationOptions) -> None:
        if not target.strip():
            raise UsageError("folder destination needs a folder, e.g. folder:out/")
        self.root = os.path.abspath(os.path.expanduser(target))
        self.name = f"folder:{self.root}"
        extra = options.extra or {}
        #: Add to a folder that holds the user's files (see :mod:`.folder_merge`).
        self.merge = parse_merge(extra.get("merge", False))
        self.image_url_prefix = str(extra.get("image_url_prefix", ""))
        self.from_name = str(extra.get("labelstudio_from_name", "label"))
        self.to_name = str(extra.get("labelstudio_to_name", "image"))
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        self._ready = False
        #: Case-folded stem -> stored file name, loaded from images/ on first send.
        self._stems: dict[str, str] | None = None
        #: Stored file name -> sha256, when known (written here, or hashed once to compare).
        self._hashes: dict[str, str] = {}
        #: The file system's longest name in bytes, asked on first need (:meth:`_name_max`).
        self._name_limit: int | None = None
        #: Whether the folder is ours or merged into, decided by :meth:`_prepare` (or at close).
        self._ownership: Ownership | None = None
        #: The model's task, when its backend named it (:meth:`prepare_task`).
        self._announced: str | None = None
        #: What a merged user's dataset holds (:func:`.folder_merge.user_family`).
        self._user_family: str | None = None

    # -- paths -------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def image_path(self, name: str) -> str:
        return self._path(IMAGES, name)

    def record_path(self, sha256: str) -> str:
        return self._path(RECORDS, f"{sha256}.json")

    def prediction_path(self, name: str) -> str:
        return self._path(PREDICTIONS, f"{PurePath(name).stem}.json")

    # -- contract ----------------------------------------------------------------------------

    def prepare_task(self, task: str) -> None:
        """The model's task, before :meth:`check`: a folder holding another task's pre-labels is
        then refused before any image is inferred."""
        self._announced = task

    def check(self) -> None:
        """Create DIR and its sub-folders, and prove DIR is writable, before any image is processed."""
        self._prepare()

    def check_read_only(self) -> None:
        """A dry run's check, which writes nothing: DIR is a folder, or can be made in the nearest
        existing folder above it, and this process may write there (a probe file, as
        :meth:`check` writes, would be a write)."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise UsageError(f"folder destination {self.root} is a file, not a folder")
        existing = self.root
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise UsageError(f"folder destination {self.root} cannot be created: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"folder destination {self.root} cannot be created or written: {existing} is not writable")
        ownership, _ = self._decide()
        if self._announced is not None:
            refusal = task_mismatch(self.root, self._announced, ownership.task, self._user_family)
            if refusal is not None:
                raise refusal

    def send(self, delivery: Delivery) -> Receipt:
        sha = delivery.key
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise PermanentError(f"delivery key {sha!r} is not a sha256 hex digest of the image")
        try:
            # A header parse: an empty file, a non-image or a bomb must not enter the dataset (a
            # backend that never reads pixels, like replay:, lets them through to here).
            delivery.image.check()
        except ImageDecodeError as error:
            raise PermanentError(str(error)) from None
        try:
            self._prepare()
        except UsageError as error:
            raise PermanentError(str(error)) from None
        self._accept(delivery.prediction)  # another task than the folder's: a UsageError, the run stops
        with self._stripes[int(sha[:8], 16) % _STRIPES]:
            name, stored = self._place(delivery)
            if not stored:
                self._store_image(delivery, name)
            self._write_json(self.prediction_path(name), roboflow.document(delivery.prediction), f"{PREDICTIONS}/")
            self._write_json(self.record_path(sha), _record(delivery, name), "its record in .alpolicy/")
        return Receipt(name, url=Path(self.image_path(name)).as_uri(), duplicate=stored)

    def close(self) -> None:
        """Rebuild the COCO file, the Label Studio tasks and config from every record in DIR
        (in a merged folder: merge alpolicy's entries into the user's files, see :mod:`.folder_merge`).

        Creates nothing when DIR was never prepared: a run that fails before ``check`` (a missing
        source folder, a folder that is not ours) must not leave an empty output folder behind,
        nor write into someone's folder.
        """
        ownership = self._ownership_at_close()
        if ownership is None:
            return
        stale: set[str] = set()
        items = self._load_items(stale)
        task = ownership.task or OBJECT_DETECTION
        index = _Index.of(items, task)
        tasks = labelstudio_tasks(items, self.image_url_prefix, self.from_name, self.to_name)
        config = labelstudio_config(index.classes, self.from_name, self.to_name, task, index.keypoints)
        if not ownership.merged:
            self._write_json(self._path(TASKS_FILE), tasks, TASKS_FILE, indent=None)
            self._write(self._path(CONFIG_FILE), lambda h: h.write(config.encode("utf-8")), CONFIG_FILE)
            if index.boxes:
                self._write_json(self._path(COCO_FILE), index.coco(items), COCO_FILE, indent=None)
                self._write_yolo(items, index.classes, yolo_data_yaml(index.classes, index.keypoints), index)
                self._unlink_own((CLASSES_CSV,))
            else:
                self._unlink_own((COCO_FILE, YOLO_DATA_FILE), labels_of=items)
                csv = classification.csv_text(((item.file_name, _prediction(item)) for item in items), index.classes)
                self._write(self._path(CLASSES_CSV), lambda h: h.write(csv.encode("utf-8")), CLASSES_CSV)
            self._write_class_folders(items, task)
            return
        self._close_merged(items, stale, index, tasks, config)

    def _close_merged(self, items: list["StoredImage"], stale: set[str], index: "_Index",
                      tasks: list[dict[str, Any]], config: str) -> None:
        """close() in a merged folder: each index file that exists is merged into (alpolicy's
        entries of earlier closes -- those naming an image it stored, ``stale`` ones too --
        replaced, every other kept); one that does not is written as in a folder of ours."""
        ours = {f"{IMAGES}/{name}" for name in stale | {item.file_name for item in items}}
        urls = {image_url(self.image_url_prefix, name.split("/", 1)[1]) for name in ours}
        classes = index.classes

        coco = index.coco(items) if index.boxes else None

        def coco_file(current: bytes) -> bytes:
            return self._json_bytes(merge_coco(read_coco(current), coco, ours))

        def tasks_file(current: bytes) -> bytes:
            return self._json_bytes(merge_tasks(read_tasks(current), tasks, urls))

        def config_file(current: bytes) -> bytes | None:
            return merge_labelstudio_config(current, classes, self.from_name)[0]

        names = list(classes)

        def data_yaml(current: bytes) -> bytes | None:
            text, names[:] = merge_data_yaml(current.decode("utf-8"), classes, index.kpt_count)
            return None if text is None else text.encode("utf-8")

        self._merge_into(TASKS_FILE, tasks_file, self._json_bytes(tasks))
        self._merge_into(CONFIG_FILE, config_file, config.encode("utf-8"))
        if index.boxes:
            self._merge_into(COCO_FILE, coco_file, self._json_bytes(coco))
            if self._merge_into(YOLO_DATA_FILE, data_yaml, yolo_data_yaml(classes, index.keypoints).encode("utf-8")):
                self._write_yolo(items, names, None, index)  # with the merged indices
            return
        rows = {item.file_name: classification.predicted(_prediction(item)) for item in items}
        csv = classification.rows_text(rows.items(), classes)

        def classes_csv(current: bytes) -> bytes | None:
            text = merge_classes_csv(current.decode("utf-8"), rows, classes)
            return None if text is None else text.encode("utf-8")

        self._merge_into(CLASSES_CSV, classes_csv, csv.encode("utf-8"))
        self._write_class_folders(items, index.task)

    def _ownership_at_close(self) -> Ownership | None:
        """How close() may write: as decided when prepared; else (a close without check, after
        a crash) from the marker, or the records of an older alpolicy; else not at all."""
        if self._ownership is not None:
            return self._ownership
        if not os.path.isdir(self._path(RECORDS)):
            return None
        try:
            found = read_marker(self.root)
        except UsageError as error:
            log.warning("not writing the index files: %s", error)
            return None
        if found is None and not self._has_records():
            return None
        self._ownership = found or Ownership()
        return self._ownership

    def _merge_into(self, name: str, merge: Callable[[bytes], bytes | None], fresh: bytes) -> bool:
        """Write ``merge(current content)`` over index file ``name`` (``None``: leave it as it is),
        or ``fresh`` when there is none. A file that cannot be merged any more (broken since the
        run started) is left alone, with a warning: never overwritten."""
        try:
            current = self._existing(name)
            content = fresh if current is None else merge(current)
        except (UsageError, UnicodeDecodeError) as error:
            log.warning("%s in %s left as it is, alpolicy's entries not added: %s", name, self.root, error)
            return False
        if content is not None:
            self._write(self._path(name), lambda handle: handle.write(content), name)
        return True

    @staticmethod
    def _json_bytes(document: Any) -> bytes:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    def _write_yolo(self, items: list["StoredImage"], classes: list[str], data_yaml: str | None,
                    index: "_Index | None" = None) -> None:
        """YOLO txt labels (class index, normalised centre and size; a polygon; keypoints: as
        ``index``'s task says) and the ``data.yaml`` naming the classes (``None``: written by the
        caller, merged into the user's)."""
        os.makedirs(self._path(YOLO_LABELS), exist_ok=True)
        task = index.task if index is not None else OBJECT_DETECTION
        count = index.kpt_count if index is not None else None
        for item in items:
            text = yolo_labels(item, classes, task=task, keypoints=count).encode("utf-8")
            stem = PurePath(item.file_name).stem
            self._write(self._path(YOLO_LABELS, f"{stem}.txt"), lambda h, t=text: h.write(t), f"{YOLO_LABELS}/")
        if data_yaml is not None:
            data = data_yaml.encode("utf-8")
            self._write(self._path(YOLO_DATA_FILE), lambda h: h.write(data), YOLO_DATA_FILE)

    def _unlink_own(self, names: Iterable[str], labels_of: Iterable["StoredImage"] = ()) -> None:
        """Remove index files of another task family that an earlier close of this folder wrote
        (e.g. the COCO file of a run whose predictions were all empty, before a classifier's):
        the folder shows one task. Never in a merged folder, never a user's file."""
        if self._ownership is None or self._ownership.merged:
            return
        paths = [self._path(name) for name in names]
        paths += [self._path(YOLO_LABELS, f"{PurePath(item.file_name).stem}.txt") for item in labels_of]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _write_class_folders(self, items: list["StoredImage"], task: str) -> None:
        """``classes/<CLASS>/<name>`` for each single-label image's top class (a hard link to
        ``images/<name>``, else a copy), and no other entry of alpolicy's: an image whose class
        changed, or that is gone, leaves its old folder (the user's files are never touched).
        An entry already linking the same file is not written again."""
        wanted: dict[str, str] = {}
        if task == CLASSIFICATION:
            for item in items:
                top = classification.folder_class(_prediction(item))
                if top is not None:
                    wanted[f"{CLASS_FOLDERS}/{classification.folder_name(top)}/{item.file_name}"] = item.file_name
        for relative, name in wanted.items():
            self._link(self.image_path(name), relative)
        self._remove_stale_class_entries(set(wanted))

    def _link(self, source: str, relative: str) -> None:
        target = self._path(*relative.split("/"))
        if self._ownership is not None and self._ownership.is_users(relative):
            return  # a user's file of that name (never an image of ours: names avoid theirs)
        try:
            if os.path.samefile(source, target):
                return
        except OSError:
            pass
        folder = os.path.dirname(target)
        try:
            os.makedirs(folder, exist_ok=True)
            temp = os.path.join(folder, f".alp-{secrets.token_hex(8)}.tmp")
            try:
                os.link(source, temp)
            except OSError:  # no hard links here (FAT, some network shares): a copy, atomically
                with open(source, "rb") as handle:
                    data = handle.read()
                _atomic_write(target, lambda h: h.write(data))
                return
            try:
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
            _fsync_folder(folder)
        except OSError as error:
            raise PermanentError(f"cannot write {relative} in {self.root}: {_reason(error)}") from None

    def _remove_stale_class_entries(self, wanted: set[str]) -> None:
        root = self._path(CLASS_FOLDERS)
        try:
            folders = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            return
        for folder in folders:
            if not folder.is_dir(follow_symlinks=False):
                continue
            with os.scandir(folder.path) as entries:
                names = [entry.name for entry in entries]
            for name in names:
                relative = f"{CLASS_FOLDERS}/{folder.name}/{name}"
                if relative in wanted or (self._ownership is not None and self._ownership.is_users(relative)):
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder.path, name))
            with contextlib.suppress(OSError):
                os.rmdir(folder.path)  # only when empty
        with contextlib.suppress(OSError):
            os.rmdir(root)

    def _accept(self, prediction: Prediction) -> None:
        """Hold the folder to one task: the first prediction that shows its task (an empty
        detection list shows none) records it in the marker; another task is a UsageError."""
        task = prediction.task
        ownership = self._ownership
        if ownership is None or ownership.task == task or (task == OBJECT_DETECTION and not prediction.detections):
            return
        with self._lock:
            self._accept_locked(task)

    def _accept_locked(self, task: str) -> None:
        assert self._ownership is not None
        if self._ownership.task == task:
            return
        refusal = task_mismatch(self.root, task, self._ownership.task, self._user_family)
        if refusal is not None:
            raise refusal
        path = self._path(MARKER)
        try:
            document = loads(read_file(path))
            document["task"] = task
            data = json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")
            _atomic_write(path, lambda handle: handle.write(data))
        except (OSError, ValueError, TypeError) as error:
            raise PermanentError(f"cannot record the task in {path}: {error}") from None
        self._ownership.task = task

    # -- preparing the folder ----------------------------------------------------------------

    def _prepare(self) -> None:
        with self._lock:
            if self._ready:
                return
            if os.path.exists(self.root) and not os.path.isdir(self.root):
                raise UsageError(f"folder destination {self.root} is a file, not a folder")
            ownership, marker = self._decide()  # before anything is created in a folder that is not ours
            try:
                for folder in (IMAGES, PREDICTIONS, RECORDS):
                    os.makedirs(self._path(folder), exist_ok=True)
                _atomic_write(self._path(RECORDS, ".probe"), lambda handle: None)
                os.unlink(self._path(RECORDS, ".probe"))
                if marker is not None:
                    data = json.dumps(marker, indent=2, ensure_ascii=False).encode("utf-8")
                    _atomic_write(self._path(MARKER), lambda handle: handle.write(data))
            except OSError as error:
                raise UsageError(
                    f"folder destination {self.root} cannot be created or written: {_reason(error)}"
                ) from None
            self._ownership = ownership
            if self._announced is not None:
                self._accept_locked(self._announced)
            self._ready = True

    def _decide(self) -> tuple[Ownership, dict[str, Any] | None]:
        """Whether alpolicy may write DIR, and how (see :mod:`.folder_merge`), with the marker to
        write (``None``: it is there). Reads only; a folder that is not ours is a UsageError."""
        if not os.path.isdir(self.root):
            return Ownership(), marker_document(Ownership())
        found = read_marker(self.root)
        if found is not None:
            if found.legacy and found.task is None and self._has_records():
                found.task = OBJECT_DETECTION  # an alpolicy from before tasks wrote boxes only
            if found.merged:
                self._check_mergeable(found.user_files)
            return found, None
        if self._has_records():  # an earlier alpolicy's folder, from before the marker
            return Ownership(task=OBJECT_DETECTION), marker_document(Ownership(task=OBJECT_DETECTION), adopted=True)
        try:
            files = user_files(self.root)
        except OSError as error:
            raise UsageError(f"folder destination {self.root} cannot be read: {_reason(error)}") from None
        if not files:
            return Ownership(), marker_document(Ownership())
        if not self.merge:
            raise UsageError(
                f"folder {self.root} holds files alpolicy did not write ({foreign_summary(files)}); choose an empty "
                "folder, or pass --to-opt merge=true (extra={'merge': True}) to add to it keeping its entries"
            )
        ownership = Ownership(merged=True, user_files=frozenset(files) | self._check_mergeable(files))
        return ownership, marker_document(ownership)

    def _has_records(self) -> bool:
        try:
            with os.scandir(self._path(RECORDS)) as entries:
                return any(_RECORD_NAME.match(entry.name) for entry in entries)
        except OSError:
            return False

    def _check_mergeable(self, files: Iterable[str]) -> frozenset[str]:
        """Refuse, in one line, an index file of the user's that merging could not read; the
        images its COCO file names (``images/<name>``), which alpolicy then never takes. Tells
        what the user's dataset holds (:func:`.folder_merge.user_family`)."""
        referenced: set[str] = set()
        found: dict[str, Any] = {}
        for name, read in ((YOLO_DATA_FILE, lambda b: read_yaml_names(b.decode("utf-8"))),
                           (COCO_FILE, read_coco), (TASKS_FILE, read_tasks),
                           (CONFIG_FILE, lambda b: read_labelstudio_config(b, self.from_name)),
                           (CLASSES_CSV, lambda b: _read_classes_csv(b.decode("utf-8")))):
            content = self._existing(name)
            if content is None:
                continue
            try:
                document = read(content)
            except UnicodeDecodeError:
                raise UsageError(f"folder {self.root}: {name} is not UTF-8 text; merge it by hand") from None
            except UsageError as error:
                raise UsageError(f"folder {self.root}: {error}") from None
            found[name] = content.decode("utf-8") if name == YOLO_DATA_FILE else document
            if name == COCO_FILE:
                referenced |= {f"{IMAGES}/{PurePath(str(i.get('file_name', ''))).name}" for i in document["images"]}
        self._user_family = user_family(files, found.get(COCO_FILE), found.get(YOLO_DATA_FILE))
        return frozenset(referenced)

    def _existing(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise UsageError(f"cannot read {name} in {self.root}: {_reason(error)}") from None

    # -- naming ------------------------------------------------------------------------------

    def _place(self, delivery: Delivery) -> tuple[str, bool]:
        """The stored name for this content, and whether the image is already stored under it."""
        sha = delivery.key
        known = _read_json(self.record_path(sha))
        name = known.get("file_name") if isinstance(known, dict) else None
        if isinstance(name, str) and _is_plain_name(name) and os.path.isfile(self.image_path(name)):
            with self._lock:
                if self._stems is not None:
                    self._stems.setdefault(_stem_key(name), name)
                self._hashes[name] = sha
            return name, True
        with self._lock:
            try:
                stems = self._load_stems()
            except OSError as error:
                raise PermanentError(f"cannot list {self.root}/{IMAGES}: {_reason(error)}") from None
            for candidate in _candidates(delivery.image.name, sha, self._name_max()):
                owner = stems.get(_stem_key(candidate))
                if owner is None:
                    stems[_stem_key(candidate)] = candidate
                    self._hashes[candidate] = sha
                    return candidate, False
                if self._holds(owner, sha, delivery.image.size):
                    return owner, os.path.isfile(self.image_path(owner))
        raise PermanentError(f"no free name for {delivery.image.name} in {self.root}/{IMAGES}")

    def _load_stems(self) -> dict[str, str]:
        """Call with the lock held. Lists images/ once; later names are added as they are chosen."""
        if self._stems is None:
            self._stems = {}
            # images/_classes.csv is no image: its stem is reserved (an image named _classes.* is
            # stored under a hashed name, never over the CSV)
            self._stems[_stem_key(CLASSES_CSV)] = CLASSES_CSV
            with os.scandir(self._path(IMAGES)) as entries:
                for entry in entries:
                    if not entry.name.startswith(".") and entry.is_file() and entry.name != classification.CSV_FILE:
                        self._stems.setdefault(_stem_key(entry.name), entry.name)
            # A merged folder's user files: never a name of ours, even for a label or prediction
            # file without its image (the "name" then held is no image: never the same content).
            for relative in self._ownership.user_files if self._ownership else ():
                folder, _, base = relative.partition("/")
                if folder == CLASS_FOLDERS and base.count("/") == 1:  # classes/<CLASS>/<name>
                    base = base.split("/", 1)[1]
                if folder in (IMAGES, YOLO_LABELS, PREDICTIONS, CLASS_FOLDERS) and base and "/" not in base:
                    self._stems.setdefault(_stem_key(base), relative)
        return self._stems

    def _name_max(self) -> int:
        """Call with the lock held. The longest file name images/ takes, in bytes (255 almost
        everywhere; less on e.g. eCryptfs), asked once."""
        if self._name_limit is None:
            try:
                self._name_limit = int(os.pathconf(self._path(IMAGES), "PC_NAME_MAX"))
            except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
                self._name_limit = NAME_MAX
            if self._name_limit <= 0:
                self._name_limit = NAME_MAX
        return self._name_limit

    def _holds(self, name: str, sha: str, size: int) -> bool:
        """Whether stored ``name`` has content ``sha``; a file of another size is not even hashed."""
        if self._ownership is not None and self._ownership.is_users(f"{IMAGES}/{name}"):
            return False  # the user's image, even of the same content: never taken for ours
        known = self._hashes.get(name)
        if known is None:
            path = self.image_path(name)
            try:
                if os.path.getsize(path) != size:
                    return False
                known = sha256_file(path)
            except OSError:
                return False
            self._hashes[name] = known
        return known == sha

    def _release(self, name: str) -> None:
        """Forget a name whose first write failed, so that it does not stay taken by nothing."""
        with self._lock:
            if self._stems is not None and not os.path.exists(self.image_path(name)):
                if self._stems.get(_stem_key(name)) == name:
                    del self._stems[_stem_key(name)]
                self._hashes.pop(name, None)

    # -- writing -----------------------------------------------------------------------------

    def _store_image(self, delivery: Delivery, name: str) -> None:
        """Copy the source bytes, checking they still hash to the key (the file may have changed)."""
        digest = hashlib.sha256()

        def copy(handle: BinaryIO) -> None:
            try:
                source = open(delivery.image.path, "rb")
            except OSError as error:
                raise _SourceError(error) from None
            with source:
                while True:
                    try:
                        chunk = source.read(_CHUNK)
                    except OSError as error:
                        raise _SourceError(error) from None
                    if not chunk:
                        break
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != delivery.key:
                raise _SourceChanged()

        try:
            self._write(self.image_path(name), copy, f"{IMAGES}/{name}")
        except _SourceError as error:
            self._release(name)
            raise PermanentError(f"cannot read the image {delivery.image.path}: {_reason(error.error)}") from None
        except _SourceChanged:
            self._release(name)
            raise RetryableError(f"{delivery.image.path} changed while it was being copied") from None
        except BaseException:
            self._release(name)
            raise

    def _write_json(self, path: str, document: Any, what: str, indent: int | None = 2) -> None:
        separators = (",", ":") if indent is None else None
        data = json.dumps(document, ensure_ascii=False, indent=indent, separators=separators, default=str)
        self._write(path, lambda handle: handle.write(data.encode("utf-8")), what)

    def _write(self, path: str, write: Callable[[BinaryIO], Any], what: str) -> None:
        relative = os.path.relpath(path, self.root).replace(os.sep, "/")
        if self._ownership is not None and self._ownership.is_users(relative) and relative not in INDEX_FILES:
            raise PermanentError(f"not writing {relative} in {self.root}: it is the user's file")  # a bug if ever seen
        try:
            _atomic_write(path, write)
        except OSError as error:
            raise PermanentError(f"cannot write {what} in {self.root}: {_reason(error)}") from None

    # -- rebuilding the index files ----------------------------------------------------------

    def _load_items(self, stale: set[str] | None = None) -> list["StoredImage"]:
        """Every record whose image is still in images/, one per file name, sorted by name (the
        names of records whose image is gone are added to ``stale``)."""
        items: dict[str, StoredImage] = {}
        folder = self._path(RECORDS)
        try:
            entries = sorted(os.listdir(folder))
        except OSError as error:
            raise PermanentError(f"cannot list the records in {folder}: {_reason(error)}") from None
        for entry in entries:
            if not _RECORD_NAME.match(entry):
                continue
            path = os.path.join(folder, entry)
            try:
                item = StoredImage.from_record(_read_json(path, strict=True))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("skipping the record %s: %s", path, error)
                continue
            if not os.path.isfile(self.image_path(item.file_name)):
                log.info("skipping %s: the image is no longer in %s", item.file_name, self._path(IMAGES))
                if stale is not None:
                    stale.add(item.file_name)
                continue
            items.setdefault(item.file_name, item)
        return [items[name] for name in sorted(items)]


class _SourceError(Exception):
    def __init__(self, error: OSError) -> None:
        self.error = error


class _SourceChanged(Exception):
    pass


# -- records ---------------------------------------------------------------------------------


def _record(delivery: Delivery, name: str) -> dict[str, Any]:
    prediction = delivery.prediction
    return {
        "format": RECORD_FORMAT,
        "sha256": delivery.key,
        "file_name": name,
        "width": prediction.width,
        "height": prediction.height,
        "model_id": prediction.model_id,
        "prediction": prediction.to_json(),
        "tags": list(delivery.tags),
        "metadata": delivery.metadata,
        "score": delivery.decision.score,
        "reasons": list(delivery.decision.reasons),
        "source": delivery.image.source,
    }


@dataclass(frozen=True)
class StoredImage:
    """One record, as close() needs it."""

    file_name: str
    width: int
    height: int
    detections: list[Detection]
    model_id: str | None
    score: float | None
    reasons: list[str]
    tags: list[str]
    source: str | None
    sha256: str
    #: The prediction's task, and a classifier's every class (the index files follow them).
    task: str = OBJECT_DETECTION
    class_scores: list[ClassScore] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: Any) -> "StoredImage":
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        name = record["file_name"]
        if not isinstance(name, str) or not _is_plain_name(name):
            raise ValueError(f"file_name {name!r} is not a plain file name")
        try:
            prediction = Prediction.from_json(record["prediction"], check=True)
        except PredictionFormatError as error:
            raise ValueError(f"prediction: {error}") from None
        score = record.get("score")
        return cls(
            file_name=name,
            width=int(record.get("width", prediction.width)),
            height=int(record.get("height", prediction.height)),
            detections=prediction.detections,
            model_id=record.get("model_id", prediction.model_id),
            score=float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
            reasons=[str(reason) for reason in record.get("reasons") or []],
            tags=[str(tag) for tag in record.get("tags") or []],
            source=record.get("source"),
            sha256=str(record.get("sha256", "")),
            task=prediction.task,
            class_scores=prediction.class_scores,
        )


# -- the index files, built by :mod:`alpolicy.formats` ----------------------------------------

#: Kept importable from here (0.1's place): the one implementation is :func:`alpolicy.formats.coco.box`.
corner_box = coco.box


def _prediction(item: StoredImage) -> Prediction:
    """A record's prediction at the size the record gives (what every index file places it in)."""
    return Prediction(width=item.width, height=item.height, detections=item.detections, model_id=item.model_id,
                      task=item.task, class_scores=item.class_scores)


@dataclass(frozen=True)
class _Index:
    """What close() builds the index files of: the folder's task, its classes (of the boxes;
    of a classifier, every class it scored) and, for keypoints, each class's skeleton."""

    task: str
    classes: list[str]
    keypoints: dict[str, list[str]] | None

    @classmethod
    def of(cls, items: list[StoredImage], task: str) -> "_Index":
        predictions = [_prediction(item) for item in items]
        if family(task) == "classes":
            return cls(task, classification.classes(predictions), None)
        classes = sorted({d["class"] for p in predictions for d in p.detections})
        keypoints = None
        if task == KEYPOINT_DETECTION:
            keypoints = {name: [] for name in classes}
            keypoints.update(shapes.keypoint_names(predictions))
        return cls(task, classes, keypoints)

    @property
    def boxes(self) -> bool:
        """Whether the task has objects (COCO, YOLO), not class labels."""
        return family(self.task) != "classes"

    @property
    def kpt_count(self) -> int | None:
        return yolo.keypoint_count(self.classes, self.keypoints) if self.keypoints is not None else None

    def coco(self, items: Iterable[StoredImage]) -> dict[str, Any]:
        return coco_document(items, self.classes, datetime.now(timezone.utc), self.keypoints)


def coco_document(items: Iterable[StoredImage], classes: list[str], created: datetime,
                  keypoints: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """COCO of the stored images, named ``images/<name>`` (a keypoint dataset with ``keypoints``)."""
    return coco.document(((f"{IMAGES}/{item.file_name}", _prediction(item)) for item in items), classes, created,
                         keypoints=keypoints)


def yolo_labels(item: "StoredImage", classes: list[str], *, task: str | None = None, keypoints: int | None = None) -> str:
    """One line per object, normalised to 0..1 (Ultralytics' txt format; per task, see
    :mod:`alpolicy.formats.yolo`)."""
    return yolo.labels_text(_prediction(item), yolo.class_index(classes), task=task, keypoints=keypoints)


#: Ultralytics' dataset file: :func:`alpolicy.formats.yolo.data_yaml`.
yolo_data_yaml = yolo.data_yaml


def image_url(prefix: str, file_name: str) -> str:
    return f"{prefix}{IMAGES}/{urllib.parse.quote(file_name)}"


def labelstudio_task(item: StoredImage, url_prefix: str, from_name: str, to_name: str) -> dict[str, Any]:
    """The Label Studio task of one record (region ids seeded by its content and name)."""
    return labelstudio.task(_prediction(item), image_url(url_prefix, item.file_name),
                            from_name, to_name,
                            id_seed=f"{item.sha256}/{item.file_name}", score=item.score, reasons=item.reasons,
                            tags=item.tags, source=item.source)


def labelstudio_tasks(items: Iterable[StoredImage], url_prefix: str, from_name: str, to_name: str) -> list[dict[str, Any]]:
    """Tasks for Label Studio's JSON import, each with the model's regions as one prediction."""
    return [labelstudio_task(item, url_prefix, from_name, to_name) for item in items]


def labelstudio_config(classes: list[str], from_name: str, to_name: str, task: str = OBJECT_DETECTION,
                       keypoints: dict[str, list[str]] | None = None) -> str:
    """A labeling config for the tasks above: :func:`alpolicy.formats.labelstudio.config` of the
    task (the keypoint names of every class in one list, as its ``KeyPointLabels`` holds them)."""
    names = list(dict.fromkeys(name for skeleton in (keypoints or {}).values() for name in skeleton))
    return labelstudio.config(classes, from_name, to_name, task=task, keypoints=names)


# -- files -----------------------------------------------------------------------------------


def _atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """Write via a hidden temp file in the same folder, fsync, then rename over ``path``.

    The temp name is short and of fixed length (``.alp-<16 hex>.tmp``, 25 bytes), whatever
    ``path``'s name: a name that is legal (up to 255 bytes) must never fail because its temp
    name is longer. Hidden, it is never taken for an image (nor listed as one).
    The temp file is created with ``os.open(..., 0o666)`` rather than ``mkstemp`` so the umask
    decides its permissions (``mkstemp``'s 0600 would hide images from a web server serving DIR).
    """
    folder = os.path.dirname(path)
    temp = os.path.join(folder, f".alp-{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (POSIX); best effort, not possible everywhere."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_classes_csv(text: str) -> Any:
    try:
        return classification.read_csv(text)
    except ValueError as error:
        raise UsageError(f"{error}; merge it by hand") from None


def _read_json(path: str, *, strict: bool = False) -> Any:
    """The parsed file; ``None`` when absent or unreadable, unless ``strict``. Read strictly
    (:mod:`alpolicy.jsonsafe`: bounded, no ``NaN``, a :class:`ValueError` for 100,000 nested
    brackets): the folder may have been edited, or written by anyone."""
    try:
        return loads(read_file(path))
    except (OSError, ValueError):
        if strict:
            raise
        return None





def _candidates(source_name: str, sha: str, name_max: int = NAME_MAX) -> list[str]:
    """The base name, then ``<stem>-<sha8><ext>``, then (a name already taken by hand) the full hash.

    Every candidate fits the file system with the names derived from it: the image's own name and
    ``predictions/<stem>.json`` (the longest, ``labels/<stem>.txt`` is shorter) are at most
    ``name_max`` bytes. A base name too long for that (a legal 251..255-byte name) is not a
    candidate; its stem is cut, at a character boundary, to make room for the hash suffix.
    A name that is not valid UTF-8 is not a candidate either (the indexes are UTF-8 JSON): its
    :func:`display_path` (``bad\\xff``) is the stem of the hashed names.
    """
    name = source_name.lstrip(".") or "image"
    shown = display_path(name)
    path = PurePath(shown)
    stem, ext = path.stem, path.suffix
    candidates = [name] if shown == name and _fits(stem, ext, "", name_max) else []
    for suffix in (f"-{sha[:8]}", f"-{sha}"):
        cut = stem
        while cut and not _fits(cut, ext, suffix, name_max):
            cut = cut[:-1]
        candidates.append(f"{cut}{suffix}{ext}")
    return candidates


def _fits(stem: str, ext: str, suffix: str, name_max: int) -> bool:
    """Whether ``<stem><suffix><ext>`` and ``<stem><suffix>.json`` are both at most ``name_max`` bytes."""
    return len(os.fsencode(stem + suffix)) + max(len(os.fsencode(ext)), _STEM_SUFFIX) <= name_max


def _stem_key(name: str) -> str:
    return PurePath(name).stem.casefold()


def _is_plain_name(name: str) -> bool:
    """One file name in images/: not empty, not ``.``/``..``, no NUL and no path separator *of this
    system* (``/``; on Windows ``\\`` too). A backslash is an ordinary character on POSIX: a name
    holding one is a legal image name there and must be stored and indexed like any other."""
    separators = {"/", os.sep, os.altsep or "/"}
    return bool(name) and name not in (".", "..") and "\0" not in name and not any(sep in name for sep in separators)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def make_destination(target: str, options: DestinationOptions) -> FolderDestination:
    return FolderDestination(target, options)


@hookimpl
def alpolicy_destinations(register: Callable[[DestinationSpec], None]) -> None:
    register(DestinationSpec("folder", make_destination, "A folder: images + COCO + Label Studio tasks: folder:DIR",
                             options_schema=OPTIONS_SCHEMA))
