"""A LocalCluster of 2 worker processes (1 thread each), started once for the module, and frames.

Where alpolicy-dask is not installed (a source checkout on PYTHONPATH, not ``make install``), its
entry point is made visible the way an editable install does it: a ``.dist-info`` folder on the
path, for this process, the ``alpolicy`` commands the tests run and the workers.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _entry_point_visible(tmp: Path) -> None:
    try:
        importlib.metadata.distribution("alpolicy-dask")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    info = tmp / "alpolicy_dask-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alpolicy-dask\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[alpolicy]\ndask = alpolicy_dask.plugin\n")
    sys.path.append(str(tmp))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(tmp)]))
    importlib.invalidate_caches()
    from alpolicy.plugins import reset_registry

    reset_registry()


@pytest.fixture(scope="session", autouse=True)
def dask_plugin_visible(tmp_path_factory):
    _entry_point_visible(tmp_path_factory.mktemp("dist"))
    # the workers import the tests' helpers (a fetcher) by module name
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(HERE)]))
    sys.path.append(str(HERE))


@pytest.fixture(scope="module")
def cluster(dask_plugin_visible):
    import distributed  # installed by make install: a missing one fails, never skips
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:
        with distributed.Client(local, set_as_default=False) as client:
            client.wait_for_workers(2)
            yield local, client


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask") / "frames"
    subprocess.run([sys.executable, "-m", "alpolicy_onnx.synthetic", str(folder), "--frames", "48", "--seed", "5"],
                   check=True, capture_output=True)
    return folder
