"""The plugin module named by the ``alpolicy`` entry point: registers ``dask-local`` and ``dask``."""

from __future__ import annotations

from typing import Any, Callable

import alpolicy
from alpolicy import ExecutorSpec


def local_cluster(target: str, options: Any) -> Any:
    """``dask-local:N``: a LocalCluster of N worker processes, for this run."""
    from .executor import start_local_cluster  # distributed loads only when a dask executor is used

    return start_local_cluster(target)


def scheduler(target: str, options: Any) -> Any:
    """``dask://HOST:PORT``: the workers of a running Dask scheduler."""
    from .executor import join_scheduler

    return join_scheduler(target)


@alpolicy.hookimpl
def alpolicy_executors(register: Callable[[ExecutorSpec], None]) -> None:
    register(ExecutorSpec("dask-local", local_cluster,
                          "a Dask LocalCluster of N worker processes started for the run: dask-local:N"))
    register(ExecutorSpec("dask", scheduler, "the workers of a running Dask scheduler: dask://HOST:PORT "
                          "(dask:tls://HOST:PORT with Dask's TLS settings)"))
