"""The template plugins in ``plugins/``, installed for real with pip and discovered through their entry points.

Each template (a rule, a backend, a destination) is installed into a fresh target folder (not
into this virtualenv), and the real ``alpolicy`` command runs in a subprocess with that folder on
its path: what a user gets after ``pip install alpolicy-example-rule``. Each template's own test
suite then runs against that install (tests/plugin_packages.py is the one implementation).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from .cli import alpolicy
from .conftest import make_frames
from .plugin_packages import pip_install, python, run_tests

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
POLICY = {"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}, {"rule": "confidence", "min": 0.2}]}


@dataclass(frozen=True)
class Template:
    folder: str
    package: str
    entry_point: str
    #: What ``alpolicy plugins --json`` says the plugin registers: its key there, and the names.
    kind: str
    names: tuple[str, ...]


TEMPLATES = {
    "rule": Template("alpolicy-example-rule", "alpolicy_example_rule", "example", "rules", ("aspect_ratio",)),
    "backend": Template("alpolicy-example-backend", "alpolicy_example_backend", "example-backend",
                        "inference_backends", ("csv",)),
    "destination": Template("alpolicy-example-destination", "alpolicy_example_destination", "example-destination",
                            "destinations", ("jsonl",)),
}


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Callable[[str], dict[str, str]]:
    """``install(kind)``: the environment that sees the template installed (each installed once)."""
    done: dict[str, dict[str, str]] = {}

    def installed_template(kind: str) -> dict[str, str]:
        if kind not in done:
            project = PLUGINS / TEMPLATES[kind].folder
            done[kind] = pip_install(project, tmp_path_factory.mktemp(f"site-{kind}"), tmp_path_factory.mktemp("build"))
        return done[kind]

    return installed_template


@pytest.fixture(scope="module")
def installed(install) -> dict[str, str]:
    return install("rule")


# ---------------------------------------------------------------- every template
@pytest.mark.parametrize("kind", TEMPLATES)
def test_the_template_is_a_complete_project(kind):
    template = TEMPLATES[kind]
    folder = PLUGINS / template.folder
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["build-system"]["requires"] == ["setuptools>=77"]
    meta = project["project"]
    assert (meta["name"], meta["license"], meta["readme"]) == (template.folder, "Apache-2.0", "README.md")
    assert "alpolicy" in meta["dependencies"]
    assert meta["entry-points"]["alpolicy"] == {template.entry_point: f"{template.package}.plugin"}
    assert (folder / template.package / "plugin.py").is_file() and (folder / "tests" / "conftest.py").is_file()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {template.folder}\n") and "docs/plugins.md" in readme


@pytest.mark.slow
@pytest.mark.parametrize("kind", TEMPLATES)
def test_the_installed_template_is_discovered_through_its_entry_point(install, kind, tmp_path):
    template = TEMPLATES[kind]
    env = install(kind)
    plugins = {p["name"]: p for p in json.loads(alpolicy("plugins", "--json", env=env).out)}
    found = plugins[template.entry_point]
    assert (found["distribution"], found["version"]) == (template.folder, "0.1.0")
    assert found[template.kind] == list(template.names)
    where = python(f"import {template.package}; print({template.package}.__file__)", env, tmp_path)
    assert where.startswith(env["PYTHONPATH"].split(":")[0])  # the installed copy, not the sources


@pytest.mark.slow
@pytest.mark.parametrize("kind", TEMPLATES)
def test_the_template_ships_a_passing_test_suite(install, kind, tmp_path):
    result = run_tests(PLUGINS / TEMPLATES[kind].folder / "tests", install(kind), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout


# ---------------------------------------------------------------- the rule template, through the CLI
@pytest.mark.slow
def test_the_installed_rule_is_listed_by_alpolicy_rules(installed):
    assert "aspect_ratio" in alpolicy("rules", env=installed).out


@pytest.mark.slow
def test_a_policy_file_can_use_the_plugin_rule(installed, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    tall = {"x": 5, "y": 5, "width": 30, "height": 10, "confidence": 0.5, "class": "bus"}
    prediction = tmp_path / "prediction.json"
    prediction.write_text(json.dumps({"image": {"width": 100, "height": 100}, "predictions": [tall]}))

    assert alpolicy("validate", str(policy), env=installed).code == 0
    result = alpolicy("explain", str(policy), str(prediction), env=installed)
    assert result.code == 0, result.err
    assert "aspect ratio 3.00 within [2, inf]" in result.out

    # Its schema validates like a built-in's.
    policy.write_text(json.dumps({"version": 1, "detection": [{"rule": "aspect_ratio", "mx": 1}]}))
    result = alpolicy("validate", str(policy), env=installed)
    assert result.code == 2
    assert "$.detection[0].mx: unknown parameter 'mx' for rule 'aspect_ratio' (did you mean 'max'?)" in result.err


@pytest.mark.slow
def test_without_the_plugin_or_when_not_selected_the_rule_is_unknown(installed, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    assert "unknown detection rule 'aspect_ratio'" in alpolicy("validate", str(policy)).err
    restricted = {**installed, "ALPOLICY_LOAD_PLUGINS": ""}
    assert "unknown detection rule 'aspect_ratio'" in alpolicy("validate", str(policy), env=restricted).err
    selected = {**installed, "ALPOLICY_LOAD_PLUGINS": "alpolicy-example-rule"}
    assert alpolicy("validate", str(policy), env=selected).code == 0


# ---------------------------------------------------------------- the backend and destination templates
SEND_ALL = {"version": 1, "image": {"rule": "detection_count", "min": 0}}


def write_policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(SEND_ALL))
    return str(path)


@pytest.mark.slow
def test_a_run_with_the_csv_backend(install, tmp_path):
    env = install("backend")
    frames = make_frames(tmp_path / "frames", 3)
    csv = tmp_path / "predictions.csv"
    csv.write_text("image,class,confidence,x,y,width,height\n"
                   f"{frames[0].name},car,0.9,48,36,20,10\n{frames[1].name},bus,0.5,10,10,8,8\n")
    common = [str(tmp_path / "frames"), "--model", f"csv:{csv}", "--policy", write_policy(tmp_path)]

    result = alpolicy("run", *common, "--to", f"folder:{tmp_path / 'out'}", "--journal", str(tmp_path / "j1.sqlite"), env=env)
    assert result.code == 1, result.err  # frame 2 has no row: that image fails, the others are sent
    assert f"predictions.csv has no row for {frames[2].name}" in result.out + result.err
    result = alpolicy("run", *common, "--model-opt", "missing=empty", "--to", f"folder:{tmp_path / 'out2'}",
                      "--journal", str(tmp_path / "j2.sqlite"), env=env)
    assert result.code == 0, result.err
    coco = json.loads((tmp_path / "out2" / "annotations.coco.json").read_text())
    assert (len(coco["images"]), len(coco["annotations"])) == (3, 2)

    result = alpolicy("run", *common, "--model-opt", "missing=skip", "--to", f"folder:{tmp_path / 'out3'}", env=env)
    assert (result.code, result.err.count("\n")) == (2, 1)
    assert "--model-opt missing: 'skip' is not one of ['fail', 'empty']" in result.err
    listing = alpolicy("options", "csv", env=env).out
    assert "missing" in listing and "min_confidence" in listing


@pytest.mark.slow
def test_a_run_with_the_jsonl_destination_sends_each_image_once(install, tmp_path):
    env = install("destination")
    for path in make_frames(tmp_path / "frames", 3):
        path.with_suffix(".json").write_text(json.dumps({"image": {"width": 96, "height": 72}, "predictions": []}))
    queue = tmp_path / "queue.jsonl"
    command = ["run", str(tmp_path / "frames"), "--model", "replay:sidecar", "--policy", write_policy(tmp_path),
               "--to", f"jsonl:{queue}"]

    assert alpolicy(*command, "--journal", str(tmp_path / "j1.sqlite"), env=env).code == 0
    assert len(queue.read_text().splitlines()) == 3
    # A fresh journal knows nothing was sent: the destination itself answers "already there".
    result = alpolicy(*command, "--journal", str(tmp_path / "j2.sqlite"), env=env)
    assert result.code == 0, result.err
    assert len(queue.read_text().splitlines()) == 3
    assert "3 were already in the destination" in result.out
    result = alpolicy(*command[:-1], f"jsonl:{tmp_path / 'nowhere' / 'queue.jsonl'}", env=env)
    assert (result.code, result.out) == (2, "") and "jsonl: the folder" in result.err
