"""The example rule plugin, installed for real with pip and discovered through its entry point.

The plugin is installed into a fresh target folder (not into this virtualenv), and the real
``alpolicy`` command runs in a subprocess with that folder on its path: what a user gets after
``pip install alpolicy-example-rule``. The plugin's own test suite then runs against that install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cli import alpolicy

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "alpolicy-example-rule"
POLICY = {"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}, {"rule": "confidence", "min": 0.2}]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True, cwd=build, timeout=300,
    )
    # The plugin's folder first, then whatever the tests run with (the alpolicy under test).
    return {"PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.mark.slow
def test_the_installed_plugin_is_discovered_through_its_entry_point(installed):
    plugins = {p["name"]: p for p in json.loads(alpolicy("plugins", "--json", env=installed).out)}
    assert plugins["example"]["distribution"] == "alpolicy-example-rule"
    assert plugins["example"]["version"] == "0.1.0"
    assert plugins["example"]["rules"] == ["aspect_ratio"]
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


@pytest.mark.slow
def test_the_plugin_template_ships_a_passing_test_suite(installed):
    env = {**os.environ, **installed}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        capture_output=True, text=True, env=env, cwd=PLUGIN, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
