"""The task rules through the real command line: ``alpolicy run`` replaying stored predictions of
each task type, and a policy refused in one line (exit 2) when the model's task is known
(a backend plugin installed for real), by ``validate --task`` and ``explain --task``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from alpolicy.testing import image_folder

from .cli import alpolicy
from .plugin_packages import install

IMAGE = {"width": 100, "height": 100}


def box(**fields: Any) -> dict[str, Any]:
    return {"x": 50, "y": 50, "width": 20, "height": 10, "confidence": 0.8, "class": "thing", "class_id": 0,
            "detection_id": "d", **fields}


def square(side: float) -> list[dict[str, float]]:
    return [{"x": 40, "y": 45}, {"x": 40 + side, "y": 45}, {"x": 40 + side, "y": 45 + side}, {"x": 40, "y": 45 + side}]


def keypoints(*confidences: float) -> list[dict[str, Any]]:
    return [{"x": 45, "y": 48, "confidence": c, "class_id": i, "class": f"k{i}"} for i, c in enumerate(confidences)]


def single(**scores: float) -> dict[str, Any]:
    ranked = sorted(({"class": k, "class_id": i, "confidence": v} for i, (k, v) in enumerate(scores.items())),
                    key=lambda e: -e["confidence"])
    return {"image": IMAGE, "predictions": ranked, "top": ranked[0]["class"], "confidence": ranked[0]["confidence"]}


def multi(predicted: list[str], **scores: float) -> dict[str, Any]:
    return {"image": IMAGE, "predictions": {k: {"confidence": v, "class_id": i} for i, (k, v) in enumerate(scores.items())},
            "predicted_classes": predicted}


# Per task: a policy and two stored predictions, the first at its bound (qualifies), the second beside it.
CASES = {
    "instance-segmentation": (
        {"detection": [{"rule": "mask_area", "min": 99}]},  # 10 x 10 square: 100 > 99; 9.9 x 9.9: 98.01
        {"image": IMAGE, "predictions": [box(points=square(10))]},
        {"image": IMAGE, "predictions": [box(points=square(9.9))]},
    ),
    "keypoint-detection": (
        {"detection": [{"rule": "keypoints_visible", "min": 2, "threshold": 0.5}]},
        {"image": IMAGE, "predictions": [box(keypoints=keypoints(0.5, 0.5, 0.1))]},
        {"image": IMAGE, "predictions": [box(keypoints=keypoints(0.5, 0.49, 0.1))]},
    ),
    "classification": (
        {"image": {"rule": "top_margin", "max": 0.1}},
        single(cat=0.55, dog=0.45),
        single(cat=0.56, dog=0.44),
    ),
    "multi-label-classification": (
        {"image": {"rule": "predicted_classes", "min": 2}},
        multi(["cat", "dog"], cat=0.9, dog=0.6, bird=0.1),
        multi(["cat"], cat=0.9, dog=0.4, bird=0.1),
    ),
    "object-detection": (
        {"detection": [{"rule": "confidence", "min": 0.5}, {"rule": "box_area", "max": 201}]},
        {"image": IMAGE, "predictions": [box(confidence=0.5)]},
        {"image": IMAGE, "predictions": [box(confidence=0.5, width=20.1)]},
    ),
}


def records(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {Path(record["image"]).name: record for record in lines}


@pytest.mark.parametrize("task", list(CASES))
def test_a_run_replaying_each_task_s_predictions_decides_at_and_beside_the_bound(task, tmp_path):
    rules, at_bound, beside = CASES[task]
    first, second = image_folder(tmp_path / "frames", 2)
    stored = tmp_path / "predictions"
    stored.mkdir()
    for image, document in ((first, at_bound), (second, beside)):
        (stored / f"{Path(image).stem}.json").write_text(json.dumps(document))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, **rules}))
    log = tmp_path / "decisions.jsonl"
    result = alpolicy("run", str(tmp_path / "frames"), "--model", f"replay:{stored}", "--policy", str(policy),
                      "--dry-run", "--journal", str(tmp_path / "j.sqlite"), "--decisions", str(log), "--no-progress")
    assert result.code == 0, result.err
    decided = records(log)
    assert decided[Path(first).name]["qualifies"] is True, decided
    assert decided[Path(second).name]["qualifies"] is False, decided


def test_a_replayed_classification_meeting_a_box_rule_is_rejected_saying_why(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    stored = tmp_path / "predictions"
    stored.mkdir()
    (stored / f"{Path(image).stem}.json").write_text(json.dumps(single(cat=0.6, dog=0.4)))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "detection": [{"rule": "box_area", "min": 1}]}))
    log = tmp_path / "decisions.jsonl"
    result = alpolicy("run", str(tmp_path / "frames"), "--model", f"replay:{stored}", "--policy", str(policy),
                      "--dry-run", "--journal", str(tmp_path / "j.sqlite"), "--decisions", str(log), "--no-progress")
    assert result.code == 0, result.err  # replay does not know its task: decided per image, not refused
    (record,) = records(log).values()
    assert record["qualifies"] is False and record["rejected_by"] == "box_area"
    assert record["reasons"][0].startswith("box_area does not apply to classification predictions")
    assert "failed            0" in result.out


KNOWN_TASK_PLUGIN = '''
    import alpolicy
    from alpolicy.testing import StaticBackend, make_classification


    class KnownTask(StaticBackend):
        """Knows its model's task, as a backend reading a model's metadata does."""

        def __init__(self, task):
            classifier = make_classification({"cat": 0.6, "dog": 0.4}, multi_label=task == "multi-label-classification")
            super().__init__(classifier if "classification" in task else None, model_id="known:" + task)
            self.task = task


    @alpolicy.hookimpl
    def alpolicy_inference_backends(register):
        register(alpolicy.InferenceBackendSpec("known", lambda target, options: KnownTask(target), "knows its task"))
'''


@pytest.fixture()
def known_task_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "known", "alpolicy-known-task", KNOWN_TASK_PLUGIN)
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.mark.parametrize("task, rules, problem", [
    ("classification", {"detection": [{"rule": "box_area", "min": 1}]},
     "policy rule detection[0] box_area does not apply to classification models (the model known:classification is a "
     "classification model; box_area applies to object-detection, instance-segmentation and keypoint-detection models)"),
    ("object-detection", {"image": {"all": [{"rule": "detection_count"}, {"rule": "top_margin", "max": 0.1}]}},
     "policy rule image.all[1] top_margin does not apply to object-detection models (the model known:object-detection "
     "is an object-detection model; top_margin applies to classification and multi-label-classification models)"),
    ("multi-label-classification", {"detection": [{"rule": "keypoints_visible"}, {"rule": "mask_fill", "max": 0.5}]},
     "policy rules detection[0] keypoints_visible, detection[1] mask_fill do not apply to multi-label-classification "
     "models (the model known:multi-label-classification is a multi-label-classification model)"),
])
def test_a_run_refuses_in_one_line_a_policy_the_model_s_task_cannot_meet(task, rules, problem, tmp_path, known_task_env):
    image_folder(tmp_path / "frames", 1)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, **rules}))
    out = tmp_path / "out"
    result = alpolicy("run", str(tmp_path / "frames"), "--model", f"known:{task}", "--policy", str(policy),
                      "--to", f"folder:{out}", "--journal", str(tmp_path / "j.sqlite"), "--no-progress",
                      env=known_task_env)
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines() == [f"alpolicy: error: {problem}"]
    assert not (tmp_path / "j.sqlite").exists() and not out.exists()  # refused before anything was written


def test_a_run_whose_policy_fits_the_model_s_task_sends(tmp_path, known_task_env):
    image_folder(tmp_path / "frames", 2)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "detection": [{"rule": "confidence", "min": 0.5}],
                                  "image": {"rule": "top_margin", "min": 0.2}}))  # 0.6 - 0.4
    result = alpolicy("run", str(tmp_path / "frames"), "--model", "known:classification", "--policy", str(policy),
                      "--dry-run", "--journal", str(tmp_path / "j.sqlite"), "--no-progress", "--json", env=known_task_env)
    assert result.code == 0, result.err
    assert json.loads(result.out)["qualified"] == 2


def test_validate_with_a_task_refuses_a_rule_that_cannot_judge_it(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "detection": [{"rule": "mask_area", "min": 1}]}))
    assert alpolicy("validate", str(policy)).code == 0
    assert alpolicy("validate", "--task", "instance-segmentation", str(policy)).code == 0
    result = alpolicy("validate", "--task", "keypoint-detection", str(policy))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip() == (f"{policy}: policy rule detection[0] mask_area does not apply to keypoint-detection "
                                  "models (checked for keypoint-detection models; mask_area applies to "
                                  "instance-segmentation models)")
    result = alpolicy("validate", "--task", "segmentation", str(policy))
    assert result.code == 2 and "invalid choice: 'segmentation'" in result.err


def test_explain_says_a_rule_does_not_apply_and_with_a_task_refuses_like_a_run(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "detection": [{"rule": "box_area", "min": 1}]}))
    prediction = tmp_path / "prediction.json"
    prediction.write_text(json.dumps(single(cat=0.6, dog=0.4)))
    result = alpolicy("explain", str(policy), str(prediction))
    assert result.code == 1, result.err
    assert result.out.splitlines() == [
        "REJECTED by box_area: would not be sent",
        "  ✗ box_area: box_area does not apply to classification predictions "
        "(only to object-detection, instance-segmentation and keypoint-detection)",
    ]
    result = alpolicy("explain", "--task", "classification", str(policy), str(prediction))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [
        "alpolicy: error: policy rule detection[0] box_area does not apply to classification models (checked for "
        "classification models; box_area applies to object-detection, instance-segmentation and keypoint-detection models)"]
    # --task also reads an empty answer as that task's
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"image": IMAGE, "predictions": []}))
    fits = tmp_path / "fits.json"
    fits.write_text(json.dumps({"version": 1, "image": {"rule": "top_margin"}}))
    result = alpolicy("explain", "--task", "classification", "--json", str(fits), str(empty))
    assert result.code == 1 and json.loads(result.out)["reasons"] == ["no class scores"]


def test_rules_name_the_tasks_each_rule_is_limited_to():
    rules = {rule["name"]: rule for rule in json.loads(alpolicy("rules", "--json").out)}
    assert rules["box_area"]["tasks"] == ["object-detection", "instance-segmentation", "keypoint-detection"]
    assert rules["mask_fill"]["tasks"] == ["instance-segmentation"]
    assert rules["top_margin"]["tasks"] == ["classification", "multi-label-classification"]
    assert len(rules["confidence"]["tasks"]) == 5
    text = alpolicy("rules").out
    assert "[keypoint-detection only]" in text.split("keypoints_visible", 1)[1].splitlines()[0]
