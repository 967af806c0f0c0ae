"""Every task type into Label Studio (issue #14): polygons, pose keypoints linked to their box,
single- and multi-label choices, against the real Label Studio server of ``test_labelstudio.py``
(one per session: ``tests/servers/labelstudio.py:shared``).

What is sent is read back through Label Studio's own API (``GET /api/tasks/{id}``) and turned
back into pixels: it must be what the model said.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image

import alpolicy
from alpolicy import RunOptions, UsageError
from alpolicy.destinations import DestinationOptions
from alpolicy.destinations.labelstudio import LabelConfig, make_destination, project_title, with_controls
from alpolicy.formats import labelstudio as ls_format
from alpolicy.io.secrets import register
from alpolicy.policy.prediction import (
    CLASSIFICATION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION, MULTI_LABEL_CLASSIFICATION, OBJECT_DETECTION, Prediction,
)
from alpolicy.policy.prediction import TASKS as ALL_TASKS

from .cli import alpolicy as alpolicy_cli
from .plugin_packages import install
from .servers.labelstudio import LEGACY_TOKEN, LabelStudioMissing, shared

register(LEGACY_TOKEN)

#: Unique per session: ``labelstudio:new`` reuses a project of the same title (a server may outlive a session).
POLICY = {"version": 1, "name": f"tasks-{uuid.uuid4().hex[:6]}", "detection": [{"rule": "confidence", "min": 0.5}]}


def box(cls: str, confidence: float, x0: int, y0: int, w: int, h: int, **more: Any) -> dict[str, Any]:
    return {"x": x0 + w / 2, "y": y0 + h / 2, "width": w, "height": h, "confidence": confidence, "class": cls,
            "class_id": 0, "detection_id": f"{cls}{x0}", **more}


def polygon(*points: tuple[int, int]) -> list[dict[str, int]]:
    return [{"x": x, "y": y} for x, y in points]


def keypoints(*points: tuple[str, int, int, float]) -> list[dict[str, Any]]:
    return [{"x": x, "y": y, "confidence": c, "class_id": i, "class": name} for i, (name, x, y, c) in enumerate(points)]


def classified(scores: dict[str, float]) -> dict[str, Any]:
    ranked = sorted(({"class": k, "class_id": i, "confidence": v} for i, (k, v) in enumerate(scores.items())),
                    key=lambda e: -e["confidence"])
    return {"predictions": ranked, "top": ranked[0]["class"], "confidence": ranked[0]["confidence"]}


def multi(scores: dict[str, float], predicted: list[str]) -> dict[str, Any]:
    return {"predictions": {k: {"confidence": v, "class_id": i} for i, (k, v) in enumerate(scores.items())},
            "predicted_classes": predicted}


#: task -> {image name: ((width, height), the prediction's body)}; whole pixels everywhere, so
#: that Label Studio's percentages turned back into pixels must give the same numbers.
FRAMES: dict[str, dict[str, tuple[tuple[int, int], dict[str, Any]]]] = {
    INSTANCE_SEGMENTATION: {
        "s1.jpg": ((200, 100), {"predictions": [
            box("car", 0.9, 10, 20, 50, 50, points=polygon((10, 20), (60, 20), (50, 70), (12, 65))),
            box("person", 0.4, 120, 5, 30, 60, points=polygon((120, 5), (150, 5), (135, 65)))]}),
        "s2.png": ((97, 61), {"predictions": [  # a mask-only instance: sent as its box's polygon
            box("car", 0.7, 0, 0, 13, 7, rle={"size": [61, 97], "counts": "0a1"}),
            box("car", 0.6, 50, 33, 47, 28, points=polygon((50, 33), (97, 33), (97, 61), (50, 61), (60, 40)))]}),
    },
    KEYPOINT_DETECTION: {
        "k1.jpg": ((200, 100), {"predictions": [
            box("person", 0.9, 10, 10, 40, 80, keypoints=keypoints(("nose", 30, 20, 0.95), ("left_eye", 25, 15, 0.8),
                                                               ("right_eye", 35, 15, 0.3))),
            box("dog", 0.7, 100, 40, 90, 50, keypoints=keypoints(("nose", 105, 60, 0.9), ("tail", 185, 45, 0.6)))]}),
        "k2.jpg": ((64, 48), {"predictions": [
            box("person", 0.6, 3, 4, 20, 40, keypoints=keypoints(("nose", 13, 8, 0.7), ("left_eye", 11, 6, 0.5)))]}),
    },
    CLASSIFICATION: {
        "c1.jpg": ((120, 90), classified({"cat": 0.8, "dog": 0.15, "bird": 0.05})),
        "c2.jpg": ((90, 120), classified({"cat": 0.3, "dog": 0.6, "bird": 0.1})),
    },
    MULTI_LABEL_CLASSIFICATION: {
        "m1.jpg": ((120, 90), multi({"cat": 0.9, "dog": 0.6, "bird": 0.1}, ["cat", "dog"])),
        "m2.jpg": ((90, 120), multi({"cat": 0.2, "dog": 0.1, "bird": 0.7}, ["bird"])),
    },
}
TASKS = list(FRAMES)
CLASSES = {INSTANCE_SEGMENTATION: ["car", "person"], KEYPOINT_DETECTION: ["dog", "person"],
           CLASSIFICATION: ["bird", "cat", "dog"], MULTI_LABEL_CLASSIFICATION: ["bird", "cat", "dog"]}


def document(size: tuple[int, int], body: dict[str, Any]) -> dict[str, Any]:
    return {"image": {"width": size[0], "height": size[1]}, **body}


def expected(task: str, name: str) -> Prediction:
    size, body = FRAMES[task][name]
    return Prediction.from_json(document(size, body))


def make_dataset(root: Path, task: str, seed: int = 0) -> tuple[Path, Path]:
    """Images (distinct content per seed) and one Roboflow-format prediction JSON each, for ``replay:``."""
    images, predictions = root / "frames", root / "predictions"
    images.mkdir(parents=True, exist_ok=True)
    predictions.mkdir(exist_ok=True)
    for index, (name, (size, body)) in enumerate(FRAMES[task].items()):
        Image.new("RGB", size, (40 * index % 256, 9 * seed % 256, 7 * len(task) % 256)).save(images / name)
        (predictions / f"{Path(name).stem}.json").write_text(json.dumps(document(size, body)))
    return images, predictions


def options(tmp_path: Path, journal: str = "journal.sqlite", **extra: Any) -> RunOptions:
    run_options = RunOptions(journal=str(tmp_path / journal), progress=False, concurrency=2)
    run_options.destination_options.extra.update(extra)
    run_options.destination_options.retry_backoff = 0.05
    return run_options


def run(images: Path, predictions: Path, destination: Any, run_options: RunOptions, **kwargs: Any):
    return alpolicy.run(str(images), POLICY, model=f"replay:{predictions}", destination=destination, options=run_options, **kwargs)


@pytest.fixture(scope="session")
def ls():
    try:
        return shared()
    except LabelStudioMissing as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def env(ls, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", ls.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY_TOKEN)
    return {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": LEGACY_TOKEN}


def stored_tasks(ls, project: int) -> dict[str, dict[str, Any]]:
    """The project's tasks by image name, each read whole with ``GET /api/tasks/{id}``."""
    tasks = {}
    for listed in ls.tasks(project):
        task = ls.api("GET", f"/api/tasks/{listed['id']}")
        name = Path(task["data"]["source"]).name
        assert name not in tasks, f"two tasks for {name}"
        tasks[name] = task
    return tasks


