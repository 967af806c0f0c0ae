"""Validate policy documents against the envelope schema composed with every registered rule's schema.

The envelope (``schemas/policy.schema.json``) refers to one generated schema per stage
(``urn:alpolicy:stage:<stage>``), which selects a rule's own schema (``urn:alpolicy:rule:<name>``)
with ``if``/``then`` on the rule's name. All of them live in one ``referencing.Registry``, so a rule
from a third-party plugin is validated exactly like a built-in, and errors point at the offending
parameter rather than at a ``oneOf``. Every error is reported with its JSON path and, for an
unknown rule or key, the closest valid name.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry as ResourceRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from ..errors import Problem
from ..registry import Registry, RuleSpec, Stage, did_you_mean

ENVELOPE_ID = "urn:alpolicy:policy"
#: Keys every rule object may carry besides its parameters.
COMMON_RULE_KEYS = ("rule", "tag", "note")
#: Extra keys of sampling rule objects: Roboflow Inference's strategy name, tags and limits.
SAMPLING_KEYS = ("name", "tags", "limits")
_SAMPLING_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "description": "Names the rule's usage counters in the journal (default: the rule's name)."},
    "tags": {"type": "array", "items": {"$ref": "urn:alpolicy:policy#/$defs/tag"}, "description": "Tags added when this rule samples an image."},
    "limits": {
        "type": "array",
        "description": "Roboflow Inference limits: at most `value` images sampled by this rule per fixed UTC minute, hour or day.",
        "items": {
            "type": "object",
            "required": ["type", "value"],
            "properties": {"type": {"enum": ["minutely", "hourly", "daily"]}, "value": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
        },
    },
}


def common_keys(stage: Stage) -> tuple[str, ...]:
    """The non-parameter keys a rule object of ``stage`` may carry."""
    return COMMON_RULE_KEYS + (SAMPLING_KEYS if stage is Stage.SAMPLING else ())
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def rule_uri(name: str) -> str:
    return f"urn:alpolicy:rule:{name}"


def stage_uri(stage: Stage) -> str:
    return f"urn:alpolicy:stage:{stage.value}"


def envelope_schema() -> dict[str, Any]:
    """The static policy envelope shipped in ``schemas/policy.schema.json``."""
    text = resources.files("alpolicy.schemas").joinpath("policy.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def stage_schema(stage: Stage, specs: list[RuleSpec]) -> dict[str, Any]:
    """The schema of one rule object of a stage: known name, then that rule's own parameters."""
    names = [spec.name for spec in specs]
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": stage_uri(stage),
        "title": f"{stage.value} rule",
        "type": "object",
        "required": ["rule"],
        "properties": {
            "rule": {"enum": names, "description": f"One of the registered {stage.value} rules."},
            "tag": {"$ref": f"{ENVELOPE_ID}#/$defs/tag", "description": "Tag added when this rule selects an image."},
            "note": {"type": "string", "description": "Free text for reviewers; ignored."},
        },
        "unevaluatedProperties": False,
    }
    if stage is Stage.SAMPLING:
        schema["properties"].update(_SAMPLING_PROPERTIES)
    if names:  # allOf must not be empty (a stage may have no rules installed)
        schema["allOf"] = [
            {
                "if": {"properties": {"rule": {"const": name}}, "required": ["rule"]},
                "then": {"$ref": rule_uri(name)},
            }
            for name in names
        ]
    return schema


def _resources(registry: Registry) -> ResourceRegistry:
    resources_: list[tuple[str, Resource]] = [(ENVELOPE_ID, DRAFT202012.create_resource(envelope_schema()))]
    for stage in Stage:
        resources_.append((stage_uri(stage), DRAFT202012.create_resource(stage_schema(stage, registry.rules_of(stage)))))
    for spec in registry.rules.values():
        resources_.append((rule_uri(spec.name), DRAFT202012.create_resource(dict(spec.schema))))
    return ResourceRegistry().with_resources(resources_)


def policy_validator(registry: Registry) -> Draft202012Validator:
    """A validator for whole policy documents, built once per registry."""
    validator = registry.cache.get("policy_validator")
    if validator is None:
        validator = Draft202012Validator(envelope_schema(), registry=_resources(registry))
        registry.cache["policy_validator"] = validator
    return validator


def composed_schema(registry: Registry) -> dict[str, Any]:
    """The policy schema as one self-contained document (for editors), rule schemas bundled.

    Draft 2020-12 bundling: every referenced resource is embedded under ``$defs`` with its
    ``$id``, so references by URN resolve inside the document.
    """
    document = envelope_schema()
    defs = document.setdefault("$defs", {})
    for stage in Stage:
        defs[f"stage:{stage.value}"] = stage_schema(stage, registry.rules_of(stage))
    for spec in registry.rules.values():
        embedded = dict(spec.schema)
        embedded["$id"] = rule_uri(spec.name)
        defs[f"rule:{spec.name}"] = embedded
    return document


