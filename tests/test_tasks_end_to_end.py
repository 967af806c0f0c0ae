"""Every task type from the model to every destination (issue #14, "done when"): a Roboflow
model of each task (the loopback server; the task read from the project's metadata) -> a policy
-> the folder, a Roboflow project and a new Label Studio project, each read back in its own
terms (COCO through pycocotools, YOLO through supervision, the Roboflow API's stored
annotations, Label Studio's API)."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest

from alpolicy.formats import labelstudio as ls_format

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .servers.labelstudio import LEGACY_TOKEN, LabelStudioMissing, shared
from .test_labelstudio_tasks import control_of, new_projects, project_ids, stored_tasks

TASKS = ["instance-segmentation", "keypoint-detection", "classification", "multi-label-classification"]
CLASSES = ["cat", "dog", "bird"]
FRAMES = 5


@pytest.fixture
def task_setup(roboflow, env, tmp_path, request):
    task = request.param
    roboflow.add_model("zoo", 1, task=task, classes=CLASSES)
    make_frames(tmp_path / "frames", FRAMES, size=(160, 120))
    policy = tmp_path / "policy.json"
    # a rule of the task's own, so the policy is not "send everything"
    rule = {"instance-segmentation": {"rule": "mask_area", "min": 0},
            "keypoint-detection": {"rule": "keypoints_visible", "min": 0}}.get(task)
    document = {"version": 1, "name": f"e2e-{uuid.uuid4().hex[:6]}", "image": {"rule": "detection_count", "min": 0}}
    if rule:
        document["detection"] = [rule]
    policy.write_text(json.dumps(document))
    return task, tmp_path, policy, env


def run(tmp_path: Path, policy: Path, destination: str, env: dict, journal: str) -> dict:
    result = alpolicy_cli("run", str(tmp_path / "frames"), "--model", "roboflow:zoo/1", "--policy", str(policy),
                          "--to", destination, "--journal", str(tmp_path / journal), "--json", "--no-progress", env=env)
    assert result.code == 0, result.err
    return json.loads(result.out)


@pytest.mark.slow
@pytest.mark.parametrize("task_setup", TASKS, indirect=True)
def test_each_task_reaches_the_folder_read_back_by_pycocotools_and_supervision(task_setup):
    task, tmp_path, policy, env = task_setup
    report = run(tmp_path, policy, f"folder:{tmp_path / 'queue'}", env, "folder.sqlite")
    sent = report["sent"]
    assert sent >= 1 and report["failed"] == 0
    queue = tmp_path / "queue"
    if task in ("instance-segmentation", "keypoint-detection"):
        from pycocotools.coco import COCO

        coco = COCO(str(queue / "annotations.coco.json"))
        annotations = coco.loadAnns(coco.getAnnIds())
        assert annotations, "the seeded model answers detections"
        if task == "instance-segmentation":
            assert all(a["segmentation"] and a["area"] > 0 for a in annotations)
            assert all(coco.annToMask(a).sum() > 0 for a in annotations)
        else:
            assert all(a["num_keypoints"] >= 0 and len(a["keypoints"]) % 3 == 0 for a in annotations)
            assert any(c.get("keypoints") for c in coco.loadCats(coco.getCatIds()))
        import supervision as sv

        dataset = sv.DetectionDataset.from_yolo(str(queue / "images"), str(queue / "labels"), str(queue / "data.yaml"),
                                                force_masks=task == "instance-segmentation")
        assert len(dataset) == sent
    else:
        rows = list(csv.reader((queue / "images" / "_classes.csv").read_text().splitlines(), skipinitialspace=True))
        assert rows[0][0] == "filename" and len(rows) == sent + 1
        if task == "classification":
            import supervision as sv

            classified = sv.ClassificationDataset.from_folder_structure(str(queue / "classes"))
            assert len(classified) == sent and set(classified.classes) <= set(CLASSES)


@pytest.fixture
def ls_env(monkeypatch):
    try:
        server = shared()
    except LabelStudioMissing as error:
        pytest.fail(str(error), pytrace=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY_TOKEN)
    return server


ANNOTATION_KIND = {"instance-segmentation": "roboflow-json", "keypoint-detection": "roboflow-json",
                   "classification": "class", "multi-label-classification": "classes"}
REGION_TYPE = {"instance-segmentation": {"polygonlabels"}, "keypoint-detection": {"keypointlabels", "rectanglelabels"},
               "classification": {"choices"}, "multi-label-classification": {"choices"}}


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_each_task_to_roboflow_and_label_studio(roboflow, env, ls_env, tmp_path, task):
    roboflow.add_model("zoo", 1, task=task, classes=CLASSES)
    make_frames(tmp_path / "frames", FRAMES, size=(160, 120))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"version": 1, "name": f"e2e-{uuid.uuid4().hex[:6]}",
                                  "image": {"rule": "detection_count", "min": 0}}))
    report = run(tmp_path, policy, "roboflow:e2e-queue", env, "roboflow.sqlite")
    assert report["failed"] == 0 and report["sent"] == FRAMES
    annotations = roboflow.annotations("e2e-queue")
    kinds = {call["kind"] for calls in annotations.values() for call in calls}
    assert kinds == {ANNOTATION_KIND[task]}, kinds
    if task == "instance-segmentation":
        assert all(entry.get("points") for calls in annotations.values() for call in calls
                   for entry in call["annotation"]["predictions"])
    if task == "keypoint-detection":
        assert all(entry.get("keypoints") for calls in annotations.values() for call in calls
                   for entry in call["annotation"]["predictions"])

    before = project_ids(ls_env)
    env = dict(env, LABEL_STUDIO_URL=ls_env.url, LABEL_STUDIO_API_KEY=LEGACY_TOKEN)
    report = run(tmp_path, policy, "labelstudio:new", env, "ls.sqlite")
    assert report["failed"] == 0 and report["sent"] == FRAMES
    (project,) = new_projects(ls_env, before)
    control_of(project["label_config"], ls_format.CONTROLS[task])  # exactly one control of the task's kind
    tasks = stored_tasks(ls_env, project["id"])
    assert len(tasks) == FRAMES
    types = {region["type"] for stored in tasks.values() for region in stored["predictions"][0]["result"]}
    assert types <= REGION_TYPE[task] and types, types
