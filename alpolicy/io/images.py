"""Image files as the pipeline sees them: identity for the journal, bytes, safe decoding.

Decoding is guarded, in one place (:func:`open_image`, through which every Pillow open in alpolicy
goes): a header is read first and an image whose pixel count exceeds the limit is refused before
any pixel is decoded (decompression bombs), and every Pillow failure becomes an
:class:`ImageDecodeError` with one line saying what is wrong with the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import AlpolicyError

# alpolicy enforces its own pixel limit (below) with a one-line error per image; Pillow's
# warning for the same condition would only add noise to the run's output.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: Pillow's own default limit (about 89.5 megapixels, a 1 GB RGBA bitmap).
DEFAULT_MAX_PIXELS = 89_478_485


_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks: the one content hash of the project
    (image identity, model fingerprints, the folder destination's integrity checks).

    Raises ``OSError`` as ``open`` does; callers decide what an unreadable file means to them.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(content: bytes) -> str:
    """:func:`sha256_file`'s digest of bytes already read: a sender checks that what it is about to
    send is still the content its key names (the file may have changed since it was hashed)."""
    return hashlib.sha256(content).hexdigest()


#: The lone surrogates a ``str`` from the file system may hold: ``surrogateescape`` turns each
#: byte of a name that is not valid UTF-8 into U+DC80..U+DCFF (Linux names are bytes).
_SURROGATES = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def display_path(text: str | os.PathLike[str]) -> str:
    r"""A path (or any text quoting one) as text every store accepts: SQLite, JSON, a UTF-8 file.

    A name that is not valid UTF-8 (``bad\xff.jpg`` made by ``os.open(b"bad\xff.jpg")``) reaches
    Python as ``'bad\udcff.jpg'``, and each of those refuses the lone surrogate: the run would
    crash on the first write. Each undecodable byte is shown as ``\xff`` instead (what
    ``os.fsencode(path).decode("utf-8", "backslashreplace")`` gives); any other text is returned
    unchanged. For display and records only: the file is still opened by its real
    :attr:`ImageFile.path`, and identity (:attr:`ImageFile.key`) stays lossless.
    """
    return _SURROGATES.sub(_escape_surrogate, os.fspath(text))


class ImageDecodeError(AlpolicyError):
    """The file is not a readable image (empty, truncated, not an image, too large)."""


@dataclass
class ImageFile:
    """One image on disk. ``key`` identifies this version of the file for the journal.

    An image that is not a local file (an object in a bucket, a frame of a video) has an
    ``origin``: what records, messages and the key show, while ``path`` is a local copy that
    :meth:`materialize` makes on demand with the source's ``fetcher`` (a download, a frame's
    encoding). The methods below materialize first; the pipeline materializes before it hands
    an image to a backend, a pixel measurement or a destination, in their worker threads. A
    fetcher is a picklable callable (a module-level function or a dataclass), so that an image
    can travel to another process or machine and be fetched there.
    """

    path: str
    size: int
    mtime_ns: int
    _sha256: str | None = field(default=None, repr=False, compare=False)
    #: Values derived from the pixels (perceptual hash, quality), computed once, in a worker thread.
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Where the image lives when ``path`` is only a local copy (``s3://bucket/a.jpg``,
    #: ``clip.mp4/clip_t000012.345.jpg``); ``None``: ``path`` is the image.
    origin: str | None = field(default=None, compare=False)
    #: The origin's version, in the key (an object's ETag and size; a video's content key and the
    #: frame's timestamp): a changed object is a new image, an unchanged one is recognised.
    version: str = field(default="", compare=False)
    #: Makes the local copy at ``path``: ``fetcher(image)``, called by :meth:`materialize`.
    fetcher: Callable[["ImageFile"], None] | None = field(default=None, repr=False, compare=False)
    #: What the source knows about the image that reviewers want with it (a video frame's
    #: ``video`` and ``timestamp``): added to the metadata a destination sends with it.
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> "ImageFile":
        stat = os.stat(path)
        return cls(os.fspath(path), stat.st_size, stat.st_mtime_ns)

    @property
    def name(self) -> str:
        """The file name destinations give the image (of its origin, for a local copy)."""
        return os.path.basename(self.origin.rstrip("/")) if self.origin is not None else os.path.basename(self.path)

    @property
    def display_path(self) -> str:
        """The path (or origin) as storable text (see :func:`display_path`): what records and messages show."""
        return display_path(self.origin if self.origin is not None else self.path)

    @property
    def source(self) -> str:
        """Where the image came from, for reviewers: its origin, else its absolute path (as text)."""
        return display_path(self.origin if self.origin is not None else os.path.abspath(self.path))

    def materialize(self) -> "ImageFile":
        """This image, its local copy made if it has a ``fetcher`` and the copy is missing (never
        made, or evicted by its source's cache); ``size`` is then the copy's. A local file: nothing
        to do. A fetcher raises :class:`~alpolicy.errors.ServiceError` for what may work later (the
        image is fetched again in a deferred round); anything else fails the image in one line
        (:class:`ImageDecodeError`)."""
        if self.fetcher is not None and not os.path.exists(self.path):
            try:
                self.fetcher(self)
                self.size = os.stat(self.path).st_size
            except AlpolicyError:
                raise
            except OSError as error:
                raise ImageDecodeError(f"cannot fetch {self.display_path}: {error.strerror or error}") from None
            except Exception as error:  # a fetcher's bug: this image fails, in one line
                raise ImageDecodeError(f"cannot fetch {self.display_path}: {type(error).__name__}: {error}") from None
        return self

    @property
    def key(self) -> str:
        """Path + size + mtime: a changed file is a new image, an unchanged one is recognised.

        Always valid UTF-8 (the journal's SQLite text) and lossless: a path that is not valid
        UTF-8 is shown by :func:`display_path` and followed by its exact code points in hex
        (``|fs:…``), so ``bad\\xff.jpg`` and a file really named with a backslash are two images.
        A valid UTF-8 path keeps the key it always had: existing journals still resume.
        """
        if self.origin is not None:
            return f"{display_path(self.origin)}|{self.version}"
        shown = display_path(self.path)
        key = f"{shown}|{self.size}|{self.mtime_ns}"
        if shown != self.path:
            key += f"|fs:{self.path.encode('utf-8', 'surrogatepass').hex()}"
        return key

    def read_bytes(self) -> bytes:
        self.materialize()
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except OSError as error:
            raise ImageDecodeError(f"cannot read the file: {error.strerror or error}") from None

    def sha256(self) -> str:
        """Content hash: the idempotency key destinations use (same bytes, same remote item)."""
        if self._sha256 is None:
            self.materialize()
            try:
                self._sha256 = sha256_file(self.path)
            except OSError as error:
                raise ImageDecodeError(f"cannot read the file: {error.strerror or error}") from None
        return self._sha256

    def check(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
        """Parse the header only: the stored (unrotated) size. Refuses non-images and bombs."""
        self.materialize()
        if self.size == 0:
            raise ImageDecodeError("the file is empty")
        with open_image(self.path, max_pixels=max_pixels) as image:
            return image.size

    def check_complete(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """Refuse a truncated or corrupt file before it is sent anywhere, cheaply.

        A backend that never decodes the file (stored predictions, a server that takes what it
        gets) would otherwise pass a JPEG cut in half to the labeling queue. The format is read
        from the first bytes (never the name) and its end checked from the last ones: a JPEG's
        end-of-image marker, a PNG's ``IEND`` chunk, a GIF's trailer (trailing padding
        allowed), the size a WEBP's RIFF header or a BMP's header declares; a whole file's header
        is then parsed (:meth:`check`: a decompression bomb is whole too). Only when the structure
        says nothing (another format, or data after the end: a motion photo's video) is the image
        decoded, to be sure. Raises :class:`ImageDecodeError` with one line.
        """
        self.materialize()
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                head = handle.read(_HEAD)
                handle.seek(max(0, size - _TAIL))
                tail = handle.read(_TAIL)
        except OSError as error:
            raise ImageDecodeError(f"cannot read the file: {error.strerror or error}") from None
        if size == 0:
            raise ImageDecodeError("the file is empty")
        complete, missing = _structure_complete(head, tail, size)
        if complete:
            # Whole, but maybe a bomb: the header too, through the guarded open (as a backend
            # that decodes would), so that no destination is sent one whatever it checks itself.
            self.check(max_pixels)
            return
        opened = False
        try:
            with open_image(self.path, max_pixels=max_pixels) as image:
                opened = True
                image.load()
        except ImageDecodeError as error:
            if missing:  # the structure said what is missing: that is the clearest reason
                raise ImageDecodeError(f"the image is truncated ({missing})") from None
            if opened:  # the header parsed but the pixels did not decode
                raise ImageDecodeError(f"the image is truncated or corrupt ({error})") from None
            raise

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode fully, EXIF orientation applied, as RGB: what a local model or a thumbnail needs."""
        self.materialize()
        if self.size == 0:
            raise ImageDecodeError("the file is empty")
        with open_image(self.path, max_pixels=max_pixels) as image:
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return oriented.convert("RGB") if oriented.mode != "RGB" else oriented.copy()


#: Bytes read from each end of a file by :meth:`ImageFile.check_complete`.
_HEAD = 16
_TAIL = 32


def _structure_complete(head: bytes, tail: bytes, size: int) -> tuple[bool, str | None]:
    """(complete, what is missing) from a file's first and last bytes; (False, None) when the
    structure says nothing and only decoding can tell."""
    if head.startswith(b"\xff\xd8\xff"):  # JPEG: EOI, possibly followed by a few padding bytes
        return b"\xff\xd9" in tail, "no JPEG end-of-image marker"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):  # the IEND chunk's type and CRC
        return b"IEND\xaeB`\x82" in tail, "no PNG IEND chunk"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return tail.rstrip(b"\0").endswith(b";"), "no GIF trailer"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        declared = int.from_bytes(head[4:8], "little") + 8
        return size >= declared, f"the WEBP header declares {declared} bytes, the file has {size}"
    if head[:2] == b"BM" and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        if declared >= 26:  # a plausible size (some writers leave 0): trust it
            return size >= declared, f"the BMP header declares {declared} bytes, the file has {size}"
    return False, None


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image is {width}x{height} = {width * height / 1e6:.0f} Mpx, above the "
            f"{max_pixels / 1e6:.0f} Mpx safety limit (a possible decompression bomb)"
        )


ImageSource = Union[str, "os.PathLike[str]", bytes]


@contextmanager
def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """The one way alpolicy opens an image with Pillow: ``with open_image(path) as image: ...``.

    ``source`` is a path or the file's bytes. The header is parsed and the pixel count checked
    against ``max_pixels`` before the body runs, so nothing is decoded for a bomb. Pillow's format
    plugins parse untrusted bytes and fail in many ways besides ``OSError`` -- ``ValueError`` for a
    text or ICC chunk that inflates past ``PngImagePlugin.MAX_TEXT_CHUNK``, already at open time,
    ``SyntaxError``, ``DecompressionBombError``, ``EOFError``, ``struct.error``, ``IndexError``,
    ``KeyError`` ... -- so every exception raised while opening, *or in the body* (decoding,
    orienting, converting, resizing), becomes one :class:`ImageDecodeError` of one line: that
    image's failure, never the run's. Keep the body to Pillow work on this image for that reason.
    """
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError("the file is empty")
        target: Any = io.BytesIO(source)
    else:
        target = os.fspath(source)
    try:
        image = Image.open(target)
    except Exception as error:
        raise ImageDecodeError(_reason(error, "open")) from None
    try:
        _check_pixels(image, max_pixels)
        yield image
    except ImageDecodeError:
        raise
    except Exception as error:
        raise ImageDecodeError(_reason(error, "decode")) from None
    finally:
        image.close()


def _reason(error: Exception, stage: str) -> str:
    """One line saying why Pillow could not ``open``/``decode`` the file (a message may hold newlines)."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(error, Image.DecompressionBombError):
        text = f"refused as a possible decompression bomb: {error}"
    elif isinstance(error, OSError) and error.strerror:
        text = f"cannot {stage} the image: {error.strerror}"
    else:
        text = f"cannot {stage} the image: {str(error) or type(error).__name__}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


#: A reason longer than this is cut (a parser's message may quote the file's own bytes).
_MAX_REASON = 240


#: Extensions taken when none are given (matched case-insensitively).
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def normalise_extensions(extensions: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``["JPG", ".png"]`` -> ``(".jpg", ".png")``; none given -> every common image type."""
    if not extensions:
        return DEFAULT_EXTENSIONS
    return tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)