def qualifying(task: str) -> list[str]:
    return [name for name in FRAMES[task] if any(d["confidence"] >= 0.5 for d in expected(task, name).detections)]


def check_regions(task: str, name: str, result: list[dict[str, Any]], controls: dict[str, str], to_name: str) -> None:
    """The regions are of the task's kind, in its controls, and give back the model's prediction."""
    sent = expected(task, name)
    width, height = sent.width, sent.height
    assert {r["to_name"] for r in result} == {to_name}
    kinds = {r["type"]: r["from_name"] for r in result}
    if task == INSTANCE_SEGMENTATION:
        assert kinds == {"polygonlabels": controls["polygonlabels"]}  # polygons only, no boxes
        assert all(r["value"]["closed"] is True for r in result)
    elif task == KEYPOINT_DETECTION:
        assert kinds == {"rectanglelabels": controls["rectanglelabels"], "keypointlabels": controls["keypointlabels"]}
        boxes = {r["id"]: r for r in result if r["type"] == "rectanglelabels"}
        points = [r for r in result if r["type"] == "keypointlabels"]
        assert len(boxes) == len(sent.detections) and {p["parentID"] for p in points} == set(boxes)
        assert all(0 < p["value"]["width"] < 10 for p in points)
    else:
        assert kinds == {"choices": controls["choices"]} and len(result) == 1
    back = ls_format.prediction(result, width, height, task=task)
    assert back.task == task
    if sent.is_classification:
        assert result[0]["value"]["choices"] == [d["class"] for d in sent.detections]
        assert [d["class"] for d in back.detections] == [d["class"] for d in sent.detections]
        assert result[0]["score"] == pytest.approx(min(d["confidence"] for d in sent.detections))
        return
    assert len(back.detections) == len(sent.detections)
    for got, want in zip(back.detections, sent.detections):
        assert (got["class"], got["confidence"]) == (want["class"], pytest.approx(want["confidence"]))
        if task == INSTANCE_SEGMENTATION:
            x0, y0 = want["x"] - want["width"] / 2, want["y"] - want["height"] / 2
            corners = [(x0, y0), (x0 + want["width"], y0), (x0 + want["width"], y0 + want["height"]), (x0, y0 + want["height"])]
            points = [(p["x"], p["y"]) for p in want.get("points", [])] or corners
            assert [c for p in got["points"] for c in (p["x"], p["y"])] == pytest.approx([c for p in points for c in p], abs=1e-6)
        else:
            assert (got["x"], got["y"], got["width"], got["height"]) == pytest.approx(
                (want["x"], want["y"], want["width"], want["height"]), abs=1e-6)
            assert [(k["class"], k["x"], k["y"], k["confidence"]) for k in got["keypoints"]] == [
                (k["class"], pytest.approx(k["x"], abs=1e-6), pytest.approx(k["y"], abs=1e-6), pytest.approx(k["confidence"]))
                for k in want["keypoints"]]


