"""The built-in ``folder`` source: the images of a local folder, in natural order.

Registered through the ``alpolicy_sources`` hook like any third-party source, it is chosen by a
plain path that is a folder (``alpolicy run frames/``) or by its scheme (``folder:frames/``).
Listing is :func:`alpolicy.io.images.iter_folder`: lazy (one folder's names at a time), in natural
order, symbolic links leaving the folder skipped and counted unless ``follow_symlinks``.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Callable, Iterator

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..io.images import SKIPPED_REASONS, ImageFile, iter_folder
from ..registry import SourceSpec
from . import Source, SourceOptions


class FolderSource(Source):
    """A folder's images; ``count()`` is a second cheap ``scandir`` pass, made once (in ``check``)."""

    def __init__(self, target: str, options: SourceOptions | None = None) -> None:
        options = options or SourceOptions()
        target = os.path.expanduser(target)
        if not os.path.exists(target):
            raise UsageError(f"the folder {target!r} does not exist")
        if not os.path.isdir(target):
            raise UsageError(f"{target!r} is not a folder")
        self.folder = target
        #: The journal's name for the run's source: the folder as given, as it always was.
        self.name = target
        self.extensions = tuple(options.extensions)
        self.recursive = options.recursive
        self._listing = {"recursive": options.recursive, "case_sensitive": options.case_sensitive,
                         "follow_symlinks": options.follow_symlinks}
        self.skipped: Counter[str] = Counter()
        self._total: int | None = None

    def check(self) -> None:
        """Count the images; none is a one-line usage error saying what was searched and skipped."""
        counted: Counter[str] = Counter()
        self._total = sum(1 for _ in iter_folder(self.folder, self.extensions, skipped=counted, **self._listing))
        if self._total == 0:
            where = "" if self.recursive else " (sub-folders not searched: --recursive)"
            links = "".join(f"; skipped {count} {SKIPPED_REASONS[reason]}" for reason, count in sorted(counted.items()))
            raise UsageError(f"no images in {self.folder!r} with extension {', '.join(self.extensions)}{where}{links}")

    def count(self) -> int | None:
        if self._total is None:
            self.check()
        return self._total

    def __iter__(self) -> Iterator[ImageFile]:
        """A fresh listing; ``skipped`` starts again from zero and counts what this one leaves out."""
        self.skipped = Counter()
        return self.listing(self.skipped)

    def listing(self, skipped: Counter[str] | None = None) -> Iterator[ImageFile]:
        """The folder's images, lazily (:func:`~alpolicy.io.images.iter_folder`), the links left out
        counted in ``skipped`` as they are met."""
        return iter_folder(self.folder, self.extensions, skipped=skipped, **self._listing)


def make_source(target: str, options: SourceOptions) -> FolderSource:
    return FolderSource(target, options)


@hookimpl
def alpolicy_sources(register: Callable[[SourceSpec], None]) -> None:
    register(SourceSpec("folder", make_source, "A folder of images, in natural order: DIR or folder:DIR",
                        claims=os.path.isdir))
