"""Sources: where the images of a run come from.

A source is registered by scheme through the ``alpolicy_sources`` hook (a
:class:`~alpolicy.registry.SourceSpec`) and chosen by the ``SOURCE`` of ``alpolicy run``: either
by scheme (``folder:frames/``, later ``s3://bucket/frames``), or, for a plain path, by what the
path is: each spec's ``claims(path)`` is asked in registration order (built-ins first) and the
first that says yes builds it (the folder source claims folders; a video source would claim
``video.mp4``). See :func:`alpolicy.runtime.pipeline.make_source`.

The contract: subclass :class:`Source` (``alpolicy.Source``) and write ``__iter__``, which
yields the images (:class:`~alpolicy.io.images.ImageFile`, or paths: the pipeline makes those
ImageFiles; a listed path that cannot be read is skipped and counted as ``unreadable``):

* **Lazily and in a stable order**: the order decides limits, ``top_k`` ties and near-duplicates,
  so the same source gives the same decisions on every machine; nothing need be listed up front.
* ``count()`` is the number of images for the progress bar (``None``: unknown, the default).
* ``check()`` runs before any image is inferred and raises
  :class:`~alpolicy.errors.UsageError` for what makes the run pointless (no images at all).
* ``skipped`` is a ``Counter`` of entries left out, by reason (a key of
  :data:`alpolicy.io.images.SKIPPED_REASONS`, or the words to show): the pipeline reads it after
  calling ``iter()`` and the run report shows it. ``None`` (the default): nothing to say.
* ``name`` is what the journal records as the run's source: by default the spec.
* ``close()`` runs after the last image.
* Failures: :class:`~alpolicy.errors.UsageError` from the factory or ``check()`` stops the run
  in one line (exit 2); any other exception from the source's code is a bug in the plugin and
  stops the run with one line naming it (:class:`~alpolicy.errors.PluginCrash`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Union, runtime_checkable

from ..bases import Component
from ..io.images import DEFAULT_EXTENSIONS, ImageFile

#: What a source yields: an image, or the path of one.
SourceItem = Union[ImageFile, str]


@dataclass
class SourceOptions:
    """Settings every source may use (the ``images`` options of ``alpolicy run``)."""

    #: The file extensions taken, lower-case with the dot; matched case-insensitively.
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    #: Include sub-folders (or a store's nested prefixes).
    recursive: bool = False
    #: Follow symbolic links leaving the source (the folder source skips and counts them otherwise).
    follow_symlinks: bool = False
    #: Match the extensions case-sensitively.
    case_sensitive: bool = False
    #: Source-specific settings.
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SupportsImages(Protocol):
    """The structural shape of a source, for ``isinstance`` checks of duck-typed objects."""

    def __iter__(self) -> Iterator[SourceItem]:
        ...


class Source(Component, ABC):
    """The base class of a source: write ``__iter__``; ``count()``, ``check()``, ``close()``,
    ``skipped`` and ``name`` have defaults (see the module docstring)."""

    #: Entries left out, by reason, filled as the source is listed; ``None``: nothing to say.
    skipped: "Counter[str] | None" = None

    @abstractmethod
    def __iter__(self) -> Iterator[SourceItem]:
        """The images, lazily, in a stable order."""

    def count(self) -> int | None:
        """How many images ``__iter__`` will yield, for progress; ``None`` when unknown."""
        return None


__all__ = ["Source", "SourceItem", "SourceOptions", "SupportsImages"]
