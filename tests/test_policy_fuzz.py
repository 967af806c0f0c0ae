"""Policy fuzzing: random JSON documents and random mutations of valid policies never end in a
traceback -- each is either a valid policy or a PolicyError whose every problem has a JSON path."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpolicy import Policy, PolicyError

EXAMPLES = [json.loads(p.read_text()) for p in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.json"))]
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_documents(document):
    check(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_documents_that_look_like_policies(values):
    check({"version": 1, **(values if isinstance(values, dict) else {"detection": values})})


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


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data())
def test_mutations_of_valid_policies(document, data):
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data)
    check(document)
