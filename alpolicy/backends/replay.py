"""Predictions stored earlier, replayed without calling any model (``replay:DIR``, ``replay:FILE.json``).

Why: trying a policy on a folder should not cost a model call per image each time the policy
changes, and predictions made elsewhere (another tool, an earlier run) are worth reusing.

Three sources:

* ``replay:DIR``: one Roboflow inference JSON per image (``{"image": {"width", "height"},
  "predictions": [...]}``), looked up as ``DIR/<image stem>.json``, then ``DIR/<image name>.json``
  (``frame.jpg.json``; use it when ``frame.jpg`` and ``frame.png`` sit side by side). The
  ``predictions/`` folder a ``folder:`` destination writes is such a DIR.
* ``replay:sidecar``: the same lookups beside each image (``replay:./sidecar`` names a folder
  called ``sidecar``).
* ``replay:FILE.json``: a COCO dataset file (``images``, ``categories``, ``annotations`` with
  ``bbox`` ``[x_min, y_min, w, h]`` and ``score``: COCO results merged into the dataset file, what
  most tools export). Images are matched by the base name of ``file_name``; ``confidence`` is the
  ``score`` (1.0 when absent), ``class``/``class_id`` the category name/id; a ``segmentation``
  polygon (or RLE) is the detection's ``points`` (``rle``), COCO ``keypoints`` its keypoints,
  named by the category (:func:`alpolicy.formats.coco.detection`). Read once, at start.

Relative paths are resolved against the current directory when the backend is built. A stored
prediction's own ``model_id`` is kept; otherwise the prediction carries ``replay:TARGET``.

Fingerprint (what keys the predictions the journal keeps of a replay): the absolute source path,
plus for a COCO file its content hash and for a DIR a hash of its listing (name, size and
modification time of every ``.json``), so that a changed, added or removed prediction file makes
the next run read the files again instead of reusing the journal's copy. ``replay:sidecar`` has
no one place to list: its fingerprint is fixed, and a changed sidecar file needs a new journal.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, Protocol

from ..errors import UsageError
from ..formats import coco
from ..hookspecs import hookimpl
from ..io.images import ImageFile, sha256_file
from ..io.jsonsafe import DEFAULT_MAX_BYTES, JsonError, loads, read_file
from ..plugin_options import NO_OPTIONS
from ..policy.prediction import MAX_DETECTIONS, Detection, Prediction, PredictionFormatError
from ..registry import InferenceBackendSpec
from . import ImageError, InferenceBackend, ModelOptions, fingerprint

SIDECAR = "sidecar"


class _Source(Protocol):
    def predict(self, image: ImageFile) -> Prediction: ...


class ReplayBackend(InferenceBackend):
    """Thread-safe: every source is read-only once built."""

    def __init__(self, target: str, options: ModelOptions) -> None:
        self.model_id = f"replay:{target}"
        self.source = _open_source(target, _Limits(options.max_response_bytes, options.max_detections))
        self.fingerprint_settings = _identity(self.source)
        self.fingerprint = fingerprint("replay", self.model_id, self.fingerprint_settings)

    def predict(self, image: ImageFile) -> Prediction:
        prediction = self.source.predict(image)
        if prediction.model_id is None:
            prediction.model_id = self.model_id
        return prediction

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _Limits:
    """What one stored prediction may weigh: bytes per file, detections per image
    (:class:`~alpolicy.backends.ModelOptions`' ``max_response_bytes`` and ``max_detections``)."""

    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_detections: int | None = MAX_DETECTIONS


def _open_source(target: str, limits: _Limits = _Limits()) -> _Source:
    if target == SIDECAR:
        return JsonFolder(None, limits)
    path = os.path.abspath(os.path.expanduser(target))
    if os.path.isdir(path):
        return JsonFolder(path, limits)
    if os.path.isfile(path):
        return CocoFile.load(path, limits)
    raise UsageError(
        f"replay: {path} does not exist; give a folder of prediction JSON files (replay:DIR), "
        f"a COCO file (replay:FILE.json) or replay:{SIDECAR}"
    )


def _identity(source: _Source) -> dict[str, str]:
    """What the replayed predictions depend on (see the module docstring)."""
    if isinstance(source, CocoFile):
        try:
            return {"source": source.path, "sha256": sha256_file(source.path)}
        except OSError as error:
            raise UsageError(f"replay: cannot read {source.path}: {error.strerror or error}") from None
    if isinstance(source, JsonFolder) and source.folder is not None:
        return {"source": source.folder, "listing": _listing_digest(source.folder)}
    return {"source": SIDECAR}


def _listing_digest(folder: str) -> str:
    """sha256 of the sorted (name, size, mtime, mode) of the folder's ``.json`` files: one ``scandir``,
    no file read (hashing every file's content would cost a replay as much as the run itself)."""
    entries = []
    try:
        with os.scandir(folder) as scan:
            for entry in scan:
                if entry.name.lower().endswith(".json"):
                    entries.append(f"{entry.name}\0{_stat_line(entry)}")
    except OSError as error:
        raise UsageError(f"replay: cannot list {folder}: {error.strerror or error}") from None
    return hashlib.sha256("\n".join(sorted(entries)).encode("utf-8", "surrogateescape")).hexdigest()


def _stat_line(entry: os.DirEntry[str]) -> str:
    """Size and time of a file (through a symlink); a broken link or a loop is listed as such,
    not an error: the image it belongs to fails alone, when it is replayed."""
    try:
        stat = entry.stat()
    except OSError as error:
        return f"unreadable {error.errno}"
    return f"{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_mode}"


# -- one JSON per image ----------------------------------------------------------------------


@dataclass(frozen=True)
class JsonFolder:
    """``<stem>.json`` then ``<name>.json`` in ``folder``, or beside the image when ``folder`` is None."""

    folder: str | None
    limits: _Limits = _Limits()

    def predict(self, image: ImageFile) -> Prediction:
        folder = self.folder or os.path.dirname(os.path.abspath(image.path))
        for candidate in (f"{PurePath(image.name).stem}.json", f"{image.name}.json"):
            path = os.path.join(folder, candidate)
            try:
                content = read_file(path, max_bytes=self.limits.max_bytes)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except OSError as error:
                raise ImageError(f"cannot read the stored prediction {path}: {error.strerror or error}") from None
            except JsonError as error:
                raise ImageError(f"{path}: {error}") from None
            return _parse(path, content, self.limits)
        where = folder if self.folder else f"{folder} (beside the image)"
        raise ImageError(f"no stored prediction for {image.name} in {where}")


def _parse(path: str, content: bytes, limits: _Limits) -> Prediction:
    try:
        # NaN and 1e400 pass the parse, to be refused with their place by the validator.
        document = loads(content, max_bytes=limits.max_bytes, finite=False)
    except JsonError as error:
        raise ImageError(f"{path}: {error}") from None
    try:
        return Prediction.from_json(document, check=True, max_detections=limits.max_detections)
    except (PredictionFormatError, ValueError) as error:
        raise ImageError(f"{path}: not a Roboflow inference prediction: {error}") from None


# -- COCO ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CocoImage:
    id: Any
    file_name: str
    #: As the file gives them: checked when the image is replayed (one bad size fails its image).
    width: Any
    height: Any


@dataclass(frozen=True)
class CocoFile:
    """A COCO file indexed by image base name; annotations are checked per image, when replayed,
    so that one bad box fails its image only."""

    path: str
    images: dict[str, list[CocoImage]]
    categories: dict[Any, str]
    annotations: dict[Any, list[Any]]
    limits: _Limits = _Limits()
    #: A keypoint dataset's skeletons (category key -> names); ``None`` otherwise.
    keypoint_names: dict[Any, list[str]] | None = None
    #: The dataset's task, for an image without annotations (:func:`alpolicy.formats.coco.task`).
    task: str | None = None

    @classmethod
    def load(cls, path: str, limits: _Limits = _Limits()) -> "CocoFile":
        """Read and index the file. It is the user's dataset, read once: no size bound, and the
        JSON ``NaN``/``Infinity`` tokens and overflowing numbers are let through here, so that a
        bad score or size fails its image, located, when the image is replayed (not the run)."""
        try:
            document = loads(read_file(path, max_bytes=None), max_bytes=None, finite=False)
        except OSError as error:
            raise UsageError(f"replay: cannot read {path}: {error.strerror or error}") from None
        except JsonError as error:
            raise UsageError(f"replay: {path} is not valid JSON: {error}") from None
        _check_coco_shape(path, document)
        try:
            categories = coco.categories(document)
        except coco.CocoFormatError as error:
            raise UsageError(f"replay: {path}: {error}") from None
        images: dict[str, list[CocoImage]] = defaultdict(list)
        for index, entry in enumerate(document["images"]):
            image = _coco_image(path, index, entry)
            images[_base_name(image.file_name)].append(image)
        annotations: dict[Any, list[Any]] = defaultdict(list)
        for index, annotation in enumerate(document.get("annotations") or []):
            if not isinstance(annotation, dict) or "image_id" not in annotation:
                raise UsageError(f"replay: {path}: annotations[{index}] needs an image_id")
            annotations[coco.key(annotation["image_id"])].append(annotation)
        return cls(path, dict(images), categories, dict(annotations), limits,
                   coco.keypoint_names(document), coco.task(document))

    def predict(self, image: ImageFile) -> Prediction:
        entry = self._find(image)
        detections = [self._detection(entry, annotation) for annotation in self.annotations.get(coco.key(entry.id), [])]
        document = {"image": {"width": entry.width, "height": entry.height}, "predictions": detections}
        try:
            return Prediction.from_json(document, check=True, max_detections=self.limits.max_detections, task=self.task)
        except (PredictionFormatError, ValueError) as error:
            raise ImageError(f"{self.path}: annotations of {entry.file_name}: {error}") from None

    def _find(self, image: ImageFile) -> CocoImage:
        """By base name; several images of that name are told apart by the end of their path."""
        entries = self.images.get(image.name)
        if not entries:
            raise ImageError(f"no stored prediction for {image.name} in {self.path}")
        if len(entries) == 1:
            return entries[0]
        path = "/" + _posix(os.path.abspath(image.path))
        matching = [e for e in entries if path.endswith("/" + _posix(e.file_name))]
        if len(matching) == 1:
            return matching[0]
        raise ImageError(
            f"{self.path} has {len(entries)} images named {image.name} and none matches {image.path} alone"
        )

    def _detection(self, entry: CocoImage, annotation: dict[str, Any]) -> Detection:
        try:
            return coco.detection(annotation, self.categories, self.keypoint_names)
        except coco.CocoFormatError as error:
            raise ImageError(f"{self.path}: annotation {annotation.get('id', '?')} of {entry.file_name}: {error}") from None


def _check_coco_shape(path: str, document: Any) -> None:
    if isinstance(document, list):
        raise UsageError(
            f"replay: {path} is a list (COCO results?); replay needs a COCO dataset file with images, "
            "categories and annotations: merge the results into the dataset's annotations"
        )
    if isinstance(document, dict) and "predictions" in document and "image" in document:
        raise UsageError(
            f"replay: {path} is one Roboflow prediction; put one such file per image in a folder "
            "and use replay:FOLDER"
        )
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError(f"replay: {path} is not a COCO file (no \"images\" list)")


def _coco_image(path: str, index: int, entry: Any) -> CocoImage:
    try:
        return CocoImage(*coco.image_entry(entry))
    except coco.CocoFormatError as error:
        raise UsageError(f"replay: {path}: images[{index}] {error}") from None


def _base_name(file_name: str) -> str:
    return _posix(file_name).rsplit("/", 1)[-1]


def _posix(path: str) -> str:
    """``.\\a\\b.jpg`` -> ``a/b.jpg``: COCO files made on Windows use backslashes."""
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def make_backend(target: str, options: ModelOptions) -> ReplayBackend:
    return ReplayBackend(target, options)


@hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(
        InferenceBackendSpec(
            "replay", make_backend,
            "Predictions stored earlier: replay:DIR (one JSON per image) or replay:coco.json",
            options_schema=NO_OPTIONS,  # every setting it has is a ModelOptions field
        )
    )
