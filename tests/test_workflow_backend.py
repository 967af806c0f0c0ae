"""The workflow: backend against the loopback server's Workflow route."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

import alpolicy
from alpolicy.policy import geometry
from alpolicy import Policy, UsageError

from .cli import alpolicy as alpolicy_cli
from .conftest import API_KEY, make_frames
from .servers.roboflow import workflow_answer

WS = "test-workspace"


def collect(frames: Path, model: str, extra: dict | None = None, **keywords):
    seen: list = []
    options = alpolicy.RunOptions(journal=None, progress=False, dry_run=True)
    options.model_options.extra = dict(extra or {})
    options.model_options.retry_backoff = 0.01
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model=model, options=options,
                          on_result=lambda image, prediction: seen.append((image, prediction)), **keywords)
    return report, seen


def test_a_detection_workflow_with_parameters_passed_through(roboflow, env, frames):
    roboflow.add_workflow("detect", parameters={"confidence": 0.4, "classes": []})
    report, seen = collect(frames, f"workflow:{WS}/detect", {"confidence": 0.2, "classes": ["car"]})
    assert report.failed == 0 and report.inferred == 30
    calls = roboflow.workflow_calls()
    assert len(calls) == roboflow.requests["workflow"].total == 30
    body = calls[0]["body"]
    assert body["api_key"] == "<given>" and body["use_cache"] is True and body["enable_profiling"] is False
    assert body["inputs"]["confidence"] == 0.2 and body["inputs"]["classes"] == ["car"]
    assert {c["body"]["inputs"]["image"]["sha256"] for c in calls} == {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in frames.iterdir()}  # sent as on disk
    for image, prediction in seen:
        served = roboflow.infer("vehicles", 3, Path(image.path).read_bytes(), confidence=0.2)
        assert [(d["class"], d["confidence"]) for d in prediction.detections] == [
            (d["class"], d["confidence"]) for d in served["predictions"]]
        assert (prediction.width, prediction.height) == (served["image"]["width"], served["image"]["height"])


@pytest.mark.parametrize("task", ["instance-segmentation", "keypoint-detection", "classification",
                                  "multi-label-classification"])
def test_every_task_from_a_workflow(roboflow, env, frames, task):
    roboflow.add_model("m", 1, task=task, classes=["cat", "dog"])
    roboflow.add_workflow("flow", run=roboflow.model_workflow(("m", 1), output="model_predictions"))
    report, seen = collect(frames, f"workflow:{WS}/flow")
    assert report.failed == 0
    shapes = {p.task for _, p in seen if p.detections or p.is_classification}
    assert shapes == {task}, shapes
    if task == "instance-segmentation":
        assert any("points" in p.detections[0] for _, p in seen if p.detections)


def test_rle_masks_and_empty_answers_are_normalised(roboflow, env, frames):
    roboflow.add_model("m", 1, task="instance-segmentation")
    roboflow.add_workflow("rle", run=roboflow.model_workflow(("m", 1), rle=True))
    report, seen = collect(frames, f"workflow:{WS}/rle", {"task": "instance-segmentation"})
    assert report.failed == 0
    with_masks = [p for _, p in seen if p.detections]
    assert with_masks and all("rle" in d and "rle_mask" not in d for p in with_masks for d in p.detections)
    assert all(geometry.rle_area(d["rle"]) > 0 for p in with_masks for d in p.detections), "real masks, read whole"
    empty = [(image, p) for image, p in seen if not p.detections]
    assert empty, "the seeded model should leave some images empty"
    for image, prediction in empty:  # {"width": null, "height": null} filled from the image
        served = roboflow.infer("m", 1, Path(image.path).read_bytes())
        assert (prediction.width, prediction.height) == (served["image"]["width"], served["image"]["height"])
        assert prediction.task == "instance-segmentation"


def test_the_output_is_chosen_by_name_or_alone_and_else_a_usage_error(roboflow, env, tmp_path, frames):
    def two(image, data, inputs):
        answer = roboflow.infer("vehicles", 3, data)
        return {"count": len(answer["predictions"]), "a": workflow_answer(answer), "b": {"predictions": workflow_answer(answer)}}

    roboflow.add_workflow("two", run=two)
    with pytest.raises(UsageError, match=r"several outputs hold \(a, b\) predictions .* its outputs: a, b, count: "
                                         r"choose one with --model-opt output=NAME"):
        collect(frames, f"workflow:{WS}/two")
    report, seen = collect(frames, f"workflow:{WS}/two", {"output": "b"})  # a step's "*" output
    assert report.failed == 0 and report.inferred == 30
    with pytest.raises(UsageError, match=r"has no output 'coutn' \(did you mean 'count'\?\); its outputs: a, b, count"):
        collect(frames, f"workflow:{WS}/two", {"output": "coutn"})
    with pytest.raises(UsageError, match="output 'count' holds no predictions .*outputs holding predictions: a, b"):
        collect(frames, f"workflow:{WS}/two", {"output": "count"})
    roboflow.add_workflow("none", run=lambda image, data, inputs: {"count": 3})
    result = alpolicy_cli("run", str(frames), "--model", f"workflow:{WS}/none", "--dry-run", "--no-progress",
                          "--journal", str(tmp_path / "j.sqlite"), env=env)
    assert result.code == 2 and result.err == (
        f"alpolicy: error: no output holds predictions in workflow '{WS}/none''s answer; its outputs: count: "
        "choose one with --model-opt output=NAME\n"), result.err
    roboflow.add_workflow("only", run=lambda image, data, inputs: {"count": 3, "p": workflow_answer(
        roboflow.infer("vehicles", 3, data))})
    report, _ = collect(frames, f"workflow:{WS}/only")  # the only one: no option needed
    assert report.failed == 0


def test_a_skipped_step_is_an_empty_prediction_and_a_malformed_one_fails_its_image(roboflow, env, frames):
    roboflow.add_workflow("maybe", run=lambda image, data, inputs: {"p": None})
    report, seen = collect(frames, f"workflow:{WS}/maybe", {"output": "p"})
    assert report.failed == 0 and all(not p.detections and p.width > 0 for _, p in seen)
    bad = {"image": {"width": 64, "height": 48}, "predictions": [{"x": 1, "y": 1, "width": 2, "height": 2,
                                                                  "confidence": 0.5, "class": "a", "points": "nope"}]}
    roboflow.add_workflow("bad", run=lambda image, data, inputs: {"p": bad})
    report, _ = collect(frames, f"workflow:{WS}/bad")
    assert report.failed == 30
    assert report.failures[0]["error"].startswith("the workflow's output 'p' is not a prediction: predictions[0].points")


def test_server_refusals_are_one_line_and_never_show_the_key(roboflow, env, tmp_path, frames, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    roboflow.add_workflow("detect", parameters={"threshold": None})  # a required parameter
    errors = []
    cases = [
        ({}, "detect", "refused to run workflow 'test-workspace/detect' (HTTP 400): Detected runtime parameter "
                       "`threshold`"),
        ({"threshold": 1, "image_input": "picture"}, "detect", "Detected runtime parameter `image`"),
        ({"threshold": 1}, "nope", "the inference server has no workflow 'test-workspace/nope' (HTTP 404)"),
    ]
    for extra, workflow, expected in cases:
        with pytest.raises(UsageError) as caught:
            collect(frames, f"workflow:{WS}/{workflow}", extra)
        assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
        errors.append(str(caught.value))
    # the server echoes the whole body in a 422 (FastAPI): the key is masked in the message
    roboflow.set_faults("workflow", error_every=1, error_status=422,
                        error_body={"detail": [{"msg": "Field required", "input": {"api_key": API_KEY}}]})
    with pytest.raises(UsageError) as caught:
        collect(frames, f"workflow:{WS}/detect", {"threshold": 1})
    errors.append(str(caught.value))
    assert "HTTP 422" in errors[-1] and "***" in errors[-1]
    roboflow.clear_faults()
    result = alpolicy_cli("run", str(frames), "--model", f"workflow:{WS}/detect", "--model-opt", "threshold=0.5",
                          "--dry-run", "--no-progress", "--journal", str(tmp_path / "j.sqlite"), env=env)
    assert result.code == 0, result.err
    assert roboflow.workflow_calls()[-1]["body"]["inputs"]["threshold"] == 0.5
    monkeypatch.setenv("ROBOFLOW_API_KEY", "wrong-key-123")
    with pytest.raises(alpolicy.AuthError, match=r"refused the credentials during running the workflow \(HTTP 401\)"):
        collect(frames, f"workflow:{WS}/detect", {"threshold": 1})
    texts = errors + [caplog.text, result.out, result.err]
    assert caplog.text and [t for t in texts if API_KEY in t] == []


def test_the_fingerprint_names_the_workflow_its_parameters_and_output(roboflow, env):
    from alpolicy.backends import ModelOptions
    from alpolicy.backends.workflow import WorkflowInference

    def fingerprint(**extra):
        return WorkflowInference(f"{WS}/detect", ModelOptions(extra=extra)).fingerprint

    base = fingerprint()
    assert base.startswith(f"workflow:{WS}/detect@")
    assert fingerprint(use_cache=False) == base  # the cache does not change the answer
    assert fingerprint(confidence=0.5) == fingerprint(parameters={"confidence": 0.5}) != base
    assert len({base, fingerprint(output="p"), fingerprint(workflow_version_id="7"), fingerprint(image_input="img")}) == 4


def test_options_and_targets_are_checked_in_one_line(roboflow, env, tmp_path, frames):
    cases = [
        (("--model", "workflow:detect"), "workflow model 'detect' should be WORKSPACE/WORKFLOW_ID"),
        (("--model", f"workflow:{WS}/detect", "--model-opt", "use_cache=maybe"), "--model-opt use_cache: 'maybe' is not of "
                                                                                   "type 'boolean'"),
        (("--model", f"workflow:{WS}/detect", "--model-opt", "task=pose"), "--model-opt task: 'pose' is not one of"),
    ]
    for args, expected in cases:
        result = alpolicy_cli("run", str(frames), *args, "--dry-run", "--journal", str(tmp_path / "j.sqlite"), env=env)
        assert result.code == 2 and expected in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert roboflow.requests["workflow"].total == 0
    listing = alpolicy_cli("options", "workflow")
    assert listing.code == 0
    for name in ("output", "image_input", "use_cache", "workflow_version_id", "parameters", "NAME"):
        assert f"    {name} " in listing.out, listing.out
    assert "a Workflow parameter" in listing.out
    as_json = json.loads(alpolicy_cli("options", "workflow", "--json").out)
    assert as_json["inference_backends"][0]["scheme"] == "workflow"


def test_a_local_inference_server_by_url(roboflow, env, tmp_path):
    frames = tmp_path / "frames"
    make_frames(frames, 3)
    roboflow.add_workflow("detect")
    report, _ = collect(frames, f"workflow:{WS}/detect", inference_url=roboflow.url)
    assert report.failed == 0 and roboflow.requests["workflow"].total == 3