_DIGIT_RUN = re.compile(r"[0-9]+")


def _number(match: re.Match[str]) -> str:
    digits = match.group().lstrip("0")
    return f"\x01{chr(len(digits) + 1)}{digits}"  # marker, length, digits: compares as the number


def natural_key(name: str) -> str:
    """The sort key of natural order: ``frame_2`` before ``frame_10``, ``a10b2`` before ``a10b10``.

    Runs of ASCII digits compare as numbers (of any size) and sort before text at the same place;
    text compares case-insensitively (``str.casefold``); names still equal (``Frame_3`` and
    ``frame_3``, ``f07`` and ``f7``) are ordered by their exact code points, so different names
    never tie and the order is the same on every machine. It is the order of the tuples
    ``(casefolded text, int, casefolded text, ..., name)``, packed into one string: sorting a folder
    of 100,000 names takes about a third of the memory tuples would. (Names hold neither NUL nor,
    in practice, U+0001, the two markers.)
    """
    return f"{_DIGIT_RUN.sub(_number, name.casefold())}\x00{name}"


#: Why :func:`iter_folder` left out an entry named like an image (or, ``unreadable``, why the
#: pipeline left out a path a source listed): the keys of its ``skipped`` counts (and of a run
#: report's), each with the words a summary shows.
SKIPPED_REASONS = {
    "symlink_outside": "symbolic links leaving the source folder: pass --follow-symlinks to include them",
    "symlink_broken": "broken symbolic links",
    "symlink_duplicate": "symbolic links to images the folder holds anyway: taken once, under their own names",
    "unreadable": "listed paths that do not exist or cannot be read",
}


