"""The folder destination: files on disk, COCO and Label Studio output, idempotency, threads, crashes."""

from __future__ import annotations

import errno
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence
from xml.etree import ElementTree

import pytest
from PIL import Image

import alpolicy
from alpolicy import ImageRule, Policy, RuleSpec, Stage, UsageError, hookimpl
from alpolicy.destinations import Delivery, DestinationOptions, PermanentError, Receipt
from alpolicy.destinations.folder import FolderDestination, make_destination
from alpolicy.io.images import ImageFile
from alpolicy.plugins import build_registry, make_plugin_manager
from alpolicy.policy.prediction import Prediction

from .helpers import det, pred

COLORS = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (120, 120, 0)]


def make_jpeg(path: Path, color: tuple[int, int, int] = COLORS[0], size: tuple[int, int] = (64, 48)) -> ImageFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")
    return ImageFile.from_path(path)


def delivery_for(image: ImageFile, document: dict[str, Any], policy: Policy | None = None, tags: Sequence[str] = ()) -> Delivery:
    prediction = Prediction.from_json(document)
    decision = (policy or Policy.from_dict({"version": 1})).evaluate(prediction)
    return Delivery(
        image=image, prediction=prediction, decision=decision, key=image.sha256(),
        tags=list(tags), metadata={"source": image.path, "why": "test"},
    )


def folder(tmp_path: Path, **extra: Any) -> FolderDestination:
    destination = make_destination(str(tmp_path / "out"), DestinationOptions(extra=extra))
    destination.check()
    return destination


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def frame(tmp_path: Path) -> ImageFile:
    return make_jpeg(tmp_path / "src" / "frame.jpg", size=(200, 100))


TWO_BOXES = pred(
    det("car", 0.9, width=40, height=20, x=50, y=30),
    det("person", 0.35, width=10, height=30, x=150, y=60),
    width=200, height=100,
)


# -- layout ----------------------------------------------------------------------------------


def test_send_lays_out_image_prediction_and_record(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    out = tmp_path / "out"
    assert destination.name == f"folder:{out}"
    delivery = delivery_for(frame, {**TWO_BOXES, "model_id": "cars/3"}, tags=["uncertain"])
    receipt = destination.send(delivery)

    assert receipt == Receipt("frame.jpg", url=(out / "images" / "frame.jpg").as_uri(), duplicate=False)
    assert (out / "images" / "frame.jpg").read_bytes() == Path(frame.path).read_bytes()
    assert read(out / "predictions" / "frame.json") == delivery.prediction.to_json()
    record = read(out / ".alpolicy" / "records" / f"{frame.sha256()}.json")
    assert record["file_name"] == "frame.jpg"
    assert (record["width"], record["height"]) == (200, 100)
    assert record["model_id"] == "cars/3"
    assert record["prediction"] == delivery.prediction.to_json()
    assert record["tags"] == ["uncertain"]
    assert record["metadata"] == {"source": frame.path, "why": "test"}
    assert record["score"] is None and record["reasons"] == delivery.decision.reasons
    assert record["source"] == os.path.abspath(frame.path)


def test_check_creates_the_folder_and_refuses_a_file(tmp_path: Path) -> None:
    folder(tmp_path)
    assert (tmp_path / "out" / "images").is_dir() and (tmp_path / "out" / ".alpolicy" / "records").is_dir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder") as caught:
        make_destination(str(tmp_path / "a-file"), DestinationOptions()).check()
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="cannot be created or written: Not a directory"):
        make_destination(str(tmp_path / "a-file" / "out"), DestinationOptions()).check()


