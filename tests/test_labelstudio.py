"""The Label Studio destination against a real Label Studio server (``tests/servers/labelstudio.py``).

One server for the whole file (a cold start takes about 30 s); each test makes its own projects.
Everything is read back through Label Studio's own API: tasks, predictions, the labeling config
and the uploaded images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import traceback
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from PIL import Image

import alpolicy
from alpolicy import AuthError, Policy, RuleSpec, RunOptions, Stage, UsageError, hookimpl
from alpolicy.destinations import Delivery, DestinationOptions
from alpolicy.destinations.labelstudio import LabelConfig, LabelStudioDestination, make_destination, project_title
from alpolicy.io.images import ImageFile
from alpolicy.plugins import build_registry, make_plugin_manager
from alpolicy.policy.prediction import Prediction
from alpolicy.policy.rule import ImageRule
from alpolicy.io.secrets import register

from .cli import alpolicy as alpolicy_cli
from .servers.labelstudio import LEGACY_TOKEN, LabelStudio, LabelStudioMissing, shared

register(LEGACY_TOKEN)
pytestmark = pytest.mark.slow

#: name -> (size, [(class, confidence, (x_min, y_min, w, h) in pixels)]): whole-pixel corners, so
#: converting Label Studio's percentages back must give the very same pixels.
FRAMES: dict[str, tuple[tuple[int, int], list[tuple[str, float, tuple[int, int, int, int]]]]] = {
    "a.jpg": ((200, 100), [("car", 0.9, (10, 20, 40, 30)), ("person", 0.35, (120, 5, 31, 60))]),
    "b.png": ((97, 61), [("car", 0.6, (0, 0, 13, 7)), ("car", 0.55, (50, 33, 47, 28))]),  # odd sizes, edges
    "c d.jpg": ((64, 48), [("person", 0.8, (3, 4, 5, 6))]),  # a space in the name
    "d.jpg": ((80, 80), [("car", 0.2, (1, 1, 5, 5))]),  # too unsure: does not qualify
    "e.jpg": ((80, 80), []),  # nothing seen: does not qualify
}
QUALIFYING = ["a.jpg", "b.png", "c d.jpg"]
POLICY = {"version": 1, "name": "confident", "tags": ["al"], "detection": [{"rule": "confidence", "min": 0.5}]}


def label_config(labels: list[str], *, control: str = "bbox", image: str = "photo", key: str = "img") -> str:
    """Non-default names everywhere (bbox/photo/$img): the destination must read them."""
    items = "".join(f'<Label value="{name}" background="#ff0000"/>' for name in labels)
    return (
        f'<View><Header value="Check the boxes"/><Image name="{image}" value="${key}" zoom="true"/>'
        f'<RectangleLabels name="{control}" toName="{image}">{items}</RectangleLabels></View>'
    )


def prediction_json(size: tuple[int, int], boxes: list[tuple[str, float, tuple[int, int, int, int]]]) -> dict[str, Any]:
    width, height = size
    return {
        "image": {"width": width, "height": height},
        "predictions": [
            {"x": x + w / 2, "y": y + h / 2, "width": w, "height": h, "confidence": confidence, "class": cls,
             "class_id": i, "detection_id": f"d{i}"}
            for i, (cls, confidence, (x, y, w, h)) in enumerate(boxes)
        ],
    }


def make_dataset(root: Path, frames: dict = FRAMES, seed: int = 0) -> tuple[Path, Path]:
    """Images (distinct content) and one Roboflow-format prediction JSON each, for ``replay:``."""
    images, predictions = root / "frames", root / "predictions"
    images.mkdir(parents=True)
    predictions.mkdir()
    for index, (name, (size, boxes)) in enumerate(frames.items()):
        Image.new("RGB", size, (40 * index % 256, 7 * seed % 256, 200)).save(images / name)
        (predictions / f"{Path(name).stem}.json").write_text(json.dumps(prediction_json(size, boxes)))
    return images, predictions


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def options(tmp_path: Path, journal: str = "journal.sqlite", **extra: Any) -> RunOptions:
    run_options = RunOptions(journal=str(tmp_path / journal), progress=False, concurrency=2)
    run_options.destination_options.extra.update(extra)
    run_options.destination_options.retry_backoff = 0.05
    return run_options


def run(images: Path, predictions: Path, destination: str, run_options: RunOptions, policy: Any = POLICY, **kwargs: Any):
    return alpolicy.run(str(images), policy, model=f"replay:{predictions}", destination=destination, options=run_options, **kwargs)


@pytest.fixture(scope="session")
def ls():
    try:
        return shared()  # one server for every test file (see tests/servers/labelstudio.py)
    except LabelStudioMissing as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def env(ls, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", ls.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY_TOKEN)
    return {"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": LEGACY_TOKEN}


def by_key(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [task["data"]["alpolicy_key"] for task in tasks]
    assert len(keys) == len(set(keys)), f"duplicate tasks: {keys}"
    return {task["data"]["alpolicy_key"]: task for task in tasks}


def check_task(ls: LabelStudio, task: dict[str, Any], image: Path, policy: Policy, *, control: str = "bbox",
               target: str = "photo", key: str = "img") -> None:
    """The task holds the image (served back byte for byte), the verdict and all boxes, to the pixel."""
    size, boxes = FRAMES[image.name]
    document = prediction_json(size, boxes)
    decision = policy.evaluate(Prediction.from_json(document))
    data = task["data"]
    assert ls.api("GET", data[key]) == image.read_bytes()  # the URL resolves to the very bytes
    assert data["alpolicy_key"] == sha256(image)
    assert data["alpolicy_score"] == decision.score
    assert data["alpolicy_reasons"] == "; ".join(decision.reasons) and data["alpolicy_reasons"]
    assert data["alpolicy_tags"].split(", ")[0] == "al"
    assert data["source"] == str(image)
    (prediction,) = task["predictions"]  # ONE prediction...
    assert prediction["model_version"].startswith("replay:")
    expected_score = decision.score if decision.score is not None else max(c for _, c, _ in boxes)
    assert prediction["score"] == pytest.approx(expected_score)
    regions = prediction["result"]
    assert len(regions) == len(boxes)  # ...with ALL boxes, witnesses or not
    width, height = size
    for region, (cls, confidence, (x, y, w, h)) in zip(regions, boxes):
        assert (region["from_name"], region["to_name"], region["type"]) == (control, target, "rectanglelabels")
        assert (region["original_width"], region["original_height"], region["image_rotation"]) == (width, height, 0)
        assert region["score"] == confidence
        value = region["value"]
        assert value["rectanglelabels"] == [cls]
        pixels = (value["x"] * width / 100, value["y"] * height / 100, value["width"] * width / 100, value["height"] * height / 100)
        assert pixels == pytest.approx((x, y, w, h), abs=1e-6)
        assert tuple(round(p) for p in pixels) == (x, y, w, h)


# -- the pipeline into a project ----------------------------------------------------------------


def test_qualifying_images_become_one_task_each_with_pixel_exact_pre_labels(ls, env, tmp_path):
    images, predictions = make_dataset(tmp_path)
    project = ls.create_project("alpolicy e2e", label_config(["car", "person", "truck"]))
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert (report.sent, report.failed, report.duplicates, report.qualified) == (3, 0, 0, 3), report.failures
    tasks = by_key(ls.tasks(project))
    assert sorted(tasks) == sorted(sha256(images / name) for name in QUALIFYING)
    policy = Policy.from_dict(POLICY)
    for name in QUALIFYING:
        check_task(ls, tasks[sha256(images / name)], images / name, policy)
    # The journal's receipts point at the tasks.
    log = [json.loads(line) for line in Path(report.decisions_log).read_text().splitlines()]
    sent = {Path(r["image"]).name: r for r in log if r.get("remote_id")}
    assert {tasks[sha256(images / n)]["id"] for n in QUALIFYING} == {int(sent[n]["remote_id"]) for n in QUALIFYING}
    assert sent["a.jpg"]["url"] == f"{ls.url}/projects/{project}/data?task={sent['a.jpg']['remote_id']}"

    # A rerun with the journal: nothing to send. Without it: Label Studio's own keys stop duplicates.
    again = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert (again.sent, again.already_sent) == (0, 3)
    fresh = run(images, predictions, f"labelstudio:{project}", options(tmp_path, "other.sqlite"))
    assert (fresh.sent, fresh.duplicates, fresh.failed) == (3, 3, 0)
    assert len(ls.tasks(project)) == 3


def test_many_images_at_the_default_concurrency_are_imported_in_batches_each_once_with_its_prediction(ls, env, tmp_path):
    frames = {f"f{i:02d}.jpg": ((120, 90), [("car", 0.5 + i / 100, (i, i, 20 + i, 10))]) for i in range(24)}
    images, predictions = make_dataset(tmp_path, frames)
    project = ls.create_project("alpolicy many", label_config(["car"]))
    run_options = options(tmp_path)
    run_options.concurrency = 8  # the default: 16 send threads
    sink = destination(ls, project)
    report = run(images, predictions, sink, run_options)
    assert (report.sent, report.failed) == (24, 0), report.failures
    assert sink.import_requests < 24, "task imports were not batched"
    tasks = by_key(ls.tasks(project))
    assert sorted(tasks) == sorted(sha256(path) for path in images.iterdir())
    assert [len(task["predictions"]) for task in tasks.values()] == [1] * 24


class Priority(ImageRule):
    """An image rule with a priority score: a tenth of the image's detections."""

    def check(self, prediction, witnesses):  # type: ignore[no-untyped-def]
        return bool(witnesses)

    def explain(self, prediction, witnesses, passed):  # type: ignore[no-untyped-def]
        return f"priority {len(prediction.detections) / 10:g}"

    def score(self, prediction, witnesses):  # type: ignore[no-untyped-def]
        return len(prediction.detections) / 10