def control_of(xml: str, tag: str) -> ElementTree.Element:
    (control,) = [el for el in ElementTree.fromstring(xml).iter() if el.tag == tag]
    return control


# -- the format (no server) ---------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_each_task_s_regions_read_back_as_the_prediction_and_its_config_names_their_controls(task):
    names = list(FRAMES[task])
    for name in names:
        result = ls_format.results(expected(task, name), "label", "image", "seed")
        check_regions(task, name, result, {"polygonlabels": "label", "keypointlabels": "label",
                                           "rectanglelabels": "label_bbox", "choices": "label"}, "image")
        assert len({r["id"] for r in result}) == len(result)  # every region its own id...
        assert result == ls_format.results(expected(task, name), "label", "image", "seed")  # ...the same each time
    prediction = expected(task, names[0])
    xml = ls_format.config(CLASSES[task], task=task, keypoints=ls_format.keypoint_names(prediction))
    config = LabelConfig.parse(xml, "built", task=task)
    assert (config.from_name, config.to_name, config.image_key, config.task) == ("label", "image", "image", task)
    if task == KEYPOINT_DETECTION:
        assert config.labels == ("nose", "left_eye", "right_eye", "tail")
        assert (config.box_name, config.box_labels) == ("label_bbox", ("dog", "person"))
    else:
        assert config.labels == tuple(CLASSES[task]) and config.box_name is None
    if task in (CLASSIFICATION, MULTI_LABEL_CLASSIFICATION):
        assert control_of(xml, "Choices").get("choice") == ("multiple" if task == MULTI_LABEL_CLASSIFICATION else "single")
    also = {KEYPOINT_DETECTION: OBJECT_DETECTION, MULTI_LABEL_CLASSIFICATION: CLASSIFICATION}  # the pose's boxes; a multiple Choices
    supported = [t for t in ALL_TASKS if t in (task, also.get(task))]
    assert LabelConfig.tasks(xml, "built") == supported
    for other in set(ALL_TASKS) - set(supported):
        with pytest.raises(UsageError, match=f"has no {ls_format.CONTROLS[other]} control"):
            LabelConfig.parse(xml, "built", task=other)


