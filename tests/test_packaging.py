"""The packaging: alpolicy and its plugins build without a warning and ship every file they need.

A newcomer's first screen (``make demo``) is pip installing this project: a deprecated
``project.license`` table or a data folder setuptools does not know it packages fills that screen
with warnings before the first useful line, and a data folder setuptools drops silently loses the
rule schemas from the wheel. So each project is built the way its users get it: an sdist through
the PEP 517 hook, a wheel from that unpacked sdist through pip (what ``pip install`` from an index
does) and, for alpolicy itself, the editable wheel ``make install`` builds; every build's output
must be free of warnings, and the wheel must hold every file of the source packages, mapped like
``schemas/rules/x.json`` -> ``alpolicy/schemas/rules/x.json``.

The build tools are the test extra's setuptools and wheel (``--no-build-isolation``: no index needed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Any of these in a build's output is a warning a newcomer would read first (the first
# alternative is Python's warning line, ``file.py:12: Category: message``, whatever the category).
WARNING = re.compile(
    r"\.py:\d+: \w+: |BuildBackendWarning|SetuptoolsDeprecationWarning|is absent from the `packages`|warning|deprecated", re.I
)
# setuptools' notice for *every* editable install of a flat layout (even a one-module plugin), an
# ``InformationOnly`` "warning" pip shows as BuildBackendWarning; no packaging option avoids it
# short of moving the packages under src/ (the repository layout is fixed), so it is the one line allowed.
EDITABLE_NOTICE = "InformationOnly: Editable installation."
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


@dataclass(frozen=True)
class Project:
    name: str
    folder: Path
    # source folder (relative to ``folder``) -> where its files land in the wheel
    packages: dict[str, str]


PROJECTS = [
    Project("alpolicy", ROOT, {"alpolicy": "alpolicy", "schemas": "alpolicy/schemas"}),
    Project("alpolicy-onnx", ROOT / "plugins" / "alpolicy-onnx", {"alpolicy_onnx": "alpolicy_onnx"}),
    Project("alpolicy-video", ROOT / "plugins" / "alpolicy-video", {"alpolicy_video": "alpolicy_video"}),
    Project("alpolicy-dask", ROOT / "plugins" / "alpolicy-dask", {"alpolicy_dask": "alpolicy_dask"}),
    Project("alpolicy-example-rule", ROOT / "plugins" / "alpolicy-example-rule", {"alpolicy_example_rule": "alpolicy_example_rule"}),
    Project("alpolicy-fsspec", ROOT / "plugins" / "alpolicy-fsspec", {"alpolicy_fsspec": "alpolicy_fsspec"}),
]


def copy_sources(project: Project, target: Path) -> Path:
    """The project's top-level files and its package folders, without build leftovers."""
    target.mkdir()
    for path in project.folder.iterdir():
        if path.is_file():
            shutil.copy(path, target / path.name)
    for folder in project.packages:
        shutil.copytree(project.folder / folder, target / folder, ignore=IGNORED)
    return target


def run(args: list[str], cwd: Path) -> str:
    """Run a build step; return everything it printed (stdout and stderr)."""
    process = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    return output


def backend_hook(hook: str, source: Path, out: Path) -> tuple[Path, str]:
    """Call a PEP 517 hook of setuptools in ``source`` (what a build frontend does)."""
    out.mkdir()
    code = f"import sys, setuptools.build_meta as backend; print('BUILT', backend.{hook}(sys.argv[1]))"
    output = run([sys.executable, "-c", code, str(out)], cwd=source)
    name = re.search(r"^BUILT (.+)$", output, re.M).group(1)
    return out / name, output


def pip_wheel(source: Path, out: Path) -> tuple[Path, str]:
    output = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)], cwd=out.parent)
    (wheel,) = out.glob("*.whl")
    return wheel, output


def warnings_in(output: str, allowed: tuple[str, ...] = ()) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if WARNING.search(line)]
    return [line for line in lines if not any(text in line for text in allowed)]


def expected_files(project: Project) -> set[str]:
    files = set()
    for folder, into in project.packages.items():
        for path in (project.folder / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(f"{into}/{path.relative_to(project.folder / folder).as_posix()}")
    return files


@pytest.mark.slow
@pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])
def test_sdist_and_wheel_build_without_warnings_and_ship_every_file(project, tmp_path):
    source = copy_sources(project, tmp_path / "source")
    sdist, sdist_output = backend_hook("build_sdist", source, tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheel, wheel_output = pip_wheel(unpacked, tmp_path / "wheel")

    assert warnings_in(sdist_output) == []
    assert warnings_in(wheel_output) == []
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(expected_files(project) - shipped) == []
    if project.name == "alpolicy-onnx":  # every onnx:demo* model the backend names is in the wheel
        from alpolicy_onnx.backend import DEMO_MODELS

        assert {f"alpolicy_onnx/models/{file}" for file, _ in DEMO_MODELS.values()} <= shipped


@pytest.mark.slow
def test_the_editable_install_builds_without_warnings(tmp_path):
    """What ``make install`` (``pip install -e .``) prints on a newcomer's first screen."""
    source = copy_sources(PROJECTS[0], tmp_path / "source")
    _, output = backend_hook("build_editable", source, tmp_path / "editable")
    assert EDITABLE_NOTICE in output  # the check below can see a warning line
    assert warnings_in(output, allowed=(EDITABLE_NOTICE,)) == []
