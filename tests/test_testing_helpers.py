"""``alpolicy.testing``: every helper returns the real thing, and works against real plugins.

A plugin author's test is only as good as these helpers: each test here checks that what a
helper returns behaves as the object alpolicy itself makes (a validated prediction, a decision of
a compiled policy, a delivery a real destination accepts, a run through :func:`alpolicy.run`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import alpolicy
from alpolicy import Decision, Policy, PolicyError, Prediction, PredictionFormatError, RunReport
from alpolicy.destinations import Delivery
from alpolicy.destinations.folder import make_destination as folder_destination
from alpolicy.destinations.roboflow import make_destination as roboflow_destination
from alpolicy.destinations import DestinationOptions
from alpolicy.io.images import ImageFile, sha256_file
from alpolicy.testing import (SEND_EVERYTHING, CollectingDestination, StaticBackend, evaluate, image_folder, make_delivery,
                              make_detection, make_prediction, registry_with, run_one)
from alpolicy.testing.pytest_plugin import alpolicy_images, alpolicy_registry_with  # noqa: F401 (fixtures)

from . import crashing_plugin

CONFIDENT = {"version": 1, "detection": [{"rule": "confidence", "min": 0.6}], "image": {"rule": "witnesses", "min": 1}}


def test_make_detection_and_make_prediction_are_validated_predictions():
    car = make_detection("car", 0.8, 50, 40, 20, 10)
    assert car == {"x": 50, "y": 40, "width": 20, "height": 10, "confidence": 0.8, "class": "car", "class_id": 0,
                   "detection_id": "car-0.8"}
    prediction = make_prediction(car, make_detection("person", 0.3, points=[{"x": 1, "y": 2}]), width=100, height=80,
                                 model_id="m/1", inference_id="abc")
    assert isinstance(prediction, Prediction) and prediction.checked
    assert (prediction.width, prediction.height, prediction.model_id, prediction.classes) == (100, 80, "m/1", ["car", "person"])
    # what it holds is what a model's JSON would give, read by the one reader
    assert Prediction.from_json(json.loads(json.dumps(prediction.to_json()))) == prediction
    assert prediction.to_json()["inference_id"] == "abc"
    with pytest.raises(PredictionFormatError, match=r"predictions\[0\]\.confidence: 1\.5 is outside 0\.\.1"):
        make_prediction(make_detection("car", 1.5))
    assert make_prediction(make_detection("car", 1.5), validate=False).detections[0]["confidence"] == 1.5


def test_evaluate_is_the_policy_s_real_decision(tmp_path):
    sure, unsure = make_prediction(make_detection("car", 0.9)), make_prediction(make_detection("car", 0.4))
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(CONFIDENT))
    for policy in (CONFIDENT, Policy.from_dict(CONFIDENT), str(path), path):
        decision = evaluate(policy, sure)
        assert isinstance(decision, Decision) and decision.qualifies
        assert decision.witnesses == sure.detections
        assert evaluate(policy, unsure).qualifies is False
        assert evaluate(policy, unsure).rejected_by == "witnesses"
    assert evaluate(CONFIDENT, sure.to_json()).qualifies  # an inference JSON dict too
    with pytest.raises(PolicyError, match=r"\$\.detection\[0\]\.min: -1 is less than the minimum of 0"):
        evaluate({"version": 1, "detection": [{"rule": "confidence", "min": -1}]}, sure)


def test_image_folder_makes_real_distinct_images(tmp_path):
    paths = image_folder(tmp_path / "a" / "b", 5, size=(40, 30), ext=".png", seed=3)
    assert [path.name for path in paths] == [f"frame_{index:05d}.png" for index in range(5)]
    assert len({sha256_file(path) for path in paths}) == 5
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (40, 30))
    again = image_folder(tmp_path / "again", 5, size=(40, 30), ext=".png", seed=3)
    other = image_folder(tmp_path / "other", 5, size=(40, 30), ext=".png", seed=4)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]  # reproducible
    assert {sha256_file(p) for p in other}.isdisjoint(sha256_file(p) for p in paths)
    (jpeg,) = image_folder(tmp_path / "jpeg", 1)
    assert ImageFile.from_path(jpeg).check() == (96, 72)


def test_make_delivery_is_what_a_real_destination_takes(tmp_path, roboflow, env):
    (path,) = image_folder(tmp_path / "frames", 1)
    prediction = make_prediction(make_detection("car", 0.9, 40, 30, 20, 20), width=96, height=72, model_id="vehicles/3")
    delivery = make_delivery(path, prediction, CONFIDENT, tags=["night"])
    assert isinstance(delivery, Delivery) and delivery.decision.qualifies
    assert delivery.key == sha256_file(path) and delivery.remote_id is None
    assert delivery.tags == ["night", "model:vehicles/3"]
    assert delivery.metadata["model"] == "vehicles/3" and delivery.metadata["source_path"] == str(path)
    assert delivery.metadata["alpolicy_reasons"].endswith("confidence 0.90 within [0.60, 1.00]")
    # the folder destination stores it, byte for byte, with its prediction
    folder = folder_destination(str(tmp_path / "out"), DestinationOptions())
    folder.check()
    receipt = folder.send(delivery)
    folder.close()
    assert (tmp_path / "out" / "images" / receipt.remote_id).read_bytes() == path.read_bytes()
    assert json.loads((tmp_path / "out" / "predictions" / "frame_00000.json").read_text())["predictions"] == prediction.detections
    # the Roboflow destination uploads and annotates it (checkpointing the id: a resume's remote_id)
    checkpoints: list[str] = []
    upload = roboflow_destination("queue", DestinationOptions(retry_backoff=0.01))
    upload.send(make_delivery(path, prediction, checkpoint=checkpoints.append))
    (image,) = roboflow.images("queue")
    assert checkpoints == [image["id"]] and len(roboflow.annotations("queue")[image["id"]]) == 1
    # without a prediction: one box over the middle of the image, at its real size
    default = make_delivery(path)
    assert (default.prediction.width, default.prediction.height) == (96, 72)
    assert default.prediction.detections[0]["x"] == 48 and default.decision.policy.document == dict(SEND_EVERYTHING)
    with pytest.raises(ValueError, match="the policy rejects this prediction"):
        make_delivery(path, make_prediction(make_detection("car", 0.1)), CONFIDENT)


def test_registry_with_puts_a_plugin_module_on_the_built_ins(alpolicy_registry_with):
    registry = registry_with(("crashing-rule", crashing_plugin))
    assert registry.rules["explodes"].plugin == "crashing-rule"
    assert registry.backends["crashing"].plugin == "crashing-rule"
    assert registry.rules["confidence"].plugin == "alpolicy.rules.detection"  # the built-ins
    assert "onnx" not in registry.backends and "onnx" in alpolicy.get_registry().backends  # entry points left out
    by_module = alpolicy_registry_with(crashing_plugin)
    assert by_module.plugins[crashing_plugin.__name__].rules == registry.plugins["crashing-rule"].rules
    with pytest.raises(alpolicy.PluginError, match="registered twice"):
        registry_with(crashing_plugin, ("again", _Twice()))


class _Twice:
    """Registers a rule name the crashing plugin has: a second plugin of that name is refused."""

    @alpolicy.hookimpl
    def alpolicy_rules(self, register):
        register(alpolicy.RuleSpec("explodes", alpolicy.Stage.IMAGE, {"type": "object"}, lambda params: None, "again"))


def test_static_backend_and_collecting_destination_keep_the_contracts(tmp_path):
    (path,) = image_folder(tmp_path, 1)
    fixed = make_prediction(make_detection("car", 0.9))
    backend = StaticBackend(fixed)
    first = backend.predict(ImageFile.from_path(path))
    first.detections.append(make_detection("bus", 0.5))  # a rule or a destination may change what it got
    assert backend.predict(ImageFile.from_path(path)).detections == fixed.detections
    assert backend.seen == [str(path), str(path)] and first.model_id == "static"
    destination = CollectingDestination()
    delivery = make_delivery(path)
    assert destination.send(delivery).duplicate is False
    assert destination.send(delivery).duplicate is True  # idempotent: the same content once
    assert destination.deliveries == [delivery]


def test_run_one_is_a_real_one_image_run(tmp_path, alpolicy_images, roboflow, env):
    image = sorted(alpolicy_images.iterdir())[0]
    destination = CollectingDestination()
    report = run_one(image, destination=destination)
    assert isinstance(report, RunReport) and report.journal == ":memory:"
    assert (report.seen, report.inferred, report.qualified, report.sent, report.exit_code) == (1, 1, 1, 1, 0)
    (delivery,) = destination.deliveries
    assert delivery.key == sha256_file(image) and delivery.tags == ["model:static"] and destination.closed
    # specs are built from the registry: the Roboflow backend against the loopback server, into a folder
    report = run_one(image, backend="roboflow:vehicles/3", destination=f"folder:{tmp_path / 'out'}")
    assert report.sent == 1 and roboflow.requests["infer"].total == 1
    assert (tmp_path / "out" / "images" / image.name).read_bytes() == image.read_bytes()
    # a policy that turns it down: nothing sent, the rule named
    rejected = run_one(image, backend=StaticBackend(make_prediction(make_detection("car", 0.2))), policy=CONFIDENT)
    assert (rejected.sent, dict(rejected.rejected_by)) == (0, {"witnesses": 1})
    # a plugin's bug fails the image through the pipeline's real handling
    crash = image.with_name("crash_me.jpg")
    crash.write_bytes(image.read_bytes() + b"\0")
    crashed = run_one(crash, backend="crashing:x", registry=registry_with(("crashing-rule", crashing_plugin)))
    assert crashed.failed == 1 and crashed.exit_code == 1
    assert "backend 'crashing' (plugin crashing-rule) raised KeyError: 'model_output'" in crashed.failures[0]["error"]


def test_run_one_with_a_model_plugin(tmp_path):
    from alpolicy_onnx.synthetic import write_footage

    write_footage(tmp_path / "frames", n_frames=1, seed=5)
    (frame,) = sorted((tmp_path / "frames").glob("*.jpg"))
    destination = CollectingDestination()
    report = run_one(frame, backend="onnx:demo", destination=destination)
    assert report.inferred == 1 and report.fingerprint.startswith("onnx:demo-shapes@")
    assert destination.deliveries[0].prediction.model_id == "onnx:demo-shapes"


def test_the_fixtures(alpolicy_images: Path):
    images = sorted(alpolicy_images.iterdir())
    assert len(images) == 3 and len({sha256_file(path) for path in images}) == 3
