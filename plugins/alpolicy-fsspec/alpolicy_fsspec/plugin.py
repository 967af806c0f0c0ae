"""The plugin module named by the ``alpolicy`` entry point: registers the object-storage sources.

Schemes registered:

* the object stores, always, so that a missing implementation is a one-line usage error naming
  the package to install: ``s3``/``s3a`` (s3fs, a dependency), ``gs``/``gcs`` (gcsfs, extra
  ``gcs``), ``az``/``abfs``/``abfss`` (adlfs, extra ``azure``);
* every other protocol fsspec knows whose implementation is installed (``sftp``, ``webhdfs``...),
  except the local, in-memory, caching, archive and web-page ones (:data:`NOT_SOURCES`). ``file``
  is one of those on purpose: ``file://`` already means a local folder to alpolicy (natural
  order, path + size + mtime keys), and one meaning is kept.

Registration is cheap (fsspec's table of implementations and a ``find_spec`` per third-party
package); s3fs and the others load only when a URL of theirs is run.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import alpolicy
from alpolicy import SourceOptions, SourceSpec
from alpolicy.errors import UsageError

#: scheme -> (fsspec protocol, the importable package, what to pip install)
OBJECT_STORES: dict[str, tuple[str, str, str]] = {
    "s3": ("s3", "s3fs", "alpolicy-fsspec"),
    "s3a": ("s3", "s3fs", "alpolicy-fsspec"),
    "gs": ("gcs", "gcsfs", "alpolicy-fsspec[gcs]"),
    "gcs": ("gcs", "gcsfs", "alpolicy-fsspec[gcs]"),
    "az": ("az", "adlfs", "alpolicy-fsspec[azure]"),
    "abfs": ("abfs", "adlfs", "alpolicy-fsspec[azure]"),
    "abfss": ("abfs", "adlfs", "alpolicy-fsspec[azure]"),
}

#: fsspec protocols that are no source of images here: local files (``file://`` is alpolicy's
#: folder), memory, wrappers and caches of another file system, archives, web pages (links are not
#: a listing), and the notebook/cluster-internal ones.
NOT_SOURCES = frozenset({
    "file", "local", "memory", "reference", "dir", "cached", "blockcache", "filecache", "simplecache",
    "zip", "tar", "libarchive", "jlab", "jupyter", "generic", "async_wrapper", "asyncwrapper",
    "asynclocal", "data", "dask", "arrow_hdfs", "http", "https", "pyscript",
})


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def other_protocols() -> dict[str, tuple[str, str, str]]:
    """The installed fsspec protocols beyond the object stores, as :data:`OBJECT_STORES` rows."""
    from fsspec.registry import known_implementations

    found: dict[str, tuple[str, str, str]] = {}
    for protocol, implementation in known_implementations.items():
        if protocol in OBJECT_STORES or protocol in NOT_SOURCES:
            continue
        package = implementation["class"].split(".", 1)[0]
        if _installed(package):
            found[protocol] = (protocol, package, package)
    return found


def make_factory(scheme: str, protocol: str, package: str, install: str) -> Callable[[str, SourceOptions], Any]:
    """The source factory of one scheme: a one-line usage error when its package is missing."""

    def factory(target: str, options: SourceOptions) -> Any:
        if not _installed(package):
            raise UsageError(f"{scheme}:// needs {package}, which is not installed: pip install '{install}'")
        from .source import ObjectSource  # fsspec's implementations load only when one is used

        return ObjectSource(f"{scheme}:{target}", protocol, options)

    return factory


@alpolicy.hookimpl
def alpolicy_sources(register: Callable[[SourceSpec], None]) -> None:
    for scheme, (protocol, package, install) in {**OBJECT_STORES, **other_protocols()}.items():
        where = "objects" if scheme in OBJECT_STORES else f"files of fsspec's {protocol!r}"
        register(SourceSpec(
            scheme, make_factory(scheme, protocol, package, install),
            f"{where} under {scheme}://BUCKET/PREFIX, listed page by page in key order, fetched on demand ({package})",
        ))
