"""What a folder destination owns, and how it adds to a folder it does not (``merge``).

A folder destination rebuilds its index files (COCO, YOLO ``data.yaml``, the Label Studio tasks
and config) at every close, so writing into a folder that already holds someone's dataset would
replace their files -- and their YOLO labels would then point at the wrong classes. So the
destination writes only into a folder it owns, and says so in a marker, ``.alpolicy/folder.json``
(:data:`MARKER`): written on first use, it names the layout alpolicy writes. A folder is owned
when it is empty (files; empty sub-folders do not count), carries our marker, or holds records
of an earlier alpolicy (``.alpolicy/records/*.json``, written by nothing else: adopted, and the
marker written). Any other folder is refused unless ``merge`` is asked for.

Merging keeps every entry of the user's: the marker lists the files that were there
(``user_files``), which alpolicy never writes nor takes the name of, and each index file is
merged into at every close instead of replaced:

* ``data.yaml``: the ``names`` keep their indices, new classes are appended (so the user's
  ``labels/*.txt`` stay right, and ours are written with the merged indices); every other line
  of the file is kept as it is, and the file is not touched when no class is new.
* ``annotations.coco.json``: the user's images, annotations and categories keep their ids;
  new categories are appended with new ids, alpolicy's images (those naming an image it stored)
  are replaced by the current ones.
* ``labelstudio-config.xml``: the union of the labels (added to the ``RectangleLabels``).
* ``labelstudio-tasks.json``: the user's tasks kept, alpolicy's (by image URL) replaced.
* ``images/_classes.csv`` (a classifier's one-hot labels): the user's rows kept, their columns
  first, new classes appended; alpolicy's rows replaced. Class folders (``classes/<CLASS>/``)
  hold alpolicy's links beside the user's files, which are never touched.

A folder holds one task's pre-labels (:attr:`Ownership.task`, in the marker): boxes, a pose
dataset (``kpt_shape``) and a classifier's class files do not mix. A user's dataset tells its
kind by its files (:func:`user_family`); sending another kind is a one-line UsageError.

A file that cannot be read for merging is refused in one line when the run starts (and left as
it is if it breaks later), never overwritten.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable
from xml.etree import ElementTree

from ..errors import UsageError
from ..formats import classification, yolo
from ..policy.prediction import CLASSIFICATION_TASKS, KEYPOINT_DETECTION, TASKS
from ..io.jsonsafe import loads, read_file

MARKER = os.path.join(".alpolicy", "folder.json")
MARKER_FORMAT = 1
WRITTEN_BY = "alpolicy folder destination"
#: What a folder destination writes (the marker's ``owns``).
LAYOUT = ("images/", "predictions/", "labels/", "classes/", ".alpolicy/records/", ".alpolicy/folder.json",
          "annotations.coco.json", "labelstudio-tasks.json", "labelstudio-config.xml", "data.yaml",
          "images/_classes.csv")
#: The names listed in a refusal before "...".
SHOWN = 4


@dataclass
class Ownership:
    """How this destination may write its folder: it owns it, or merges into the user's files."""

    merged: bool = False
    #: Paths (relative, ``/``-separated) that were the user's when alpolicy first merged.
    user_files: frozenset[str] = field(default_factory=frozenset)
    #: The task of the pre-labels in the folder (one of TASKS), once the first one came.
    task: str | None = None
    #: A marker of an alpolicy from before tasks (0.x): its records are all object detection.
    legacy: bool = False

    def is_users(self, relative: str) -> bool:
        return relative in self.user_files


def marker_document(ownership: Ownership, *, adopted: bool = False) -> dict[str, Any]:
    from .. import __version__

    document: dict[str, Any] = {
        "format": MARKER_FORMAT,
        "written_by": WRITTEN_BY,
        "alpolicy": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "owns": list(LAYOUT),
        "merged": ownership.merged,
        "task": ownership.task,
    }
    if adopted:
        document["adopted"] = "records of an earlier alpolicy were found: the folder was its"
    if ownership.merged:
        document["note"] = ("the user's files are never written; the index files are merged into: "
                            "alpolicy's entries added, every other kept")
        document["user_files"] = sorted(ownership.user_files)
    return document


