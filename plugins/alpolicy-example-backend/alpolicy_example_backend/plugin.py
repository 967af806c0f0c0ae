"""The plugin module named by the ``alpolicy`` entry point in pyproject.toml.

A backend plugin does three things: write the backend (subclass :class:`alpolicy.InferenceBackend`
and write ``predict``), declare its own settings as an options schema, and register both in the
``alpolicy_inference_backends`` hook. See docs/plugins.md in the alpolicy repository.

The ``csv:`` backend answers, for each image, the boxes a CSV file lists for it: predictions made
by another tool, exported as one row per detection::

    image,class,confidence,x,y,width,height
    frame_001.jpg,car,0.91,320.5,240,64,48

``x``/``y`` are the box centre and ``width``/``height`` its size, in pixels of the image;
``confidence`` is in 0..1; ``image`` is the file's name (names are unique in the run's images).
Other columns are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from typing import Any, Callable

import alpolicy

#: The columns a row must have.
COLUMNS = ("image", "class", "confidence", "x", "y", "width", "height")
_NUMBERS = ("confidence", "x", "y", "width", "height")

#: The backend's own settings, ``ModelOptions.extra`` (``--model-opt KEY=VALUE``): alpolicy checks
#: them against this schema before the factory runs, and ``alpolicy options csv`` lists them.
OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "csv backend options",
    "type": "object",
    "properties": {
        "missing": {"enum": ["fail", "empty"], "default": "fail",
                    "description": "an image the CSV does not list: fail it, or answer no detection"},
        "min_confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0,
                           "description": "leave out the rows below this confidence"},
    },
}


class CsvBackend(alpolicy.InferenceBackend):
    """Predictions read once, when the backend is built.

    Thread-safety: the pipeline calls ``predict`` from several threads at once. This backend
    never changes anything after ``__init__`` (``predict`` only reads ``self.rows``), so it
    needs no lock; a backend holding a client or a session that is not thread-safe keeps one per
    thread (``threading.local``) or serialises its calls with a ``threading.Lock``.
    """

    def __init__(self, target: str, options: alpolicy.ModelOptions) -> None:
        self.path = os.path.abspath(os.path.expanduser(target))
        self.missing = options.extra.get("missing", "fail")
        self.min_confidence = float(options.extra.get("min_confidence", 0))
        data = _read(self.path)
        self.rows = _parse(data.decode("utf-8-sig"), self.path, self.min_confidence)
        self.model_id = f"csv:{target}"
        # Stored predictions are keyed by the fingerprint: everything that changes the answers goes
        # in -- the file's content (a re-exported CSV is another model) and both options.
        self.fingerprint_settings = {"sha256": hashlib.sha256(data).hexdigest(), "missing": self.missing,
                                     "min_confidence": self.min_confidence}
        self.fingerprint = alpolicy.fingerprint("csv", self.model_id, self.fingerprint_settings)

    def predict(self, image: alpolicy.ImageFile) -> alpolicy.Prediction:
        boxes = self.rows.get(image.name)
        if boxes is None and self.missing == "fail":
            raise alpolicy.ImageError(f"{os.path.basename(self.path)} has no row for {image.name}")
        width, height = image.check()  # the header only; a broken file is an ImageDecodeError: it fails
        # A fresh list of fresh dicts each time: rules and destinations may change what they get.
        return alpolicy.Prediction(width, height, [dict(box) for box in boxes or ()], self.model_id)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:  # a mistake of the user's: one line, exit 2
        raise alpolicy.UsageError(f"cannot read the CSV {path}: {error.strerror or error}") from None


def _parse(text: str, path: str, min_confidence: float) -> dict[str, list[dict[str, Any]]]:
    """The boxes of each image name; a malformed file is a one-line :class:`UsageError` at its line."""
    reader = csv.DictReader(io.StringIO(text))
    absent = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
    if absent:
        raise alpolicy.UsageError(f"{path}: the header lacks the column(s) {', '.join(absent)}; "
                                  f"expected {','.join(COLUMNS)}")
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in reader:
        line = reader.line_num
        try:
            box: dict[str, Any] = {key: float(row[key]) for key in _NUMBERS}
        except (TypeError, ValueError):
            bad = next(key for key in _NUMBERS if not _is_number(row[key]))
            raise alpolicy.UsageError(f"{path}, line {line}: {bad} {row[bad]!r} is not a number") from None
        if not 0 <= box["confidence"] <= 1:
            raise alpolicy.UsageError(f"{path}, line {line}: confidence {row['confidence']} is not within 0..1")
        box["class"] = row["class"]
        if box["confidence"] >= min_confidence:
            rows.setdefault(row["image"], []).append(box)
        else:
            rows.setdefault(row["image"], [])  # listed, with nothing left: not "missing"
    return rows


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def make_backend(target: str, options: alpolicy.ModelOptions) -> CsvBackend:
    return CsvBackend(target, options)


@alpolicy.hookimpl
def alpolicy_inference_backends(register: Callable[[alpolicy.InferenceBackendSpec], None]) -> None:
    register(alpolicy.InferenceBackendSpec(
        "csv", make_backend, "Predictions listed in a CSV file, one row per box: csv:PREDICTIONS.csv",
        options_schema=OPTIONS_SCHEMA,
    ))