def iter_folder(
    root: str,
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS,
    *,
    recursive: bool = False,
    case_sensitive: bool = False,
    include_hidden: bool = False,
    follow_symlinks: bool = False,
    skipped: Counter[str] | None = None,
) -> Iterator[ImageFile]:
    """Yield a folder's image files lazily, in natural order (:func:`natural_key`).

    ``os.scandir`` order depends on the file system (hash order on ext4), and the order decides
    limits, ``top_k`` ties and near-duplicates: sorting makes a folder give the same decisions on
    every machine. A folder's images come before its sub-folders, which are visited depth-first,
    in natural order too; a directory reached twice (a symlink loop) is visited once. Memory:
    one folder's listing at a time (the names of its images and sub-folders) and the paths of
    the sub-folders still to visit, never the whole tree.
    Files that vanish between listing and stat are skipped.

    Symbolic links (``follow_symlinks=False``) stay inside the source: a link whose target
    resolves outside ``root`` (a file, or with ``recursive`` a folder) is skipped, so a link
    planted in the folder cannot send a file from elsewhere; so is a broken link. A link inside
    the folder to what the scan takes anyway (``latest.jpg -> frame_0042.jpg``, ``sub_link ->
    sub`` with ``recursive``) is skipped as well: the journal knows an image by its path, so the
    same file would otherwise be inferred, counted against budgets and sent under two names. A
    link inside the folder to what the scan would not reach (a file in a sub-folder without
    ``recursive``, a hidden folder) is followed and keeps the link's name. Each skip of an entry
    named like an image (a folder link: only with ``recursive``) is counted in ``skipped`` by
    reason (:data:`SKIPPED_REASONS`). ``follow_symlinks=True`` follows every link, as ``glob``
    does; broken ones are still skipped and counted.
    """
    links = None if follow_symlinks else _Links(root, extensions, recursive, case_sensitive, include_hidden)
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError:
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in visited:
            continue
        visited.add(identity)
        listing = _list_folder(folder, extensions, recursive, case_sensitive, include_hidden, links, skipped)
        if listing is None:
            continue
        files, subfolders = listing
        del listing
        for name in files:
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            yield ImageFile(path, stat.st_size, stat.st_mtime_ns)
        del files  # the next folder's listing replaces this one
        stack.extend(os.path.join(folder, name) for name in reversed(subfolders))