def read_marker(root: str) -> Ownership | None:
    """The ownership the marker records; ``None`` without a marker; UsageError for one that is not ours."""
    path = os.path.join(root, MARKER)
    if not os.path.lexists(path):
        return None
    try:
        document = loads(read_file(path))
    except (OSError, ValueError):  # JsonError too: 100,000 brackets are not ours either
        document = None
    if (not isinstance(document, dict) or document.get("written_by") != WRITTEN_BY
            or not isinstance(document.get("format"), int) or document["format"] > MARKER_FORMAT):
        raise UsageError(f"folder {root} has a {MARKER} that this alpolicy did not write: choose another folder")
    files = document.get("user_files") or []
    task = document.get("task")
    return Ownership(merged=bool(document.get("merged")), user_files=frozenset(str(f) for f in files),
                     task=task if task in TASKS else None, legacy="task" not in document)


def family(task: str) -> str:
    """What a task's files are: ``classes`` (class folders and CSV), ``keypoints`` (a pose
    dataset: its YOLO lines need ``kpt_shape``) or ``boxes`` (detection, segmentation)."""
    if task in CLASSIFICATION_TASKS:
        return "classes"
    return "keypoints" if task == KEYPOINT_DETECTION else "boxes"


def user_family(files: Iterable[str], coco: dict[str, Any] | None, data_yaml: str | None) -> str | None:
    """The kind of labels a user's dataset holds, told by its files (``None``: images only)."""
    listed = set(files)
    if any(f.startswith("classes/") for f in listed) or f"images/{classification.CSV_FILE}" in listed:
        return "classes"
    if data_yaml is not None and any(line.startswith("kpt_shape:") for line in data_yaml.splitlines()):
        return "keypoints"
    if coco is not None and any(isinstance(c.get("keypoints"), list) and c["keypoints"] for c in coco.get("categories", [])):
        return "keypoints"
    if coco is not None or data_yaml is not None or any(f.startswith("labels/") for f in listed):
        return "boxes"
    return None


def task_mismatch(root: str, task: str, held: str | None, theirs: str | None = None) -> UsageError | None:
    """The one-line refusal of sending ``task`` pre-labels to a folder holding ``held`` ones (or
    a user's dataset of kind ``theirs``); ``None`` when they go together."""
    if held is not None and held != task:
        return UsageError(f"folder {root} holds {held} pre-labels; these are {task}: "
                          "send them to another folder (one task per folder)")
    if theirs is not None and theirs != family(task):
        kinds = {"classes": "class folders / _classes.csv", "keypoints": "keypoints (kpt_shape)", "boxes": "boxes"}
        return UsageError(f"folder {root} holds a dataset of {kinds[theirs]}; these are {task} pre-labels: "
                          "send them to another folder")
    return None


