"""Hostile policy JSON: nesting too deep, huge integers, NaN / Infinity, duplicate keys.

Each is one located problem (``$.path: message``), exit 2 from the CLI, never a traceback:
through ``alpolicy validate``, ``alpolicy run --policy ... --dry-run``, ``--conditionals`` and
``validate --conditionals``, and through ``Policy.from_file`` / ``from_dict`` /
``from_conditionals`` (a Python dict may hold NaN, inf or a huge int; jsonschema itself
recurses, so depth is checked before it runs). A policy nested exactly at the limit still works.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpolicy import Policy, PolicyError
from alpolicy.policy.policy_json import MAX_DEPTH, MAX_INT_DIGITS, MAX_NESTING

from .cli import alpolicy
from .conftest import make_frames
from .corpus.policies import CASES, DEEP_LIST, NOT_A_NUMBER, TOO_DEEP, check, hostile_values, nested, path_of, words


def only_problem(error: PolicyError) -> str:
    assert len(error.problems) == 1, error.messages
    return error.messages[0]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_hostile_files_are_one_located_problem(tmp_path, name, text, expected):
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        Policy.from_file(path)
    assert only_problem(caught.value).startswith(expected)
    assert caught.value.source == str(path)


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_alpolicy_validate_prints_the_located_line_and_exits_2(tmp_path, name, text, expected):
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    result = alpolicy("validate", str(path))
    assert result.code == 2 and "Traceback" not in result.err, result.err[-3000:]
    head, line = result.err.splitlines()
    assert head == f"{path}: 1 problem" and line.startswith(f"  {expected}"), result.err[:3000]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[Path, Path]:
    """Three frames and their stored predictions (one car each), for dry runs."""
    root = tmp_path_factory.mktemp("replayed")
    frames = make_frames(root / "frames", 3)
    predictions = root / "predictions"
    predictions.mkdir()
    for frame in frames:
        detection = {"x": 40, "y": 30, "width": 20, "height": 20, "confidence": 0.5, "class": "car", "class_id": 0}
        (predictions / f"{frame.stem}.json").write_text(json.dumps({"image": {"width": 96, "height": 72}, "predictions": [detection]}))
    return root / "frames", predictions


def dry_run(replayed: tuple[Path, Path], *policy_args: str, journal: Path):
    frames, predictions = replayed
    return alpolicy("run", str(frames), "--model", f"replay:{predictions}", *policy_args, "--to", "folder:" + str(journal.parent / "queue"),
                    "--journal", str(journal), "--dry-run", "--json")


@pytest.mark.parametrize("name", ["not_400", "int_4400", "nan", "duplicate_rule"])
def test_alpolicy_run_refuses_the_policy_in_one_located_line(tmp_path, replayed, name):
    text, expected = next((text, expected) for case, text, expected in CASES if case == name)
    path = tmp_path / f"{name}.json"
    path.write_text(text)
    result = dry_run(replayed, "--policy", str(path), journal=tmp_path / "journal.sqlite")
    assert result.code == 2 and "Traceback" not in result.err, result.err[-3000:]
    head, line = result.err.splitlines()
    assert head == f"alpolicy: error: {path}: invalid policy (1 problem)" and line.startswith(f"  {expected}"), result.err[:3000]


CONDITIONALS = [
    ('{"confidence_interval": [NaN, 90]}', f"$.confidence_interval[0]: NaN {NOT_A_NUMBER}"),
    ('{"maximum_size_requirement": Infinity}', f"$.maximum_size_requirement: Infinity {NOT_A_NUMBER}"),
    ('{"required_objects_count": ' + "1" * 400 + "}", f"$.required_objects_count: an integer of 400 digits: at most {MAX_INT_DIGITS}"),
    ('{"target_classes": ["car"], "target_classes": ["person"]}', "$.target_classes: duplicate key 'target_classes' (2 times"),
    ('{"target_classes": ' + DEEP_LIST + "}", f"$.target_classes{'[0]' * (MAX_DEPTH - 1)}: arrays and objects nested more than {MAX_DEPTH}"),
]


@pytest.mark.parametrize(("text", "expected"), CONDITIONALS)
def test_conditionals_on_the_command_line_and_in_files(tmp_path, replayed, text, expected):
    result = dry_run(replayed, "--conditionals", text, journal=tmp_path / "journal.sqlite")
    assert result.code == 2 and "Traceback" not in result.err, result.err[-3000:]
    head, line = result.err.splitlines()
    assert head == "alpolicy: error: --conditionals: invalid policy (1 problem)" and line.startswith(f"  {expected}"), result.err[:3000]

    path = tmp_path / "conditionals.json"
    path.write_text(text)
    result = alpolicy("validate", "--conditionals", str(path))
    assert result.code == 2 and "Traceback" not in result.err, result.err[-3000:]
    head, line = result.err.splitlines()
    assert head == f"{path}: 1 problem" and line.startswith(f"  {expected}"), result.err[:3000]


# ---------------------------------------------------------------------- Python dicts
def deep_dict(levels: int) -> dict:
    return {"version": 1, "image": nested("not", levels)}


@pytest.mark.parametrize(("document", "expected"), [
    (deep_dict(400), f"{path_of('not', MAX_NESTING + 1)}: {TOO_DEEP}"),
    (deep_dict(20_000), f"{path_of('not', MAX_NESTING + 1)}: {TOO_DEEP}"),  # far past Python's recursion limit
    ({"version": 1, "image": nested("any", MAX_NESTING + 1)}, f"{path_of('any', MAX_NESTING + 1)}: {TOO_DEEP}"),
    ({"version": 1, "detection": [{"rule": "confidence", "min": float("nan")}]}, f"$.detection[0].min: nan {NOT_A_NUMBER}"),
    ({"version": 1, "detection": [{"rule": "box_area", "max": float("inf")}]}, f"$.detection[0].max: inf {NOT_A_NUMBER}"),
    ({"version": 1, "image": {"rule": "witnesses", "min": 10 ** 5000}}, f"$.image.min: an integer of 5001 digits: at most {MAX_INT_DIGITS}"),
    ({"version": 1, "tags": ("a", float("-inf"))}, f"$.tags[1]: -inf {NOT_A_NUMBER}"),
])
def test_from_dict_locates_what_json_cannot_hold(document, expected):
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(document)
    assert only_problem(caught.value).startswith(expected)


def test_from_conditionals_locates_nan_but_keeps_the_sdks_infinite_defaults():
    with pytest.raises(PolicyError) as caught:
        Policy.from_conditionals({"confidence_interval": [float("nan"), 90]})
    assert only_problem(caught.value).startswith(f"$.confidence_interval[0]: nan {NOT_A_NUMBER}")
    Policy.from_conditionals({"minimum_size_requirement": float("-inf"), "maximum_size_requirement": float("inf")})


def test_every_problem_of_a_document_is_listed_in_path_order():
    document = {"version": 1, "detection": [{"rule": "confidence", "min": float("nan"), "max": float("inf")}],
                "image": {"all": [nested("not", 100), {"rule": "witnesses", "min": 10 ** 200}]}}
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(document)
    assert [message.split(":")[0] for message in caught.value.messages] == [
        "$.detection[0].max", "$.detection[0].min", "$.image.all[0]" + ".not" * MAX_NESTING, "$.image.all[1].min"]


# ---------------------------------------------------------------------- at the limit, all is well
@pytest.mark.parametrize("kind", ["not", "all", "any"])
def test_a_policy_nested_at_the_limit_still_works(tmp_path, replayed, kind):
    assert MAX_NESTING % 2 == 0  # an even number of nots: the same decision as the rule itself
    document = {"version": 1, "detection": [{"rule": "classes", "include": ["car"]}], "image": nested(kind, MAX_NESTING)}
    policy = Policy.from_dict(document)
    assert policy.evaluate({"image": {"width": 10, "height": 10}, "predictions": [
        {"x": 5, "y": 5, "width": 2, "height": 2, "confidence": 0.5, "class": "car"}]}).qualifies
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(document))
    assert Policy.from_file(path).document == document
    assert alpolicy("validate", str(path)).out == f"{path}: ok\n"
    result = dry_run(replayed, "--policy", str(path), journal=tmp_path / "journal.sqlite")
    assert result.code == 0, result.err[-3000:]
    assert json.loads(result.out)["sampled"] == 3


def test_the_readme_states_the_limits_the_code_enforces():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`all` / `any` / `not` nest at most {MAX_NESTING} levels deep, and arrays and objects at most {MAX_DEPTH}" in readme
    assert f"an integer of more than {MAX_INT_DIGITS} digits" in readme


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(words, hostile_values, max_size=4))
def test_random_documents_with_nan_huge_integers_and_deep_nesting(values):
    check({"version": 1, **values})  # a valid policy or located problems; nothing else escapes