class PriorityPlugin:
    @hookimpl
    def alpolicy_rules(self, register):  # type: ignore[no-untyped-def]
        register(RuleSpec("priority", Stage.IMAGE, {"type": "object", "properties": {}}, lambda params: Priority(), "test"))


def test_the_policy_score_is_the_prediction_score(ls, env, tmp_path):
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("priority", PriorityPlugin())]))
    policy = Policy.from_dict({**POLICY, "image": {"rule": "priority"}}, registry=registry)
    images, predictions = make_dataset(tmp_path, seed=1)
    project = ls.create_project("alpolicy score", label_config(["car", "person"]))
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path), policy=policy, registry=registry)
    assert report.sent == 3, report.failures
    tasks = by_key(ls.tasks(project))
    task = tasks[sha256(images / "a.jpg")]
    assert task["data"]["alpolicy_score"] == 0.2 and task["predictions"][0]["score"] == 0.2
    assert "priority 0.2" in task["data"]["alpolicy_reasons"]
    check_task(ls, task, images / "a.jpg", policy)


# -- exactly once -------------------------------------------------------------------------------


def destination(ls: LabelStudio, project: int | str, **extra: Any) -> LabelStudioDestination:
    dest = make_destination(str(project), DestinationOptions(api_key=LEGACY_TOKEN, retry_backoff=0.01, extra={"labelstudio_url": ls.url, **extra}))
    dest.check()
    return dest