def test_keypoints_without_a_box_control_go_alone_and_still_read_back():
    prediction = expected(KEYPOINT_DETECTION, "k2.jpg")
    result = ls_format.results(prediction, "joints", "photo", with_boxes=False)
    assert [r["type"] for r in result] == ["keypointlabels"] * 2 and all("parentID" not in r for r in result)
    (instance,) = ls_format.prediction(result, 64, 48).detections
    assert [k["class"] for k in instance["keypoints"]] == ["nose", "left_eye"]
    assert (instance["x"], instance["y"], instance["class"]) == (pytest.approx(12), pytest.approx(7), "joints")


def test_a_config_without_the_task_s_control_says_what_it_needs_in_one_line():
    boxes = '<View><Image name="i" value="$image"/><RectangleLabels name="r" toName="i"/></View>'
    with pytest.raises(UsageError) as raised:
        LabelConfig.parse(boxes, "Label Studio project 3", task=INSTANCE_SEGMENTATION)
    assert str(raised.value) == ("Label Studio project 3: its labeling config has no PolygonLabels control on an Image; "
                                 "alpolicy needs one for the pre-labels of an instance-segmentation model")
    single = '<View><Image name="i" value="$image"/><Choices name="verdict" toName="i"><Choice value="a"/></Choices></View>'
    with pytest.raises(UsageError, match=r'no Choices control with choice="multiple" on an Image \(its Choices '
                                         r"'verdict' takes one choice\); .* a multi-label classification model$"):
        LabelConfig.parse(single, "p", task=MULTI_LABEL_CLASSIFICATION)
    assert LabelConfig.parse(single, "p", task=CLASSIFICATION).labels == ("a",)
    assert LabelConfig.tasks(single, "p") == [CLASSIFICATION]
    per_region = '<View><Image name="i" value="$image"/><Choices name="c" toName="i" perRegion="true"/></View>'
    assert LabelConfig.tasks(per_region, "p") == []  # a region's classification is not the image's
    # A pose model's KeyPointLabels gains its labels, the Choices its Choice elements; comments stay.
    xml = ('<View><!-- mine --><Image name="i" value="$img"/><RectangleLabels name="b" toName="i"><Label value="person"/>'
           '</RectangleLabels><KeyPointLabels name="k" toName="i"/></View>')
    pose = LabelConfig.parse(xml, "p", task=KEYPOINT_DETECTION)
    assert (pose.from_name, pose.box_name, pose.missing(["nose", "person"], "b"), pose.missing(["nose"])) == ("k", "b", ["nose"], ["nose"])
    grown = LabelConfig.parse(pose.with_labels(["nose", "tail"]), "p", task=KEYPOINT_DETECTION)
    assert grown.labels == ("nose", "tail") and "<!-- mine -->" in grown.xml
    choices = LabelConfig.parse(single, "p", task=CLASSIFICATION)
    assert '<Choice value="b" />' in choices.with_labels(["b"])
    added = with_controls(boxes, ls_format.controls([], "polygon", "i", task=INSTANCE_SEGMENTATION))
    assert LabelConfig.parse(added, "p", task=INSTANCE_SEGMENTATION).from_name == "polygon"
    assert LabelConfig.parse(added, "p").from_name == "r"