def user_files(root: str) -> list[str]:
    """Every file under ``root`` (relative, ``/``-separated, sorted); empty folders do not count."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        relative = os.path.relpath(folder, root)
        for name in files:
            found.append(name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}")
    return sorted(found)


def foreign_summary(files: Iterable[str]) -> str:
    """``data.yaml, images/, labels/, ...``: the top-level entries of ``files``."""
    tops = sorted({path.split("/", 1)[0] + ("/" if "/" in path else "") for path in files})
    shown = ", ".join(tops[:SHOWN])
    return shown + (", ..." if len(tops) > SHOWN else "")


def parse_merge(value: Any) -> bool:
    """``merge``: a bool, or its spelling on the command line (``--to-opt merge=true``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise UsageError(f"folder option merge should be true or false, got {value!r}")


# -- YOLO data.yaml --------------------------------------------------------------------------

_TOP_KEY = re.compile(r"^(names|nc)\s*:(.*)$")


@dataclass(frozen=True)
class YamlNames:
    """The class names of a ``data.yaml`` and where they are, to replace only that block."""

    names: list[str]
    start: int  # line index of ``names:``
    end: int  # line index after its block
    nc_line: int | None


def read_yaml_names(text: str, what: str = "data.yaml") -> YamlNames:
    """The ``names`` of an Ultralytics ``data.yaml``: a block mapping (``0: car``), a block list
    (``- car``), or a flow list or mapping on one line. Anything else is a UsageError: alpolicy
    does not parse YAML, and guessing would misnumber the user's classes."""
    lines = text.splitlines()
    start = nc_line = None
    for index, line in enumerate(lines):
        match = _TOP_KEY.match(line)
        if match and match.group(1) == "nc":
            nc_line = index
        elif match:
            if start is not None:
                raise UsageError(f"{what} has two names: keys; merge it by hand")
            start = index
    if start is None:
        raise UsageError(f"{what} has no top-level names: to add classes to; merge it by hand")
    inline = _strip_comment(_TOP_KEY.match(lines[start]).group(2)).strip()  # type: ignore[union-attr]
    end = start + 1
    if inline:
        names = _flow_names(inline, what)
    else:
        entries: list[tuple[int | None, str]] = []
        # the block: indented lines (comments too), ``- item`` lines, blank lines; a top-level key
        # or comment ends it
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "\t", "-"))):
            item = _strip_comment(lines[end]).strip()
            end += 1
            if not item:
                continue
            if item.startswith("- ") or item == "-":
                entries.append((None, _scalar(item[1:].strip(), what)))
            else:
                key, sep, value = item.partition(":")
                if not sep or not key.strip().isdigit():
                    raise UsageError(f"{what}: cannot read the class name line {item!r}; merge it by hand")
                entries.append((int(key), _scalar(value.strip(), what)))
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        names = _numbered(entries, what)
    return YamlNames(names, start, end, nc_line)


def _numbered(entries: list[tuple[int | None, str]], what: str) -> list[str]:
    if all(key is None for key, _ in entries):
        return [name for _, name in entries]
    keys = [key for key, _ in entries]
    if keys != list(range(len(entries))):
        raise UsageError(f"{what}: the class indices should be 0, 1, 2... in order, got {keys}; merge it by hand")
    return [name for _, name in entries]


def _flow_names(text: str, what: str) -> list[str]:
    if not (text[:1] in "[{" and text[-1:] == {"[": "]", "{": "}"}.get(text[:1])):
        raise UsageError(f"{what}: cannot read names: {text!r}; merge it by hand")
    items = [item.strip() for item in _split_flow(text[1:-1], what) if item.strip()]
    if text[0] == "[":
        return [_scalar(item, what) for item in items]
    entries = []
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip().isdigit():
            raise UsageError(f"{what}: cannot read the class name {item!r}; merge it by hand")
        entries.append((int(key), _scalar(value.strip(), what)))
    return _numbered(entries, what)


def _split_flow(text: str, what: str) -> list[str]:
    """Split on commas outside quotes."""
    parts, current, quote = [], "", ""
    for char in text:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote, current = char, current + char
        elif char == ",":
            parts.append(current)
            current = ""
        elif char in "[]{}":
            raise UsageError(f"{what}: cannot read nested names; merge it by hand")
        else:
            current += char
    if quote:
        raise UsageError(f"{what}: an unclosed quote in names; merge it by hand")
    return parts + [current]


