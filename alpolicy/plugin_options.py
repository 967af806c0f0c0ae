"""Plugin options: a backend's or a destination's own settings, declared with a JSON Schema.

A backend or destination declares what it reads from ``extra`` (:class:`~alpolicy.ModelOptions`,
:class:`~alpolicy.DestinationOptions`) as ``options_schema`` on its spec: a Draft 2020-12 object
schema whose ``properties`` name every option, each with a ``description`` (and a ``default``
when it has one). The schemas are Python dicts next to the code that reads the options -- the
option and its reader change together, and a third-party plugin ships its schema the same way
(or loads a file with :func:`alpolicy.load_schema`).

Every ``extra`` is checked against the chosen plugin's schema before the plugin is built, from the
command line (``--model-opt KEY=VALUE``, ``--to-opt KEY=VALUE`` and the dedicated flags that are
aliases of options, e.g. ``--max-size`` for the Roboflow destination's ``max_size``) and from
Python (:func:`alpolicy.run`) alike, with the policy validator's machinery: every problem is one
line, located by the flag or the option (and the JSON path inside a structured value), with the
closest option name for a typo::

    --to-opt merge: 'yes' is not of type 'boolean'
    --model-opt batch_size: unknown option (did you mean 'batch'?); options of onnx: batch, labels, threads

Rules: an option the schema's ``properties`` do not name is refused (the schema need not say
``additionalProperties``), unless the schema gives ``additionalProperties`` a schema of its own
(or ``true``): the plugin then takes open-ended names -- the ``workflow:`` backend's Workflow
parameters -- each checked against that schema, and ``alpolicy options`` lists them as ``NAME``;
an option set to ``None`` is not set (the plugin's default applies); a plugin written against
0.1 has no ``options_schema`` and gets its ``extra`` unvalidated.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .errors import Problem, UsageError
from .io.jsonsafe import JsonError, loads
from .policy.validation import json_path, path_order
from .registry import DestinationSpec, InferenceBackendSpec, Registry, did_you_mean

#: How each kind of plugin's options are named: on the command line, and from Python.
FLAGS = {"model": "--model-opt", "destination": "--to-opt"}
PYTHON_NAMES = {"model": "model option", "destination": "destination option"}
NOUNS = {"model": "inference backend", "destination": "destination"}

T = TypeVar("T")

#: The ``options_schema`` of a plugin that has no options of its own: any option given is refused.
NO_OPTIONS: Mapping[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {}}


class OptionsError(UsageError):
    """The options given to a backend or destination do not fit its schema: every problem, one line each."""

    def __init__(self, problems: list[str], owner: str | None = None) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            head = f"invalid options of {owner}" if owner else "invalid plugin options"
            text = f"{head} ({len(self.problems)} problems)" + "".join(f"\n  {p}" for p in self.problems)
        super().__init__(text)


def kind_of(spec: Any) -> str:
    """``model`` for a backend spec, ``destination`` for a destination spec."""
    return "model" if isinstance(spec, InferenceBackendSpec) else "destination"


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be an ``options_schema`` (checked when a plugin registers), or ``None``."""
    if not isinstance(schema, Mapping):
        return f"options_schema should be a JSON Schema object, not {type(schema).__name__}"
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as error:
        return f"options_schema is not a valid JSON Schema: {error.message}"
    if schema.get("type", "object") != "object" or not isinstance(schema.get("properties", {}), Mapping):
        return 'options_schema should be {"type": "object", "properties": {...}} naming every option'
    return None


def option_names(schema: Mapping[str, Any]) -> list[str]:
    return sorted(schema.get("properties", {}))


def open_ended(schema: Mapping[str, Any]) -> bool:
    """Whether the schema takes options its ``properties`` do not name: it says so with an
    ``additionalProperties`` that is ``true`` or a schema (absent means no, unlike JSON Schema's
    default: a typo must not pass silently where the plugin did not ask for it)."""
    extra = schema.get("additionalProperties", False)
    return extra is True or isinstance(extra, Mapping)


def parse_value(text: str) -> Any:
    """A command-line VALUE: JSON when it parses (``true``, ``3``, ``[1,2]``, ``"3"``), else the text."""
    try:
        return loads(text, unique_keys=True)
    except JsonError:
        return text


def parse_assignment(text: str, example: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as ``(key, parsed value)``; ``ValueError`` (one line) for anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"should be KEY=VALUE, e.g. {example}, got {text!r}")
    return key.strip(), parse_value(value)


