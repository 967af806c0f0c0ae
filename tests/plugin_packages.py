"""Install a plugin project for real and run its own tests: what a user and a plugin author do.

One implementation for every project the tests install -- the three templates in ``plugins/``
(tests/test_example_plugin.py) and the project that docs/plugins.md writes out
(tests/test_plugin_docs.py): ``pip install --no-deps --no-build-isolation --target`` into a fresh
folder (never this virtualenv), then the real ``alpolicy`` command, or pytest on the project's
tests, in a subprocess with that folder first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def pip_install(project: Path, target: Path, build: Path) -> dict[str, str]:
    """Install ``project`` into ``target`` (``build`` is pip's working folder); the environment
    that sees it: ``target`` first, then the alpolicy under test (``PYTHONPATH`` as the tests run)."""
    process = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(project)],
        capture_output=True, text=True, cwd=build, timeout=300,
    )
    assert process.returncode == 0, f"pip install {project} failed:\n{process.stdout}{process.stderr}"
    return {"PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_tests(tests: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """pytest on a project's ``tests`` folder, in a subprocess with ``env``. ``cwd`` should be a
    folder outside the project, so that its tests import the installed package, not the sources."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=cwd, timeout=300,
    )


def python(code: str, env: dict[str, str], cwd: Path) -> str:
    """The output of ``python -c code`` with ``env`` (e.g. where an installed module comes from)."""
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, cwd=cwd, timeout=120)
    assert process.returncode == 0, process.stderr
    return process.stdout


def install(site: Path, entry_point: str, distribution: str, source: str) -> None:
    """A module and its dist-info with an ``alpolicy`` entry point: an installed distribution."""
    module = distribution.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[alpolicy]\n{entry_point} = {module}\n")
