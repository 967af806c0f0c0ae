"""The roboflow: backend for every task type, the task read from the project's metadata."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions, UsageError
from alpolicy.backends import ModelOptions
from alpolicy.backends.roboflow import RoboflowInference

from .cli import alpolicy as alpolicy_cli
from .conftest import API_KEY, make_frames

TASK_MODELS = {  # project -> (task, the shape's marker)
    "leaves": "instance-segmentation",
    "poses": "keypoint-detection",
    "species": "classification",
    "tags": "multi-label-classification",
}


@pytest.fixture
def models(roboflow):
    for project, task in TASK_MODELS.items():
        roboflow.add_model(project, 1, task=task, classes=["cat", "dog", "bird"])
    return roboflow


def collect(frames: Path, model: str, **keywords):
    seen: list = []
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model=model, journal=None, progress=False,
                          dry_run=True, on_result=lambda image, prediction: seen.append((image, prediction)), **keywords)
    return report, seen


@pytest.mark.parametrize("project", sorted(TASK_MODELS))
def test_each_task_hosted_reads_its_task_from_the_project_metadata_once(models, env, frames, project):
    task = TASK_MODELS[project]
    report, seen = collect(frames, f"roboflow:{project}/1")
    assert report.failed == 0 and report.inferred == 30
    assert models.requests["root"].total == 1 and models.requests["project"].total == 1  # once per run
    assert models.requests["infer"].total == 30
    for image, prediction in seen:
        served = models.infer(project, 1, Path(image.path).read_bytes())
        assert prediction.task == task
        document = prediction.to_json()
        assert document["predictions"] == served["predictions"]  # the canonical shape is Roboflow's
        if task == "classification":
            assert prediction.top == served["top"] and document["confidence"] == served["confidence"]
        if task == "multi-label-classification":
            assert document["predicted_classes"] == served["predicted_classes"]
            assert [d["class"] for d in prediction.detections] == served["predicted_classes"]
    if task == "instance-segmentation":
        assert any(p.detections and "points" in p.detections[0] for _, p in seen)
    if task == "keypoint-detection":
        assert any(p.detections and p.detections[0]["keypoints"][0]["class"] == "nose" for _, p in seen)


def test_the_task_reaches_the_fingerprint_and_a_detector_keeps_its_old_one(models, env):
    def backend(target: str, **extra):
        made = RoboflowInference(target, ModelOptions(extra=extra))
        made.check()
        return made

    segmenter = backend("leaves/1")
    assert segmenter.task == "instance-segmentation"
    assert segmenter.fingerprint_settings == {"confidence": 40.0, "overlap": 30.0, "task": "instance-segmentation"}
    detector = backend("vehicles/3")
    assert detector.task == "object-detection" and detector.fingerprint_settings == {"confidence": 40.0, "overlap": 30.0}
    calls = models.requests["project"].total
    given = backend("leaves/1", task="instance-segmentation")  # --model-opt task: no metadata read
    assert given.fingerprint == segmenter.fingerprint and models.requests["project"].total == calls
    assert backend("leaves/1", task="object-detection").fingerprint != segmenter.fingerprint


@pytest.mark.parametrize("project", ["leaves", "species", "tags"])
def test_each_task_on_a_local_inference_server_through_the_cli(models, env, tmp_path, frames, project):
    """A local server (--inference-url), the CLI, the pre-labels written by a folder destination."""
    out = tmp_path / "out"
    result = alpolicy_cli("run", str(frames), "--model", f"roboflow:{project}/1", "--inference-url", models.url,
                          "--to", f"folder:{out}", "--journal", str(tmp_path / "j.sqlite"), "--no-progress",
                          env={**env, "ROBOFLOW_INFERENCE_URL": "http://127.0.0.1:9/unused"})
    assert result.code == 0, result.err
    assert models.requests["infer"].total == 30 and models.requests["project"].total == 1


def test_an_empty_answer_of_a_segmentation_model_keeps_its_task(models, env, frames):
    models.add_model("leaves", 1, task="instance-segmentation", predict=lambda image, data: [])
    report, seen = collect(frames, "roboflow:leaves/1")
    assert report.failed == 0 and {p.task for _, p in seen} == {"instance-segmentation"}
    assert seen[0][1].to_json()["task"] == "instance-segmentation"  # the shape alone cannot tell it


def _hostile(project: str, answer: dict):
    return lambda data: json.dumps(answer).encode()


MALFORMED = [
    ("leaves", "instance-segmentation",
     {"image": {"width": 64, "height": 48}, "predictions": [
         {"x": 10, "y": 10, "width": 4, "height": 4, "confidence": 0.5, "class": "cat", "points": [{"x": 1, "y": "a"}]}]},
     "predictions[0].points[0].y"),
    ("poses", "keypoint-detection",
     {"image": {"width": 64, "height": 48}, "predictions": [
         {"x": 10, "y": 10, "width": 4, "height": 4, "confidence": 0.5, "class": "cat",
          "keypoints": [{"x": 1, "y": 2, "confidence": 7, "class": "nose"}]}]},
     "predictions[0].keypoints[0].confidence"),
    ("species", "classification",
     {"image": {"width": 64, "height": 48}, "predictions": [{"class": "cat", "confidence": "high"}], "top": "cat",
      "confidence": 0.5},
     "predictions[0].confidence"),
    ("tags", "multi-label-classification",
     {"image": {"width": 64, "height": 48}, "predictions": {"cat": {"confidence": 1.5, "class_id": 0}},
      "predicted_classes": ["cat"]},
     "predictions.cat.confidence"),
    ("species", "classification",  # the metadata says classification, the answer is a detector's
     {"image": {"width": 64, "height": 48},
      "predictions": [{"x": 10, "y": 10, "width": 4, "height": 4, "confidence": 0.5, "class": "cat"}]},
     "the model's task is classification"),
]


@pytest.mark.parametrize(("project", "task", "answer", "where"), MALFORMED, ids=[f"{m[1]}-{i}" for i, m in enumerate(MALFORMED)])
def test_a_malformed_answer_of_each_shape_fails_its_image_in_one_located_line(models, env, tmp_path, project, task, answer,
                                                                              where):
    frames = tmp_path / "frames"
    make_frames(frames, 3)
    models.add_model(project, 1, task=task, answer=_hostile(project, answer))
    report, _ = collect(frames, f"roboflow:{project}/1")
    assert report.failed == 3 and report.exit_code == 1
    for failure in report.failures:
        assert failure["error"].startswith("the inference server answered something that is not a prediction: ")
        assert where in failure["error"] and "\n" not in failure["error"], failure["error"]
    result = alpolicy_cli("run", str(frames), "--model", f"roboflow:{project}/1", "--dry-run", "--no-progress",
                          "--journal", str(tmp_path / "j.sqlite"), env=env)
    assert result.code == 1 and where in result.out, result.out


def test_metadata_problems_are_one_line_before_any_image(models, env, tmp_path, frames):
    journal = str(tmp_path / "j.sqlite")
    models.add_model("masks", 1, task="semantic-segmentation")
    cases = [
        ("roboflow:masks/1", "Roboflow project 'masks' is a 'semantic-segmentation' project: alpolicy handles "
                             "object-detection, instance-segmentation"),
        ("roboflow:ghost/1", None),
    ]
    models.auto_create_projects = False  # the real API: a project the key cannot see is a 404
    cases[1] = ("roboflow:ghost/1", "the model's project 'ghost' does not exist in workspace 'test-workspace'")
    for model, expected in cases:
        result = alpolicy_cli("run", str(frames), "--model", model, "--dry-run", "--journal", journal, env=env)
        assert result.code == 2 and result.err.startswith("alpolicy: error: ") and expected in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    models.answer_projects(lambda name: b'{"project": {"type": 7}}' if name == b"leaves" else None)
    with pytest.raises(UsageError, match="Roboflow project 'leaves' is a a int project"):
        collect(frames, "roboflow:leaves/1")
    models.answer_projects(lambda name: b'{"nothing": 1}' if name == b"leaves" else None)
    with pytest.raises(UsageError, match="did not describe project 'leaves'"):
        collect(frames, "roboflow:leaves/1")
    models.answer_projects(lambda name: b'{"project": {"name": "old"}}' if name == b"leaves" else None)
    report, seen = collect(frames, "roboflow:leaves/1")  # no type: object detection, as Inference reads it
    assert report.failed == 0 and seen[0][1].task in ("object-detection", "instance-segmentation")
    models.answer_projects(None)
    models.set_faults("project", down=True)
    with pytest.raises(alpolicy.ServiceError, match="looking up the model's task failed after 2 attempts: HTTP 503"):
        collect(frames, "roboflow:leaves/1", attempts=2, retry_backoff=0.01)
    assert models.requests["infer"].total == 30  # only the run with no type inferred
    models.clear_faults()
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:leaves/1", "--model-opt", "task=segmentation",
                          "--dry-run", "--journal", journal, env=env)
    assert result.code == 2 and "--model-opt task: 'segmentation' is not one of" in result.err, result.err


def test_no_key_in_logs_or_errors_of_the_metadata_reads(models, env, frames, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    models.answer_projects(lambda name: json.dumps({"message": f"echo ?api_key={API_KEY} {API_KEY}"}).encode()
                           if name == b"leaves" else None)
    with pytest.raises(UsageError) as caught:
        collect(frames, "roboflow:leaves/1")
    models.answer_projects(None)
    models.set_faults("root", down=True, error_body={"message": f"proxy says {API_KEY}"})
    with pytest.raises(alpolicy.ServiceError) as failed:
        collect(frames, "roboflow:leaves/1", attempts=2, retry_backoff=0.01)
    assert "proxy says ***" in str(failed.value)
    monkeypatch.setenv("ROBOFLOW_API_KEY", "wrong-key-123")
    models.clear_faults()
    with pytest.raises(alpolicy.AuthError, match="refused the credentials during checking the API key"):
        collect(frames, "roboflow:leaves/1")
    texts = [str(caught.value), str(failed.value), caplog.text]
    assert caplog.text and all(API_KEY not in text for text in texts)
