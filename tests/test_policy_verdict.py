"""A decision made in another process (a Dask worker) and sent back as a verdict is the decision
the driver would have made (issue #15: the detection and image rules run in the stateless stage)."""

from __future__ import annotations

import pickle
import random

import pytest

from alpolicy import Policy
from alpolicy.testing import make_classification, make_detection, make_prediction

POLICIES = [
    {"version": 1, "detection": [{"rule": "confidence", "min": 0.3, "max": 0.8}, {"rule": "classes", "include": ["car", "bus"]}],
     "image": {"rule": "detection_count", "min": 1}},
    {"version": 1, "detection": [{"rule": "box_area", "min": 50}],
     "image": {"any": [{"rule": "distinct_classes", "min": 2}, {"not": {"rule": "detection_count", "max": 2}}]}},
    {"version": 1, "image": {"all": [{"rule": "uncertainty", "measure": "least_confidence", "reduce": "sum", "min_score": 0.5},
                                     {"rule": "detection_count", "min": 1}]}},
    {"version": 1, "detection": [{"rule": "mask_area", "min": 10}], "image": {"rule": "detection_count", "min": 1}},
]


def predictions(seed: int = 3):
    rng = random.Random(seed)
    made = []
    for _ in range(60):
        detections = [make_detection(rng.choice(["car", "bus", "bike"]), round(rng.random(), 3), x=rng.uniform(10, 90),
                                     y=rng.uniform(10, 90), width=rng.uniform(1, 20), height=rng.uniform(1, 20),
                                     detection_id=f"d{i}")
                      for i in range(rng.randint(0, 5))]
        made.append(make_prediction(*detections, width=100, height=100))
    made.append(make_classification({"car": 0.6, "bus": 0.4}))  # a task some rules do not apply to
    return made


@pytest.mark.parametrize("document", POLICIES)
def test_a_verdict_made_elsewhere_is_the_decision_made_here(document):
    here, there = Policy.from_dict(document), Policy.from_dict(document)  # two compilations: two processes
    for prediction in predictions():
        expected = here.evaluate(prediction)
        travelled = pickle.loads(pickle.dumps(prediction))  # what the worker got and sent back
        verdict = pickle.loads(pickle.dumps(there.verdict(travelled)))
        decision = here.decision_from(travelled, verdict)
        assert decision.policy is here and all(leaf in here.leaves for leaf, _ in decision.trace)
        assert (decision.qualifies, decision.witnesses, decision.reasons, decision.score, decision.tags,
                decision.rejected_by) == (expected.qualifies, expected.witnesses, expected.reasons, expected.score,
                                          expected.tags, expected.rejected_by)
        assert [(here.leaves.index(leaf), passed) for leaf, passed in decision.trace] == \
               [(here.leaves.index(leaf), passed) for leaf, passed in expected.trace]


def test_a_verdict_names_witnesses_by_position_not_by_object():
    policy = Policy.from_dict(POLICIES[0])
    prediction = make_prediction(make_detection("car", 0.5), make_detection("bike", 0.5), make_detection("bus", 0.6))
    qualifies, witnesses, trace = policy.verdict(prediction)
    assert (qualifies, witnesses) == (True, (0, 2))
    assert all(isinstance(position, int) for position, _ in trace)
