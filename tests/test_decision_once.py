"""A decision does its work once: ``rejected_by`` comes from the evaluation trace, and each derived
value (reasons, score, tags) is computed once per decision, for the record and the destination alike.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alpolicy import Policy, Prediction, RuleSpec, RunOptions, Stage, hookimpl, run
from alpolicy.plugins import build_registry, make_plugin_manager

from .conftest import make_frames
from .helpers import det, pred

DC1 = {"rule": "detection_count", "min": 1}
DC2 = {"rule": "detection_count", "min": 2}
DC3 = {"rule": "detection_count", "min": 3}
DISTINCT1 = {"rule": "distinct_classes", "min": 1}
DISTINCT2 = {"rule": "distinct_classes", "min": 2}
WIT1 = {"rule": "witnesses", "min": 1}
WIT2 = {"rule": "witnesses", "min": 2}
CONF = [{"rule": "confidence", "min": 0.5}]

NONE = pred()
ONE_CAR = pred(det("car", 0.9))
ONE_WEAK_CAR = pred(det("car", 0.1))
TWO_CARS = pred(det("car", 0.9), det("car", 0.8))
CAR_AND_DOG = pred(det("car", 0.9), det("dog", 0.2))

# (image stage, prediction, what rejected it). Each expectation is worked out by hand from the
# semantics the README states: a failing rule names itself, an ``all`` passes the blame to its
# first failing child, and an ``any`` or a ``not`` that says no is named as a whole. The old
# implementation (which re-evaluated the rules to find the culprit) gave these same answers.
TABLE = [
    # a single rule, at the root
    (DC2, ONE_CAR, "detection_count"),
    (DC1, ONE_CAR, None),
    # all: the first failing child, not a later one that would fail too
    ({"all": [DC1, DISTINCT2, WIT2]}, ONE_CAR, "distinct_classes"),
    ({"all": [DC1, DISTINCT1, WIT1]}, ONE_WEAK_CAR, "witnesses"),
    ({"all": [DC1, DISTINCT1, WIT1]}, NONE, "detection_count"),
    # any / not are named as a whole
    ({"any": [DC3, DISTINCT2]}, ONE_CAR, "any(detection_count, distinct_classes)"),
    ({"not": DC1}, ONE_CAR, "not(detection_count)"),
    ({"not": {"not": DC2}}, ONE_CAR, "not(not(detection_count))"),
    ({"not": {"all": [DC1, WIT1]}}, ONE_CAR, "not(all(detection_count, witnesses))"),
    # all inside all: the blame goes down to the failing leaf
    ({"all": [{"all": [DC1, {"all": [WIT1]}]}, DISTINCT1]}, ONE_WEAK_CAR, "witnesses"),
    ({"all": [{"all": [DC1, WIT1]}, {"not": DISTINCT1}]}, ONE_CAR, "not(distinct_classes)"),
    ({"all": [{"all": [DC1, WIT1]}, {"not": DISTINCT1}]}, NONE, "detection_count"),
    # an any inside an all is named as a whole; an all inside an any is not looked into
    ({"all": [DC1, {"any": [WIT2, DISTINCT2]}]}, ONE_CAR, "any(witnesses, distinct_classes)"),
    ({"all": [DC1, {"any": [WIT2, DISTINCT2]}]}, CAR_AND_DOG, None),
    ({"any": [{"all": [DC2, DISTINCT1]}, WIT2]}, ONE_CAR, "any(all(detection_count, distinct_classes), witnesses)"),
    ({"all": [{"not": {"any": [DC2, WIT2]}}, DC3]}, TWO_CARS, "not(any(detection_count, witnesses))"),
    ({"all": [{"not": {"any": [DC3, WIT2]}}, DC3]}, CAR_AND_DOG, "detection_count at $.image.all[1]"),
    # the same rule twice: the label says which one
    ({"all": [DC1, DC3]}, TWO_CARS, "detection_count at $.image.all[1]"),
    ({"all": [DC3, DC1]}, TWO_CARS, "detection_count at $.image.all[0]"),
]


@pytest.mark.parametrize(("image", "prediction", "expected"), TABLE)
def test_rejected_by_names_what_said_no(image, prediction, expected):
    decision = Policy.from_dict({"version": 1, "detection": CONF, "image": image}).evaluate(prediction)
    assert decision.qualifies is (expected is None)
    assert decision.rejected_by == expected


# ---------------------------------------------------------------- a rule that counts its calls
class Calls:
    """Calls of each method of the counting rules (list.append is atomic across send threads)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def count(self, method: str) -> int:
        return self.log.count(method)


