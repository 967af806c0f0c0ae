"""Sampling rules: Roboflow Inference's strategies at and beside their bounds, seeded draws,
first-with-room limits in fixed UTC windows, budgets across restarts, Inference configs as-is."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, PolicyError, RunOptions
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import Journal
from alpolicy.runtime.sampler import Sampler

from .helpers import det, pred


def image(name: str) -> ImageFile:
    return ImageFile(f"/frames/{name}.jpg", 1000, 1)


def sampler_for(sampling: list, clock=lambda: 1_800_000_000.0, journal=None, run_id=1, **extra) -> tuple[Sampler, Policy]:
    policy = Policy.from_dict({"version": 1, "image": {"rule": "detection_count", "min": 0}, "sampling": sampling, **extra})
    return Sampler(policy, journal or Journal(), run_id, clock), policy


def sampled(sampler: Sampler, policy: Policy, name: str, prediction: dict) -> bool:
    return sampler.admit(image(name), policy.evaluate(prediction)).sampled


# ---------------------------------------------------------------- Inference's semantics, transcribed as the oracle
def inference_close_to_threshold(detections, classes, threshold, epsilon, minimum):
    count = sum(1 for d in detections if (classes is None or d["class"] in classes) and abs(d["confidence"] - threshold) < epsilon)
    return count >= minimum


def inference_detections_number(detections, classes, more_than, less_than):
    n = sum(1 for d in detections if classes is None or d["class"] in classes)
    return (more_than is None or n > more_than) and (less_than is None or n < less_than)


@pytest.mark.parametrize(("confidence", "expected"), [(0.25, False), (0.26, True), (0.5, True), (0.74, True), (0.75, False)])
def test_close_to_threshold_is_strict(confidence, expected):
    sampler, policy = sampler_for([{"rule": "close_to_threshold", "threshold": 0.5, "epsilon": 0.25}])
    assert sampled(sampler, policy, "a", pred(det(confidence=confidence))) is expected


@pytest.mark.parametrize(("count", "expected"), [(2, False), (3, True), (5, True), (6, False)])
def test_detections_number_based_bounds_are_exclusive(count, expected):
    sampler, policy = sampler_for([{"rule": "detections_number_based", "more_than": 2, "less_than": 6}])
    assert sampled(sampler, policy, "a", pred(*[det(confidence=0.01 * i) for i in range(count)])) is expected


def test_strategies_match_inference_on_random_cases():
    rng = random.Random(6)
    for _ in range(150):
        classes = rng.choice([None, ["car"], ["car", "bike"]])
        threshold, epsilon, minimum = rng.choice([0.3, 0.5, 0.7]), rng.choice([0.05, 0.1, 0.2]), rng.randint(0, 3)
        more, less = rng.choice([None, 0, 1, 2]), rng.choice([None, 3, 4, 6])
        ctt = {"rule": "close_to_threshold", "threshold": threshold, "epsilon": epsilon, "minimum": minimum}
        dnb = {"rule": "detections_number_based"}
        if classes:
            ctt["classes"] = dnb["classes"] = classes
        if more is not None:
            dnb["more_than"] = more
        if less is not None:
            dnb["less_than"] = less
        s1, p1 = sampler_for([ctt])
        s2, p2 = sampler_for([dnb])
        for index in range(15):
            detections = [det(rng.choice(["car", "bike", "dog"]), round(rng.random(), 2)) for _ in range(rng.randint(0, 6))]
            prediction = pred(*detections)
            assert sampled(s1, p1, f"{index}", prediction) == inference_close_to_threshold(detections, classes, threshold, epsilon, minimum)
            assert sampled(s2, p2, f"{index}", prediction) == inference_detections_number(detections, classes, more, less)


def test_random_draws_are_seeded_reproducible_and_near_the_rate():
    def picks(seed):
        sampler, policy = sampler_for([{"rule": "random", "rate": 0.2, "seed": seed}])
        return [sampled(sampler, policy, f"f{i}", pred(det())) for i in range(3000)]

    first, again, other = picks(1), picks(1), picks(2)
    assert first == again  # same seed, same images: same choices (reruns, resumes)
    assert first != other
    assert 0.17 < sum(first) / len(first) < 0.23


def test_probability_applies_a_seeded_draw_after_the_match():
    sampler, policy = sampler_for([{"rule": "close_to_threshold", "threshold": 0.5, "epsilon": 0.5, "probability": 0.5}])
    hits = sum(sampled(sampler, policy, f"f{i}", pred(det(confidence=0.5))) for i in range(2000))
    assert 900 < hits < 1100


# ---------------------------------------------------------------- limits and budgets
def test_the_first_matching_strategy_with_room_is_charged_and_its_tags_added():
    clock = [1_800_000_000.0]
    sampler, policy = sampler_for(
        [
            {"rule": "random", "name": "first", "rate": 1.0, "tags": ["a"], "limits": [{"type": "hourly", "value": 2}]},
            {"rule": "random", "name": "second", "rate": 1.0, "tags": ["b"], "limits": [{"type": "hourly", "value": 1}]},
        ],
        clock=lambda: clock[0],
    )
    answers = [sampler.admit(image(f"f{i}"), policy.evaluate(pred(det()))) for i in range(4)]
    assert [(a.sampled, a.by, a.tags) for a in answers] == [
        (True, "first", ["a"]), (True, "first", ["a"]), (True, "second", ["b"]), (False, "sampling", []),
    ]
    assert answers[3].reason == "limits reached for first, second"
    clock[0] += 3600  # the next fixed UTC hour: room again
    assert sampler.admit(image("f9"), policy.evaluate(pred(det()))).by == "first"


def test_windows_are_fixed_utc_minutes_hours_and_days():
    journal = Journal()
    now = [1_800_000_000.0 + 59]  # 08:00:59 UTC... one second before a minute boundary
    sampler, policy = sampler_for([{"rule": "random", "name": "m", "rate": 1, "limits": [{"type": "minutely", "value": 1}]}],
                                  clock=lambda: now[0], journal=journal)
    assert sampled(sampler, policy, "a", pred(det()))
    assert not sampled(sampler, policy, "b", pred(det()))
    now[0] += 1  # a new minute, one second later
    assert sampled(sampler, policy, "b", pred(det()))


def test_a_limit_gate_per_class_and_per_run():
    sampler, policy = sampler_for([{"rule": "limit", "max": 2, "per_class": True}])
    answers = [sampled(sampler, policy, f"c{i}", pred(det("car"))) for i in range(3)]
    answers += [sampled(sampler, policy, f"b{i}", pred(det("bus"))) for i in range(3)]
    assert answers == [True, True, False, True, True, False]
    refused = sampler.admit(image("c9"), policy.evaluate(pred(det("car"))))
    assert refused.by == "limit" and refused.reason == "at most 2 images of class 'car' per this run: reached"


def test_a_gate_is_not_charged_for_an_image_a_strategy_turned_down():
    sampler, policy = sampler_for([{"rule": "limit", "max": 1}, {"rule": "close_to_threshold", "threshold": 0.5, "epsilon": 0.1}])
    assert not sampled(sampler, policy, "far", pred(det(confidence=0.9)))
    assert sampled(sampler, policy, "near", pred(det(confidence=0.52)))


def test_charging_the_same_image_twice_counts_once():
    journal = Journal()
    for run_id in (1, 2):  # a resumed run decides the same image again
        sampler, policy = sampler_for([{"rule": "limit", "max": 1, "per": "total"}], journal=journal, run_id=run_id)
        assert sampled(sampler, policy, "same", pred(det()))
    assert not sampled(sampler, policy, "other", pred(det()))


def test_a_daily_budget_holds_across_runs_of_the_pipeline(tmp_path):
    frames, predictions = tmp_path / "frames", tmp_path / "predictions"
    frames.mkdir()
    predictions.mkdir()
    from PIL import Image

    def add_frames(start: int, count: int) -> None:
        for i in range(start, start + count):
            Image.new("RGB", (32, 32), (i * 10, 0, 0)).save(frames / f"f{i:02d}.png")
            (predictions / f"f{i:02d}.json").write_text(json.dumps(pred(det(confidence=0.5))))

    policy = {"version": 1, "sampling": [{"rule": "limit", "max": 5, "per": "day"}]}
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False)

    def run() -> alpolicy.RunReport:
        return alpolicy.run(str(frames), policy, model=f"replay:{predictions}", destination=f"folder:{tmp_path / 'out'}", options=options)

    add_frames(0, 12)
    first = run()
    assert first.sent == 5 and first.rejected_by["limit"] == 7
    add_frames(12, 6)  # new footage arrives the same day: the day's budget is spent
    second = run()
    assert second.sent == 0 and second.already_sent == 5 and second.rejected_by["limit"] == 13
    assert len(list((tmp_path / "out" / "images").iterdir())) == 5


# ---------------------------------------------------------------- policies and Inference configs
def test_sampling_rule_errors_are_located():
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict({"version": 1, "sampling": [
            {"rule": "random"},
            {"rule": "detections_number_based", "more_than": 4, "less_than": 4},
            {"rule": "random", "rate": 0.1, "limits": [{"type": "weekly", "value": 1}]},
            {"rule": "close_to_threshold", "threshold": 0.5, "epsilon": 0.1, "treshold": 1},
        ]})
    messages = "\n".join(caught.value.messages)
    assert "$.sampling[0]: 'rate' is a required property" in messages
    assert "$.sampling[1].more_than: 4 >= less_than 4" in messages
    assert "$.sampling[2].limits[0].type: 'weekly' is not one of ['minutely', 'hourly', 'daily']" in messages
    assert "$.sampling[3].treshold: unknown parameter 'treshold' for rule 'close_to_threshold' (did you mean 'threshold'?)" in messages


INFERENCE_CONFIG = {
    "enabled": True,
    "max_image_size": [1200, 1200],
    "jpeg_compression_level": 75,
    "persist_predictions": True,
    "sampling_strategies": [
        {"name": "near", "type": "close_to_threshold", "selected_class_names": ["car"], "threshold": 0.5,
         "epsilon": 0.25, "probability": 1.0, "minimum_objects_close_to_threshold": 1, "only_top_classes": True,
         "tags": ["near"], "limits": [{"type": "minutely", "value": 10}, {"type": "daily", "value": 100}]},
        {"name": "crowd", "type": "detections_number_based", "more_than": 3, "probability": 1.0, "tags": ["crowd"]},
    ],
    "batching_strategy": {"batches_name_prefix": "al", "recreation_interval": "daily"},
    "tags": ["inference"],
}


def test_an_inference_configuration_is_read_as_is(tmp_path):
    path = tmp_path / "active_learning.json"
    path.write_text(json.dumps(INFERENCE_CONFIG))
    policy = Policy.from_file(path)
    assert policy.document["sampling"][0] == {
        "rule": "close_to_threshold", "name": "near", "threshold": 0.5, "epsilon": 0.25, "classes": ["car"],
        "probability": 1.0, "minimum": 1, "tags": ["near"],
        "limits": [{"type": "minutely", "value": 10}, {"type": "daily", "value": 100}],
    }
    sampler = Sampler(policy, Journal(), 1)
    near = sampler.admit(image("a"), policy.evaluate(pred(det("car", 0.6))))
    crowd = sampler.admit(image("b"), policy.evaluate(pred(*[det("dog", 0.9)] * 4)))
    neither = sampler.admit(image("c"), policy.evaluate(pred(det("dog", 0.6))))
    assert (near.by, near.tags, crowd.by, crowd.tags, neither.sampled) == ("near", ["near"], "crowd", ["crowd"], False)
    assert policy.evaluate(pred()).tags == ["inference"]


def test_inference_configuration_mistakes_are_named():
    bad = {**INFERENCE_CONFIG, "sampling_strategies": [
        {"name": "x", "type": "classes_based", "selected_class_names": ["a"], "probability": 1},
        {"name": "y", "type": "randm", "traffic_percentage": 0.1},
        {"name": "z", "type": "random", "traffic_percentag": 0.1},
    ]}
    with pytest.raises(PolicyError) as caught:
        Policy.from_inference_config(bad)
    messages = "\n".join(caught.value.messages)
    assert "$.sampling_strategies[0].type: 'classes_based' samples classification output" in messages
    assert "$.sampling_strategies[1].type: unknown strategy type 'randm' (did you mean 'random'?)" in messages
    assert "$.sampling_strategies[2].traffic_percentag: unknown parameter 'traffic_percentag' for a random strategy (did you mean 'traffic_percentage'?)" in messages


def test_top_k_sends_the_highest_scores_of_the_whole_run_and_resumes(tmp_path):
    from PIL import Image

    frames, predictions = tmp_path / "frames", tmp_path / "predictions"
    frames.mkdir()
    predictions.mkdir()
    confidences = [0.93, 0.41, 0.77, 0.12, 0.66, 0.35, 0.88, 0.29, 0.51, 0.97, 0.62, 0.18]
    for i, confidence in enumerate(confidences):
        Image.new("RGB", (32, 32), (i * 20, 5, 5)).save(frames / f"f{i:02d}.png")
        (predictions / f"f{i:02d}.json").write_text(json.dumps(pred(det(confidence=confidence))))
    policy = {"version": 1, "image": {"rule": "uncertainty"}, "sampling": [{"rule": "top_k", "k": 4}]}
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=3)
    out = tmp_path / "out"

    def run() -> alpolicy.RunReport:
        return alpolicy.run(str(frames), policy, model=f"replay:{predictions}", destination=f"folder:{out}", options=options)

    first = run()
    least_confident = sorted(range(len(confidences)), key=lambda i: confidences[i])[:4]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"f{i:02d}.png" for i in least_confident)
    assert first.sent == first.sampled == 4 and first.rejected_by["top_k"] == 8
    again = run()  # a rerun (or a resume): the k already sent fill the budget
    assert again.sent == 0 and again.already_sent == 4 and len(list((out / "images").iterdir())) == 4


def test_balance_steers_classes_toward_their_targets():
    sampler, policy = sampler_for([{"rule": "balance", "targets": {"car": 3, "bike": 1}, "warmup": 4}])
    rng = random.Random(4)
    stream = [rng.choice(["car"] * 8 + ["bike", "dog"]) for _ in range(400)]  # 80% cars, 10% bikes, 10% dogs
    taken = [name for i, name in enumerate(stream) if sampled(sampler, policy, f"{i}", pred(det(name)))]
    assert "dog" not in taken  # not a target class
    assert taken.count("bike") >= 0.8 * stream.count("bike")  # the rare class is nearly always welcome
    share = taken.count("bike") / len(taken)
    assert 0.22 < share < 0.28, share  # 1 in 4, as asked, instead of 1 in 9 in the stream
    refused = sampler.admit(image("late"), policy.evaluate(pred(det("dog"))))
    assert refused.reason == "class balance: none of the target classes"


@pytest.mark.parametrize(("rate", "draws_below"), [(0.0, 0), (1.0, 50)])
def test_random_rate_bounds_take_nothing_or_everything(rate, draws_below):
    sampler, policy = sampler_for([{"rule": "random", "rate": rate}])
    assert sum(sampled(sampler, policy, f"f{i}", pred(det())) for i in range(50)) == draws_below


def test_a_limit_of_zero_takes_nothing_and_windows_reset_at_utc_midnight():
    sampler, policy = sampler_for([{"rule": "limit", "max": 0}])
    assert not sampled(sampler, policy, "a", pred(det()))
    now = [1_800_057_599.0]  # 23:59:59 UTC (1_800_057_600 is a multiple of 86,400)
    sampler, policy = sampler_for([{"rule": "limit", "max": 1, "per": "day"}], clock=lambda: now[0])
    assert sampled(sampler, policy, "a", pred(det())) and not sampled(sampler, policy, "b", pred(det()))
    now[0] += 1  # 00:00:00 UTC: a new day
    assert sampled(sampler, policy, "b", pred(det()))
