"""pytest fixtures for testing alpolicy plugins: enable with, in a ``conftest.py``::

    pytest_plugins = ["alpolicy.testing.pytest_plugin"]

* ``alpolicy_images``: a folder of three real, distinct JPEG images (:func:`alpolicy.testing.image_folder`)
  in the test's ``tmp_path``; its ``Path``.
* ``alpolicy_registry_with``: :func:`alpolicy.testing.registry_with`, to call with your plugin module:
  ``registry = alpolicy_registry_with(my_plugin)`` -- the built-ins with it registered on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from ..registry import Registry
from . import image_folder, registry_with


@pytest.fixture
def alpolicy_images(tmp_path: Path) -> Path:
    folder = tmp_path / "alpolicy-images"
    image_folder(folder, 3)
    return folder


@pytest.fixture
def alpolicy_registry_with() -> Callable[..., Registry]:
    def build(*plugins: Any, load_entry_points: bool = False) -> Registry:
        return registry_with(*plugins, load_entry_points=load_entry_points)

    return build
