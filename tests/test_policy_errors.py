"""Invalid policies: every problem, each with its JSON path, and the closest valid name."""

from __future__ import annotations

import json

import pytest

from alpolicy import Policy, PolicyError


def problems(document) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(document)
    return caught.value.messages


def test_the_issue_example_message():
    document = {"version": 1, "image": {"all": [{"rule": "witnesses"}, {"rule": "detection_count", "min": -3}]}}
    assert problems(document) == ["$.image.all[1].min: -3 is less than the minimum of 0"]


def test_every_problem_is_listed_at_once():
    document = {
        "version": 1,
        "detecton": [],
        "detection": [
            {"rule": "confidance", "min": 0.3},
            {"rule": "confidence", "mn": 0.2},
            {"rule": "confidence", "min": 0.9, "max": 0.2},
            {"rule": "witnesses"},
        ],
        "image": {"all": [{"rule": "detection_count", "min": -3}, {"alll": []}, {"rule": "box_area"}]},
    }
    messages = problems(document)
    expected_starts = [
        "$.detecton: unknown top-level key 'detecton' (did you mean 'detection'?)",
        "$.detection[0]: unknown detection rule 'confidance' (did you mean 'confidence'?)",
        "$.detection[1].mn: unknown parameter 'mn' for rule 'confidence' (did you mean 'min'?)",
        "$.detection[2].min: 0.9 is greater than max 0.2",
        "$.detection[3]: 'witnesses' is an image rule, not a detection rule: move it under $.image",
        "$.image.all[0].min: -3 is less than the minimum of 0",
        "$.image.all[1].alll: unknown key 'alll' (did you mean 'all'?)",
        "$.image.all[2]: 'box_area' is a detection rule, not an image rule: move it under $.detection",
    ]
    for start in expected_starts:
        assert any(m.startswith(start) for m in messages), (start, messages)
    assert len(messages) == len(expected_starts) + 1  # + "$.image.all[1]: needs at least one of: all, any, not"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, '$: missing "version": add "version": 1'),
        ({"version": 2}, "$.version: unsupported policy version 2: this alpolicy reads version 1"),
        ({"version": 1, "detection": {"rule": "confidence"}}, "$.detection: {'rule': 'confidence'} is not of type 'array'"),
        ({"version": 1, "detection": [{"min": 0.2}]}, "$.detection[0]: 'rule' is a required property"),
        ({"version": 1, "detection": [{"rule": "confidence", "min": 1.5}]}, "$.detection[0].min: 1.5 is greater than the maximum of 1"),
        ({"version": 1, "detection": [{"rule": "confidence", "min": 50, "unit": "percent"}]}, None),
        ({"version": 1, "detection": [{"rule": "confidence", "unit": "percnt"}]}, "$.detection[0].unit: 'percnt' is not one of ['fraction', 'percent']"),
        ({"version": 1, "detection": [{"rule": "classes"}]}, "$.detection[0]: needs at least one of: exclude, include"),
        ({"version": 1, "detection": [{"rule": "classes", "include": []}]}, "$.detection[0].include: [] should be non-empty"),
        ({"version": 1, "detection": [{"rule": "classes", "include": ["a"], "exclude": ["a"]}]}, "$.detection[0].exclude: excludes every included class"),
        ({"version": 1, "image": {"any": []}}, "$.image.any: [] should be non-empty"),
        ({"version": 1, "image": {"all": [{"rule": "witnesses"}], "any": [{"rule": "witnesses"}]}}, "$.image: use one of all / any / not per object"),
        ({"version": 1, "image": {}}, "$.image: needs at least one of: all, any, not"),
        ({"version": 1, "image": {"rul": "witnesses"}}, "$.image.rul: unknown key 'rul' (did you mean 'rule'?)"),
        ({"version": 1, "image": {"not": [{"rule": "witnesses"}]}}, "$.image.not: expected an image rule object or all / any / not"),
        ({"version": 1, "image": {"rule": "witnesses", "min": 2, "max": 1}}, "$.image.min: 2 is greater than max 1"),
        ({"version": 1, "image": {"rule": "detection_count", "min": 1.5}}, "$.image.min: 1.5 is not of type 'integer'"),
        ({"version": 1, "tags": ["a", "a"]}, "$.tags: ['a', 'a'] has non-unique elements"),
        ({"version": 1, "sampling": [{"rule": "witnesses"}]}, "$.sampling[0]: 'witnesses' is an image rule, not a sampling rule"),
        ({"version": 1, "detection": [{"rule": "confidence", "tag": ""}]}, "$.detection[0].tag: '' should be non-empty"),
        ([], "$: [] is not of type 'object'"),
    ],
)
def test_each_mistake_gets_a_located_message(document, message):
    if message is None:  # a valid document in the middle of the table keeps the table honest
        Policy.from_dict(document)
        return
    messages = problems(document)
    assert any(m.startswith(message) for m in messages), messages


def test_a_parameter_with_a_space_in_its_name_gets_a_bracketed_path():
    messages = problems({"version": 1, "detection": [{"rule": "confidence", "min value": 1}]})
    assert messages[0].startswith('$.detection[0]["min value"]: unknown parameter')


def test_policy_error_is_a_value_error_with_structured_problems():
    with pytest.raises(ValueError) as caught:
        Policy.from_dict({"version": 1, "image": {"rule": "nope"}})
    error = caught.value
    assert isinstance(error, PolicyError)
    assert error.problems[0].path == "$.image"
    assert "unknown image rule 'nope'" in error.problems[0].message
    assert str(error).startswith("invalid policy (1 problem)")


def test_files_missing_unreadable_or_not_json(tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        Policy.from_file(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1,\n  "detection": [}\n')
    with pytest.raises(PolicyError, match=r"not valid JSON: .* at line 2, column 17") as caught:
        Policy.from_file(broken)
    assert caught.value.source == str(broken)


def test_a_valid_file_loads_and_keeps_its_document(tmp_path):
    document = {
        "$schema": "./policy.schema.json",
        "version": 1,
        "name": "uncertain-bikes",
        "tags": ["al"],
        "detection": [{"rule": "confidence", "min": 0.2, "max": 0.6, "note": "the model hesitates"}],
        "image": {"all": [{"rule": "witnesses", "min": 1}]},
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    policy = Policy.from_file(path)
    assert policy.name == "uncertain-bikes"
    assert policy.document == document
    assert json.loads(policy.to_json()) == document