def test_a_disk_error_is_permanent_and_leaves_no_partial_file(
    tmp_path: Path, frame: ImageFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = folder(tmp_path)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the OS, not alpolicy, is what fails here
    with pytest.raises(PermanentError, match="No space left on device") as caught:
        destination.send(delivery_for(frame, TWO_BOXES))
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert files_under(tmp_path / "out") == [".alpolicy/folder.json"]  # only the marker check() wrote
    # The name was not left taken: the retry stores the image under its own name.
    assert destination.send(delivery_for(frame, TWO_BOXES)).remote_id == "frame.jpg"


# -- COCO ------------------------------------------------------------------------------------


def test_close_writes_coco_with_corner_boxes_and_sorted_categories(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    other = make_jpeg(tmp_path / "src" / "b.jpg", COLORS[1], size=(64, 48))
    destination.send(delivery_for(frame, TWO_BOXES))
    destination.send(delivery_for(other, pred(det("bus", 0.6, width=8, height=6, x=10, y=20), width=64, height=48)))
    destination.close()

    coco = read(tmp_path / "out" / "annotations.coco.json")
    assert "alpolicy" in coco["info"]["contributor"] and coco["info"]["date_created"]
    assert coco["categories"] == [
        {"id": 1, "name": "bus", "supercategory": "none"},
        {"id": 2, "name": "car", "supercategory": "none"},
        {"id": 3, "name": "person", "supercategory": "none"},
    ]
    images = {image["file_name"]: image for image in coco["images"]}
    assert images["images/frame.jpg"]["width"] == 200 and images["images/frame.jpg"]["height"] == 100
    assert images["images/b.jpg"]["width"] == 64
    for image in coco["images"]:
        assert (tmp_path / "out" / image["file_name"]).is_file()

    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = sorted(
        (images_by_id(coco)[a["image_id"]], names[a["category_id"]], a["bbox"], a["area"], a["score"], a["iscrowd"])
        for a in coco["annotations"]
    )
    assert got == [
        ("images/b.jpg", "bus", [6, 17, 8, 6], 48, 0.6, 0),
        ("images/frame.jpg", "car", [30, 20, 40, 20], 800, 0.9, 0),
        ("images/frame.jpg", "person", [145, 45, 10, 30], 300, 0.35, 0),
    ]
    assert len({a["id"] for a in coco["annotations"]}) == 3


def images_by_id(coco: dict[str, Any]) -> dict[int, str]:
    return {image["id"]: image["file_name"] for image in coco["images"]}


def test_boxes_past_the_edge_are_clipped_to_the_image(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    destination.send(delivery_for(frame, pred(det("car", 0.5, width=40, height=40, x=190, y=5), width=200, height=100)))
    destination.close()
    (annotation,) = read(tmp_path / "out" / "annotations.coco.json")["annotations"]
    assert annotation["bbox"] == [170, 0, 30, 25] and annotation["area"] == 750
    (task,) = read(tmp_path / "out" / "labelstudio-tasks.json")
    value = task["predictions"][0]["result"][0]["value"]
    assert (value["x"], value["y"], value["width"], value["height"]) == (85, 0, 15, 25)


# -- Label Studio ----------------------------------------------------------------------------


def test_labelstudio_tasks_are_top_left_percent_of_the_original(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path, image_url_prefix="/data/local-files/?d=out/")
    delivery = delivery_for(frame, {**TWO_BOXES, "model_id": "cars/3"}, tags=["a", "b"])
    destination.send(delivery)
    destination.close()

    (task,) = read(tmp_path / "out" / "labelstudio-tasks.json")
    assert task["data"]["image"] == "/data/local-files/?d=out/images/frame.jpg"
    assert task["data"]["alpolicy_tags"] == "a, b"
    assert task["data"]["alpolicy_reasons"] == "; ".join(delivery.decision.reasons)
    assert task["data"]["source"] == os.path.abspath(frame.path)
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "cars/3"
    assert prediction["score"] == 0.9  # no policy score: the highest confidence
    regions = prediction["result"]
    assert len({r["id"] for r in regions}) == len(regions) == 2
    for region, detection in zip(regions, delivery.prediction.detections):
        assert (region["from_name"], region["to_name"], region["type"]) == ("label", "image", "rectanglelabels")
        assert (region["original_width"], region["original_height"]) == (200, 100)
        value = region["value"]
        assert value["rectanglelabels"] == [detection["class"]] and region["score"] == detection["confidence"]
        # Back to centre-based pixels: the model's box, to the pixel.
        w, h = value["width"] * 200 / 100, value["height"] * 100 / 100
        x, y = value["x"] * 200 / 100 + w / 2, value["y"] * 100 / 100 + h / 2
        assert [round(v) for v in (x, y, w, h)] == [detection["x"], detection["y"], detection["width"], detection["height"]]


def test_labelstudio_names_and_config_follow_the_options(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path, labelstudio_from_name="box", labelstudio_to_name="photo")
    other = make_jpeg(tmp_path / "src" / "my frame.jpg", COLORS[1])
    destination.send(delivery_for(frame, TWO_BOXES))
    destination.send(delivery_for(other, pred(det("a&b", 0.5), width=64, height=48)))
    destination.close()

    tasks = read(tmp_path / "out" / "labelstudio-tasks.json")
    assert sorted(t["data"]["image"] for t in tasks) == ["images/frame.jpg", "images/my%20frame.jpg"]
    regions = [r for t in tasks for r in t["predictions"][0]["result"]]
    assert {(r["from_name"], r["to_name"]) for r in regions} == {("box", "photo")}

    view = ElementTree.parse(tmp_path / "out" / "labelstudio-config.xml").getroot()
    image, labels = view.find("Image"), view.find("RectangleLabels")
    assert image is not None and labels is not None
    assert (image.get("name"), image.get("value")) == ("photo", "$image")
    assert (labels.get("name"), labels.get("toName")) == ("box", "photo")
    assert [label.get("value") for label in labels] == ["a&b", "car", "person"]


class Priority(ImageRule):
    def check(self, prediction, witnesses):  # type: ignore[no-untyped-def]
        return True

    def explain(self, prediction, witnesses, passed):  # type: ignore[no-untyped-def]
        return "always worth a look"

    def score(self, prediction, witnesses):  # type: ignore[no-untyped-def]
        return 0.77


class PriorityPlugin:
    @hookimpl
    def alpolicy_rules(self, register):  # type: ignore[no-untyped-def]
        register(RuleSpec("priority", Stage.IMAGE, {"type": "object", "properties": {}}, lambda params: Priority(), "test"))


def test_the_policy_score_and_reasons_reach_record_and_task(tmp_path: Path, frame: ImageFile) -> None:
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("priority", PriorityPlugin())]))
    policy = Policy.from_dict({"version": 1, "image": {"rule": "priority"}}, registry=registry)
    destination = folder(tmp_path)
    delivery = delivery_for(frame, TWO_BOXES, policy=policy)
    assert delivery.decision.score == 0.77
    destination.send(delivery)
    destination.close()
    assert read(tmp_path / "out" / ".alpolicy" / "records" / f"{frame.sha256()}.json")["score"] == 0.77
    (task,) = read(tmp_path / "out" / "labelstudio-tasks.json")
    assert task["data"]["alpolicy_score"] == 0.77 and task["predictions"][0]["score"] == 0.77
    assert "always worth a look" in task["data"]["alpolicy_reasons"]


