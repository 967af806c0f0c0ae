"""The video plugin's tests: its entry point made visible when it is not installed (a checkout
run with ``PYTHONPATH``), and videos written by PyAV in each test."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

from alpolicy.plugins import reset_registry

PLUGIN_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def video_plugin(tmp_path_factory):
    """``make install`` installs the plugin; otherwise a dist-info naming its entry point, first on
    the path of this process and of the CLI's subprocesses, for this module's tests only."""
    if any(entry.name == "video" for entry in importlib.metadata.entry_points(group="alpolicy")):
        yield
        return
    site = tmp_path_factory.mktemp("site")
    info = site / "alpolicy_video-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alpolicy-video\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[alpolicy]\nvideo = alpolicy_video.plugin\n")
    before = os.environ.get("PYTHONPATH")
    paths = [str(site), str(PLUGIN_ROOT), *filter(None, [before])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    sys.path[:0] = [str(site), str(PLUGIN_ROOT)]
    reset_registry()
    yield
    sys.path.remove(str(site))
    sys.path.remove(str(PLUGIN_ROOT))
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before
    reset_registry()
