"""One plugin contract for every kind: rules, backends, destinations and sources.

The third-party plugin here is a real installed distribution (a module and a dist-info with an
``alpolicy`` entry point in a temporary site folder on ``PYTHONPATH``, what ``pip install`` leaves
behind), run through the real CLI. It provides a source ``listfile:PATHS.txt`` (image paths listed
in a text file), a backend ``fixed:`` that accepts an empty target, and a destination ``memory:``;
each is a minimal subclass of the public base classes, relying on their defaults (``check``,
``close``, ``name``, ``model_id``, ``fingerprint``).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, PluginError, RunOptions, run
from alpolicy.plugins import build_registry, make_plugin_manager

from .plugin_packages import install
from .cli import alpolicy as cli
from .conftest import make_frames
from .helpers import det, pred

PLUGIN = '''
import os

import alpolicy


class ListFile(alpolicy.Source):
    """The image paths listed in a text file, one a line, relative to the file."""

    def __init__(self, target, options):
        if not os.path.isfile(target):
            raise alpolicy.UsageError(f"listfile: no list at {target!r}")
        self.path = target

    def _lines(self):
        with open(self.path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]

    def count(self):
        return len(self._lines())

    def __iter__(self):
        folder = os.path.dirname(self.path)
        return iter([os.path.join(folder, line) for line in self._lines()])


class Fixed(alpolicy.InferenceBackend):
    """One car in every image: only predict, every other member from the base class."""

    def __init__(self, target, options):
        pass

    def predict(self, image):
        box = {"x": 20, "y": 20, "width": 10, "height": 10, "confidence": 0.9, "class": "car"}
        return alpolicy.Prediction(96, 72, [box])


@alpolicy.hookimpl
def alpolicy_sources(register):
    register(alpolicy.SourceSpec("listfile", ListFile, "Image paths listed in a text file: listfile:PATHS.txt"))


@alpolicy.hookimpl
def alpolicy_inference_backends(register):
    register(alpolicy.InferenceBackendSpec("fixed", Fixed, "One car per image: fixed:", accepts_empty_target=True))
'''

SHADOW = '''
import alpolicy


@alpolicy.hookimpl
def alpolicy_sources(register):
    register(alpolicy.SourceSpec("listfile", lambda target, options: [], "Another list of files"))
'''


def site_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture
def installed(tmp_path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "listing", "alpolicy-listing", PLUGIN)
    return site_env(site)


def frames_with_sidecars(folder: Path, count: int) -> list[Path]:
    paths = make_frames(folder, count)
    for path in paths:
        path.with_suffix(".json").write_text(json.dumps(pred(det("car", 0.9))))
    return paths


def one_line_error(result, code: int = 2) -> str:
    assert (result.code, result.out) == (code, ""), (result.code, result.out, result.err)
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    return result.err


# ---------------------------------------------------------------- a source plugin, through the real CLI
@pytest.mark.slow
def test_a_source_plugin_chosen_by_scheme_feeds_a_run(installed, tmp_path):
    paths = frames_with_sidecars(tmp_path / "frames", 5)
    listing = tmp_path / "frames" / "paths.txt"
    listing.write_text("\n".join(path.name for path in paths[:3]) + "\n")
    out = tmp_path / "out"
    result = cli("run", f"listfile:{listing}", "--model", "replay:sidecar", "--to", f"folder:{out}", "--json",
                 "--journal", str(tmp_path / "journal.sqlite"), env=installed)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["seen"], report["sent"], report["failed"]) == (3, 3, 0)
    assert sorted(path.name for path in (out / "images").iterdir()) == sorted(path.name for path in paths[:3])


@pytest.mark.slow
def test_alpolicy_plugins_lists_sources(installed):
    result = cli("plugins", "--json", env=installed)
    assert result.code == 0, result.err
    plugins = {info["name"]: info for info in json.loads(result.out)}
    assert plugins["listing"]["sources"] == ["listfile"]
    assert plugins["listing"]["inference_backends"] == ["fixed"]
    assert plugins["alpolicy.sources.folder"]["sources"] == ["folder"]
    text = cli("plugins", env=installed)
    assert "sources: listfile" in text.out and "sources: folder" in text.out, text.out


@pytest.mark.slow
def test_an_unknown_source_scheme_is_one_line_with_did_you_mean(installed, tmp_path):
    # only this plugin and the built-ins: other installed sources (make install's video) would join the list
    result = cli("run", f"listfil:{tmp_path / 'paths.txt'}", "--model", "replay:sidecar", "--dry-run",
                 "--journal", ":memory:", env={**installed, "ALPOLICY_LOAD_PLUGINS": "listing"})
    assert one_line_error(result) == (
        "alpolicy: error: no source for 'listfil' (did you mean 'listfile'?); installed: folder, listfile\n"
    )


@pytest.mark.slow
def test_a_duplicate_source_scheme_names_both_plugins(installed, tmp_path):
    site = Path(installed["PYTHONPATH"].split(os.pathsep)[0])
    install(site, "shadow", "alpolicy-shadow", SHADOW)
    result = cli("plugins", env=installed)
    err = one_line_error(result)
    # Which of the two loads first is the file system's order of the site folder.
    match = re.fullmatch(r"alpolicy: error: source 'listfile' is registered twice: by plugin '(\w+)' and by plugin "
                         r"'(\w+)'; rename it in plugin '(\w+)' or start without that plugin: "
                         r"ALPOLICY_LOAD_PLUGINS=(\S*) alpolicy \.\.\.\n", err)
    assert match, err
    first, second, culprit, others = match.groups()
    assert {first, second} == {"listing", "shadow"} and culprit == second and culprit not in others.split(","), err


@pytest.mark.slow
def test_a_backend_that_accepts_an_empty_target(installed, tmp_path):
    make_frames(tmp_path / "frames", 4)
    out = tmp_path / "out"
    result = cli("run", str(tmp_path / "frames"), "--model", "fixed:", "--to", f"folder:{out}", "--json",
                 "--journal", str(tmp_path / "journal.sqlite"), env=installed)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["seen"], report["sent"], report["fingerprint"]) == (4, 4, "fixed")
    assert len(list((out / "images").iterdir())) == 4

    refused = cli("run", str(tmp_path / "frames"), "--model", "roboflow:", "--dry-run", "--journal", ":memory:",
                  env=installed)
    assert one_line_error(refused) == (
        "alpolicy: error: model 'roboflow:' should look like SCHEME:TARGET, e.g. "
        "roboflow:my-project/3, replay:predictions/ or onnx:model.onnx\n"
    )


@pytest.mark.slow
def test_run_help_lists_the_installed_schemes_of_every_kind(installed):
    result = cli("run", "--help", env=installed)
    assert result.code == 0, result.err
    help_text = " ".join(result.out.split())
    for section, scheme, summary in [
        ("sources", "folder", "A folder of images"),
        ("sources", "listfile", "Image paths listed in a text file: listfile:PATHS.txt"),
        ("models", "replay", "Predictions stored earlier"),
        ("models", "fixed", "One car per image: fixed:"),
        ("destinations", "folder", "A folder: images + COCO + Label Studio tasks: folder:DIR"),
        ("destinations", "labelstudio", ""),
    ]:
        assert f"{scheme} {summary}".strip() in help_text, (scheme, result.out)
    out = result.out
    sources, models, destinations = (out.index(f"installed {kind} (") for kind in ("sources", "models", "destinations"))
    assert sources < out.index("  listfile ", sources) < models < out.index("  fixed ", models) < destinations \
        < out.index("  labelstudio ", destinations), out


# ---------------------------------------------------------------- in-process: bases, specs, choice of source
class Memory(alpolicy.Destination):
    """A destination with only ``send``: check, close and name come from the base class."""

    def __init__(self, target: str, options: object) -> None:
        self.sent: list[str] = []

    def send(self, delivery: alpolicy.Delivery) -> alpolicy.Receipt:
        self.sent.append(os.path.basename(delivery.image.path))
        return alpolicy.Receipt(delivery.key)


class Fixed(alpolicy.InferenceBackend):
    def __init__(self, target: str, options: object) -> None:
        pass

    def predict(self, image: alpolicy.ImageFile) -> alpolicy.Prediction:
        return alpolicy.Prediction(96, 72, [det("car", 0.9)])


class Minimal:
    """A plugin registering a minimal backend and destination, in code."""

    def __init__(self) -> None:
        self.built: list[Memory] = []

    def make_memory(self, target: str, options: object) -> Memory:
        self.built.append(Memory(target, options))
        return self.built[-1]

    @alpolicy.hookimpl
    def alpolicy_inference_backends(self, register):
        register(alpolicy.InferenceBackendSpec("fixed", Fixed, "one car", accepts_empty_target=True))

    @alpolicy.hookimpl
    def alpolicy_destinations(self, register):
        register(alpolicy.DestinationSpec("memory", self.make_memory, "kept in memory"))


def test_minimal_subclasses_run_on_the_base_class_defaults(tmp_path):
    make_frames(tmp_path / "frames", 3)
    plugin = Minimal()
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("minimal", plugin)]))
    report = run(str(tmp_path / "frames"), {"version": 1}, model="fixed:", destination="memory:queue",
                 registry=registry, options=RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False))
    assert (report.seen, report.sent, report.failed, report.fingerprint) == (3, 3, 0, "fixed")
    [destination] = plugin.built
    # Sends run in a pool of threads: they complete in any order (the decisions are in input order).
    assert sorted(destination.sent) == ["frame_00000.jpg", "frame_00001.jpg", "frame_00002.jpg"]
    assert destination.name == "memory:queue"  # the journal's name for it, from the spec


def test_base_class_defaults():
    backend = Fixed("", None)
    backend.spec = "fixed:"
    assert (backend.model_id, backend.fingerprint, backend.fingerprint_settings, backend.name) == ("fixed", "fixed", None, "fixed")
    backend.model_id = "fixed/2"
    assert backend.fingerprint == "fixed/2"  # the model id, until the backend gives a fingerprint
    backend.fingerprint = "fixed/2@abc"
    assert (backend.check(), backend.close(), backend.fingerprint) == (None, None, "fixed/2@abc")
    destination = Memory("", None)
    assert destination.name == "Memory" and destination.check() is None and destination.close() is None
    destination.name = "memory:here"
    assert destination.name == "memory:here"
    with pytest.raises(TypeError):
        alpolicy.Source()  # __iter__ is abstract


def test_the_builtins_are_instances_of_the_public_bases(tmp_path):
    from alpolicy.backends.replay import ReplayBackend
    from alpolicy.backends.roboflow import RoboflowInference
    from alpolicy.destinations.folder import FolderDestination
    from alpolicy.destinations.labelstudio import LabelStudioDestination
    from alpolicy.destinations.roboflow import RoboflowDestination
    from alpolicy.sources.folder import FolderSource

    for kind, base in [(ReplayBackend, alpolicy.InferenceBackend), (RoboflowInference, alpolicy.InferenceBackend),
                       (FolderDestination, alpolicy.Destination), (RoboflowDestination, alpolicy.Destination),
                       (LabelStudioDestination, alpolicy.Destination), (FolderSource, alpolicy.Source)]:
        assert issubclass(kind, base), kind
    make_frames(tmp_path / "frames", 2)
    source = FolderSource(str(tmp_path / "frames"), alpolicy.SourceOptions())
    assert isinstance(source, alpolicy.Source) and source.count() == 2


def test_the_onnx_backend_is_an_inference_backend():
    backend = pytest.importorskip("alpolicy_onnx.backend")
    assert issubclass(backend.OnnxBackend, alpolicy.InferenceBackend)


def test_top_level_exports():
    names = ["InferenceBackend", "Destination", "Source", "Delivery", "Receipt", "RetryableError", "PermanentError",
             "ImageError", "ImageFile", "ImageDecodeError", "Prediction", "PluginCrash", "SourceSpec", "SourceOptions"]
    for name in names:
        assert name in alpolicy.__all__ and getattr(alpolicy, name) is not None, name
    from alpolicy.backends import ImageError
    from alpolicy.destinations import Delivery, PermanentError, Receipt, RetryableError
    from alpolicy.io.images import ImageDecodeError, ImageFile

    assert (alpolicy.ImageError, alpolicy.Delivery, alpolicy.PermanentError, alpolicy.Receipt, alpolicy.RetryableError,
            alpolicy.ImageDecodeError, alpolicy.ImageFile) == (ImageError, Delivery, PermanentError, Receipt,
                                                               RetryableError, ImageDecodeError, ImageFile)


def test_duck_typed_plugins_still_work(tmp_path):
    """Objects that do not subclass the bases keep working: the pipeline needs no isinstance."""
    make_frames(tmp_path / "frames", 2)

    class Backend:
        model_id = "duck/1"

        def predict(self, image):
            return alpolicy.Prediction(96, 72, [det("car", 0.9)])

        def close(self):
            pass

    class Sink:
        name = "duck:sink"

        def __init__(self):
            self.sent = 0

        def check(self):
            pass

        def send(self, delivery):
            self.sent += 1
            return alpolicy.Receipt(delivery.key)

        def close(self):
            pass

    sink = Sink()
    report = run(str(tmp_path / "frames"), {"version": 1}, model=Backend(), destination=sink,
                 options=RunOptions(journal=":memory:", progress=False))
    assert (report.sent, sink.sent) == (2, 2)
    assert isinstance(Backend(), alpolicy.SupportsPredict) and isinstance(sink, alpolicy.SupportsSend)


def test_a_source_object_and_a_source_spec(tmp_path):
    """A ``Source`` passed directly is used as it is; ``folder:DIR`` and ``file://`` name the folder source."""
    paths = make_frames(tmp_path / "frames", 3)

    class Two(alpolicy.Source):
        def __iter__(self):
            return iter(paths[:2])

    seen: list[str] = []
    options = RunOptions(journal=":memory:", progress=False)
    report = run(Two(), {"version": 1}, model=Fixed("", None), options=options, on_result=lambda image, _: seen.append(image.name))
    assert (report.seen, seen) == (2, ["frame_00000.jpg", "frame_00001.jpg"])
    for spec in (f"folder:{tmp_path / 'frames'}", (tmp_path / "frames").as_uri()):
        assert run(spec, {"version": 1}, model=Fixed("", None), options=options).seen == 3, spec


