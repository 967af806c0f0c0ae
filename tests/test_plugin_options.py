"""Plugin options: each backend and destination declares its ``extra`` with a JSON Schema; the
command line (``--model-opt``/``--to-opt KEY=VALUE`` and the dedicated flags, their aliases) and
Python (``ModelOptions(extra=...)``) are checked against it, every problem one located line."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import alpolicy
from alpolicy import DestinationOptions, InferenceBackendSpec, ModelOptions, PluginError, RunOptions, UsageError, hookimpl
from alpolicy.runtime.pipeline import make_backend
from alpolicy.plugin_options import parse_value
from alpolicy.plugins import DEFAULT_PLUGINS
from alpolicy.testing import StaticBackend, image_folder, make_detection, make_prediction, registry_with

from .cli import alpolicy as alpolicy_cli

SEND_ALL = '{"required_objects_count": 0}'


def sidecar_frames(folder: Path, count: int = 2) -> Path:
    """Images with their predictions beside them, for ``replay:sidecar``."""
    for path in image_folder(folder, count):
        prediction = make_prediction(make_detection("car", 0.9, x=40, y=30, width=20, height=20), width=96, height=72)
        path.with_suffix(".json").write_text(json.dumps(prediction.to_json()))
    return folder


def run(folder: Path, *args: str, **kwargs: Any):
    return alpolicy_cli("run", str(folder), "--journal", ":memory:", "--no-progress", "--conditionals", SEND_ALL, *args, **kwargs)


def test_values_are_json_when_they_parse_else_text():
    assert [parse_value(text) for text in ("true", "3", "[1,2]", '"3"', "null", "yes", "/x/", "", '{"a": 1, "a": 2}')] == [
        True, 3, [1, 2], "3", None, "yes", "/x/", "", '{"a": 1, "a": 2}']


def test_every_problem_is_one_located_line_and_exit_2(tmp_path):
    frames = sidecar_frames(tmp_path / "frames")
    out = tmp_path / "out"
    cases = [
        (("--model", "onnx:demo", "--model-opt", "batch_size=3", "--dry-run"),
         ["--model-opt batch_size: unknown option (did you mean 'batch'?); options of onnx: batch, keypoint_confidence, labels, multi_label, threads"]),
        (("--model", "replay:sidecar", "--to", f"folder:{out}", "--to-opt", "merge=yes"),
         ["--to-opt merge: 'yes' is not of type 'boolean'"]),
        (("--model", "replay:sidecar", "--to", f"folder:{out}", "--to-opt", "labelstudio_to_name="),
         ["--to-opt labelstudio_to_name: '' should be non-empty"]),
        # a dedicated flag is named as the user typed it; a backend without options refuses any
        (("--model", "replay:sidecar", "--labels", "classes.txt", "--dry-run"),
         ["--labels: unknown option; options of replay: none"]),
        (("--model", "replay:sidecar", "--to", f"folder:{out}", "--max-size", "64"),
         ["--max-size: unknown option; options of folder: image_url_prefix, labelstudio_from_name, labelstudio_to_name, merge"]),
        (("--model", "replay:sidecar", "--dry-run", "--to-opt", "merge=true"),
         ["--to-opt merge: an option of the destination, but no --to is given to take it"]),
        (("--model", "replay:sidecar", "--to", f"folder:{out}", "--to-opt", "merge=true", "--to-opt", "merge=false"),
         ["--to-opt merge is given twice: give it once"]),
        (("--model", "replay:sidecar", "--to", "roboflow:p", "--jpeg-quality", "80", "--to-opt", "jpeg_quality=70"),
         ["--jpeg-quality and --to-opt jpeg_quality set the same option: give it once"]),
        # the model's and the destination's problems together, in one message
        (("--model", "onnx:demo", "--model-opt", "batch=0", "--model-opt", "labels=[1]", "--to", f"folder:{out}",
          "--to-opt", "colour=red"),
         ["invalid plugin options (3 problems)",
          "  --model-opt batch: 0 is less than the minimum of 1",
          "  --model-opt labels: [1] is not of type 'string'",
          "  --to-opt colour: unknown option; options of folder: image_url_prefix, labelstudio_from_name, "
          "labelstudio_to_name, merge"]),
    ]
    for args, lines in cases:
        result = run(frames, *args)
        assert result.code == 2, (args, result.err)
        expected = [f"alpolicy: error: {lines[0]}", *lines[1:]]
        assert result.err.splitlines() == expected, (args, result.err)
        assert result.out == ""
    assert not out.exists()  # nothing was made for a refused command


def test_valid_options_reach_the_destination(tmp_path):
    frames = sidecar_frames(tmp_path / "frames")
    out = tmp_path / "out"
    result = run(frames, "--model", "replay:sidecar", "--to", f"folder:{out}", "--to-opt", "labelstudio_from_name=box",
                 "--to-opt", "image_url_prefix=http://files/")
    assert result.code == 0, result.err
    assert 'name="box"' in (out / "labelstudio-config.xml").read_text()
    task = json.loads((out / "labelstudio-tasks.json").read_text())[0]
    assert task["data"]["image"].startswith("http://files/images/")
    assert task["predictions"][0]["result"][0]["from_name"] == "box"
    # merge=true (JSON true) into a folder holding a file of the user's; refused without it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    refused = run(frames, "--model", "replay:sidecar", "--to", f"folder:{tmp_path / 'mine'}")
    assert refused.code == 2 and "--to-opt merge=true" in refused.err
    merged = run(frames, "--model", "replay:sidecar", "--to", f"folder:{tmp_path / 'mine'}", "--to-opt", "merge=true")
    assert merged.code == 0, merged.err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert len(list((tmp_path / "mine" / "images").iterdir())) == 2


def test_model_opt_labels_is_the_labels_flag(tmp_path):
    from alpolicy_onnx.synthetic import write_footage

    write_footage(tmp_path / "frames", n_frames=3, seed=5)
    (tmp_path / "names.txt").write_text("ring\nblock\nwedge\n")
    found = {}
    for name, flags in (("flag", ("--labels", str(tmp_path / "names.txt"))),
                        ("opt", ("--model-opt", f"labels={tmp_path / 'names.txt'}")), ("none", ())):
        out = tmp_path / name
        result = run(tmp_path / "frames", "--model", "onnx:demo", "--to", f"folder:{out}", *flags)
        assert result.code == 0, result.err
        found[name] = {d["class"] for path in (out / "predictions").iterdir()
                       for d in json.loads(path.read_text())["predictions"]}
    assert found["flag"] == found["opt"] and found["opt"] and found["opt"] <= {"ring", "block", "wedge"}
    assert found["none"] and found["none"].isdisjoint({"ring", "block", "wedge"})


def test_python_callers_get_the_same_checks(tmp_path):
    frames = sidecar_frames(tmp_path / "frames")
    policy = {"version": 1, "image": {"rule": "detection_count", "min": 0}}
    cases = [
        (RunOptions(journal=None, progress=False, model_options=ModelOptions(extra={"batch_size": 2})), "onnx:demo",
         "model option batch_size: unknown option (did you mean 'batch'?); options of onnx: batch, keypoint_confidence, labels, multi_label, threads"),
        (RunOptions(journal=None, progress=False, destination_options=DestinationOptions(extra={"merge": "yes", "colour": 1})),
         "replay:sidecar",
         "invalid options of destination folder (2 problems)\n"
         "  destination option colour: unknown option; options of folder: image_url_prefix, labelstudio_from_name, "
         "labelstudio_to_name, merge\n"
         "  destination option merge: 'yes' is not of type 'boolean'"),
    ]
    for options, model, message in cases:
        with pytest.raises(UsageError) as caught:
            alpolicy.run(frames, policy, model=model, destination=f"folder:{tmp_path / 'out'}", options=options)
        assert str(caught.value) == message
    assert not (tmp_path / "out").exists()
    # None is "not set": the plugin sees its default (an image_url_prefix of None would be "None...")
    options = RunOptions(journal=None, progress=False,
                         destination_options=DestinationOptions(extra={"image_url_prefix": None, "merge": None}))
    report = alpolicy.run(frames, policy, model="replay:sidecar", destination=f"folder:{tmp_path / 'out'}", options=options)
    assert report.sent == 2
    assert json.loads((tmp_path / "out" / "labelstudio-tasks.json").read_text())[0]["data"]["image"].startswith("images/")
    assert options.destination_options.extra == {"image_url_prefix": None, "merge": None}  # the caller's object as it was


def test_valid_options_reach_the_backend():
    registry = alpolicy.get_registry()
    backend = make_backend("onnx:demo", ModelOptions(extra={"batch": 3, "threads": 1}), registry)
    try:
        assert backend.max_batch == 3
        assert backend.session.get_session_options().intra_op_num_threads == 1
    finally:
        backend.close()


class Recorder:
    """A backend plugin that records the options its factory got."""

    def __init__(self, schema: dict | None) -> None:
        self.schema = schema
        self.received: list[dict] = []

    @hookimpl
    def alpolicy_inference_backends(self, register):
        def factory(target, options):
            self.received.append(options.extra)
            return StaticBackend()

        spec = InferenceBackendSpec("rec", factory, "records its options")
        if self.schema is not None:  # a 0.1 plugin does not know options_schema
            spec = InferenceBackendSpec("rec", factory, "records its options", options_schema=self.schema)
        register(spec)


def test_a_0_1_plugin_without_a_schema_gets_its_extra_unchecked(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    legacy = Recorder(None)
    extra = {"anything": [1, 2], "unset": None, "x": "y"}
    options = RunOptions(journal=None, progress=False, model_options=ModelOptions(extra=dict(extra)))
    report = alpolicy.run([str(image)], {"version": 1}, model="rec:m", options=options, registry=registry_with(("legacy", legacy)))
    assert report.inferred == 1
    assert legacy.received == [extra]


def test_structured_values_are_located_inside_and_a_schema_is_checked_at_registration(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    schema = {"type": "object", "properties": {"sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}}}}
    plugin = Recorder(schema)
    registry = registry_with(("sized", plugin))
    options = RunOptions(journal=None, progress=False, model_options=ModelOptions(extra={"sizes": [4, "x", 0]}))
    with pytest.raises(UsageError) as caught:
        alpolicy.run([str(image)], {"version": 1}, model="rec:m", options=options, registry=registry)
    assert str(caught.value).splitlines() == [
        "invalid options of inference backend rec (2 problems)",
        "  model option sizes[1]: 'x' is not of type 'integer'",
        "  model option sizes[2]: 0 is less than the minimum of 1",
    ]
    options.model_options.extra = {"sizes": [4, 5]}
    alpolicy.run([str(image)], {"version": 1}, model="rec:m", options=options, registry=registry)
    assert plugin.received == [{"sizes": [4, 5]}]
    for bad, message in (({"type": "array"}, 'options_schema should be {"type": "object", "properties": {...}}'),
                         ({"properties": {"a": {"type": "nope"}}}, "options_schema is not a valid JSON Schema: "),
                         ([1], "options_schema should be a JSON Schema object, not list")):
        with pytest.raises(PluginError, match="^" + re.escape(f"plugin 'broken': inference backend 'rec': {message}")):
            registry_with(("broken", Recorder(bad)))


def test_every_builtin_backend_and_destination_declares_its_options():
    registry = alpolicy.get_registry()
    specs = [*registry.backends.values(), *registry.destinations.values()]
    builtin = [spec for spec in specs if spec.plugin in DEFAULT_PLUGINS or spec.plugin == "onnx"]
    assert {spec.scheme for spec in builtin} >= {"roboflow", "replay", "onnx", "folder", "labelstudio"}
    for spec in builtin:
        assert spec.options_schema is not None, spec.scheme
        for name, prop in spec.options_schema["properties"].items():
            assert prop.get("description"), f"{spec.scheme} option {name} has no description"


@pytest.fixture
def legacy_site(tmp_path) -> dict[str, str]:
    """A 0.1-style backend plugin installed for real: a module and its dist-info on PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "legacy_backend.py").write_text(textwrap.dedent('''
        import json, os
        import alpolicy
        from alpolicy.testing import StaticBackend

        def factory(target, options):
            with open(os.environ["LEGACY_EXTRA_OUT"], "w") as out:
                json.dump(options.extra, out)
            return StaticBackend(model_id="legacy")

        @alpolicy.hookimpl
        def alpolicy_inference_backends(register):
            register(alpolicy.InferenceBackendSpec("legacy", factory, "a plugin written for alpolicy 0.1"))
    '''))
    info = site / "legacy_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: legacy-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[alpolicy]\nlegacy = legacy_backend\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "LEGACY_EXTRA_OUT": str(tmp_path / "extra.json")}


