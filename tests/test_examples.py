"""Every example policy in examples/ is valid (policies and Roboflow Inference configurations alike)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alpolicy import Policy

from .cli import alpolicy

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_is_a_valid_policy(path):
    Policy.from_file(path)


def test_alpolicy_validate_reads_an_inference_configuration_as_is():
    path = next(p for p in EXAMPLES if p.name == "inference-active-learning.json")
    result = alpolicy("validate", str(path))
    assert result.code == 0 and result.out.strip() == f"{path}: ok"
