"""Policy fuzzing: random JSON documents and random mutations of valid policies never end in a
traceback -- each is either a valid policy or a PolicyError whose every problem has a JSON path.
The strategies and the invariant (``check``) live in the hostile-input corpus, ``tests/corpus/policies.py``."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .corpus.policies import VALID, check, json_values, mutate


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_documents(document):
    check(document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_documents_that_look_like_policies(values):
    check({"version": 1, **(values if isinstance(values, dict) else {"detection": values})})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.data())
def test_mutations_of_valid_policies(document, data):
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data)
    check(document)