def test_a_0_1_plugin_gets_the_command_line_options_unchecked(tmp_path, legacy_site):
    (image,) = image_folder(tmp_path / "frames", 1)
    result = run(tmp_path / "frames", "--model", "legacy:x", "--dry-run", "--model-opt", "anything=[1,2]",
                 "--model-opt", "name=text", "--labels", "l.txt", env=legacy_site)
    assert result.code == 0, result.err
    assert json.loads(Path(legacy_site["LEGACY_EXTRA_OUT"]).read_text()) == {"anything": [1, 2], "name": "text", "labels": "l.txt"}
    listing = alpolicy_cli("options", "legacy", env=legacy_site)
    assert listing.code == 0 and "(options not declared: passed on unchecked)" in listing.out


def test_alpolicy_options_lists_each_plugin_s_options():
    result = alpolicy_cli("options")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "inference backends (--model-opt KEY=VALUE):" in lines and "destinations (--to-opt KEY=VALUE):" in lines
    assert any(line.split() == ["merge", "boolean", *"add to a folder holding files alpolicy did not write, keeping "
                                "its entries (default false)".split()] for line in lines), result.out
    assert any(line.split()[:2] == ["jpeg_quality", "integer"] and "1..95" in line for line in lines)
    onnx = alpolicy_cli("options", "onnx")
    assert [line.split()[0] for line in onnx.out.splitlines()[2:]] == ["batch", "keypoint_confidence", "labels", "multi_label", "threads"]
    as_json = json.loads(alpolicy_cli("options", "folder", "--json").out)
    assert as_json["inference_backends"] == []
    assert set(as_json["destinations"][0]["options_schema"]["properties"]) == {
        "merge", "image_url_prefix", "labelstudio_from_name", "labelstudio_to_name"}
    wrong = alpolicy_cli("options", "fodler")
    assert wrong.code == 2 and wrong.err.startswith("alpolicy: error: no inference backend or destination 'fodler' "
                                                    "(did you mean 'folder'?)") and len(wrong.err.splitlines()) == 1
    help_text = alpolicy_cli("run", "--help").out
    assert "--model-opt KEY=VALUE" in help_text and help_text.count("`alpolicy options`") >= 2
