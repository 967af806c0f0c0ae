"""The plugin module named by the ``alpolicy`` entry point in pyproject.toml.

A destination plugin does three things: write the destination (subclass
:class:`alpolicy.Destination` and write ``send``), declare its own settings as an options schema,
and register both in the ``alpolicy_destinations`` hook. See docs/plugins.md in the alpolicy
repository.

The ``jsonl:`` destination appends one JSON object per qualifying image to a file -- a queue
another program reads (``tail -f``, a labeling tool's importer)::

    {"key": "9f86d0…", "image": "frames/frame_001.jpg", "width": 640, "height": 480,
     "detections": [...], "tags": [...], "metadata": {...}}

What the contract asks of a destination, and how this one does it:

* **Idempotent**: alpolicy sends again whatever it did not see finish (a crash, Ctrl-C), so a
  delivery already in the file must not be written twice. The file is the truth: the keys
  (``delivery.key``, the image content's sha256) already in it are read when the first delivery
  comes, and a key seen is answered ``Receipt(..., duplicate=True)`` without writing.
* **Atomic append**: each line is one ``os.write`` to a file opened with ``O_APPEND``, under a
  lock, so that lines from several threads never interleave. A line cut short by a crash (no
  newline at the end of the file) is ended before the next one is written and is skipped when
  the file is read back: the delivery it held was not recorded as sent, and is sent again.
* **Thread-safe**: ``send`` is called from several threads at once; the lock guards the keys
  and the file.
* **One step**: the item exists once its line is written, so ``delivery.checkpoint`` is not
  needed (a destination that uploads, then annotates, calls it between the two).
* **Failures**: an ``OSError`` while writing (a full disk) is a :class:`alpolicy.RetryableError`:
  the image stays pending and the next run sends it. A folder that cannot be written fails
  ``check()`` before the first image, in one line.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable

import alpolicy

#: The destination's own settings, ``DestinationOptions.extra`` (``--to-opt KEY=VALUE``): alpolicy
#: checks them against this schema before the factory runs, and ``alpolicy options jsonl`` lists them.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "jsonl destination options",
    "type": "object",
    "properties": {
        "detections": {"type": "boolean", "default": True,
                       "description": "write the predicted boxes (the pre-labels) in each line"},
        "fsync": {"type": "boolean", "default": False,
                  "description": "flush every line to the disk before it counts as sent (survives a power cut; slower)"},
    },
}


class JsonLinesDestination(alpolicy.Destination):
    """One JSON line per image in ``target``, a file; its folder must exist."""

    def __init__(self, target: str, options: alpolicy.DestinationOptions) -> None:
        self.path = os.path.abspath(os.path.expanduser(target))
        #: The journal keys deliveries by the destination's name: the absolute path, so that the same
        #: file reached from another working directory is the same destination.
        self.name = f"jsonl:{self.path}"
        self.detections = bool(options.extra.get("detections", True))
        self.fsync = bool(options.extra.get("fsync", False))
        self._lock = threading.Lock()
        self._keys: set[str] | None = None  # read from the file when the first delivery comes
        self._fd: int | None = None

    def check(self) -> None:
        """Before the first image: a folder that is not there or not writable stops the run in one line."""
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise alpolicy.UsageError(f"jsonl: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK) or (os.path.exists(self.path) and not os.access(self.path, os.W_OK)):
            raise alpolicy.UsageError(f"jsonl: cannot write to {self.path}")

    #: ``check`` writes nothing: a dry run may call it too.
    check_read_only = check

    def send(self, delivery: alpolicy.Delivery) -> alpolicy.Receipt:
        line = json.dumps(self._record(delivery), ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                keys = self._open()
                if delivery.key in keys:
                    return alpolicy.Receipt(delivery.key, duplicate=True)
                os.write(self._fd, line.encode("utf-8"))  # type: ignore[arg-type]
                if self.fsync:
                    os.fsync(self._fd)  # type: ignore[arg-type]
            except OSError as error:  # a full disk may be freed: the image stays pending
                raise alpolicy.RetryableError(f"cannot write {self.path}: {error.strerror or error}") from None
            keys.add(delivery.key)
        return alpolicy.Receipt(delivery.key)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _record(self, delivery: alpolicy.Delivery) -> dict[str, Any]:
        prediction = delivery.prediction
        record: dict[str, Any] = {"key": delivery.key, "image": delivery.image.display_path,
                                  "width": prediction.width, "height": prediction.height}
        if self.detections:
            record["detections"] = prediction.detections
        record.update(tags=delivery.tags, metadata=delivery.metadata)
        return record

    def _open(self) -> set[str]:
        """The keys already in the file, read once; the file opened for appending (under the lock)."""
        if self._keys is None:
            self._keys = read_keys(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if _ends_torn(self.path):  # a crash cut the last line: end it, or the next would join it
                os.write(self._fd, b"\n")
        return self._keys


def read_keys(path: str) -> set[str]:
    """The ``key`` of every complete line of ``path`` (none when it does not exist yet)."""
    keys: set[str] = set()
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                try:
                    keys.add(json.loads(raw)["key"])
                except (ValueError, KeyError, TypeError):  # a line cut short by a crash: not sent
                    continue
    except FileNotFoundError:
        pass
    return keys


def _ends_torn(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def make_destination(target: str, options: alpolicy.DestinationOptions) -> JsonLinesDestination:
    return JsonLinesDestination(target, options)


@alpolicy.hookimpl
def alpolicy_destinations(register: Callable[[alpolicy.DestinationSpec], None]) -> None:
    register(alpolicy.DestinationSpec(
        "jsonl", make_destination, "One JSON line per image, appended to a file: jsonl:QUEUE.jsonl",
        options_schema=OPTIONS_SCHEMA,
    ))