def delivery_for(path: Path, checkpoints: list[str] | None = None, remote_id: str | None = None) -> Delivery:
    size, boxes = FRAMES[path.name]
    prediction = Prediction.from_json(prediction_json(size, boxes))
    prediction.model_id = "test-model/1"
    decision = Policy.from_dict(POLICY).evaluate(prediction)
    image = ImageFile.from_path(path)
    sink = checkpoints if checkpoints is not None else []
    return Delivery(image, prediction, decision, image.sha256(), ["al"], {"alpolicy_policy": "confident"},
                    remote_id=remote_id, checkpoint=sink.append)


def file_uploads(ls: LabelStudio, project: int) -> list[dict[str, Any]]:
    return ls.api("GET", f"/api/projects/{project}/file-uploads", params={"all": "true"})


def test_a_send_repeated_after_a_crash_concurrently_or_after_a_lost_response_makes_one_task(ls, env, tmp_path):
    images, _ = make_dataset(tmp_path)
    project = ls.create_project("alpolicy once", label_config(["car", "person"]))
    dest = destination(ls, project)

    # Sent twice (a crash after the task was made, before the journal recorded it): one task.
    checkpoints: list[str] = []
    first = dest.send(delivery_for(images / "a.jpg", checkpoints))
    second = dest.send(delivery_for(images / "a.jpg"))
    assert (second.remote_id, second.duplicate, first.duplicate) == (first.remote_id, True, False)
    assert checkpoints and checkpoints[0].startswith("upload:")

    # Eight threads sending the same content at once: one task, seven duplicates.
    receipts: list[Any] = []
    threads = [threading.Thread(target=lambda: receipts.append(dest.send(delivery_for(images / "b.png")))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.remote_id for r in receipts}) == 1 and sorted(r.duplicate for r in receipts) == [False] + [True] * 7

    # The task is made but its response is lost: the retry finds it instead of making a second.
    from .servers.faultproxy import FaultProxy, Faults

    with FaultProxy(ls.url) as proxy:
        imports = Faults(f"/api/projects/{project}/import", lose_every=2, max_faults=1)  # the upload, then the task
        proxy.faults = [imports]
        lossy = destination(ls, project, labelstudio_url=proxy.url)
        receipt = lossy.send(delivery_for(images / "c d.jpg"))
        lossy.close()
    assert proxy.injected() == {"lose": 1} and imports.seen == 2 and not receipt.duplicate  # no second import
    assert lossy.import_requests == 0  # the one import was never answered: the lookup found its task

    # A task that Label Studio stored without its prediction (what concurrent imports do to a
    # SQLite Label Studio): the next send of that content adds the prediction, once.
    orphan = ls.api("POST", f"/api/projects/{project}/import", params={"return_task_ids": "true"},
                    json=[{"data": {"img": "/data/nothing.png", "alpolicy_key": sha256(images / "e.jpg")}}])["task_ids"][0]
    repaired = dest.send(delivery_for(images / "e.jpg"))
    assert (repaired.remote_id, repaired.duplicate) == (str(orphan), True)
    assert dest.send(delivery_for(images / "e.jpg")).duplicate
    assert [len(t["predictions"]) for t in ls.tasks(project) if t["id"] == orphan] == [1]

    # A crash after the upload, before the task: the resumed send reuses the checkpointed upload.
    uploads_before = len(file_uploads(ls, project))
    crash_checkpoints: list[str] = []

    def crash(task, key):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    dest._create_task = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        dest.send(delivery_for(images / "d.jpg", crash_checkpoints))
    dest.close()
    (upload,) = crash_checkpoints
    resumed = destination(ls, project)
    receipt = resumed.send(delivery_for(images / "d.jpg", remote_id=upload))
    resumed.close()
    assert len(file_uploads(ls, project)) == uploads_before + 1  # the crashed send's upload, reused

    tasks = by_key(ls.tasks(project))
    assert sorted(tasks) == sorted(sha256(images / n) for n in ("a.jpg", "b.png", "c d.jpg", "d.jpg", "e.jpg"))
    assert all(len(task["predictions"]) == 1 for task in tasks.values())
    assert str(tasks[sha256(images / "d.jpg")]["id"]) == receipt.remote_id
    assert ls.api("GET", tasks[sha256(images / "d.jpg")]["data"]["img"]) == (images / "d.jpg").read_bytes()


