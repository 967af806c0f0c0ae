"""Hostile policies (issue #12): each is one located problem (``$.path: message``), exit 2 from the
CLI, never a traceback -- through ``alpolicy validate``, ``Policy.from_dict`` and ``alpolicy run
--dry-run`` -- or, for the good ones, a valid policy.

``tests/test_policy_json.py`` and ``tests/test_policy_fuzz.py`` take their cases and Hypothesis
strategies from here: :data:`CASES` (nesting, huge integers, ``NaN``, duplicate keys),
:data:`json_values`, :data:`hostile_values`, :func:`mutate` of the :data:`VALID` policies, and
the invariant :func:`check` (a valid policy, or problems each with a JSON path and one line).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import strategies as st

from alpolicy import Policy, PolicyError
from alpolicy.policy.policy_json import MAX_DEPTH, MAX_INT_DIGITS, MAX_NESTING

from . import ACCEPTED, Entry, expect, refused

def nested(kind: str, levels: int, leaf: dict | None = None) -> dict:
    """``levels`` of all / any / not around one image rule."""
    node = leaf or {"rule": "witnesses", "min": 1}
    for _ in range(levels):
        node = {"not": node} if kind == "not" else {kind: [node]}
    return node


def path_of(kind: str, levels: int) -> str:
    """The JSON path of the ``levels``-th all / any / not key under $.image."""
    step = ".not" if kind == "not" else f".{kind}[0]"
    return "$.image" + step * (levels - 1) + f".{kind}"


TOO_DEEP = f"all / any / not nested more than {MAX_NESTING} levels deep"
NOT_A_NUMBER = "is not a number JSON allows"
DEEP_LIST = "[" * 5000 + "]" * 5000

#: (name, file text, the one expected problem line's start)
CASES = [
    ("not_400", json.dumps({"version": 1, "image": nested("not", 400)}), f"{path_of('not', MAX_NESTING + 1)}: {TOO_DEEP}"),
    ("all_100", json.dumps({"version": 1, "image": nested("all", 100)}), f"{path_of('all', MAX_NESTING + 1)}: {TOO_DEEP}"),
    ("lists_5000", '{"version": 1, "detection": [{"rule": "classes", "include": ' + DEEP_LIST + "}]}",
     "$.detection[0].include" + "[0]" * (MAX_DEPTH - 3) + f": arrays and objects nested more than {MAX_DEPTH} levels deep"),
    ("int_4400", '{"version": 1, "image": {"rule": "witnesses", "min": ' + "9" * 4400 + "}}",
     f"$.image.min: an integer of 4400 digits: at most {MAX_INT_DIGITS} digits are read"),
    ("nan", '{"version": 1, "detection": [{"rule": "confidence", "min": NaN}]}', f"$.detection[0].min: NaN {NOT_A_NUMBER}"),
    ("infinity", '{"version": 1, "detection": [{"rule": "box_area", "max": Infinity}]}', f"$.detection[0].max: Infinity {NOT_A_NUMBER}"),
    ("minus_infinity", '{"version": 1, "detection": [{"rule": "box_area", "min": -Infinity}]}',
     f"$.detection[0].min: -Infinity {NOT_A_NUMBER}"),
    ("overflow", '{"version": 1, "detection": [{"rule": "box_area", "max": 1e999}]}', f"$.detection[0].max: 1e999 {NOT_A_NUMBER}"),
    ("duplicate_rule", '{"version": 1, "detection": [{"rule": "confidence", "min": 0.5, "rule": "box_area"}]}',
     "$.detection[0].rule: duplicate key 'rule' (2 times in one object"),
    ("duplicate_nested", json.dumps({"version": 1, "image": {"all": [{"rule": "witnesses"}, "SLOT"]}}).replace(
        '"SLOT"', '{"not": {"rule": "detection_count", "min": 1, "min": 3}}'),
     "$.image.all[1].not.min: duplicate key 'min' (2 times in one object"),
    ("duplicate_top", '{"version": 1, "version": 1, "detection": []}', "$.version: duplicate key 'version' (2 times in one object"),
]


EXAMPLES = [json.loads(p.read_text()) for p in sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))]
VALID = [doc for doc in EXAMPLES if "version" in doc] + [
    {"version": 1, "detection": [{"rule": "confidence", "min": 0.2, "max": 0.6}], "image": {"any": [
        {"rule": "witnesses", "min": 2}, {"not": {"rule": "distinct_classes", "max": 1}}]}},
    Policy.from_conditionals({"target_classes": ["car"], "required_class_count": 2}).document,
]
PATH = re.compile(r'^\$(\.[A-Za-z_$][A-Za-z0-9_$]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*$')

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
words = st.sampled_from(["version", "detection", "image", "sampling", "rule", "all", "any", "not", "min", "max",
                         "confidence", "witnesses", "box_area", "limit", "top_k", "classes", "unit", "tag", "limits"])


def check(document) -> None:
    try:
        Policy.from_dict(document)
    except PolicyError as error:
        assert error.problems, "a PolicyError must list its problems"
        for problem in error.problems:
            assert PATH.match(problem.path), problem.path
            assert problem.message and "\n" not in problem.message


def mutate(document, data):
    """Replace, delete or insert one value somewhere in the document."""
    if isinstance(document, dict) and document and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(document)))
        action = data.draw(st.sampled_from(["replace", "delete", "recurse", "rename"]))
        copy = dict(document)
        if action == "replace":
            copy[key] = data.draw(json_values)
        elif action == "delete":
            del copy[key]
        elif action == "rename":
            copy[data.draw(words | st.text(max_size=8))] = copy.pop(key)
        else:
            copy[key] = mutate(copy[key], data)
        return copy
    if isinstance(document, list) and document and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(document) - 1))
        copy = list(document)
        copy[index] = mutate(copy[index], data) if data.draw(st.booleans()) else data.draw(json_values)
        return copy
    return data.draw(json_values | words)


hostile_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.sampled_from([-(10**120), float("nan")])
    | st.integers(4400, 4500).map(lambda digits: 10**digits)  # past Python's int-str limit
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(words | st.text(max_size=6), children, max_size=3)
    | children.map(lambda child: nested("not", 70, {"rule": "witnesses", "min": child})),
    max_leaves=15,
)


#: Hostile in other ways than JSON: (id, file text, the start of the one expected problem line).
UNKNOWN = [
    ("unknown_rule", '{"version": 1, "detection": [{"rule": "confidance", "min": 0.5}]}',
     "$.detection[0]: unknown detection rule 'confidance' (did you mean 'confidence'?)"),
    ("unknown_image_rule", '{"version": 1, "image": {"rule": "__import__", "min": 1}}', "$.image: unknown image rule '__import__'"),
    ("unknown_key", '{"version": 1, "detecton": []}', "$.detecton: unknown top-level key 'detecton' (did you mean 'detection'?)"),
    ("rule_not_a_string", '{"version": 1, "detection": [{"rule": ["confidence"]}]}', "$.detection[0]: unknown detection rule ['confidence']"),
    ("integer_of_100_digits", '{"version": 1, "image": {"rule": "detection_count", "min": ' + "9" * 100 + "}}",
     "$.image.min: " + "9" * 100 + " is greater than max"),  # read (100 digits), then refused by the schema
    ("version_2", '{"version": 2}', "$.version: "),
    ("not_an_object", "[1, 2, 3]", "$: "),
    ("empty_text", "", "$: not valid JSON"),
    ("lone_surrogate_key", '{"version": 1, "\\ud800": 1}', "$[\"\\ud800\"]: unknown top-level key"),
]

#: Good policies, hostile-looking: nested exactly at the limit, markup in the texts.
GOOD = [
    ("nested_at_the_limit", json.dumps({"version": 1, "detection": [{"rule": "classes", "include": ["car"]}],
                                        "image": nested("not", MAX_NESTING)})),
    ("markup_in_texts", json.dumps({"version": 1, "name": "<script>alert(1)</script>", "tags": ['"><img src=x>'],
                                    "detection": [{"rule": "confidence", "min": 0.5, "note": "</style>"}]})),
]


def entries() -> list[Entry]:
    """Every case above: ``make()`` is the file text; the outcome's ``reason`` is the start of the
    one problem line (a regex, escaped). ``extra["line"]`` is that start as text, and
    ``extra["text_only"]`` marks the problems only a strict reader of the text sees (Python's
    ``json`` keeps the last of duplicate keys: the dict it makes holds no such problem)."""
    made = [Entry(f"policy-{name.replace('_', '-')}", "policies", (lambda text: lambda: text)(text),
                  expect(refused("policy", "^" + re.escape(line))),
                  extra={"line": line, "text_only": name.startswith("duplicate")})
            for name, text, line in [*CASES, *UNKNOWN]]
    made += [Entry(f"policy-{name.replace('_', '-')}", "policies", (lambda text: lambda: text)(text), expect(ACCEPTED))
             for name, text in GOOD]
    return made