# -- idempotency and names -------------------------------------------------------------------


def test_sending_the_same_content_twice_stores_it_once(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    first = destination.send(delivery_for(frame, TWO_BOXES))
    again = destination.send(delivery_for(frame, TWO_BOXES))
    assert (again.remote_id, again.url) == (first.remote_id, first.url)
    assert again.duplicate and not first.duplicate  # "already there" is success, as the contract says
    # A new instance (a resume after a crash) answers the same.
    resumed = folder(tmp_path).send(delivery_for(frame, TWO_BOXES))
    assert (resumed.remote_id, resumed.url, resumed.duplicate) == (first.remote_id, first.url, True)
    out = tmp_path / "out"
    assert os.listdir(out / "images") == ["frame.jpg"]
    assert os.listdir(out / ".alpolicy" / "records") == [f"{frame.sha256()}.json"]


def test_a_different_content_with_a_taken_name_gets_the_hash_suffix(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    clash = make_jpeg(tmp_path / "elsewhere" / "frame.jpg", COLORS[2], size=(200, 100))
    same_stem = make_jpeg(tmp_path / "src" / "FRAME.png", COLORS[3], size=(200, 100))
    assert destination.send(delivery_for(frame, TWO_BOXES)).remote_id == "frame.jpg"
    renamed = destination.send(delivery_for(clash, TWO_BOXES)).remote_id
    assert renamed == f"frame-{clash.sha256()[:8]}.jpg"
    # Same stem, other case and extension: its sidecar would overwrite frame.json, so it is renamed too.
    assert destination.send(delivery_for(same_stem, TWO_BOXES)).remote_id == f"FRAME-{same_stem.sha256()[:8]}.png"
    # And each content keeps its name in a later run, whatever the order.
    later = folder(tmp_path)
    assert later.send(delivery_for(clash, TWO_BOXES)).remote_id == renamed
    assert later.send(delivery_for(frame, TWO_BOXES)).remote_id == "frame.jpg"

    out = tmp_path / "out"
    assert (out / "images" / renamed).read_bytes() == Path(clash.path).read_bytes()
    assert (out / "images" / "frame.jpg").read_bytes() == Path(frame.path).read_bytes()
    assert sorted(os.listdir(out / "predictions")) == sorted(
        ["frame.json", f"frame-{clash.sha256()[:8]}.json", f"FRAME-{same_stem.sha256()[:8]}.json"]
    )


def test_an_image_left_without_record_by_a_crash_is_recognised(tmp_path: Path, frame: ImageFile) -> None:
    out = tmp_path / "out"
    folder(tmp_path)  # the first run prepared the folder (its marker written) ...
    (out / "images" / "frame.jpg").write_bytes(Path(frame.path).read_bytes())  # ... copied, then the crash
    receipt = folder(tmp_path).send(delivery_for(frame, TWO_BOXES))
    assert receipt.remote_id == "frame.jpg" and receipt.duplicate
    assert os.listdir(out / "images") == ["frame.jpg"]


# -- threads, crashes, atomicity -------------------------------------------------------------


def test_fifty_deliveries_from_eight_threads(tmp_path: Path) -> None:
    destination = folder(tmp_path)
    # 25 contents: img0..img9 in src/, img0..img14 in more/ (ten names taken twice); each sent twice.
    images = [make_jpeg(tmp_path / "src" / f"img{i}.jpg", (i * 9, 250 - i * 7, i * 3)) for i in range(10)]
    images += [make_jpeg(tmp_path / "more" / f"img{i}.jpg", (100 + i * 9, 20 + i * 7, 200 - i * 3)) for i in range(15)]
    boxes = [pred(det("car", 0.5 + i / 100), width=64, height=48) for i in range(len(images))]
    deliveries = [delivery_for(image, box) for image, box in zip(images, boxes)] * 2
    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(destination.send, deliveries))
    destination.close()

    out = tmp_path / "out"
    by_key: dict[str, set[str]] = {}
    for delivery, receipt in zip(deliveries, receipts):
        by_key.setdefault(delivery.key, set()).add(receipt.remote_id)
        assert (out / "images" / receipt.remote_id).read_bytes() == Path(delivery.image.path).read_bytes()
    assert all(len(names) == 1 for names in by_key.values())  # one name per content
    assert len({names.pop() for names in by_key.values()}) == 25  # and no two contents share one
    assert len(os.listdir(out / "images")) == len(os.listdir(out / ".alpolicy" / "records")) == 25
    assert len(os.listdir(out / "predictions")) == 25
    coco = read(out / "annotations.coco.json")
    assert len(coco["images"]) == 25 and len(coco["annotations"]) == 25
    assert len(read(out / "labelstudio-tasks.json")) == 25
    assert not [name for name in files_under(out) if name.endswith(".tmp")]


def test_close_rebuilds_from_every_record_including_a_crashed_run(tmp_path: Path, frame: ImageFile) -> None:
    crashed = folder(tmp_path)
    crashed.send(delivery_for(frame, TWO_BOXES))  # ... and the process died before close()
    out = tmp_path / "out"
    assert not (out / "annotations.coco.json").exists()

    second = folder(tmp_path)
    other = make_jpeg(tmp_path / "src" / "b.jpg", COLORS[1])
    second.send(delivery_for(other, pred(det("bus", 0.7), width=64, height=48)))
    second.close()
    coco = read(out / "annotations.coco.json")
    assert sorted(image["file_name"] for image in coco["images"]) == ["images/b.jpg", "images/frame.jpg"]
    assert len(coco["annotations"]) == 3
    assert len(read(out / "labelstudio-tasks.json")) == 2
    # A corrupt record is skipped, not fatal; an image removed by hand leaves the index.
    (out / ".alpolicy" / "records" / ("0" * 64 + ".json")).write_text("{not json")
    (out / "images" / "b.jpg").unlink()
    folder(tmp_path).close()
    assert [image["file_name"] for image in read(out / "annotations.coco.json")["images"]] == ["images/frame.jpg"]


def test_close_without_check_or_send_creates_nothing(tmp_path: Path) -> None:
    make_destination(str(tmp_path / "out"), DestinationOptions()).close()  # e.g. the source was missing
    assert not (tmp_path / "out").exists()


def test_no_temp_files_are_left_behind(tmp_path: Path, frame: ImageFile) -> None:
    destination = folder(tmp_path)
    destination.send(delivery_for(frame, TWO_BOXES))
    destination.close()
    destination.close()  # closing twice is harmless
    assert files_under(tmp_path / "out") == [
        ".alpolicy/folder.json",
        f".alpolicy/records/{frame.sha256()}.json",
        "annotations.coco.json",
        "data.yaml",
        "images/frame.jpg",
        "labels/frame.txt",
        "labelstudio-config.xml",
        "labelstudio-tasks.json",
        "predictions/frame.json",
    ]


# -- registry --------------------------------------------------------------------------------


def test_registered_through_the_registry(tmp_path: Path) -> None:
    spec = alpolicy.get_registry().destinations["folder"]
    assert spec.plugin == "alpolicy.destinations.folder"
    destination = spec.factory(str(tmp_path / "x"), DestinationOptions())
    assert isinstance(destination, alpolicy.destinations.Destination)


def test_yolo_labels_and_data_yaml_read_back_to_the_pixel(tmp_path: Path) -> None:
    destination = folder(tmp_path)
    image = make_jpeg(tmp_path / "src" / "street.jpg", size=(200, 100))
    document = pred(det("car", 0.9, width=40, height=20, x=50, y=30), det("bus", 0.4, width=10, height=10, x=198, y=97),
                    width=200, height=100)
    destination.send(delivery_for(image, document))
    destination.close()
    out = tmp_path / "out"
    yaml_text = (out / "data.yaml").read_text()
    names = {int(line.split(":")[0]): json.loads(line.split(":", 1)[1]) for line in yaml_text.split("names:\n")[1].splitlines()}
    assert names == {0: "bus", 1: "car"} and "train: images" in yaml_text
    rows = [line.split() for line in (out / "labels" / "street.txt").read_text().splitlines()]
    boxes = {}
    for cls, cx, cy, w, h in rows:  # independent reader: normalised centre/size -> pixel corners
        cx, cy, w, h = float(cx) * 200, float(cy) * 100, float(w) * 200, float(h) * 100
        boxes[names[int(cls)]] = (round(cx - w / 2, 3), round(cy - h / 2, 3), round(w, 3), round(h, 3))
    assert boxes["car"] == (30.0, 20.0, 40.0, 20.0)
    assert boxes["bus"] == (193.0, 92.0, 7.0, 8.0)  # clipped at the image's edge, like the COCO file


def test_a_folder_that_cannot_be_written_stops_the_run_in_one_line_before_any_image(tmp_path: Path) -> None:
    """CI runs as root, which permissions do not stop: a path under a regular file, or in /proc."""
    from .cli import alpolicy as alpolicy_cli
    from .conftest import make_frames

    frames = tmp_path / "frames"
    make_frames(frames, 3)
    for image in frames.iterdir():
        (frames / f"{image.stem}.json").write_text(json.dumps(pred(det("car", 0.9))))
    (tmp_path / "somefile.txt").write_text("x")
    journal = tmp_path / "j.sqlite"
    cases = [
        (f"folder:{tmp_path / 'somefile.txt' / 'queue'}", (), "cannot be created or written: Not a directory"),
        (f"folder:{tmp_path / 'somefile.txt' / 'queue'}", ("--dry-run",), f"cannot be created: {tmp_path / 'somefile.txt'} is a file"),
        (f"folder:{tmp_path / 'somefile.txt'}", ("--dry-run",), "is a file, not a folder"),
        ("folder:/proc/alpolicy-queue", (), "cannot be created or written"),
    ]
    for destination, extra, expected in cases:
        result = alpolicy_cli("run", str(frames), "--model", "replay:sidecar", "--to", destination, "--journal", str(journal),
                              *extra)
        assert result.code == 2 and expected in result.err, (destination, extra, result.err)
        assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err, result.err
    assert not journal.exists()  # the run never started
    # A dry run writes nothing at the destination, not even its folders.
    result = alpolicy_cli("run", str(frames), "--model", "replay:sidecar", "--to", f"folder:{tmp_path / 'out'}",
                          "--journal", str(journal), "--dry-run")
    assert result.code == 0, result.err
    assert not (tmp_path / "out").exists()
