"""``alpolicy evaluate`` through the real command line: a synthetic footage (``alpolicy_onnx.
synthetic``, its COCO ground truth) triaged with ``replay:`` predictions made from that ground
truth with known mistakes, then evaluated; and every user mistake in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpolicy.io.images import ImageFile
from alpolicy.policy.prediction import Prediction
from alpolicy.runtime.journal import Journal
from alpolicy_onnx.synthetic import COCO_FILE, write_footage

from .cli import alpolicy

UNSURE = {"version": 1, "name": "unsure", "detection": [{"rule": "confidence", "max": 0.55}],
          "image": {"rule": "witnesses", "min": 1}}
EVERYTHING = {"version": 1, "name": "everything", "image": {"rule": "detection_count", "min": 0}}

DOCUMENT_KEYS = {"ground_truth", "journal", "iou", "budget", "evaluated", "errors_total", "errors_total_by_kind",
                 "errors_total_by_class", "oracle", "skipped", "per_image", "policies"}
POLICY_KEYS = {"policy", "name", "picked", "images", "errors_captured", "by_kind", "by_class", "random_mean",
               "random_spread", "oracle", "efficiency"}
IMAGE_KEYS = {"miss", "false_positive", "wrong_class", "errors", "matches", "unmatched_predictions", "unmatched_truths"}


def mistaken(truth: dict) -> tuple[dict, dict[str, int]]:
    """A COCO predictions file made from the ground truth with known mistakes, and their counts:
    annotation k (in order) is dropped when k % 4 == 0 (a miss), given the next class when
    k % 4 == 1 (a wrong-class pair), kept at score 0.45 or 0.9 otherwise; every third image gets a
    5 x 5 box in its corner (score 0.4) that overlaps nothing (a false positive)."""
    annotations, expected = [], {"miss": 0, "false_positive": 0, "wrong_class": 0}
    for k, annotation in enumerate(truth["annotations"]):
        if k % 4 == 0:
            expected["miss"] += 1
            continue
        entry = {**annotation, "score": 0.9 if k % 4 == 3 else 0.45}
        if k % 4 == 1:
            entry["category_id"] = annotation["category_id"] % 3 + 1
            expected["wrong_class"] += 1
        annotations.append(entry)
    for image in truth["images"][::3]:
        annotations.append({"id": 10_000 + image["id"], "image_id": image["id"], "category_id": 1,
                            "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0, "score": 0.4})
        expected["false_positive"] += 1
    return {**truth, "annotations": annotations}, expected


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("footage")
    write_footage(root / "frames", n_frames=24, seed=3, size=(160, 120))
    truth = json.loads((root / "frames" / COCO_FILE).read_text())
    predictions, expected = mistaken(truth)
    (root / "predictions.coco.json").write_text(json.dumps(predictions))
    for name, policy in (("unsure.json", UNSURE), ("everything.json", EVERYTHING)):
        (root / name).write_text(json.dumps(policy))
    journal = root / "journal.sqlite"
    ran = alpolicy("run", str(root / "frames"), "--model", f"replay:{root / 'predictions.coco.json'}",
                   "--policy", str(root / "unsure.json"), "--to", f"folder:{root / 'queue'}", "--journal", str(journal))
    assert ran.code == 0, ran.err
    return {"root": root, "gt": root / "frames" / COCO_FILE, "journal": journal, "expected": expected}


def evaluate(footage: dict, *extra: str):
    root = footage["root"]
    return alpolicy("evaluate", "--ground-truth", str(footage["gt"]), "--journal", str(footage["journal"]),
                    "--policy", str(root / "unsure.json"), "--policy", str(root / "everything.json"), *extra)


def test_evaluate_json_on_synthetic_footage_counts_the_mistakes_made(footage):
    result = evaluate(footage, "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert set(document) == DOCUMENT_KEYS
    assert document["evaluated"] == 24 and document["skipped"] == {"no ground truth": 0, "no prediction": 0}
    kinds, expected = document["errors_total_by_kind"], footage["expected"]
    assert kinds == expected and expected["miss"] and expected["wrong_class"]
    assert document["errors_total"] == kinds["miss"] + kinds["false_positive"] + 2 * kinds["wrong_class"]
    assert sum(document["errors_total_by_class"].values()) == document["errors_total"]
    assert set(document["errors_total_by_class"]) <= {"circle", "square", "triangle"}
    assert all(set(entry) == IMAGE_KEYS for entry in document["per_image"].values())
    unsure, everything = document["policies"]
    assert set(unsure) == set(everything) == POLICY_KEYS
    assert set(unsure["random_spread"]) == {"draws", "seed", "std", "p05", "p95"}
    assert (unsure["name"], unsure["policy"]) == ("unsure", str(footage["root"] / "unsure.json"))
    # everything: every image, so every error; random and the oracle are the same: no efficiency
    assert (everything["picked"], everything["errors_captured"], everything["oracle"]) == (24, document["errors_total"],
                                                                                          document["errors_total"])
    assert everything["efficiency"] is None
    # unsure picks the images with a 0.45 or 0.4 detection (the false positives are all among them)
    assert 0 < unsure["picked"] < 24 and unsure["errors_captured"] > unsure["random_mean"]
    assert unsure["efficiency"] > 0 and unsure["by_kind"]["false_positive"] == expected["false_positive"]
    assert unsure["errors_captured"] == sum(document["per_image"][name]["errors"] for name in unsure["images"])
    # the journal's run sent the same images the evaluation says the policy picks
    sent = sorted(p.name for p in (footage["root"] / "queue" / "images").glob("*.jpg"))
    assert sent == sorted(unsure["images"])


def test_evaluate_prints_a_table_and_a_budget_caps_the_picks(footage):
    result = evaluate(footage, "--budget", "3")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("24 images evaluated (IoU >= 0.5, budget 3): ") and "wrong-class pairs" in lines[0]
    assert lines[1].split() == ["policy", "picked", "captured", "random", "±", "std", "oracle", "efficiency"]
    assert lines[2].split()[0].endswith("unsure.json") and lines[2].split()[1] == "3"
    document = json.loads(evaluate(footage, "--budget", "3", "--json").out)
    assert [p["picked"] for p in document["policies"]] == [3, 3] and document["budget"] == 3
    assert document["oracle"] == document["policies"][0]["oracle"]


def test_help_teaches_the_numbers():
    result = alpolicy("evaluate", "--help")
    assert result.code == 0
    for words in ("errors == miss + false_positive + 2 x wrong_class", "oracle", "efficiency", "random",
                  "--ground-truth GT.coco.json", "--budget K", "--iou IOU", "--json"):
        assert words in result.out, words


def _gt(path: Path, names: list[str]) -> Path:
    path.write_text(json.dumps({"images": [{"id": i, "file_name": n, "width": 10, "height": 10} for i, n in enumerate(names, 1)],
                                "categories": [{"id": 1, "name": "circle"}], "annotations": []}))
    return path


def _journal(path: Path, names: list[str]) -> Path:
    journal = Journal(path)
    for name in names:
        journal.save_prediction(ImageFile(f"/f/{name}", 1, 1), "m", Prediction(10, 10, []))
    journal.close()
    return path


@pytest.mark.parametrize("case, message", [
    ("missing gt", "no ground truth at"),
    ("missing journal", "no journal at"),
    ("gt without images", "has no images"),
    ("gt not json", "is not JSON"),
    ("nothing in common", "no image in common: 2 images have a stored prediction in"),
    ("iou 0", "--iou must be in (0, 1], not 0"),
    ("iou 1.5", "--iou must be in (0, 1], not 1.5"),
    ("budget 0", "--budget must be at least 1, not 0"),
    ("bad policy", "no_such_rule"),
    ("missing policy", "no policy file at"),
    ("a name twice", "names the file 'a.jpg' twice"),
])
def test_every_user_mistake_is_one_line_and_exit_2(tmp_path, case, message):
    gt, journal = _gt(tmp_path / "gt.json", ["a.jpg"]), _journal(tmp_path / "j.sqlite", ["a.jpg"])
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps(EVERYTHING))
    extra: list[str] = []
    if case == "missing gt":
        gt = tmp_path / "nope.json"
    elif case == "missing journal":
        journal = tmp_path / "nope.sqlite"
    elif case == "gt without images":
        _gt(gt, [])
    elif case == "gt not json":
        gt.write_text("{")
    elif case == "nothing in common":
        journal = _journal(tmp_path / "other.sqlite", ["b.jpg", "c.jpg"])
    elif case.startswith("iou"):
        extra = ["--iou", case.split()[1]]
    elif case == "budget 0":
        extra = ["--budget", "0"]
    elif case == "bad policy":
        policy.write_text(json.dumps({"version": 1, "image": {"rule": "no_such_rule"}}))
    elif case == "missing policy":
        policy = tmp_path / "nope-policy.json"
    elif case == "a name twice":
        _gt(gt, ["x/a.jpg", "y/a.jpg"])
    result = alpolicy("evaluate", "--ground-truth", str(gt), "--journal", str(journal), "--policy", str(policy), *extra)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("alpolicy: error: "), result.err
    assert message in result.err and (case != "bad policy" or "does not compile: $." in result.err)
    assert not (tmp_path / "nope.sqlite").exists()  # a missing journal is not created


def test_report_writes_the_evaluation_page_from_the_same_document(footage, tmp_path):
    """``--report DIR``: the page w13's module writes, from the document ``--json`` prints."""
    out = tmp_path / "report"
    result = evaluate(footage, "--json", "--report", str(out))
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert result.err.strip() == f"report: {out / 'evaluation.html'}", "with --json the report line goes to stderr"
    html = (out / "evaluation.html").read_text()
    for outcome in document["policies"]:
        assert outcome["name"] in html and str(outcome["errors_captured"]) in html
    table = evaluate(footage, "--report", str(out))
    assert table.code == 0 and table.out.splitlines()[-1] == f"report: {out / 'evaluation.html'}"
