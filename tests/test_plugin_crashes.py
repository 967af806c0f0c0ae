"""A crashing plugin fails its images, not the run.

The plugin (tests/crashing_plugin.py) is a real third-party module: registered through pluggy
in-process, and installed as a distribution with an ``alpolicy`` entry point for the real CLI.
An exception from its rule, backend or destination code fails that image with one line naming
the component, its plugin and (for a rule) its JSON path; the other images are decided and
sent; a plugin that fails every image stops the run through the circuit breaker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from alpolicy import Destination, PluginCrash, Policy, PolicyError, RunOptions, run
from alpolicy.errors import RuleError
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import Journal
from alpolicy.testing import StaticBackend, registry_with

from . import crashing_plugin
from .cli import alpolicy
from .conftest import API_KEY, make_frames
from .helpers import det, pred

PLUGIN = crashing_plugin.PLUGIN_NAME
BOMB = f"$.image.all[0]: rule 'explodes' (plugin {PLUGIN}) raised KeyError: 'bomb'"
BACKEND = f"backend 'crashing' (plugin {PLUGIN}) raised KeyError: 'model_output'"
DESTINATION = f"destination 'crashing' (plugin {PLUGIN}) raised AttributeError: 'NoneType' object has no attribute 'sent'"
EXPLODES = {"version": 1, "image": {"all": [{"rule": "explodes"}, {"rule": "witnesses"}]}}


@pytest.fixture(scope="module")
def registry():
    return registry_with((PLUGIN, crashing_plugin))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The plugin as an installed distribution: its module and a dist-info with the entry point."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(crashing_plugin.__file__, site / "crashing_plugin.py")
    info = site / "crashing_rule-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crashing-rule\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[alpolicy]\n{PLUGIN} = crashing_plugin\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def frames_with(folder: Path, classes: list[list[str]], names: list[str] | None = None) -> list[Path]:
    """Real images, each with a sidecar prediction (``replay:sidecar``) of the given classes."""
    paths = make_frames(folder, len(classes))
    if names is not None:
        paths = [path.rename(path.with_name(name)) for path, name in zip(paths, names)]
    for path, image_classes in zip(paths, classes):
        path.with_suffix(".json").write_text(json.dumps(pred(*(det(cls, 0.9) for cls in image_classes))))
    return paths


def write(tmp_path: Path, name: str, document: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


# ---------------------------------------------------------------- the policy, in-process
def test_a_crashing_image_rule_is_a_rule_error_not_a_malformed_prediction(registry):
    policy = Policy.from_dict(EXPLODES, registry=registry)
    assert policy.evaluate(pred(det("car"), det("dog", 0.4))).qualifies is False
    assert policy.evaluate(pred(det("car"))).qualifies is True
    with pytest.raises(RuleError) as caught:
        policy.evaluate(pred(det("car", 0.9), det("bomb", 0.9)))
    error = caught.value
    assert str(error) == BOMB
    assert (error.rule, error.plugin, error.path) == ("explodes", PLUGIN, "$.image.all[0]")
    assert isinstance(error.__cause__, KeyError)


def test_a_crashing_detection_rule_is_named_at_its_path(registry):
    policy = Policy.from_dict({"version": 1, "detection": [{"rule": "confidence"}, {"rule": "by_class_id"}]}, registry=registry)
    without_id = {key: value for key, value in det("car").items() if key != "class_id"}
    assert policy.evaluate(pred(det("car"))).qualifies is True
    with pytest.raises(RuleError, match=r"^\$\.detection\[1\]: rule 'by_class_id' \(plugin crashing-rule\) raised KeyError: 'class_id'$"):
        policy.evaluate(pred(without_id))


def test_a_rule_whose_explain_crashes_fails_when_explained(registry):
    policy = Policy.from_dict({"version": 1, "image": {"rule": "tongue_tied"}}, registry=registry)
    assert policy.evaluate(pred(det("car"))).reasons == ["cars only"]
    decision = policy.evaluate(pred(det("dog")))
    assert decision.qualifies is True
    with pytest.raises(RuleError, match=r"^\$\.image: rule 'tongue_tied' \(plugin crashing-rule\) raised KeyError: 'dog'$"):
        decision.reasons


def test_a_malformed_prediction_is_still_named_as_such(registry):
    policy = Policy.from_dict(EXPLODES, registry=registry)
    broken = {"image": {"width": 10, "height": 10}, "predictions": [{"x": 1, "y": 1, "width": 2, "height": 2, "class": "car"}]}
    with pytest.raises(ValueError, match=r"^predictions\[0\] lacks confidence$"):
        policy.evaluate(broken)


def test_a_factory_that_raises_is_a_located_problem(registry):
    document = {"version": 1, "image": {"all": [{"rule": "unbuildable"}, {"rule": "witnesses"}]}}
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict(document, registry=registry)
    assert caught.value.messages == [
        f"$.image.all[0]: rule 'unbuildable' (plugin {PLUGIN}) could not be built: KeyError: 'missing'"
    ]


# ---------------------------------------------------------------- the real CLI
def test_validate_reports_a_factory_that_raises_as_a_located_problem(installed, tmp_path):
    policy = write(tmp_path, "policy.json", {"version": 1, "image": {"all": [{"rule": "unbuildable"}, {"rule": "witnesses"}]}})
    result = alpolicy("validate", policy, env=installed)
    assert result.code == 2, result.err
    assert result.err == (
        f"{policy}: 1 problem\n  $.image.all[0]: rule 'unbuildable' (plugin {PLUGIN}) could not be built: KeyError: 'missing'\n"
    )


def test_explain_with_a_crashing_rule_is_one_line_and_exit_2(installed, tmp_path):
    policy = write(tmp_path, "policy.json", EXPLODES)
    fine = write(tmp_path, "fine.json", pred(det("car", 0.9)))
    bomb = write(tmp_path, "bomb.json", pred(det("car", 0.9), det("bomb", 0.9)))
    assert alpolicy("explain", policy, fine, env=installed).code == 0
    result = alpolicy("explain", policy, bomb, env=installed)
    assert (result.code, result.out, result.err) == (2, "", f"alpolicy: error: {BOMB}\n")
    for flags in ([], ["--json"]):  # a crash in explain() itself: no half-printed decision either
        tongue_tied = write(tmp_path, "tongue.json", {"version": 1, "image": {"rule": "tongue_tied"}})
        dog = write(tmp_path, "dog.json", pred(det("dog", 0.9)))
        result = alpolicy("explain", *flags, tongue_tied, dog, env=installed)
        assert (result.code, result.out) == (2, "")
        assert result.err == f"alpolicy: error: $.image: rule 'tongue_tied' (plugin {PLUGIN}) raised KeyError: 'dog'\n"


def test_run_fails_the_images_a_rule_crashes_on_and_decides_the_others(installed, tmp_path):
    paths = frames_with(tmp_path / "frames", [["car"], ["car", "bomb"], ["dog"], ["person"], ["bomb"], ["car"]])
    policy = write(tmp_path, "policy.json", EXPLODES)
    result = alpolicy(
        "run", str(tmp_path / "frames"), "--model", "replay:sidecar", "--policy", policy,
        "--to", f"folder:{tmp_path / 'out'}", "--journal", str(tmp_path / "journal.sqlite"), "--no-progress", "--json",
        env=installed,
    )
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    report = json.loads(result.out)
    assert report["status"] == "completed"
    assert (report["seen"], report["qualified"], report["sent"], report["failed"]) == (6, 4, 4, 2)
    assert sorted(report["failures"], key=lambda f: f["path"]) == [
        {"path": str(paths[1]), "stage": "policy", "error": BOMB},
        {"path": str(paths[4]), "stage": "policy", "error": BOMB},
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [paths[i].name for i in (0, 2, 3, 5)]


def test_a_rule_that_crashes_on_every_image_stops_the_run_in_one_line(installed, tmp_path):
    frames_with(tmp_path / "frames", [["bomb"]] * 30)
    policy = write(tmp_path, "policy.json", EXPLODES)
    result = alpolicy(
        "run", str(tmp_path / "frames"), "--model", "replay:sidecar", "--policy", policy, "--dry-run",
        "--journal", str(tmp_path / "journal.sqlite"), "--no-progress", env=installed,
    )
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    stop = f"  policy failed for 25 images in a row (last: {BOMB}); a plugin bug: fix or remove the plugin, then run again to resume"
    assert result.out.splitlines()[1] == stop
    assert re.search(r"\n  failed +25\n", result.out), result.out


# ---------------------------------------------------------------- alpolicy.run: backend and destination
def test_a_crashing_backend_fails_its_images_and_the_run_goes_on(registry, tmp_path):
    names = ["frame_0.jpg", "crash_1.jpg", "frame_2.jpg", "crash_3.jpg", "frame_4.jpg"]
    paths = frames_with(tmp_path / "frames", [["car"]] * 5, names)
    report = run(
        str(tmp_path / "frames"), EXPLODES, model="crashing:model", destination=f"folder:{tmp_path / 'out'}",
        registry=registry, options=RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False),
    )
    assert report.status == "completed"
    assert (report.seen, report.inferred, report.sent, report.failed, report.exit_code) == (5, 3, 3, 2, 1)
    assert sorted(report.failures, key=lambda f: f["path"]) == [
        {"path": str(paths[1]), "stage": "inference", "error": BACKEND},
        {"path": str(paths[3]), "stage": "inference", "error": BACKEND},
    ]


def test_a_crashing_destination_fails_its_images_and_the_run_goes_on(registry, tmp_path):
    names = ["frame_0.jpg", "crash_1.jpg", "frame_2.jpg", "frame_3.jpg", "crash_4.jpg"]
    paths = frames_with(tmp_path / "frames", [["car"]] * 5, names)
    journal_path = str(tmp_path / "journal.sqlite")
    report = run(
        str(tmp_path / "frames"), EXPLODES, model="replay:sidecar", destination="crashing:bucket",
        registry=registry, options=RunOptions(journal=journal_path, progress=False),
    )
    assert report.status == "completed"
    assert (report.seen, report.qualified, report.sent, report.failed, report.exit_code) == (5, 5, 3, 2, 1)
    assert sorted(report.failures, key=lambda f: f["path"]) == [
        {"path": str(paths[1]), "stage": "send", "error": DESTINATION},
        {"path": str(paths[4]), "stage": "send", "error": DESTINATION},
    ]
    journal = Journal(journal_path)
    try:
        states = {path.name: journal.delivery(ImageFile.from_path(str(path)), "crashing:bucket").state for path in paths}
    finally:
        journal.close()
    assert states == {"frame_0.jpg": "sent", "crash_1.jpg": "failed", "frame_2.jpg": "sent", "frame_3.jpg": "sent", "crash_4.jpg": "failed"}


class _CrashingChecks(Destination):
    """A destination whose ``check()`` / ``prepare_run()`` / ``check_read_only()`` misses a key."""

    def __init__(self, crash_in: str) -> None:
        self.crash_in = crash_in

    def _maybe_crash(self, method: str) -> None:
        if method == self.crash_in:
            raise KeyError(method)

    def check(self) -> None:
        self._maybe_crash("check")

    def check_read_only(self) -> None:
        self._maybe_crash("check_read_only")

    def prepare_run(self, policy: str | None, model: str | None) -> None:
        self._maybe_crash("prepare_run")

    def send(self, delivery: Any) -> Any:
        raise AssertionError("nothing is sent when a check crashed")


@pytest.mark.parametrize("crash_in", ["check", "check_read_only", "prepare_run"])
def test_a_destination_whose_check_crashes_stops_the_run_in_one_line_naming_it(tmp_path, crash_in):
    """As a backend's or a source's ``check()``: a bug in the plugin, named, before the first image."""
    make_frames(tmp_path / "frames", 2)
    with pytest.raises(PluginCrash) as caught:
        run(str(tmp_path / "frames"), {"version": 1}, model=StaticBackend(), destination=_CrashingChecks(crash_in),
            options=RunOptions(journal=None, progress=False, decisions_log="", dry_run=crash_in == "check_read_only"))
    assert str(caught.value) == f"destination _CrashingChecks raised KeyError: '{crash_in}'"


@pytest.mark.parametrize(("component", "stage", "message"), [
    ("rule", "policy", BOMB),
    ("backend", "inference", BACKEND),
    ("destination", "sending", DESTINATION),
])
def test_a_plugin_that_fails_every_image_trips_the_breaker(registry, tmp_path, component, stage, message):
    names = [f"crash_{index:02d}.jpg" for index in range(40)]
    frames_with(tmp_path / "frames", [["bomb" if component == "rule" else "car"]] * 40, names)
    report = run(
        str(tmp_path / "frames"), EXPLODES,
        model="crashing:model" if component == "backend" else "replay:sidecar",
        destination="crashing:bucket" if component == "destination" else f"folder:{tmp_path / 'out'}",
        registry=registry,
        options=RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=1, max_consecutive_failures=3),
    )
    assert report.status == "aborted"
    assert report.message == (
        f"{stage} failed for 3 images in a row (last: {message}); "
        "a plugin bug: fix or remove the plugin, then run again to resume"
    )
    assert report.exit_code == 1
    assert report.failed >= 3 and report.seen < 40
    assert report.sent == 0


def test_the_crash_line_is_redacted_and_one_line():
    error = RuntimeError(f"GET https://detect.example/m/3?api_key={API_KEY} failed\nretry later")
    crash = RuleError("explodes", PLUGIN, "$.image", error)
    assert str(crash) == (
        f"$.image: rule 'explodes' (plugin {PLUGIN}) raised RuntimeError: "
        "GET https://detect.example/m/3?api_key=*** failed\\nretry later"
    )


# ---------------------------------------------------------------- sampling rules
def fragile(crash_in: str) -> dict:
    return {"version": 1, "sampling": [{"rule": "fragile", "crash_in": crash_in}]}


def sampling_crash(crash_in: str) -> str:
    return f"$.sampling[0]: rule 'fragile' (plugin {PLUGIN}) raised KeyError: 'crash'"


@pytest.mark.parametrize("crash_in", ["prepare", "matches", "commit", "explain"])
def test_run_fails_the_images_a_sampling_rule_crashes_on_and_sends_the_others(installed, tmp_path, crash_in):
    names = ["frame_0.jpg", "crash_1.jpg", "frame_2.jpg", "frame_3.jpg", "crash_4.jpg"]
    paths = frames_with(tmp_path / "frames", [["car"]] * 5, names)
    policy = write(tmp_path, "policy.json", fragile(crash_in))
    journal = tmp_path / "journal.sqlite"
    result = alpolicy(
        "run", str(tmp_path / "frames"), "--model", "replay:sidecar", "--policy", policy,
        "--to", f"folder:{tmp_path / 'out'}", "--journal", str(journal), "--no-progress", "--json",
        env=installed,
    )
    assert "Traceback" not in result.err, result.err
    assert result.code == 1, result.err
    report = json.loads(result.out)
    assert report["status"] == "completed"
    assert (report["seen"], report["inferred"], report["sent"], report["failed"]) == (5, 5, 3, 2)
    assert sorted(report["failures"], key=lambda f: f["path"]) == [
        {"path": str(paths[1]), "stage": "policy", "error": sampling_crash(crash_in)},
        {"path": str(paths[4]), "stage": "policy", "error": sampling_crash(crash_in)},
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["frame_0.jpg", "frame_2.jpg", "frame_3.jpg"]
    with sqlite3.connect(journal) as db:  # nothing lost: every prediction is kept, the crashed ones too
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5


@pytest.mark.parametrize("crash_in", ["prepare", "matches", "commit", "explain"])
def test_a_sampling_rule_that_crashes_on_every_image_trips_the_breaker(registry, tmp_path, crash_in):
    names = [f"crash_{index:02d}.jpg" for index in range(40)]
    frames_with(tmp_path / "frames", [["car"]] * 40, names)
    report = run(
        str(tmp_path / "frames"), fragile(crash_in), model="replay:sidecar", destination=f"folder:{tmp_path / 'out'}",
        registry=registry,
        options=RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=1, max_consecutive_failures=3),
    )
    assert report.status == "aborted"
    assert report.message == (
        f"policy failed for 3 images in a row (last: {sampling_crash(crash_in)}); "
        "a plugin bug: fix or remove the plugin, then run again to resume"
    )
    assert (report.exit_code, report.sent) == (1, 0)
    assert report.failed >= 3 and report.seen < 40