# -- into Label Studio --------------------------------------------------------------------------


def new_projects(ls, before: set[int]) -> list[dict[str, Any]]:
    return [p for p in ls.api("GET", "/api/projects/", params={"page_size": 1000})["results"] if p["id"] not in before]


def project_ids(ls) -> set[int]:
    return {p["id"] for p in ls.api("GET", "/api/projects/", params={"page_size": 1000})["results"]}


def file_uploads(ls, project: int) -> list[dict[str, Any]]:
    return ls.api("GET", f"/api/projects/{project}/file-uploads", params={"all": "true"})


def destination(ls, project: int | str, **extra: Any):
    return make_destination(str(project), DestinationOptions(api_key=LEGACY_TOKEN, retry_backoff=0.01,
                                                             extra={"labelstudio_url": ls.url, **extra}))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_labelstudio_new_builds_the_task_s_config_and_its_tasks_read_back_as_sent(ls, env, tmp_path, task):
    images, predictions = make_dataset(tmp_path, task)
    before = project_ids(ls)
    report = run(images, predictions, "labelstudio:new", options(tmp_path))
    assert (report.sent, report.failed) == (len(qualifying(task)), 0), report.failures
    (project,) = new_projects(ls, before)
    assert project["title"] == project_title(POLICY["name"], f"replay:{predictions}")
    xml = project["label_config"]
    tag = ls_format.CONTROLS[task]
    control = control_of(xml, tag)
    assert (control.get("name"), control.get("toName")) == ("label", "image")
    item = "Choice" if tag == "Choices" else "Label"
    labels = [el.get("value") for el in control if el.tag == item]
    if task == KEYPOINT_DETECTION:
        assert sorted(labels) == ["left_eye", "nose", "right_eye", "tail"]
        boxes = control_of(xml, "RectangleLabels")
        assert boxes.get("name") == "label_bbox" and sorted(el.get("value") for el in boxes) == ["dog", "person"]
    elif tag == "Choices":
        assert sorted(labels) == CLASSES[task]  # every class the model knows, predicted or not
        assert control.get("choice") == ("multiple" if task == MULTI_LABEL_CLASSIFICATION else "single")
    else:
        assert sorted(labels) == sorted({d["class"] for n in qualifying(task) for d in expected(task, n).detections})
    tasks = stored_tasks(ls, project["id"])
    assert sorted(tasks) == sorted(qualifying(task))
    for name, stored in tasks.items():
        (prediction,) = stored["predictions"]
        check_regions(task, name, prediction["result"], {"polygonlabels": "label", "keypointlabels": "label",
                                                         "rectanglelabels": "label_bbox", "choices": "label"}, "image")
        assert ls.api("GET", stored["data"]["image"]) == (images / name).read_bytes()

    # Again without the journal: Label Studio's own keys find every task; nothing is uploaded or imported.
    uploads = len(file_uploads(ls, project["id"]))
    sink = destination(ls, "new")
    again = run(images, predictions, sink, options(tmp_path, "again.sqlite"))
    assert (again.sent, again.duplicates, again.failed) == (len(tasks), len(tasks), 0), again.failures
    assert sink.import_requests == 0 and len(file_uploads(ls, project["id"])) == uploads
    assert sorted(stored_tasks(ls, project["id"])) == sorted(tasks) and new_projects(ls, before) == [project]