# -- labels -------------------------------------------------------------------------------------


def test_missing_labels_fail_the_image_until_added_with_add_missing_labels(ls, env, tmp_path):
    images, predictions = make_dataset(tmp_path)
    project = ls.create_project("alpolicy labels", "<!-- keep me -->" + label_config(["car"]))
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    failures = {Path(f["path"]).name: f["error"] for f in report.failures}
    assert sorted(failures) == ["a.jpg", "c d.jpg"] and report.sent == 1  # b.png has only cars
    assert failures["a.jpg"] == (
        f"class 'person' is not a label of the RectangleLabels 'bbox' of Label Studio project {project}: "
        "add it to the labeling config, or run with --add-missing-labels"
    )
    assert len(ls.tasks(project)) == 1

    # The CLI with --add-missing-labels: the config gains 'person' (once), the failed images go.
    result = alpolicy_cli(
        "run", str(images), "--model", f"replay:{predictions}", "--policy", str(write_policy(tmp_path)),
        "--to", f"labelstudio:{project}", "--labelstudio-url", ls.url, "--add-missing-labels",
        "--journal", str(tmp_path / "journal.sqlite"), "--no-progress", "--json",
        env={"LABEL_STUDIO_URL": "http://127.0.0.1:9/not-this-one"},
    )
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["sent"] == 2 and summary["failed"] == 0
    config = ls.project(project)["label_config"]
    control = ElementTree.fromstring(config).find("RectangleLabels")
    assert [label.get("value") for label in control] == ["car", "person"]
    assert control[0].get("background") == "#ff0000"  # the user's config is kept as it was
    tasks = by_key(ls.tasks(project))
    assert len(tasks) == 3
    check_task(ls, tasks[sha256(images / "a.jpg")], images / "a.jpg", Policy.from_dict(POLICY))