def _matches(name: str, extensions: tuple[str, ...], case_sensitive: bool) -> bool:
    return (name if case_sensitive else name.lower()).endswith(extensions)


class _Links:
    """Where the symbolic links of one scan lead: outside the source, or to what it takes anyway."""

    def __init__(self, root: str, extensions: tuple[str, ...], recursive: bool, case_sensitive: bool,
                 include_hidden: bool) -> None:
        self.root = os.path.realpath(root)
        self.extensions, self.recursive = extensions, recursive
        self.case_sensitive, self.include_hidden = case_sensitive, include_hidden

    def verdict(self, path: str, is_dir: bool) -> str | None:
        """``None`` to follow the link, else the reason to skip it (a key of :data:`SKIPPED_REASONS`)."""
        target = os.path.realpath(path)
        try:
            inside = os.path.commonpath([self.root, target]) == self.root
        except ValueError:  # another drive (Windows)
            inside = False
        if not inside:
            return "symlink_outside"
        return "symlink_duplicate" if self._taken_anyway(target, is_dir) else None

    def _taken_anyway(self, target: str, is_dir: bool) -> bool:
        """Would the scan reach ``target`` (inside the root) by its own path? Its path's parts
        are real folders (``realpath``), so it does unless they are hidden or too deep."""
        parts = [] if target == self.root else os.path.relpath(target, self.root).split(os.sep)
        if not self.include_hidden and any(part.startswith(".") for part in parts):
            return False
        if is_dir:
            return True  # the root itself, or (only asked with recursive) a folder below it
        if len(parts) > 1 and not self.recursive:
            return False
        return _matches(parts[-1], self.extensions, self.case_sensitive) if parts else False


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _list_folder(folder: str, extensions: tuple[str, ...], recursive: bool, case_sensitive: bool,
                 include_hidden: bool, links: _Links | None = None,
                 skipped: Counter[str] | None = None) -> tuple[list[str], list[str]] | None:
    """One folder's image names and sub-folder names, each in natural order (``None``: unreadable)."""
    files: list[str] = []
    subfolders: list[str] = []
    try:
        entries = os.scandir(folder)
    except OSError:
        return None
    with entries:
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                if not is_dir and not entry.is_file():
                    # A broken link named like an image is counted; FIFOs, sockets... are not images.
                    if skipped is not None and entry.is_symlink() and _matches(entry.name, extensions, case_sensitive):
                        skipped["symlink_broken"] += 1
                    continue
                if is_dir and not recursive:
                    continue
                if not is_dir and not _matches(entry.name, extensions, case_sensitive):
                    continue
                if links is not None and entry.is_symlink():
                    reason = links.verdict(entry.path, is_dir)
                    if reason is not None:
                        if skipped is not None:
                            skipped[reason] += 1
                        continue
            except OSError:  # a link to itself or in a loop (ELOOP): broken too, and counted
                if skipped is not None and _is_link(entry) and _matches(entry.name, extensions, case_sensitive):
                    skipped["symlink_broken"] += 1
                continue
            (subfolders if is_dir else files).append(entry.name)
    files.sort(key=natural_key)
    subfolders.sort(key=natural_key)
    return files, subfolders