class CountedImageRule:
    """Duck-typed image rule: at least ``low`` detections; scores 0.5; counts every call."""

    def __init__(self, low: int, calls: Calls) -> None:
        self.low, self.calls = low, calls

    def check(self, prediction, witnesses) -> bool:
        self.calls.log.append("check")
        return len(prediction.detections) >= self.low

    def explain(self, prediction, witnesses, passed) -> str:
        self.calls.log.append("explain")
        return f"{len(prediction.detections)} detections, counted"

    def score(self, prediction, witnesses) -> float:
        self.calls.log.append("score")
        return 0.5


class CountedDetectionRule:
    """Duck-typed detection rule (no ``select``: the engine filters with ``accepts``)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def accepts(self, detection, prediction) -> bool:
        self.calls.log.append("accepts")
        return detection["confidence"] >= 0.5

    def explain(self, detection, prediction, accepted) -> str:
        self.calls.log.append("explain_detection")
        return "counted detection"


class CountingPlugin:
    def __init__(self) -> None:
        self.calls = Calls()

    @hookimpl
    def alpolicy_rules(self, register):
        calls = self.calls
        schema = {"type": "object", "properties": {"min": {"type": "integer"}}}
        register(RuleSpec("counted", Stage.IMAGE, schema, lambda params: CountedImageRule(params.get("min", 1), calls), "test"))
        register(RuleSpec("counted_detection", Stage.DETECTION, {"type": "object"}, lambda params: CountedDetectionRule(calls), "test"))


@pytest.fixture
def counting():
    plugin = CountingPlugin()
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("counting", plugin)]))
    assert registry.rules["counted"].plugin == "counting"
    return registry, plugin.calls


@pytest.mark.parametrize(("image", "expected"), [
    ({"all": [{"rule": "counted"}, WIT2]}, "witnesses"),
    ({"all": [{"rule": "counted"}, {"all": [{"rule": "counted", "min": 5}]}]}, "counted at $.image.all[1].all[0]"),
    ({"any": [{"rule": "counted", "min": 3}, WIT2]}, "any(counted, witnesses)"),
    ({"not": {"all": [{"rule": "counted"}, WIT1]}}, "not(all(counted, witnesses))"),
])
def test_rejected_by_calls_no_rule_again(counting, image, expected):
    registry, calls = counting
    policy = Policy.from_dict({"version": 1, "detection": [{"rule": "counted_detection"}], "image": image}, registry=registry)
    decision = policy.evaluate(CAR_AND_DOG)
    evaluated = list(calls.log)
    assert "check" in evaluated and evaluated.count("accepts") == 2
    assert decision.rejected_by == expected
    assert decision.rejected_by == expected
    assert calls.log == evaluated, "rejected_by evaluated rules again"


def test_each_derived_value_is_computed_once_per_decision(counting):
    registry, calls = counting
    policy = Policy.from_dict(
        {"version": 1, "tags": ["al"], "detection": [{"rule": "counted_detection"}],
         "image": {"all": [{"rule": "counted", "tag": "busy"}, WIT1]}},
        registry=registry,
    )
    decision = policy.evaluate(CAR_AND_DOG)
    del calls.log[:]
    first = (decision.verdicts, decision.reasons, decision.score, decision.tags)
    assert calls.count("explain") == 1 and calls.count("score") == 1
    again = (decision.verdicts, decision.reasons, decision.score, decision.tags)
    decision.to_json()
    assert all(a is b for a, b in zip(first, again)), "a derived value was rebuilt"
    assert first[2] == 0.5 and first[3] == ["al", "busy"]
    assert calls.count("explain") == 1 and calls.count("score") == 1
    assert calls.count("check") == 0 and calls.count("accepts") == 0


def test_the_run_record_and_the_destination_share_one_computation(counting, tmp_path):
    """A sent image's reasons, score and tags are computed once: the decisions log (the record)
    and the folder destination (the Delivery) receive the same values."""
    registry, calls = counting
    folder = tmp_path / "frames"
    paths = make_frames(folder, 3)
    for index, path in enumerate(paths):
        detections = [det("car", 0.9), det("dog", 0.6)] if index else [det("car", 0.9)]
        path.with_suffix(".json").write_text(json.dumps(pred(*detections)))
    policy = {"version": 1, "detection": [{"rule": "counted_detection"}], "image": {"all": [{"rule": "counted"}, WIT1]}}
    log = tmp_path / "decisions.jsonl"
    report = run(
        str(folder), policy, model="replay:sidecar", destination=f"folder:{tmp_path / 'out'}", registry=registry,
        options=RunOptions(journal=str(tmp_path / "journal.sqlite"), decisions_log=str(log), progress=False),
    )
    assert (report.seen, report.sent, report.failed) == (3, 3, 0)
    assert calls.count("explain") == 3, "a rule explained a sent image more than once"
    assert calls.count("score") == 3
    records = {Path(r["image"]).name: r for r in map(json.loads, log.read_text().splitlines())}
    stored = {Path(r["source"]).name: r for r in map(json.loads, (p.read_text() for p in (tmp_path / "out" / ".alpolicy" / "records").glob("*.json")))}
    assert sorted(records) == sorted(stored) == [p.name for p in paths]
    for name, record in records.items():
        assert stored[name]["reasons"] == record["reasons"]
        assert stored[name]["score"] == record["score"] == 0.5
        assert stored[name]["tags"] == record["tags"]
        assert stored[name]["metadata"]["alpolicy_reasons"] == "; ".join(record["reasons"])


# ---------------------------------------------------------------- select agrees with accepts
@pytest.mark.parametrize("rule", [
    {"rule": "confidence", "min": 30, "max": 99, "unit": "percent"},
    {"rule": "confidence", "min": 0.29, "max": 0.57},
    {"rule": "box_area", "min": 100, "max": 400},
    {"rule": "box_area", "min": 0.001, "max": 0.2, "unit": "fraction"},
    {"rule": "classes", "include": ["car", "dog"], "exclude": ["dog"]},
    {"rule": "classes", "exclude": ["car"]},
])
def test_a_builtin_select_keeps_exactly_what_accepts_accepts(rule):
    """The engine filters with ``select``; ``explain`` and the docs speak of ``accepts``."""
    leaf = Policy.from_dict({"version": 1, "detection": [rule]}).detection_leaves[0]
    rng = random.Random(3)
    confidences = [0.29, 0.3, 0.57, 0.99, 0.991, 0.0, 1.0]
    sides = [10, 10.01, 20, 19.99, 1, 300]
    for _ in range(300):
        detections = [
            det(rng.choice(["car", "dog", "bus"]), rng.choice(confidences + [rng.random()]),
                rng.choice(sides + [rng.uniform(1, 300)]), rng.choice(sides + [rng.uniform(1, 300)]))
            for _ in range(rng.randint(0, 6))
        ]
        prediction = Prediction.from_json(pred(*detections))
        expected = [d for d in detections if leaf.rule.accepts(d, prediction)]
        assert leaf.rule.select(detections, prediction) == expected