def write_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    return path


def test_labelstudio_new_makes_a_project_from_the_classes_and_reuses_it(ls, env, tmp_path):
    images, predictions = make_dataset(tmp_path)
    before = {p["id"] for p in ls.api("GET", "/api/projects/", params={"page_size": 100})["results"]}
    report = run(images, predictions, "labelstudio:new", options(tmp_path))
    assert report.sent == 3 and report.failed == 0, report.failures
    created = [p for p in ls.api("GET", "/api/projects/", params={"page_size": 100})["results"] if p["id"] not in before]
    (project,) = created
    assert project["title"] == project_title("confident", f"replay:{predictions}") and len(project["title"]) <= 50
    config = LabelConfig.parse(project["label_config"], "new project")
    assert (config.from_name, config.to_name, config.image_key) == ("label", "image", "image")
    assert sorted(config.labels) == ["car", "person"]  # a.jpg's classes, then c d.jpg's added
    tasks = by_key(ls.tasks(project["id"]))
    assert len(tasks) == 3
    check_task(ls, tasks[sha256(images / "a.jpg")], images / "a.jpg", Policy.from_dict(POLICY),
               control="label", target="image", key="image")
    again = run(images, predictions, "labelstudio:new", options(tmp_path, "second.sqlite"))
    assert (again.sent, again.duplicates) == (3, 3)
    assert len(ls.api("GET", "/api/projects/", params={"page_size": 100})["results"]) == len(before) + 1
    # Same journal, another policy: another project, and nothing in it counts as already sent.
    other = {**POLICY, "name": "second-opinion"}
    third = run(images, predictions, "labelstudio:new", options(tmp_path), policy=other)
    assert (third.sent, third.already_sent) == (3, 0)
    assert len(ls.api("GET", "/api/projects/", params={"page_size": 100})["results"]) == len(before) + 2


# -- tokens and errors --------------------------------------------------------------------------


