"""Shared fixtures: a real loopback Roboflow server and folders of real images."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpolicy.io.secrets import register
from alpolicy.testing import image_folder

from .servers.roboflow import FakeRoboflow

API_KEY = "rf_secret_key_4f9a2c"
register(API_KEY)


@pytest.fixture
def roboflow():
    """The fake Roboflow API and inference server on one loopback port, model ``vehicles/3``."""
    with FakeRoboflow(api_key=API_KEY, classes=["car", "person", "bicycle"]) as server:
        server.add_model("vehicles", 3)
        yield server


@pytest.fixture
def env(roboflow, monkeypatch):
    """Point alpolicy at the fake server through the documented environment variables."""
    monkeypatch.setenv("ROBOFLOW_API_KEY", API_KEY)
    monkeypatch.setenv("ROBOFLOW_INFERENCE_URL", roboflow.url)
    monkeypatch.setenv("ROBOFLOW_API_URL", roboflow.url)
    return {"ROBOFLOW_API_KEY": API_KEY, "ROBOFLOW_INFERENCE_URL": roboflow.url, "ROBOFLOW_API_URL": roboflow.url}


#: Distinct small images (different content, so the server sees different images): the helper
#: plugin authors use, :func:`alpolicy.testing.image_folder`.
make_frames = image_folder


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    make_frames(folder, 30)
    return folder
