"""``alpolicy.evaluation``: the counts against hand-worked examples.

Boxes are written as corners here (``box(cls, x0, y0, w, h)``) and stored centre-based, as
predictions are; every expected number below is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from alpolicy.errors import UsageError
from alpolicy.evaluation import evaluate, match, read_ground_truth
from alpolicy.evaluation.evaluate import oracle, random_spread
from alpolicy.evaluation.matching import COCO_KEYPOINT_SIGMAS, box_iou, mask_iou, sigmas_for
from alpolicy.io.images import ImageFile
from alpolicy.policy.engine import Policy
from alpolicy.policy.prediction import CLASSIFICATION, MULTI_LABEL_CLASSIFICATION, Prediction
from alpolicy.runtime.journal import Journal


def box(cls: str, x0: float, y0: float, w: float, h: float, confidence: float = 1.0, **extra) -> dict:
    return {"x": x0 + w / 2, "y": y0 + h / 2, "width": w, "height": h, "class": cls, "confidence": confidence, **extra}


def rect(x0: float, y0: float, x1: float, y1: float) -> list[dict]:
    return [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]


def image(*detections: dict, size: int = 100) -> Prediction:
    return Prediction(size, size, list(detections))


# ---------------------------------------------------------------------- boxes at and beside the threshold
def test_a_box_iou_of_exactly_the_threshold_matches_and_just_below_does_not():
    truth = image(box("circle", 0, 0, 10, 10))
    # (0,0,10,5) inside (0,0,10,10): intersection 50, union 100 -> IoU 0.5 exactly
    assert box_iou(box("circle", 0, 0, 10, 5), truth.detections[0]) == 0.5
    at = match(image(box("circle", 0, 0, 10, 5)), truth, 0.5)
    assert (at.errors, at.by_kind, len(at.matches)) == (0, {"miss": 0, "false_positive": 0, "wrong_class": 0}, 1)
    # height 4.999: intersection 49.99, union 100 -> IoU 0.4999: one false positive and one miss
    below = match(image(box("circle", 0, 0, 10, 4.999)), truth, 0.5)
    assert below.matches == [] and below.errors == 2
    assert below.by_kind == {"miss": 1, "false_positive": 1, "wrong_class": 0}
    assert below.by_class == {"circle": 2}
    # a lower threshold matches it
    assert match(image(box("circle", 0, 0, 10, 4.999)), truth, 0.4).errors == 0


def test_greedy_matching_goes_by_confidence_not_by_overlap():
    truth = image(box("circle", 0, 0, 10, 10))
    perfect = box("circle", 0, 0, 10, 10, confidence=0.6)   # IoU 1.0
    surer = box("circle", 0, 0, 10, 6, confidence=0.9)      # IoU 60 / 100 = 0.6
    found = match(image(perfect, surer), truth, 0.5)
    assert [(p, t) for p, t, *_ in found.matches] == [(1, 0)]  # the surer one took the truth
    assert found.matches[0][2] == pytest.approx(0.6) and found.matches[0][3] == "box"
    assert found.false_positives == [0] and found.misses == [] and found.errors == 1


def test_a_prediction_takes_the_truth_it_overlaps_most_and_each_truth_once():
    truths = image(box("circle", 0, 0, 10, 10), box("circle", 2, 0, 10, 10))
    # against truth 0: intersection 9 x 10 = 90, union 110 -> 0.818; against truth 1: 1.0
    found = match(image(box("circle", 2, 0, 10, 10, 0.9), box("circle", 2, 0, 10, 10, 0.8)), truths, 0.5)
    assert [(p, t) for p, t, *_ in found.matches] == [(0, 1), (1, 0)]
    assert found.errors == 0


def test_wrong_class_pairs_false_positives_and_misses_per_class():
    truths = image(box("circle", 0, 0, 10, 10), box("square", 50, 50, 10, 10), box("triangle", 20, 20, 10, 10))
    predictions = image(
        box("square", 0, 0, 10, 10, 0.9),     # over the circle: a wrong-class pair
        box("circle", 80, 80, 10, 10, 0.8),   # over nothing: a false positive
        box("triangle", 20, 20, 10, 10, 0.7), # matched
    )                                         # the square at (50, 50): a miss
    found = match(predictions, truths, 0.5)
    assert [(p, t) for p, t, *_ in found.matches] == [(2, 2)]
    assert [(p, t) for p, t, *_ in found.wrong_class_pairs] == [(0, 0)]
    assert found.false_positives == [1] and found.misses == [1]
    assert found.by_kind == {"miss": 1, "false_positive": 1, "wrong_class": 1}
    # errors = 2 unmatched predictions + 2 unmatched truths = miss + false_positive + 2 x wrong_class
    assert found.errors == 4
    # every unmatched object under its own class: square pred + square truth, circle pred + circle truth
    assert found.by_class == {"square": 2, "circle": 2}


def test_wrong_class_pairing_needs_the_threshold_and_goes_by_confidence():
    truth = image(box("circle", 0, 0, 10, 10))
    below = match(image(box("square", 0, 0, 10, 4.999)), truth, 0.5)  # IoU 0.4999
    assert below.by_kind == {"miss": 1, "false_positive": 1, "wrong_class": 0}
    # two wrong-class predictions over one truth: the surer pairs, the other is a false positive
    two = match(image(box("square", 0, 0, 10, 10, 0.3), box("triangle", 0, 0, 10, 8, 0.8)), truth, 0.5)
    assert [(p, t) for p, t, *_ in two.wrong_class_pairs] == [(1, 0)]
    assert two.false_positives == [0] and two.errors == 3
    # a same-class match comes first, even from a less confident prediction
    first = match(image(box("square", 0, 0, 10, 10, 0.9), box("circle", 0, 0, 10, 10, 0.1)), truth, 0.5)
    assert len(first.matches) == 1 and first.wrong_class_pairs == [] and first.false_positives == [0]


# ---------------------------------------------------------------------- masks
def test_mask_iou_counts_the_pixels_imagedraw_fills():
    # squares 0..9 and 5..14 (outline included): 100 pixels each, 5 x 10 = 50 shared -> 50 / 150
    assert mask_iou(rect(0, 0, 9, 9), rect(5, 0, 14, 9), 100, 100) == pytest.approx(1 / 3)
    assert mask_iou(rect(0, 0, 9, 9), rect(20, 20, 29, 29), 100, 100) == 0.0
    # the canvas is the image: a polygon beyond it counts only its pixels inside
    assert mask_iou(rect(0, 0, 9, 9), rect(0, 0, 19, 9), 10, 10) == 1.0


def test_segmentation_matches_by_mask_iou_not_by_box_when_both_have_polygons():
    # both boxes are (0, 0, 10, 10): box IoU 1; the polygons are columns 0..7 and 2..9 of rows 0..9:
    # 80 pixels each, columns 2..7 shared (60), union 100 -> mask IoU 0.6
    truth = image(box("circle", 0, 0, 10, 10, points=rect(0, 0, 7, 9)))
    found = match(image(box("circle", 0, 0, 10, 10, points=rect(2, 0, 9, 9))), truth, 0.5)
    assert [(value, measure) for *_, value, measure in found.matches] == [(pytest.approx(0.6), "mask")]
    # columns 0..5 (60) and 3..9 (70): 30 shared, union 100 -> 0.3: not matched although the boxes are equal
    truth = image(box("circle", 0, 0, 10, 10, points=rect(0, 0, 5, 9)))
    apart = match(image(box("circle", 0, 0, 10, 10, points=rect(3, 0, 9, 9))), truth, 0.5)
    assert apart.matches == [] and apart.by_kind == {"miss": 1, "false_positive": 1, "wrong_class": 0}
    # one side without a polygon: box IoU
    boxed = match(image(box("circle", 0, 0, 10, 10)), truth, 0.5)
    assert [measure for *_, measure in boxed.matches] == ["box"]


# ---------------------------------------------------------------------- keypoints
def keypoint(name: str, x: float, y: float) -> dict:
    return {"x": x, "y": y, "confidence": 1.0, "class": name, "class_id": 0}


def test_keypoints_match_by_oks_with_the_threshold_applied_to_it():
    truth = image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("tip", 5, 5)]))
    # area 100, sigma 0.1 (not COCO's skeleton): k = 0.2, OKS = exp(-d^2 / (2 x 100 x 0.04)) = exp(-d^2 / 8)
    near = match(image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("tip", 7, 5)])), truth, 0.5)
    assert [(v, m) for *_, v, m in near.matches] == [(pytest.approx(math.exp(-4 / 8)), "oks")]  # 0.607
    far = match(image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("tip", 8, 5)])), truth, 0.5)
    assert far.matches == [] and far.errors == 2  # exp(-9 / 8) = 0.325, although the boxes are equal


def test_oks_averages_the_labelled_keypoints_and_a_missing_one_counts_zero():
    truth = image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("a", 2, 2), keypoint("b", 8, 8)]))
    # "a" exact (1.0), "b" not predicted (0): OKS = 0.5, exactly the threshold: matched
    found = match(image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("a", 2, 2)])), truth, 0.5)
    assert [v for *_, v, _ in found.matches] == [0.5]
    assert match(image(box("hand", 0, 0, 10, 10, keypoints=[keypoint("a", 2, 2)])), truth, 0.51).matches == []


def test_coco_skeletons_use_coco_sigmas_and_others_a_uniform_one():
    coco = sigmas_for(list(COCO_KEYPOINT_SIGMAS))
    assert coco["nose"] == pytest.approx(0.026) and coco["left_hip"] == pytest.approx(0.107)
    assert sigmas_for(["nose", "tail"]) == {"nose": 0.1, "tail": 0.1}
    truth = image(box("person", 0, 0, 10, 10, keypoints=[keypoint("nose", 5, 5)]))
    guess = image(box("person", 0, 0, 10, 10, keypoints=[keypoint("nose", 6, 5)]))
    # d = 1, area 100; COCO: k = 0.052, exp(-1 / (200 x 0.002704)) = exp(-1.849) = 0.157
    strict = match(guess, truth, 0.1, {"person": coco})
    assert strict.matches[0][2] == pytest.approx(math.exp(-1 / (200 * 0.052 ** 2)))
    # uniform 0.1: exp(-1 / 8) = 0.882
    assert match(guess, truth, 0.1).matches[0][2] == pytest.approx(math.exp(-1 / 8))


# ---------------------------------------------------------------------- classification
def classifier(top: str | None, *others: tuple[str, float]) -> Prediction:
    scores = ([{"class": top, "confidence": 0.9}] if top else []) + [{"class": c, "confidence": p} for c, p in others]
    document = {"image": {"width": 10, "height": 10}, "predictions": scores}
    if top:
        document.update(top=top, confidence=0.9)
    return Prediction.from_json(document, task=CLASSIFICATION)


def multi_label(*predicted: str) -> Prediction:
    scores = {name: {"confidence": 0.9 if name in predicted else 0.1, "class_id": i}
              for i, name in enumerate(["a", "b", "c"])}
    return Prediction.from_json({"image": {"width": 10, "height": 10}, "predictions": scores,
                                 "predicted_classes": list(predicted)}, task=MULTI_LABEL_CLASSIFICATION)


def labels(*classes: str) -> Prediction:
    return image(*(box(c, 0, 0, 10, 10) for c in classes), size=10)


def test_single_label_classification_errors():
    assert classifier("cat", ("dog", 0.1)).task == CLASSIFICATION
    right = match(classifier("cat", ("dog", 0.1)), labels("cat"))
    assert right.errors == 0 and len(right.matches) == 1
    wrong = match(classifier("cat", ("dog", 0.1)), labels("dog"))  # a wrong top class: one wrong-class pair
    assert wrong.by_kind == {"miss": 0, "false_positive": 0, "wrong_class": 1} and wrong.errors == 2
    assert wrong.by_class == {"cat": 1, "dog": 1}
    assert match(classifier("cat"), labels()).by_kind == {"miss": 0, "false_positive": 1, "wrong_class": 0}


def test_multi_label_classification_errors_are_the_symmetric_difference():
    found = match(multi_label("a", "b"), labels("b", "c"))
    assert found.by_kind == {"miss": 1, "false_positive": 1, "wrong_class": 0} and found.errors == 2
    assert found.by_class == {"a": 1, "c": 1}
    assert match(multi_label("a", "b"), labels("a", "b")).errors == 0


# ---------------------------------------------------------------------- a hand-worked journal
def write_coco(path: Path, images: dict[str, list[dict]], classes=("circle", "square")) -> Path:
    """A COCO ground truth of ``name -> boxes`` (corner boxes, as COCO has them)."""
    ids = {name: i for i, name in enumerate(classes, start=1)}
    annotations = [
        {"id": len(annotations_so_far) + 1, "image_id": image_id, "category_id": ids[d["class"]],
         "bbox": [d["x"] - d["width"] / 2, d["y"] - d["height"] / 2, d["width"], d["height"]], "area": d["width"] * d["height"],
         "iscrowd": 0}
        for annotations_so_far in [[]]
        for image_id, (name, boxes) in enumerate(images.items(), start=1) for d in boxes
        if not annotations_so_far.append(0)
    ]
    document = {"images": [{"id": i, "file_name": name, "width": 100, "height": 100} for i, name in enumerate(images, start=1)],
                "categories": [{"id": i, "name": n} for n, i in ids.items()], "annotations": annotations}
    path.write_text(json.dumps(document))
    return path


def store(path: Path, predictions: dict[str, list[dict]]) -> Path:
    """Predictions in a real journal, in this order (the stream order)."""
    journal = Journal(path)
    try:
        for name, detections in predictions.items():
            journal.save_prediction(ImageFile(f"/frames/{name}", 1, 1), "m", Prediction(100, 100, detections))
    finally:
        journal.close()
    return path


CIRCLE = box("circle", 10, 10, 20, 20)

#: f1: matched (0 errors); f2: a miss (1); f3: two false positives (2); f4: a wrong-class pair (2): 5 errors.
TRUTH = {"f1.jpg": [CIRCLE], "f2.jpg": [CIRCLE], "f3.jpg": [], "f4.jpg": [CIRCLE]}
STORED = {
    "f1.jpg": [{**CIRCLE, "confidence": 0.9}],
    "f2.jpg": [],
    "f3.jpg": [box("square", 50, 50, 10, 10, 0.4), box("square", 70, 70, 10, 10, 0.45)],
    "f4.jpg": [{**CIRCLE, "class": "square", "confidence": 0.5}],
}
UNSURE = {"version": 1, "detection": [{"rule": "confidence", "max": 0.55}], "image": {"rule": "witnesses", "min": 1}}
ANY = {"version": 1, "image": {"rule": "detection_count", "min": 1}}


@pytest.fixture
def worked(tmp_path):
    return str(write_coco(tmp_path / "gt.json", TRUTH)), str(store(tmp_path / "j.sqlite", STORED))


def test_totals_random_oracle_and_efficiency_on_a_hand_worked_journal(worked):
    gt, journal = worked
    document = evaluate(gt, journal, [("unsure", Policy.from_dict(UNSURE)), ("any", Policy.from_dict(ANY))])
    assert document["evaluated"] == 4 and document["errors_total"] == 5
    assert document["errors_total_by_kind"] == {"miss": 1, "false_positive": 2, "wrong_class": 1}
    # circle: f2's miss + f4's circle truth; square: f3's two + f4's square prediction
    assert document["errors_total_by_class"] == {"circle": 2, "square": 3}
    assert {name: entry["errors"] for name, entry in document["per_image"].items()} == {
        "f1.jpg": 0, "f2.jpg": 1, "f3.jpg": 2, "f4.jpg": 2}
    assert document["skipped"] == {"no ground truth": 0, "no prediction": 0}
    unsure, anything = document["policies"]
    # unsure: f3 (0.40, 0.45) and f4 (0.50): 4 errors; random 2/4 x 5 = 2.5; oracle 2 + 2 = 4 -> efficiency 1
    assert (unsure["picked"], unsure["images"], unsure["errors_captured"]) == (2, ["f3.jpg", "f4.jpg"], 4)
    assert (unsure["random_mean"], unsure["oracle"], unsure["efficiency"]) == (2.5, 4, 1.0)
    assert unsure["by_kind"] == {"miss": 0, "false_positive": 2, "wrong_class": 1}
    assert unsure["by_class"] == {"circle": 1, "square": 3}
    # any: f1, f3, f4: 4 errors; random 3/4 x 5 = 3.75; oracle 2 + 2 + 1 = 5 -> (4 - 3.75) / (5 - 3.75) = 0.2
    assert (anything["picked"], anything["errors_captured"], anything["random_mean"], anything["oracle"]) == (3, 4, 3.75, 5)
    assert anything["efficiency"] == pytest.approx(0.2)
    # two random images of [0, 1, 2, 2]: the 6 pairs hold 1, 2, 2, 3, 3, 4 (mean 2.5, std sqrt(5.5 / 6) = 0.957)
    spread = unsure["random_spread"]
    assert (spread["draws"], spread["seed"], spread["p05"], spread["p95"]) == (1000, 0, 1.0, 4.0)
    assert spread["std"] == pytest.approx(math.sqrt(5.5 / 6), abs=0.06)
    assert document["oracle"] is None and document["budget"] is None


def test_per_image_entries_say_what_was_matched(worked):
    gt, journal = worked
    entry = evaluate(gt, journal, [])["per_image"]["f4.jpg"]
    assert (entry["miss"], entry["false_positive"], entry["wrong_class"], entry["errors"]) == (0, 0, 1, 2)
    assert entry["matches"] == []
    assert entry["unmatched_predictions"] == [{**STORED["f4.jpg"][0], "kind": "wrong_class", "truth_class": "circle",
                                               "measure": "box", "similarity": 1.0}]
    assert entry["unmatched_truths"][0]["kind"] == "wrong_class" and entry["unmatched_truths"][0]["predicted_class"] == "square"
    matched = evaluate(gt, journal, [])["per_image"]["f1.jpg"]["matches"]
    assert matched == [{"class": "circle", "measure": "box", "similarity": 1.0,
                        "prediction": STORED["f1.jpg"][0], "truth": {k: CIRCLE[k] for k in ("class", "x", "y", "width", "height")}}]


def test_random_spread_and_oracle_by_hand():
    assert oracle([0, 1, 2, 2], 3) == 5 and oracle([3], 1) == 3
    every = random_spread([0, 1, 2, 2], 4)  # all the images: no spread
    assert (every["std"], every["p05"], every["p95"]) == (0.0, 5.0, 5.0)
    assert random_spread([0, 1, 2, 2], 2) == random_spread([0, 1, 2, 2], 2)  # seeded


def test_efficiency_is_null_when_the_oracle_is_no_better_than_random(tmp_path):
    gt = write_coco(tmp_path / "gt.json", {"a.jpg": [CIRCLE], "b.jpg": [CIRCLE]})
    journal = store(tmp_path / "j.sqlite", {"a.jpg": [{**CIRCLE, "confidence": 0.9}], "b.jpg": [{**CIRCLE, "confidence": 0.9}]})
    outcome = evaluate(str(gt), str(journal), [("any", Policy.from_dict(ANY))])["policies"][0]
    assert (outcome["errors_captured"], outcome["random_mean"], outcome["oracle"], outcome["efficiency"]) == (0, 0.0, 0, None)


# ---------------------------------------------------------------------- budgets, sampling
SCORED = {"version": 1, "image": {"any": [{"rule": "uncertainty", "min_score": 0.5}, {"rule": "detection_count", "min": 1}]}}


def test_budget_takes_the_highest_scores_none_last_ties_in_stream_order(tmp_path):
    # stream order y, x, w, v (not the names' order); uncertainty = 1 - confidence when >= 0.5, else None
    stored = {"y.jpg": [box("circle", 0, 0, 10, 10, 0.9)],   # 0.1 < 0.5: qualifies by detection_count, score None
              "x.jpg": [box("circle", 0, 0, 10, 10, 0.3)],   # 0.7
              "w.jpg": [box("circle", 0, 0, 10, 10, 0.3)],   # 0.7, after x in the stream
              "v.jpg": [box("circle", 0, 0, 10, 10, 0.2)]}   # 0.8
    gt = write_coco(tmp_path / "gt.json", {name: [] for name in stored})
    journal = store(tmp_path / "j.sqlite", stored)
    policy = [("scored", Policy.from_dict(SCORED))]

    def picked(budget):
        return evaluate(str(gt), str(journal), policy, budget=budget)["policies"][0]["images"]

    assert picked(1) == ["v.jpg"]
    assert picked(2) == ["x.jpg", "v.jpg"]            # v (0.8) and x (0.7, before w): listed in stream order
    assert picked(3) == ["x.jpg", "w.jpg", "v.jpg"]
    assert picked(4) == picked(None) == ["y.jpg", "x.jpg", "w.jpg", "v.jpg"]
    document = evaluate(str(gt), str(journal), policy, budget=2)
    assert document["budget"] == 2 and document["oracle"] == 2  # each image: one false positive; 2 images


def test_sampling_rules_run_and_charge_nothing(tmp_path, worked):
    gt, journal = worked
    limited = {**ANY, "sampling": [{"rule": "limit", "max": 2, "per": "day"}]}
    top = {**ANY, "sampling": [{"rule": "top_k", "k": 1}]}
    outcomes = evaluate(gt, journal, [("limited", Policy.from_dict(limited)), ("top", Policy.from_dict(top))])["policies"]
    assert outcomes[0]["images"] == ["f1.jpg", "f3.jpg"]  # the first two in stream order
    assert outcomes[1]["picked"] == 1
    again = evaluate(gt, journal, [("limited", Policy.from_dict(limited))])["policies"][0]
    assert again["images"] == ["f1.jpg", "f3.jpg"]  # nothing was charged: the same picks
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT COUNT(*) FROM sampling_charges").fetchone() == (0,)


# ---------------------------------------------------------------------- the ground truth, the stream
def test_ground_truth_is_keyed_by_file_name_and_a_name_given_twice_is_refused(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "train/a.jpg", "width": 10, "height": 10}],
                                "categories": [], "annotations": []}))
    assert list(read_ground_truth(path).images) == ["a.jpg"]
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "train/a.jpg", "width": 10, "height": 10},
                                           {"id": 2, "file_name": "valid/a.jpg", "width": 10, "height": 10}],
                                "categories": [], "annotations": []}))
    with pytest.raises(UsageError, match="names the file 'a.jpg' twice"):
        read_ground_truth(path)


def test_ground_truth_polygons_and_keypoint_sigmas_are_read(tmp_path):
    path = tmp_path / "gt.json"
    names = list(COCO_KEYPOINT_SIGMAS)
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                         "keypoints": [1, 1, 2] + [0, 0, 0] * 16, "num_keypoints": 1}]}))
    truth = read_ground_truth(path)
    assert truth.images["a.jpg"].detections[0]["keypoints"][0]["class"] == "nose"
    assert truth.sigmas["person"]["nose"] == pytest.approx(0.026)


def test_the_latest_prediction_of_a_path_counts_in_its_first_place(tmp_path):
    gt = write_coco(tmp_path / "gt.json", {"a.jpg": [CIRCLE], "b.jpg": [CIRCLE]})
    journal = Journal(tmp_path / "j.sqlite")
    journal.save_prediction(ImageFile("/f/a.jpg", 1, 1), "m", Prediction(100, 100, []))
    journal.save_prediction(ImageFile("/f/b.jpg", 1, 1), "m", Prediction(100, 100, []))
    journal.save_prediction(ImageFile("/f/a.jpg", 1, 2), "m", Prediction(100, 100, [{**CIRCLE, "confidence": 0.9}]))
    journal.close()
    document = evaluate(str(gt), str(tmp_path / "j.sqlite"), [("any", Policy.from_dict(ANY))], budget=None)
    assert document["per_image"]["a.jpg"]["errors"] == 0 and list(document["per_image"]) == ["a.jpg", "b.jpg"]


def test_no_image_in_common_says_how_many_each_side_had(tmp_path):
    gt = write_coco(tmp_path / "gt.json", {"a.jpg": [], "b.jpg": []})
    journal = store(tmp_path / "j.sqlite", {"c.jpg": []})
    with pytest.raises(UsageError, match="1 images have a stored prediction .* 2 a ground-truth entry"):
        evaluate(str(gt), str(journal), [])


def test_segmentation_ground_truth_from_coco_is_matched_by_mask(tmp_path):
    """COCO polygons read by the one COCO reader reach the mask IoU; the stored prediction's own
    box equals the truth's, so only the masks can tell it apart."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "circle"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 60, "iscrowd": 0,
                         "segmentation": [[0, 0, 5, 0, 5, 9, 0, 9]]}]}))  # columns 0..5: 60 pixels
    journal = Journal(tmp_path / "j.sqlite")
    stored = Prediction.from_json({"image": {"width": 20, "height": 20}, "predictions": [
        box("circle", 0, 0, 10, 10, 0.9, points=rect(3, 0, 9, 9))]})  # columns 3..9: 70, 30 shared -> 0.3
    journal.save_prediction(ImageFile("/f/a.jpg", 1, 1), "m", stored)
    journal.close()
    entry = evaluate(str(gt), str(tmp_path / "j.sqlite"), [], iou=0.25)["per_image"]["a.jpg"]
    assert [(m["measure"], round(m["similarity"], 6)) for m in entry["matches"]] == [("mask", 0.3)]
    assert evaluate(str(gt), str(tmp_path / "j.sqlite"), [], iou=0.5)["per_image"]["a.jpg"]["errors"] == 2


def test_a_journal_of_several_models_is_refused_in_one_line(tmp_path):
    gt = write_coco(tmp_path / "gt.json", {"a.jpg": []})
    journal = Journal(tmp_path / "j.sqlite")
    for model in ("m1", "m2"):
        journal.save_prediction(ImageFile("/f/a.jpg", 1, 1), model, Prediction(100, 100, []))
    journal.close()
    with pytest.raises(UsageError, match="holds predictions of 2 models"):
        evaluate(str(gt), str(tmp_path / "j.sqlite"), [])