#: A user's config per task: its own names, other controls around, the Image's key ``$photo``.
USER_CONFIGS = {
    INSTANCE_SEGMENTATION: ('<RectangleLabels name="boxes" toName="img"><Label value="car"/></RectangleLabels>'
                            '<PolygonLabels name="outline" toName="img" strokeWidth="3"><Label value="car"/>'
                            '<Label value="person"/><Label value="truck"/></PolygonLabels>'),
    KEYPOINT_DETECTION: ('<RectangleLabels name="who" toName="img"><Label value="person"/><Label value="dog"/></RectangleLabels>'
                         '<KeyPointLabels name="joints" toName="img"><Label value="nose"/><Label value="left_eye"/>'
                         '<Label value="right_eye"/><Label value="tail"/></KeyPointLabels>'),
    CLASSIFICATION: ('<Choices name="quality" toName="img" perRegion="true"><Choice value="ok"/></Choices>'
                     '<Choices name="verdict" toName="img"><Choice value="cat"/><Choice value="dog"/><Choice value="bird"/></Choices>'),
    MULTI_LABEL_CLASSIFICATION: ('<Choices name="single" toName="img"><Choice value="x"/></Choices>'
                                 '<Choices name="tags" toName="img" choice="multiple"><Choice value="cat"/>'
                                 '<Choice value="dog"/><Choice value="bird"/></Choices>'),
}
USER_CONTROLS = {INSTANCE_SEGMENTATION: {"polygonlabels": "outline"},
                 KEYPOINT_DETECTION: {"rectanglelabels": "who", "keypointlabels": "joints"},
                 CLASSIFICATION: {"choices": "verdict"}, MULTI_LABEL_CLASSIFICATION: {"choices": "tags"}}


def user_config(task: str) -> str:
    return f'<View><Header value="Check"/><Image name="img" value="$photo"/>{USER_CONFIGS[task]}</View>'


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_each_task_into_a_project_whose_config_has_its_control_and_nothing_twice(ls, env, tmp_path, task):
    images, predictions = make_dataset(tmp_path, task, seed=1)
    project = ls.create_project(f"alpolicy {task}", user_config(task))
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert (report.sent, report.failed) == (len(qualifying(task)), 0), report.failures
    tasks = stored_tasks(ls, project)
    assert sorted(tasks) == sorted(qualifying(task))
    for name, stored in tasks.items():
        (prediction,) = stored["predictions"]
        check_regions(task, name, prediction["result"], USER_CONTROLS[task], "img")
        assert ls.api("GET", stored["data"]["photo"]) == (images / name).read_bytes()
    assert ls.project(project)["label_config"] == user_config(task)  # the user's config untouched
    again = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert (again.sent, again.already_sent) == (0, len(tasks))


@pytest.mark.slow
def test_keypoints_into_a_project_without_a_rectanglelabels_go_without_boxes(ls, env, tmp_path):
    images, predictions = make_dataset(tmp_path, KEYPOINT_DETECTION, seed=2)
    config = ('<View><Image name="img" value="$photo"/><KeyPointLabels name="joints" toName="img"><Label value="nose"/>'
              '<Label value="left_eye"/><Label value="right_eye"/><Label value="tail"/></KeyPointLabels></View>')
    project = ls.create_project("alpolicy pose without boxes", config)
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert (report.sent, report.failed) == (2, 0), report.failures
    result = stored_tasks(ls, project)["k1.jpg"]["predictions"][0]["result"]
    assert [r["type"] for r in result] == ["keypointlabels"] * 5 and all("parentID" not in r for r in result)
    assert [r["value"]["keypointlabels"][0] for r in result] == ["nose", "left_eye", "right_eye", "nose", "tail"]


