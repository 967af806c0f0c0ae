"""Shared fixtures: a real loopback Roboflow server and folders of real images."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from alpolicy.secrets import register

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


def make_frames(folder: Path, count: int, *, seed: int = 0, ext: str = ".jpg", size: tuple[int, int] = (96, 72)) -> list[Path]:
    """Distinct small images (different content, so the server sees different images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        image.putpixel((index % size[0], (index // size[0]) % size[1]), (255, 255, 255))
        path = folder / f"frame_{index:05d}{ext}"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def frames(tmp_path) -> Path:
    folder = tmp_path / "frames"
    make_frames(folder, 30)
    return folder
