"""The README's policy reference is checked against the rules' schemas, and its examples run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alpolicy import Policy, get_registry
from alpolicy.plugins import DEFAULT_PLUGINS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    match = re.search(rf"^#### `{re.escape(name)}`\n(.*?)(?=^#|\Z)", README, re.S | re.M)
    assert match, f"README has no reference section for rule {name!r}"
    return match.group(1)


BUILTIN_RULES = [spec for spec in get_registry().rules.values() if spec.plugin in DEFAULT_PLUGINS]


@pytest.mark.parametrize("spec", BUILTIN_RULES, ids=lambda spec: spec.name)
def test_every_builtin_rule_and_parameter_is_documented(spec):
    text = section(spec.name)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert documented == set(spec.schema["properties"]), f"README table for {spec.name} differs from its schema"
    before = README[: README.index(f"#### `{spec.name}`")]
    stage_heading = re.findall(r"^### (.+)$", before, re.M)[-1]
    assert stage_heading == f"{spec.stage.value.capitalize()} rules"


def test_every_json_policy_example_in_the_readme_is_valid():
    blocks = re.findall(r"```json\n(.*?)```", README, re.S)
    policies = [json.loads(block) for block in blocks if '"version"' in block]
    assert policies, "the README should show a policy"
    for document in policies:
        Policy.from_dict(document)


def test_every_sdk_conditionals_key_is_documented():
    from alpolicy.policy.conditionals import DEFAULTS

    for key in DEFAULTS:
        assert f"| `{key}` |" in README