def test_a_source_spec_with_a_plain_path_that_no_source_takes(tmp_path):
    make_frames(tmp_path, 1)
    options = RunOptions(journal=":memory:", progress=False)
    with pytest.raises(alpolicy.UsageError) as caught:
        run(str(tmp_path / "frame_00000.jpg"), {"version": 1}, model=Fixed("", None), options=options)
    schemes = ", ".join(sorted(alpolicy.get_registry().sources))  # folder, and those of installed plugins
    assert str(caught.value) == (f"{str(tmp_path / 'frame_00000.jpg')!r} is not a folder, and no installed source "
                                 f"takes such a file; source schemes: {schemes}")
    with pytest.raises(alpolicy.UsageError, match=r"^the folder '.*missing' does not exist$"):
        run(str(tmp_path / "missing"), {"version": 1}, model=Fixed("", None), options=options)


def test_a_source_registered_in_code_that_claims_paths(tmp_path):
    """A source claims the plain paths it takes (a video source: ``video.mp4``); the folder source keeps folders."""
    make_frames(tmp_path / "frames", 2)
    listing = tmp_path / "list.txt"
    listing.write_text(str(tmp_path / "frames" / "frame_00001.jpg") + "\n")

    class Lines(alpolicy.Source):
        def __init__(self, target: str, options: alpolicy.SourceOptions) -> None:
            self.target = target

        def __iter__(self):
            return iter(Path(self.target).read_text().split())

    class Plugin:
        @alpolicy.hookimpl
        def alpolicy_sources(self, register):
            register(alpolicy.SourceSpec("lines", Lines, "paths in a .txt", claims=lambda path: path.endswith(".txt")))

    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("lines", Plugin())]))
    options = RunOptions(journal=":memory:", progress=False)
    seen: list[str] = []
    report = run(str(listing), {"version": 1}, model=Fixed("", None), options=options, registry=registry,
                 on_result=lambda image, _: seen.append(image.name))
    assert seen == ["frame_00001.jpg"]
    assert run(str(tmp_path / "frames"), {"version": 1}, model=Fixed("", None), options=options,
               registry=registry).seen == 2
    assert report.seen == 1