def json_path(parts: Iterable[str | int]) -> str:
    """``$.image.all[1].min`` from path parts."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


_PATH_PART = re.compile(r'\[(\d+)\]|\.([^.\[]+)|\[("(?:[^"\\]|\\.)*")\]')


def path_order(problem: Problem) -> tuple:
    """Sort key: problems in path order (array items by index), stable for equal paths."""
    key = []
    for index, name, quoted in _PATH_PART.findall(problem.path):
        key.append((0, int(index), "") if index else (1, 0, name or json.loads(quoted)))
    return tuple(key)


def schema_problems(document: Any, registry: Registry) -> list[Problem]:
    """Every schema violation of ``document``, as problems with JSON paths and suggestions."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for error in policy_validator(registry).iter_errors(document):
        for problem in _describe(error, document, registry):
            key = (problem.path, problem.message)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return problems


def error_paths(document: Any, registry: Registry) -> list[tuple[str | int, ...]]:
    """The instance locations of schema errors (to skip compiling rule objects that are broken)."""
    return [tuple(error.absolute_path) for error in policy_validator(registry).iter_errors(document)]


def _stage_at(path: tuple[str | int, ...]) -> Stage:
    if path and path[0] == "detection":
        return Stage.DETECTION
    if path and path[0] == "sampling":
        return Stage.SAMPLING
    return Stage.IMAGE


def _rule_problem(name: Any, path: tuple[str | int, ...], registry: Registry) -> Problem:
    stage = _stage_at(path)
    where = json_path(path)
    spec = registry.rules.get(name) if isinstance(name, str) else None
    if spec is not None:
        home = {"detection": "$.detection", "image": "$.image", "sampling": "$.sampling"}[spec.stage.value]
        return Problem(
            where, f"{name!r} is {_a(spec.stage.value)} rule, not {_a(stage.value)} rule: move it under {home}"
        )
    known = [spec.name for spec in registry.rules_of(stage)]
    listing = ", ".join(known) if known else "none installed"
    return Problem(
        where,
        f"unknown {stage.value} rule {name!r}{did_you_mean(name, known)}; {stage.value} rules: {listing}",
    )


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _property_names(schema: Any) -> set[str]:
    """Property names a schema declares, through in-place applicators (not through ``$ref``)."""
    names: set[str] = set()
    if not isinstance(schema, dict):
        return names
    names.update(schema.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            names |= _property_names(sub)
    for key in ("then", "else"):
        names |= _property_names(schema.get(key))
    return names


def _unexpected(error: ValidationError, allowed: set[str], what: str, owner: str = "") -> Iterator[Problem]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key in instance:
        if key not in allowed:
            path = tuple(error.absolute_path) + (key,)
            yield Problem(
                json_path(path),
                f"unknown {what} {key!r}{owner}{did_you_mean(key, allowed)}; "
                f"expected one of: {', '.join(sorted(allowed))}",
            )


def _describe(error: ValidationError, document: Any, registry: Registry) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    where = json_path(path)
    validator = error.validator
    if validator == "enum" and path and path[-1] == "rule":
        yield _rule_problem(error.instance, path[:-1], registry)
    elif validator == "unevaluatedProperties":
        name = error.instance.get("rule") if isinstance(error.instance, dict) else None
        spec = registry.rules.get(name) if isinstance(name, str) else None
        if spec is None or spec.stage is not _stage_at(path):
            return  # the unknown rule name is the real problem, reported on its own
        allowed = set(common_keys(spec.stage)) | _property_names(spec.schema)
        yield from _unexpected(error, allowed, "parameter", f" for rule {name!r}")
    elif validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        what = "key" if path else "top-level key"
        yield from _unexpected(error, allowed, what)
    elif validator == "const" and path == ("version",):
        yield Problem(where, f"unsupported policy version {error.instance!r}: this alpolicy reads version 1")
    elif validator == "required" and path == () and error.validator_value == ["version"]:
        yield Problem(where, 'missing "version": add "version": 1 (the policy format this alpolicy reads)')
    elif validator == "anyOf" and all(sub.validator == "required" for sub in error.context):
        options = sorted({missing for sub in error.context for missing in sub.validator_value})
        yield Problem(where, f"needs at least one of: {', '.join(options)}")
    elif validator == "type" and error.validator_value == "object" and path and path[0] == "image":
        yield Problem(where, f"expected an image rule object or all / any / not, not {json.dumps(error.instance)}")
    else:
        yield Problem(where, error.message)