def _scalar(text: str, what: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            raise UsageError(f"{what}: cannot read the class name {text}; merge it by hand") from None
    if not text or text[0] in "'\"[]{}&*!|>%@`":
        raise UsageError(f"{what}: cannot read the class name {text!r}; merge it by hand")
    return text


def _strip_comment(text: str) -> str:
    """``text`` without a `` # comment`` outside quotes."""
    quote, escaped = "", False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quote:
            escaped = quote == '"' and char == "\\"
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            return text[:index]
    return text


def merge_data_yaml(text: str, classes: Iterable[str], kpt_count: int | None = None) -> tuple[str | None, list[str]]:
    """The user's ``data.yaml`` with ``classes`` appended to its names (``None``: nothing to
    change, the file stays byte for byte), and the merged names. A pose dataset's
    (``kpt_count``: its ``K``) must have the same ``kpt_shape``: else a UsageError."""
    if kpt_count is not None:
        shape = next((line for line in text.splitlines() if line.startswith("kpt_shape:")), None)
        wanted = f"[{kpt_count}, 3]"
        if shape is None or _strip_comment(shape.split(":", 1)[1]).replace(" ", "") != wanted.replace(" ", ""):
            raise UsageError(f"data.yaml's kpt_shape is not {wanted}, the model's keypoints; merge it by hand")
    found = read_yaml_names(text)
    merged = list(found.names) + [name for name in classes if name not in found.names]
    if len(merged) == len(found.names):
        return None, merged
    lines = text.splitlines()
    block = yolo.names_lines(merged, ascii_only=False)
    if found.nc_line is not None:
        lines[found.nc_line] = f"nc: {len(merged)}"
    lines[found.start:found.end] = block
    return "\n".join(lines) + "\n", merged


# -- COCO ------------------------------------------------------------------------------------


def read_coco(text: bytes, what: str = "annotations.coco.json") -> dict[str, Any]:
    try:
        document = loads(text, max_bytes=None, finite=False)  # theirs: any size; NaN kept as they wrote it
    except ValueError as error:
        raise UsageError(f"{what} is not JSON ({error}); merge it by hand") from None
    if not isinstance(document, dict) or not all(
            isinstance(document.get(key, []), list) for key in ("images", "annotations", "categories")):
        raise UsageError(f"{what} is not a COCO document (an object with images, annotations, categories lists); merge it by hand")
    for key in ("images", "annotations", "categories"):
        for entry in document.get(key, []):
            if not isinstance(entry, dict) or isinstance(entry.get("id"), bool) or not isinstance(entry.get("id"), int):
                raise UsageError(f"{what}: every entry of {key} should be an object with a whole-number id; merge it by hand")
    return document


def merge_coco(current: dict[str, Any], ours: dict[str, Any], our_files: set[str]) -> dict[str, Any]:
    """``current`` (the user's COCO, with alpolicy's entries of an earlier close) with ``ours``
    (a fresh :func:`alpolicy.formats.coco.document`) merged in: the user's ids kept,
    alpolicy's images (``file_name`` in ``our_files``) and their annotations replaced."""
    document = dict(current)
    categories = [dict(c) for c in current.get("categories", [])]
    by_name = {}
    for category in categories:
        by_name.setdefault(category.get("name"), category["id"])
    next_category = max((c["id"] for c in categories), default=0) + 1
    category_of: dict[int, int] = {}
    for category in ours["categories"]:
        if category["name"] not in by_name:
            by_name[category["name"]] = next_category
            categories.append({**category, "id": next_category})
            next_category += 1
        category_of[category["id"]] = by_name[category["name"]]
    old_ours = {image["file_name"]: image["id"] for image in current.get("images", []) if image.get("file_name") in our_files}
    images = [image for image in current.get("images", []) if image.get("file_name") not in our_files]
    kept_ids = {image["id"] for image in images}
    replaced = set(old_ours.values())
    annotations = [a for a in current.get("annotations", []) if a.get("image_id") not in replaced]
    next_image = max(kept_ids | replaced, default=0) + 1
    image_of: dict[int, int] = {}
    for image in ours["images"]:
        new_id = old_ours.get(image["file_name"])
        if new_id is None or new_id in kept_ids:
            new_id, next_image = next_image, next_image + 1
        image_of[image["id"]] = new_id
        images.append({**image, "id": new_id})
    next_annotation = max((a["id"] for a in annotations), default=0) + 1
    for index, annotation in enumerate(ours["annotations"]):
        annotations.append({**annotation, "id": next_annotation + index, "image_id": image_of[annotation["image_id"]],
                            "category_id": category_of[annotation["category_id"]]})
    document.update(images=images, annotations=annotations, categories=categories)
    document.setdefault("info", ours["info"])
    document.setdefault("licenses", [])
    return document


# -- classification --------------------------------------------------------------------------


def merge_classes_csv(current: str, ours: dict[str, list[str]], columns: Iterable[str]) -> str | None:
    """The user's ``_classes.csv`` with alpolicy's rows (``ours``: file name -> classes)
    replacing any of the same file, the user's columns first and new ones appended (``None``:
    nothing changes)."""
    try:
        theirs_columns, theirs = classification.read_csv(current)
    except ValueError as error:
        raise UsageError(f"{error}; merge it by hand") from None
    merged_columns = list(theirs_columns) + [c for c in columns if c not in theirs_columns]
    rows = {**theirs, **ours}
    text = classification.rows_text(rows.items(), merged_columns)
    return None if text == current else text


# -- Label Studio ----------------------------------------------------------------------------


def read_labelstudio_config(text: bytes, from_name: str, what: str = "labelstudio-config.xml") -> tuple[ElementTree.Element, ElementTree.Element]:
    """The user's labeling config and the ``RectangleLabels`` to add labels to (the one named
    ``from_name``, else the first)."""
    try:
        root = ElementTree.fromstring(text, parser=ElementTree.XMLParser(target=ElementTree.TreeBuilder(insert_comments=True)))
    except ElementTree.ParseError as error:
        raise UsageError(f"{what} is not XML ({error}); merge it by hand") from None
    controls = list(root.iter("RectangleLabels"))
    if not controls:
        raise UsageError(f"{what} has no <RectangleLabels> to add the boxes' labels to; merge it by hand")
    control = next((c for c in controls if c.get("name") == from_name), controls[0])
    return root, control


def merge_labelstudio_config(text: bytes, classes: Iterable[str], from_name: str) -> tuple[bytes | None, list[str]]:
    """The user's config with the labels it lacks added (``None``: nothing to add), and the union."""
    root, control = read_labelstudio_config(text, from_name)
    labels = [label.get("value") or "" for label in control.iter("Label")]
    missing = [name for name in classes if name not in labels]
    if not missing:
        return None, labels
    child_indent = control.text if _blank(control.text) else "\n    "
    closing = control[-1].tail if len(control) and _blank(control[-1].tail) else "\n  "
    for name in missing:
        if len(control):
            control[-1].tail = child_indent
        else:
            control.text = child_indent
        ElementTree.SubElement(control, "Label", {"value": name})
    control[-1].tail = closing
    return ElementTree.tostring(root, encoding="unicode").encode("utf-8") + b"\n", labels + missing


def _blank(text: str | None) -> bool:
    """Whitespace between elements (the indentation new labels copy)."""
    return text is not None and not text.strip()


def read_tasks(text: bytes, what: str = "labelstudio-tasks.json") -> list[Any]:
    try:
        document = loads(text, max_bytes=None, finite=False)  # theirs: any size; NaN kept as they wrote it
    except ValueError as error:
        raise UsageError(f"{what} is not JSON ({error}); merge it by hand") from None
    if not isinstance(document, list):
        raise UsageError(f"{what} is not a list of Label Studio tasks; merge it by hand")
    return document


def merge_tasks(current: list[Any], ours: list[dict[str, Any]], our_urls: set[str]) -> list[Any]:
    """The user's tasks (those not showing an image alpolicy stored), then alpolicy's."""
    def is_ours(task: Any) -> bool:
        data = task.get("data") if isinstance(task, dict) else None
        return isinstance(data, dict) and data.get("image") in our_urls

    return [task for task in current if not is_ours(task)] + ours