def test_a_personal_access_token_works_and_its_access_token_is_renewed(ls, env, tmp_path, monkeypatch):
    pat = ls.personal_access_token()
    assert pat.count(".") == 2 and pat != LEGACY_TOKEN
    register(pat)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    images, predictions = make_dataset(tmp_path)
    project = ls.create_project("alpolicy pat", label_config(["car", "person"]))
    report = run(images, predictions, f"labelstudio:{project}", options(tmp_path))
    assert report.sent == 3 and report.failed == 0, report.failures
    assert len(ls.tasks(project)) == 3

    dest = make_destination(str(project), DestinationOptions(extra={"labelstudio_url": ls.url}))
    credentials = dest.credentials
    refreshes: list[float] = []
    exchange = credentials._refresh

    def counted() -> None:
        refreshes.append(1)
        exchange()

    credentials._refresh = counted  # type: ignore[method-assign]
    dest.check()
    assert credentials.kind == "personal access token" and len(refreshes) == 1
    first = credentials._access
    assert first and first.count(".") == 2 and credentials._expires > 0  # exp read from the JWT
    credentials._access = first[:-4] + "AAAA"  # a refused access token: renewed once, then it works
    dest.check()
    assert len(refreshes) == 2 and credentials._access not in (None, first[:-4] + "AAAA")
    credentials._expires = 1.0  # expired by the clock: renewed before the next request
    receipt = dest.send(delivery_for(images / "a.jpg"))
    assert receipt.duplicate and len(refreshes) == 3
    dest.close()


def test_a_refused_token_stops_the_run_before_any_image_and_is_never_shown(ls, env, tmp_path, monkeypatch):
    images, predictions = make_dataset(tmp_path)
    project = ls.create_project("alpolicy auth", label_config(["car", "person"]))
    bad_pat = ls.personal_access_token()[:-6] + "abcdef"  # a JWT whose signature does not match
    for token, kind in (("0123456789abcdef0123456789abcdef01234567", "legacy API token"), (bad_pat, "personal access token")):
        register(token)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
        with pytest.raises(AuthError) as raised:
            run(images, predictions, f"labelstudio:{project}", options(tmp_path, f"{kind}.sqlite"))
        message = str(raised.value)
        assert f"refused the {kind}" in message and "HTTP 401" in message, message
        assert token not in message and "\n" not in message
        assert not (tmp_path / f"{kind}.sqlite").exists()  # stopped before the journal, before any image
    assert ls.tasks(project) == [] and file_uploads(ls, project) == []

    result = alpolicy_cli("run", str(images), "--model", f"replay:{predictions}", "--to", f"labelstudio:{project}",
                          "--journal", str(tmp_path / "cli.sqlite"), "--no-progress",
                          env={"LABEL_STUDIO_API_KEY": "0123456789abcdef0123456789abcdef01234567", "LABEL_STUDIO_URL": ls.url})
    assert result.code == 2 and "refused the legacy API token" in result.err
    assert "0123456789abcdef" not in result.err + result.out and len(result.err.strip().splitlines()) == 1


def test_user_errors_are_one_line(ls, env, tmp_path, monkeypatch):
    images, predictions = make_dataset(tmp_path)
    with pytest.raises(UsageError, match=r"^Label Studio project 99999 does not exist at http://127\.0\.0\.1:\d+ "):
        run(images, predictions, "labelstudio:99999", options(tmp_path))
    no_boxes = ls.create_project("alpolicy no boxes", '<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="x"/></Choices></View>')
    with pytest.raises(UsageError, match="has no RectangleLabels control on an Image"):
        run(images, predictions, f"labelstudio:{no_boxes}", options(tmp_path))
    with pytest.raises(UsageError, match="should be a project id or 'new'"):
        run(images, predictions, "labelstudio:my-project", options(tmp_path))
    # On the command line, a dry run included (its check only reads): one line, before any image.
    for dry_run in ((), ("--dry-run",)):
        result = alpolicy_cli("run", str(images), "--model", f"replay:{predictions}", "--to", "labelstudio:99999",
                              "--journal", str(tmp_path / "cli.sqlite"), *dry_run, env=env)
        assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
        assert result.err.startswith("alpolicy: error: Label Studio project 99999 does not exist at "), result.err
    assert not (tmp_path / "cli.sqlite").exists()
    result = alpolicy_cli("run", str(images), "--model", f"replay:{predictions}", "--to", "labelstudio:1",
                          "--journal", str(tmp_path / "cli.sqlite"), env={**env, "LABEL_STUDIO_URL": "localhost:8080"})
    assert result.err == "alpolicy: error: LABEL_STUDIO_URL 'localhost:8080' should be an http:// or https:// URL with a host, e.g. http://localhost:9001\n"
    assert result.code == 2
    # An image Label Studio does not take (TIFF): that image fails with Label Studio's reason, one line.
    tiff = make_dataset(tmp_path / "tiff", {"scan.tif": ((40, 30), [("car", 0.9, (1, 2, 3, 4))])})
    project = ls.create_project("alpolicy tiff", label_config(["car"]))
    report = run(*tiff, f"labelstudio:{project}", options(tmp_path, "tiff.sqlite"))
    (failure,) = report.failures
    assert failure["error"].startswith("Label Studio: uploading the image failed (HTTP 400): .tif extension is not supported") and "\n" not in failure["error"]
    assert ls.tasks(project) == []
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(UsageError, match="set LABEL_STUDIO_API_KEY"):
        run(images, predictions, "labelstudio:1", options(tmp_path))


