"""The policy sub-commands, run as a user runs them: validate, explain, rules, plugins, schema."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from .cli import alpolicy
from .helpers import det, pred

GOOD = {"version": 1, "detection": [{"rule": "confidence", "min": 0.2, "max": 0.6}]}
BAD = {"version": 1, "detection": [{"rule": "confidance"}], "image": {"rule": "witnesses", "min": -1}}


def write(tmp_path, name, document) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_validate_ok_and_bad(tmp_path):
    good, bad = write(tmp_path, "good.json", GOOD), write(tmp_path, "bad.json", BAD)
    assert alpolicy("validate", good).code == 0
    result = alpolicy("validate", good, bad)
    assert result.code == 2
    assert f"{good}: ok" in result.out
    assert f"{bad}: 2 problems" in result.err
    assert "$.detection[0]: unknown detection rule 'confidance' (did you mean 'confidence'?)" in result.err
    assert "$.image.min: -1 is less than the minimum of 0" in result.err
    assert "Traceback" not in result.err


def test_validate_conditionals_files(tmp_path):
    ok = write(tmp_path, "c.json", {"target_classes": ["car"], "confidence_interval": [10, 50]})
    typo = write(tmp_path, "t.json", {"target_class": ["car"]})
    assert alpolicy("validate", "--conditionals", ok).code == 0
    result = alpolicy("validate", "--conditionals", typo)
    assert result.code == 2 and "did you mean 'target_classes'?" in result.err


def test_validate_missing_and_malformed_files_are_one_line_each(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = alpolicy("validate", str(tmp_path / "absent.json"), str(broken))
    assert result.code == 2
    assert "absent.json: 1 problem\n  $: no such file" in result.err
    assert "not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2" in result.err
    assert "Traceback" not in result.err


def test_explain_says_why(tmp_path):
    policy = write(tmp_path, "policy.json", GOOD)
    chosen = write(tmp_path, "chosen.json", pred(det("car", 0.41)))
    result = alpolicy("explain", policy, chosen)
    assert result.code == 0
    assert result.out.splitlines()[0] == "QUALIFIES: would be sent for labeling"
    assert "✓ confidence: confidence 0.41 within [0.20, 0.60]" in result.out

    rejected = write(tmp_path, "rejected.json", pred(det("car", 0.9)))
    result = alpolicy("explain", policy, rejected, "--json")
    assert result.code == 1
    decision = json.loads(result.out)
    assert decision["qualifies"] is False and decision["rejected_by"] == "witnesses"
    assert "car 0.9: confidence 0.90 outside [0.20, 0.60]" in decision["reasons"]


def test_explain_with_conditionals_and_stdin(tmp_path):
    result = alpolicy("explain", "--conditionals", '{"target_classes": ["dog"]}', "-", input=json.dumps(pred(det("car", 0.5))))
    assert result.code == 1
    assert "REJECTED by witnesses" in result.out


def test_explain_user_errors(tmp_path):
    policy = write(tmp_path, "policy.json", GOOD)
    result = alpolicy("explain", policy, str(tmp_path / "nope.json"))
    assert result.code == 2 and result.err.strip() == f"alpolicy: error: prediction file '{tmp_path / 'nope.json'}' does not exist"
    malformed = write(tmp_path, "m.json", {"predictions": []})
    result = alpolicy("explain", policy, malformed)
    assert result.code == 2 and 'needs "image"' in result.err and "Traceback" not in result.err
    result = alpolicy("explain", "--conditionals", "{bad", malformed)
    assert result.code == 2 and "--conditionals is not valid JSON" in result.err


def test_rules_lists_every_stage_and_json_has_schemas():
    text = alpolicy("rules").out
    for name in ("confidence", "box_area", "classes", "detection_count", "distinct_classes", "witnesses"):
        assert f"  {name}" in text
    rules = {rule["name"]: rule for rule in json.loads(alpolicy("rules", "--json").out)}
    assert rules["confidence"]["stage"] == "detection"
    assert rules["confidence"]["schema"]["properties"]["unit"]["enum"] == ["fraction", "percent"]


def test_plugins_json_lists_versions_and_registrations():
    plugins = {p["name"]: p for p in json.loads(alpolicy("plugins", "--json").out)}
    detection = plugins["alpolicy.rules.detection"]
    assert detection["distribution"] == "alpolicy" and detection["version"]
    assert detection["rules"] == ["confidence", "box_area", "classes"]
    assert "alpolicy.rules.image" in alpolicy("plugins").out


def test_schema_is_a_bundled_document_editors_can_use():
    schema = json.loads(alpolicy("schema").out)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)  # no registry: every reference resolves inside the bundle
    assert not list(validator.iter_errors(GOOD))
    errors = list(validator.iter_errors({"version": 1, "detection": [{"rule": "confidence", "min": 7}]}))
    assert "$.detection[0].min" in {e.json_path for e in errors}
    assert any("7 is greater than the maximum of 1" in e.message for e in errors)
    assert list(validator.iter_errors(BAD))


def test_no_command_prints_help_and_help_teaches():
    result = alpolicy()
    assert result.code == 2 and "examples:" in result.out
    assert "every problem is printed with its JSON path" in alpolicy("validate", "--help").out