def test_a_source_scheme_shadowing_the_builtin_names_both_plugins():
    class Shadow:
        @alpolicy.hookimpl
        def alpolicy_sources(self, register):
            register(alpolicy.SourceSpec("folder", lambda target, options: [], "another folder source"))

    with pytest.raises(PluginError) as caught:
        build_registry(make_plugin_manager(load_entry_points=False, extra=[("shadow", Shadow())]))
    assert str(caught.value) == (
        "source 'folder' is registered twice: by plugin 'alpolicy.sources.folder' and by plugin 'shadow'"
    )


def test_an_empty_target_is_refused_unless_the_plugin_accepts_it(tmp_path):
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("minimal", Minimal())]))
    policy = Policy.from_dict({"version": 1}, registry=registry)
    options = RunOptions(journal=":memory:", progress=False)
    make_frames(tmp_path / "frames", 1)
    with pytest.raises(alpolicy.UsageError, match=r"^destination 'memory:' should look like SCHEME:TARGET"):
        run(str(tmp_path / "frames"), policy, model="fixed:", destination="memory:", registry=registry, options=options)
    assert run(str(tmp_path / "frames"), policy, model="fixed:", registry=registry, options=options).seen == 1


def test_a_listed_path_that_cannot_be_read_is_skipped_and_counted(tmp_path):
    paths = make_frames(tmp_path / "frames", 2)
    listed = [str(paths[0]), str(tmp_path / "frames" / "gone.jpg"), paths[1]]
    report = run(listed, {"version": 1}, model=Fixed("", None), options=RunOptions(journal=":memory:", progress=False))
    assert (report.seen, dict(report.skipped)) == (2, {"unreadable": 1})
    assert "skipped 1 (listed paths that do not exist or cannot be read)" in " ".join(report.summary().split())