# -- the folder destination's tasks -------------------------------------------------------------


def test_the_folder_destinations_labelstudio_tasks_import_as_they_are(ls, tmp_path):
    images, predictions = make_dataset(tmp_path)
    report = run(images, predictions, f"folder:{tmp_path / 'queue'}", options(tmp_path))
    assert report.sent == 3
    config = (tmp_path / "queue" / "labelstudio-config.xml").read_text()
    tasks = json.loads((tmp_path / "queue" / "labelstudio-tasks.json").read_text())
    project = ls.create_project("alpolicy folder import", config)
    answer = ls.api("POST", f"/api/projects/{project}/import", json=tasks, params={"return_task_ids": "true"})
    assert (answer["task_count"], answer["prediction_count"]) == (3, 3)
    stored = {task["data"]["image"]: task for task in ls.tasks(project)}
    for original in tasks:
        task = stored[original["data"]["image"]]
        (prediction,) = task["predictions"]
        assert prediction["result"] == original["predictions"][0]["result"]
        assert prediction["score"] == pytest.approx(original["predictions"][0]["score"])
        assert task["data"]["alpolicy_reasons"] == original["data"]["alpolicy_reasons"]


# -- the labeling config (no server) ------------------------------------------------------------


def test_the_labeling_config_is_read_and_extended_without_losing_anything():
    xml = (
        '<View>\n  <!-- the user\'s comment -->\n  <Image name="photo" value="$img"/>\n'
        '  <Choices name="quality" toName="photo"><Choice value="ok"/></Choices>\n'
        '  <RectangleLabels name="bbox" toName="photo" strokeWidth="3">\n'
        '    <Label value="car" background="red"/>\n  </RectangleLabels>\n</View>'
    )
    config = LabelConfig.parse(xml, "test")
    assert (config.from_name, config.to_name, config.image_key, config.labels) == ("bbox", "photo", "img", ("car",))
    assert config.missing(["car", "a&b", "person", "a&b"]) == ["a&b", "person"]
    extended = config.with_labels(["a&b", "person"])
    assert "<!-- the user's comment -->" in extended and 'strokeWidth="3"' in extended
    assert LabelConfig.parse(extended, "test").labels == ("car", "a&b", "person")
    assert '    <Label value="person" />\n  </RectangleLabels>' in extended
    empty = LabelConfig.parse('<View><Image name="i" value="$image"/><RectangleLabels name="r" toName="i"></RectangleLabels></View>', "t")
    assert LabelConfig.parse(empty.with_labels(["x"]), "t").labels == ("x",)
    with pytest.raises(UsageError, match="not valid XML"):
        LabelConfig.parse("<View>", "test")
    with pytest.raises(UsageError, match="not from a task field"):
        LabelConfig.parse('<View><Image name="i" value="http://x/y.jpg"/><RectangleLabels name="r" toName="i"/></View>', "test")
    assert len(project_title("p" * 80, "replay:/a/very/long/path/to/some/predictions")) == 50