@pytest.mark.slow
def test_missing_keypoint_names_fail_the_image_until_added(ls, env, tmp_path):
    images, predictions = make_dataset(tmp_path, KEYPOINT_DETECTION, seed=3)
    config = ('<View><Image name="img" value="$photo"/><RectangleLabels name="who" toName="img"><Label value="person"/>'
              '</RectangleLabels><KeyPointLabels name="joints" toName="img"><Label value="nose"/></KeyPointLabels></View>')
    project = ls.create_project("alpolicy pose labels", config)
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    failures = {Path(f["path"]).name: f["error"] for f in report.failures}
    assert failures == {
        "k1.jpg": f"keypoints 'left_eye', 'right_eye', 'tail' are not a label of the KeyPointLabels 'joints' of Label Studio "
                  f"project {project}: add them to the labeling config, or run with --add-missing-labels",
        "k2.jpg": f"keypoint 'left_eye' is not a label of the KeyPointLabels 'joints' of Label Studio project {project}: "
                  "add it to the labeling config, or run with --add-missing-labels",
    }
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path, add_missing_labels=True))
    assert (report.sent, report.failed) == (2, 0), report.failures
    xml = ls.project(project)["label_config"]
    assert [el.get("value") for el in control_of(xml, "KeyPointLabels")] == ["nose", "left_eye", "right_eye", "tail"]
    assert [el.get("value") for el in control_of(xml, "RectangleLabels")] == ["person", "dog"]
    for name, stored in stored_tasks(ls, project).items():
        check_regions(KEYPOINT_DETECTION, name, stored["predictions"][0]["result"],
                      {"rectanglelabels": "who", "keypointlabels": "joints"}, "img")


@pytest.mark.slow
def test_a_project_alpolicy_made_gains_the_control_of_another_task(ls, env, tmp_path):
    """``labelstudio:new`` made a detection project (e.g. from empty answers); the same policy and
    model then sends polygons: the project gains a PolygonLabels, the first tasks stay as they were."""
    root = tmp_path / "data"
    images, predictions = root / "frames", root / "predictions"
    images.mkdir(parents=True)
    predictions.mkdir()
    Image.new("RGB", (50, 40), (1, 2, 3)).save(images / "box.jpg")
    (predictions / "box.json").write_text(json.dumps(document((50, 40), {"predictions": [box("car", 0.9, 1, 2, 10, 10)]})))
    before = project_ids(ls)
    assert run(images, predictions, "labelstudio:new", options(tmp_path, "first.sqlite")).sent == 1
    for path in images.iterdir():
        path.unlink()
    for path in predictions.iterdir():
        path.unlink()
    make_dataset(root, INSTANCE_SEGMENTATION, seed=4)
    report = run(images, predictions, "labelstudio:new", options(tmp_path, "second.sqlite"))
    assert (report.sent, report.failed) == (2, 0), report.failures
    (project,) = new_projects(ls, before)
    xml = ls.project(project["id"])["label_config"]
    assert control_of(xml, "RectangleLabels").get("name") == "label"
    polygons = control_of(xml, "PolygonLabels")
    assert (polygons.get("name"), polygons.get("toName"), sorted(el.get("value") for el in polygons)) == ("polygon", "image", ["car", "person"])
    tasks = stored_tasks(ls, project["id"])
    assert sorted(tasks) == ["box.jpg", "s1.jpg", "s2.png"]
    assert [r["type"] for r in tasks["box.jpg"]["predictions"][0]["result"]] == ["rectanglelabels"]
    for name in ("s1.jpg", "s2.png"):
        check_regions(INSTANCE_SEGMENTATION, name, tasks[name]["predictions"][0]["result"], {"polygonlabels": "polygon"}, "image")


#: A backend that replays stored predictions of a model whose task it knows (``told:TASK:DIR``),
#: as a Roboflow model does from its metadata: installed as a real distribution for the CLI.
TOLD = textwrap.dedent('''
    from alpolicy import hookimpl
    from alpolicy.backends.replay import ReplayBackend
    from alpolicy.registry import InferenceBackendSpec


    class Told(ReplayBackend):
        def __init__(self, target, options):
            task, _, folder = target.partition(":")
            super().__init__(folder, options)
            self.task = task


    @hookimpl
    def alpolicy_inference_backends(register):
        register(InferenceBackendSpec("told", Told, "stored predictions of a model whose task is known"))
''')