class Crashing(alpolicy.Source):
    """A source with a bug: the third line of its listing is not there."""

    def __init__(self, target: str, options: alpolicy.SourceOptions) -> None:
        if target == "unbuildable":
            raise KeyError("bucket")
        self.paths = make_frames(Path(target), 2)

    def __iter__(self):
        yield from self.paths
        raise KeyError("third")


class CrashingSources:
    @alpolicy.hookimpl
    def alpolicy_sources(self, register):
        register(alpolicy.SourceSpec("crashing", Crashing, "crashes after two images"))


def test_a_crashing_source_stops_the_run_in_one_line_naming_it(tmp_path):
    registry = build_registry(make_plugin_manager(load_entry_points=False, extra=[("crashy", CrashingSources())]))
    journal = tmp_path / "journal.sqlite"
    options = RunOptions(journal=str(journal), progress=False)
    seen: list[str] = []
    with pytest.raises(alpolicy.PluginCrash) as caught:
        run(f"crashing:{tmp_path / 'frames'}", {"version": 1}, model=Fixed("", None), options=options,
            registry=registry, on_result=lambda image, _: seen.append(image.name))
    assert str(caught.value) == "source 'crashing' (plugin crashy) raised KeyError: 'third'"
    assert seen == ["frame_00000.jpg", "frame_00001.jpg"]  # what came before the crash was decided
    [stored] = sqlite3.connect(journal).execute("SELECT status, summary FROM runs").fetchall()
    assert (stored[0], json.loads(stored[1])["message"]) == ("aborted", str(caught.value))
    with pytest.raises(alpolicy.PluginCrash) as caught:
        run("crashing:unbuildable", {"version": 1}, model=Fixed("", None), options=options, registry=registry)
    assert str(caught.value) == "source 'crashing' (plugin crashy) failed to start: KeyError: 'bucket'"


def test_check_runs_for_every_kind_before_the_first_image(tmp_path):
    make_frames(tmp_path / "frames", 2)
    calls: list[str] = []

    class Refusing(Fixed):
        def check(self) -> None:
            calls.append("backend")
            raise alpolicy.UsageError("the model server has no model 'fixed'")

    class Listing(alpolicy.Source):
        def check(self) -> None:
            calls.append("source")

        def __iter__(self):
            calls.append("listed")
            return iter(sorted((tmp_path / "frames").iterdir()))

    with pytest.raises(alpolicy.UsageError, match="^the model server has no model 'fixed'$"):
        run(Listing(), {"version": 1}, model=Refusing("", None), options=RunOptions(journal=":memory:", progress=False))
    assert calls == ["source", "listed", "backend"]  # nothing inferred: the listing is lazy
