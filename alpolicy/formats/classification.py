"""A classifier's labels as a folder: a folder per class (single-label) and a one-hot
``_classes.csv`` (both tasks), the two classification layouts Roboflow exports.

* Folder structure: ``<root>/<CLASS>/<image>`` for each image's top class: what Roboflow's
  "Folder Structure" export holds per split and ``supervision.ClassificationDataset.
  from_folder_structure(root)`` (and Ultralytics' classification datasets) read. A multi-label
  image belongs to several classes at once, which folders cannot say: only the CSV holds those.
* ``_classes.csv``: Roboflow's "Multi-Label Classification CSV" (and "Multiclass Classification
  CSV"), beside the images it names: a header ``filename, CLASS1, CLASS2, ...`` and one row per
  image, ``NAME, 0, 1, ...`` (1: a predicted class). Fields are separated by ``", "`` as
  Roboflow writes them; a field holding a comma, a quote or outer spaces is double-quoted, CSV
  style (read it with ``csv.reader(f, skipinitialspace=True)``). An image with no predicted class
  has a row of zeros, and no class folder.

Class names become folder names: a name that cannot be one (empty, ``.``/``..``, a leading dot
that hides it from loaders, ``/``, a NUL, over 255 bytes) is percent-encoded (``a/b`` ->
``a%2Fb``), cut with a hash suffix when too long. Pure functions, no I/O.
"""

from __future__ import annotations

import csv
import hashlib
from typing import Iterable, Sequence

from ..policy.prediction import CLASSIFICATION, Prediction

CSV_FILE = "_classes.csv"
#: The longest folder name, in bytes, on every common file system.
NAME_MAX = 255
_SPECIAL = ',"\r\n'


def classes(predictions: Iterable[Prediction]) -> list[str]:
    """Every class any of the predictions scored (or predicted), sorted: the CSV's columns."""
    found = set()
    for prediction in predictions:
        found.update(entry["class"] for entry in prediction.class_scores)
        found.update(entry["class"] for entry in prediction.detections)
    return sorted(found)


def predicted(prediction: Prediction) -> list[str]:
    """The classes a prediction labels its image with: the top class (single-label) or every
    predicted class (multi-label)."""
    return list(dict.fromkeys(entry["class"] for entry in prediction.detections))


def folder_class(prediction: Prediction) -> str | None:
    """The class folder of a single-label prediction's image (its top class); ``None`` for a
    multi-label prediction or no class."""
    return prediction.top if prediction.task == CLASSIFICATION else None


def folder_name(name: str) -> str:
    """A class name as one folder name (see the module docstring)."""
    encoded = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("\0", "%00")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if not encoded:
        encoded = "%"  # the empty name (no other name encodes to a lone %)
    if len(encoded.encode("utf-8")) > NAME_MAX:
        suffix = "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        while len(encoded.encode("utf-8")) + len(suffix) > NAME_MAX:
            encoded = encoded[:-1]
        encoded += suffix
    return encoded


def _field(text: str) -> str:
    if any(char in text for char in _SPECIAL) or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_text(rows: Iterable[tuple[str, Prediction]], columns: Sequence[str]) -> str:
    """The ``_classes.csv`` of ``(file name, prediction)`` rows over ``columns`` (:func:`classes`)."""
    return rows_text(((name, predicted(prediction)) for name, prediction in rows), columns)


def rows_text(rows: Iterable[tuple[str, Iterable[str]]], columns: Sequence[str]) -> str:
    """The ``_classes.csv`` of ``(file name, its classes)`` rows over ``columns``."""
    lines = [", ".join(_field(text) for text in ["filename", *columns])]
    for name, labels in rows:
        chosen = set(labels)
        lines.append(", ".join([_field(name)] + ["1" if column in chosen else "0" for column in columns]))
    return "\n".join(lines) + "\n"


def read_csv(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The columns of a ``_classes.csv`` and each file's classes (its columns holding 1)."""
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "filename":
        raise ValueError(f"{CSV_FILE} should start with a header 'filename, CLASS1, CLASS2, ...'")
    columns = rows[0][1:]
    labels = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(columns) + 1:
            raise ValueError(f"{CSV_FILE} line {number}: {len(row)} fields, the header has {len(columns) + 1}")
        labels[row[0]] = [column for column, value in zip(columns, row[1:]) if value.strip() == "1"]
    return columns, labels