@pytest.mark.slow
def test_a_config_without_the_model_s_control_is_one_line_exit_2_and_loses_no_image(ls, env, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "told", "alpolicy-told", TOLD)
    cli_env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    images, predictions = make_dataset(tmp_path / "seg", INSTANCE_SEGMENTATION, seed=5)
    project = ls.create_project("alpolicy wrong config", '<View><Image name="img" value="$photo"/>'
                                '<RectangleLabels name="boxes" toName="img"><Label value="car"/></RectangleLabels></View>')
    needs = (f"alpolicy: error: Label Studio project {project}: its labeling config has no PolygonLabels control on an "
             "Image; alpolicy needs one for the pre-labels of an instance-segmentation model\n")

    def cli(model: str, journal: str, *more: str):
        return alpolicy_cli("run", str(images), "--model", model, "--policy", str(policy), "--to", f"labelstudio:{project}",
                            "--journal", str(tmp_path / journal), "--no-progress", *more, env=cli_env)

    # The backend knows its task: refused at the check, before any image, a dry run too.
    for dry_run in ((), ("--dry-run",)):
        result = cli(f"told:{INSTANCE_SEGMENTATION}:{predictions}", "told.sqlite", *dry_run)
        assert (result.code, result.err) == (2, needs), result.err
    assert not (tmp_path / "told.sqlite").exists()
    # Stored predictions (the task told by their shape): the first image's send stops the run.
    result = cli(f"replay:{predictions}", "replay.sqlite")
    assert (result.code, result.err) == (2, needs), result.err
    assert ls.tasks(project) == [] and file_uploads(ls, project) == []
    # A multi-label model into a single-choice Choices: what it needs, in one line.
    multi_images, multi_predictions = make_dataset(tmp_path / "multi", MULTI_LABEL_CLASSIFICATION, seed=5)
    single = ls.create_project("alpolicy single choice", '<View><Image name="img" value="$photo"/>'
                               '<Choices name="verdict" toName="img"><Choice value="cat"/></Choices></View>')
    result = alpolicy_cli("run", str(multi_images), "--model", f"told:{MULTI_LABEL_CLASSIFICATION}:{multi_predictions}",
                          "--to", f"labelstudio:{single}", "--journal", str(tmp_path / "multi.sqlite"), env=cli_env)
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert f"project {single}: its labeling config has no Choices control with choice=\"multiple\" on an Image " \
           "(its Choices 'verdict' takes one choice)" in result.err
    assert ls.tasks(single) == []

    # The config fixed, the same command sends every image the stopped run did not.
    config = ls.project(project)["label_config"].replace(
        "</View>", '<PolygonLabels name="outline" toName="img"><Label value="car"/><Label value="person"/></PolygonLabels></View>')
    ls.api("PATCH", f"/api/projects/{project}/", json={"label_config": config})
    result = cli(f"replay:{predictions}", "replay.sqlite", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["sent"] == len(qualifying(INSTANCE_SEGMENTATION))
    tasks = stored_tasks(ls, project)
    assert sorted(tasks) == sorted(qualifying(INSTANCE_SEGMENTATION))
    for name, stored in tasks.items():
        check_regions(INSTANCE_SEGMENTATION, name, stored["predictions"][0]["result"], {"polygonlabels": "outline"}, "img")


@pytest.mark.slow
def test_a_backend_s_task_reaches_the_check_through_prepare_task(ls, env):
    project = ls.create_project("alpolicy prepare task", user_config(KEYPOINT_DETECTION))
    for task in (INSTANCE_SEGMENTATION, CLASSIFICATION, MULTI_LABEL_CLASSIFICATION):
        sink = destination(ls, project)
        sink.prepare_task(task)
        with pytest.raises(UsageError, match=f"has no {ls_format.CONTROLS[task]} control"):
            sink.check()
        sink.close()
    sink = destination(ls, project)
    sink.prepare_task(KEYPOINT_DETECTION)
    sink.check()
    assert sink.config is not None and (sink.config.from_name, sink.config.box_name) == ("joints", "who")
    sink.close()