def from_command_line(assignments: Iterable[tuple[str, Any]], aliases: Mapping[str, tuple[str, Any]],
                      kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The options a command line gives, and how it named each one (for messages).

    ``assignments``: the parsed ``--model-opt``/``--to-opt`` values; ``aliases``: option ->
    ``(flag, value)`` of the dedicated flags (``"max_size": ("--max-size", 64)``), a value of
    ``None`` or ``False`` meaning the flag was not given. An option given twice is a UsageError.
    """
    flag = FLAGS[kind]
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, value in assignments:
        if key in values:
            raise UsageError(f"{flag} {key} is given twice: give it once")
        values[key], names[key] = value, f"{flag} {key}"
    for key, (alias, value) in aliases.items():
        if value is None or value is False:
            continue
        if key in values:
            raise UsageError(f"{alias} and {flag} {key} set the same option: give it once")
        values[key], names[key] = value, alias
    return values, names


def problems(spec: InferenceBackendSpec | DestinationSpec, values: Mapping[str, Any], *,
             names: Mapping[str, str] | None = None, prefix: str | None = None) -> list[str]:
    """Every way ``values`` do not fit the options schema of ``spec``, one line each, in option order.

    A problem is located by ``names[key]`` (how the user wrote the option: ``--max-size``) or
    ``"<prefix> <key>"`` (``--to-opt merge``, ``destination option merge``), then the JSON path
    inside the value. Empty for a spec without a schema (0.1 plugins: unvalidated).
    """
    schema = spec.options_schema
    if schema is None:
        return []
    kind = kind_of(spec)
    prefix = prefix or PYTHON_NAMES[kind]
    if not isinstance(values, Mapping):
        return [f"{prefix}s should be a dict of option names to values, not {type(values).__name__}"]
    known = option_names(schema)
    anything = open_ended(schema)
    found: list[tuple[Problem, tuple[str | int, ...]]] = []
    given = {key: value for key, value in values.items() if value is not None}  # None: not set
    for key in given:
        if key not in known and not anything:
            listing = ", ".join(known) or "none"
            message = f"unknown option{did_you_mean(key, known)}; options of {spec.scheme}: {listing}"
            found.append((Problem(json_path([str(key)]), message), (str(key),)))
    checked = {key: value for key, value in given.items() if key in known or anything}
    for error in _validator(schema).iter_errors(checked):
        parts = tuple(error.absolute_path)
        problem = Problem(json_path(parts), error.message)
        if all(problem != seen for seen, _ in found):
            found.append((problem, parts))
    found.sort(key=lambda entry: path_order(entry[0]))
    return [f"{_where(parts, names or {}, prefix)}: {problem.message}" for problem, parts in found]


def check(spec: InferenceBackendSpec | DestinationSpec, values: Mapping[str, Any], *,
          names: Mapping[str, str] | None = None, prefix: str | None = None) -> None:
    """Raise :class:`OptionsError` listing :func:`problems`, if there are any."""
    found = problems(spec, values, names=names, prefix=prefix)
    if found:
        raise OptionsError(found, f"{NOUNS[kind_of(spec)]} {spec.scheme}")


def checked_options(spec: InferenceBackendSpec | DestinationSpec, options: T) -> T:
    """``options`` for ``spec``'s factory: its ``extra`` checked (:func:`check`, OptionsError), and
    without the options set to ``None`` (not set: the plugin sees its default). A spec without a
    schema (0.1) gets ``options`` as they are; the caller's object is never changed."""
    extra = getattr(options, "extra", None)
    if spec.options_schema is None or extra is None:
        return options
    check(spec, extra)
    if all(value is not None for value in extra.values()):
        return options
    return dataclasses.replace(options, extra={key: value for key, value in extra.items() if value is not None})


def problems_for(registry: Registry, kind: str, spec_text: str | None, values: Mapping[str, Any],
                 names: Mapping[str, str]) -> list[str]:
    """The command line's check: ``values`` against the plugin that ``spec_text`` (``onnx:m.onnx``) names.

    Options without a plugin to take them are a mistake (``--to-opt`` in a dry run without
    ``--to``); an unknown scheme or a malformed spec is left to :func:`alpolicy.run` to report.
    """
    if not values:
        return []
    if spec_text is None:
        what = "--model" if kind == "model" else "--to"
        return [f"{names.get(key, FLAGS[kind])}: an option of the {NOUNS[kind]}, but no {what} is given to take it"
                for key in values]
    scheme = spec_text.partition(":")[0]
    table = registry.backends if kind == "model" else registry.destinations
    spec = table.get(scheme)
    return problems(spec, values, names=names, prefix=FLAGS[kind]) if spec is not None else []


def _where(parts: tuple[str | int, ...], names: Mapping[str, str], prefix: str) -> str:
    """``--to-opt merge``, ``--labels``, ``model option labels[0]``: where a problem is, as the user wrote it."""
    if not parts:
        return prefix
    key, inside = str(parts[0]), json_path(parts[1:])[1:]  # "$[0].a" -> "[0].a"
    return f"{names[key]}{inside}" if key in names else f"{prefix} {key}{inside}"


_VALIDATORS: dict[int, tuple[Mapping[str, Any], Draft202012Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    """One validator per schema object (a spec's schema does not change)."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, Draft202012Validator(dict(schema)))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


# ---------------------------------------------------------------------- for people: `alpolicy options`
def describe(schema: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """``(name, type, description)`` per option, for ``alpolicy options``."""
    if schema is None:
        return []
    rows = []
    for name in option_names(schema):
        prop = schema["properties"][name]
        prop = prop if isinstance(prop, Mapping) else {}
        text = str(prop.get("description", ""))
        if "default" in prop:
            text += f" (default {_plain(prop['default'])})"
        rows.append((name, type_text(prop), text.strip()))
    extra = schema.get("additionalProperties")
    if open_ended(schema):
        prop = extra if isinstance(extra, Mapping) else {}
        rows.append(("NAME", type_text(prop), str(prop.get("description", "any other option")).strip()))
    return rows


def type_text(prop: Mapping[str, Any]) -> str:
    """``integer 1..95``, ``never|daily|weekly|monthly``, ``boolean``: an option's values in a few characters."""
    if "enum" in prop:
        return "|".join(_plain(value) for value in prop["enum"])
    kind = prop.get("type", "any")
    text = "|".join(kind) if isinstance(kind, list) else str(kind)
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        text += f" {low}..{high}"
    elif low is not None:
        text += f" >= {low}"
    elif high is not None:
        text += f" <= {high}"
    return text


def _plain(value: Any) -> str:
    """A value as one writes it after ``--to-opt KEY=`` (JSON, except a plain word)."""
    if isinstance(value, str) and value and value == value.strip() and parse_value(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)