# -- faults between alpolicy and Label Studio ---------------------------------------------------


def test_faults_in_front_of_label_studio_lose_nothing_and_make_no_second_task(ls, env, tmp_path):
    """A loopback proxy in front of the real server injects 503s, resets and lost responses."""
    from .servers.faultproxy import FaultProxy, Faults

    frames = {f"g{i:02d}.jpg": ((100, 80), [("car", 0.6 + i / 100, (5 + i, 5, 30, 20))]) for i in range(12)}
    images, predictions = make_dataset(tmp_path, frames)
    project = ls.create_project("alpolicy faults", label_config(["car"]))
    with FaultProxy(ls.url) as proxy:
        proxy.faults = [
            Faults(f"/api/projects/{project}/import", lose_every=2, max_faults=4),  # uploads and task creation
            Faults("/api/tasks", error_every=3, max_faults=4),  # the exactly-once lookups
            Faults("/api/import/file-upload", reset_every=2, max_faults=3),
        ]
        run_options = options(tmp_path)
        run_options.destination_options.extra = {"labelstudio_url": proxy.url}
        run_options.destination_options.attempts = 6
        report = run(images, predictions, f"labelstudio:{project}", run_options)
        injected = proxy.injected()
    assert (report.sent, report.failed, report.pending) == (12, 0, 0), report.failures
    assert injected == {"lose": 4, "error": 4, "reset": 3}
    tasks = by_key(ls.tasks(project))
    assert sorted(tasks) == sorted(sha256(path) for path in images.iterdir())  # one task per image, no more
    assert all(len(task["predictions"]) == 1 for task in tasks.values())


def test_a_token_crossing_the_cut_of_an_error_body_is_masked_whole(ls, env, tmp_path, caplog):
    """Label Studio's refusals quote their body: redacted before it is cut, wherever it goes."""
    from .servers.faultproxy import FaultProxy, Faults
    from .test_security import leaks, straddling

    caplog.set_level(logging.INFO, logger="alpolicy")
    images, predictions = make_dataset(tmp_path)
    project = ls.create_project("alpolicy error bodies", label_config(["car", "person"]))
    bodies = {"text": straddling(LEGACY_TOKEN).encode(), "json": json.dumps({"detail": straddling(LEGACY_TOKEN)}).encode()}
    for name, body in bodies.items():
        with FaultProxy(ls.url) as proxy:  # the image uploads refused (400) with that body
            proxy.faults = [Faults(f"/api/projects/{project}/import", error_every=1, error_status=400, error_body=body)]
            report = run(images, predictions, f"labelstudio:{project}", options(tmp_path, f"{name}.sqlite", labelstudio_url=proxy.url))
        assert (report.failed, report.sent, proxy.injected()) == (3, 0, {"error": 3}), report.failures
        journal = b"".join(path.read_bytes() for path in tmp_path.glob(f"{name}.sqlite*"))
        texts = {"summary": report.summary(), "report": str(report.to_json()), "journal": journal.decode("latin-1"),
                 "decisions log": Path(report.decisions_log).read_text(), "log": caplog.text}
        assert all("(HTTP 400): proxy error: ..." in texts[where] for where in ("summary", "journal", "decisions log")), texts
        assert [where for where, text in texts.items() if leaks(LEGACY_TOKEN, text)] == [], name

        with FaultProxy(ls.url) as proxy:  # the token refused (401) with that body: the run stops
            proxy.faults = [Faults(f"/api/projects/{project}/", error_every=1, error_status=401, error_body=body)]
            with pytest.raises(AuthError) as caught:
                run(images, predictions, f"labelstudio:{project}", options(tmp_path, f"{name}-auth.sqlite", labelstudio_url=proxy.url))
        text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert "(HTTP 401): proxy error: ..." in text and not leaks(LEGACY_TOKEN, text), text
    assert ls.tasks(project) == []
