"""The pipeline against the loopback Roboflow server: parity, pre-labels, retries, bad input, resume."""

from __future__ import annotations

import glob
import json
import os
import random
import re
from pathlib import Path

import pytest
from PIL import Image

import alpolicy
from alpolicy import AuthError, Policy, RunOptions, UsageError

from .cli import alpolicy as alpolicy_cli
from .conftest import API_KEY, make_frames
from .test_conditionals import expected_decision, random_conditionals


def expected_uploads(server, folder: Path, conditionals: dict, extension: str = ".jpg") -> list[str]:
    """What the SDK would upload: its own glob, the server's answers, its decision loop (with
    alpolicy's one stated deviation, see ``tests/test_conditionals.py``)."""
    chosen = []
    for path in glob.glob(str(folder) + "/*" + extension):
        answer = server.infer("vehicles", 3, Path(path).read_bytes(), confidence=0.4, overlap=0.3)
        if expected_decision(answer["predictions"], conditionals):
            chosen.append(os.path.basename(path))
    return chosen


def run_sdk(folder: Path, conditionals: dict, tmp_path: Path, **options):
    options.setdefault("journal", str(tmp_path / "journal.sqlite"))
    options.setdefault("progress", False)
    return alpolicy.active_learning(
        raw_data_location=str(folder), raw_data_extension=".jpg", inference_endpoint=["vehicles", 3],
        upload_destination="al-queue", conditionals=conditionals, **options,
    )


def test_drop_in_uploads_exactly_what_the_sdk_would_with_pre_labels(roboflow, env, tmp_path):
    rng = random.Random(3)
    folder = tmp_path / "frames"
    make_frames(folder, 40, seed=1)
    for case in range(5):
        roboflow.reset()
        conditionals = random_conditionals(rng) if case else {}
        results = run_sdk(folder, conditionals, tmp_path / f"case{case}")
        expected = expected_uploads(roboflow, folder, conditionals)
        uploaded = roboflow.images("al-queue")
        assert sorted(image["name"] for image in uploaded) == sorted(expected), conditionals
        assert all(image["upload_count"] == 1 for image in uploaded)
        # The SDK's return value: every image inferred, with its predictions; in natural order
        # (a deliberate difference: the SDK's glob order is the file system's). Zero-padded names:
        # natural order is code-point order here.
        assert [r["image"] for r in results] == sorted(glob.glob(str(folder) + "/*.jpg"))
        annotations = roboflow.annotations("al-queue")
        for image in uploaded:
            (annotation,) = annotations[image["id"]]
            assert annotation["prediction"] is True
            stored = annotation["annotation"]
            source = folder / image["name"]
            served = roboflow.infer("vehicles", 3, source.read_bytes())
            assert stored["predictions"] == served["predictions"]
            assert stored["image"] == served["image"]


def test_uploads_carry_tags_split_batch_and_metadata(roboflow, env, tmp_path, frames):
    policy = Policy.from_dict({"version": 1, "name": "wide", "tags": ["al"],
                               "detection": [{"rule": "confidence", "max": 1.0, "tag": "al:any"}]})
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, tags=("night",))
    options.destination_options.split = "valid"
    options.destination_options.batch = "nightly"
    report = alpolicy.run(str(frames), policy, model="roboflow:vehicles/3", destination="roboflow:queue", options=options)
    assert report.sent == report.qualified > 0
    image = roboflow.images("queue")[0]
    assert image["split"] == "valid" and image["batch"] == "nightly"
    assert image["tags"] == ["al", "al:any", "night", "model:vehicles/3"]
    assert image["metadata"]["alpolicy_policy"] == "wide"
    assert "passed every detection rule" in image["metadata"]["alpolicy_reasons"]
    assert image["metadata"]["source_path"].endswith(image["name"])


def test_a_rerun_skips_finished_images_and_sends_nothing_twice(roboflow, env, tmp_path, frames):
    first = run_sdk(frames, {}, tmp_path)
    before = roboflow.requests["infer"].total, roboflow.requests["upload"].total
    second = run_sdk(frames, {}, tmp_path)
    assert roboflow.requests["infer"].total == before[0], "the model was called again"
    assert roboflow.requests["upload"].total == before[1], "something was uploaded again"
    assert [r["image"] for r in second] == [r["image"] for r in first]


def test_retries_on_503_and_429_lose_nothing(roboflow, env, tmp_path, frames):
    roboflow.set_faults("infer", error_every=3)
    roboflow.set_faults("upload", throttle_every=4, retry_after=0)
    roboflow.set_faults("annotate", error_every=2, error_status=502)
    run_sdk(frames, {}, tmp_path, attempts=12, retry_backoff=0.005)
    expected = expected_uploads(roboflow, frames, {})
    uploaded = roboflow.images("al-queue")
    assert sorted(i["name"] for i in uploaded) == sorted(expected)
    assert all(len(roboflow.annotations("al-queue")[i["id"]]) == 1 for i in uploaded)
    assert roboflow.requests["infer"].faults["error"] >= 10
    assert roboflow.requests["upload"].faults["throttle"] >= 1


def test_a_lost_upload_response_is_retried_into_a_duplicate_and_still_annotated(roboflow, env, tmp_path, frames):
    roboflow.set_faults("upload", lose_response_every=1, max_faults=3)
    run_sdk(frames, {}, tmp_path, concurrency=1)
    uploaded = roboflow.images("al-queue")
    assert sorted(i["name"] for i in uploaded) == sorted(expected_uploads(roboflow, frames, {}))
    assert roboflow.requests["upload"].faults == {"lose_response": 3}
    assert sum(i["upload_count"] for i in uploaded) == len(uploaded) + 3  # 3 retries answered "duplicate"
    assert all(len(roboflow.annotations("al-queue")[i["id"]]) == 1 for i in uploaded)


def test_a_refused_key_stops_the_run_before_any_image(roboflow, env, tmp_path, frames, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_API_KEY", "wrong-key-123")
    with pytest.raises(AuthError, match=r"refused the credentials .*HTTP 401"):
        run_sdk(frames, {}, tmp_path)
    assert roboflow.requests["infer"].total == 0 and roboflow.requests["upload"].total == 0
    # a dry run checks the destination too (it only reads), before any inference
    with pytest.raises(AuthError, match="checking the API key"):
        run_sdk(frames, {}, tmp_path, dry_run=True)
    assert roboflow.requests["infer"].total == 0
    # inference refusing the key (a dry run without a destination)
    with pytest.raises(AuthError, match="inference"):
        alpolicy.active_learning(str(frames), ".jpg", ["vehicles", 3], "", {}, dry_run=True,
                                 journal=str(tmp_path / "journal.sqlite"), progress=False)
    from alpolicy.runtime.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.failures() == [] and journal.delivery_counts() == {}
    journal.close()


def test_bad_images_are_recorded_and_the_run_goes_on(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, 5)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    Image.effect_noise((640, 480), 60).convert("RGB").save(tmp_path / "big.jpg", quality=95)
    good = (tmp_path / "big.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])  # header intact, pixels cut
    (folder / "stub.jpg").write_bytes(good[:40])  # cut inside the header
    Image.new("1", (12000, 10000)).save(folder / "bomb.png")
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True)
    report = alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3", options=options)
    reasons = {Path(f["path"]).name: f["error"] for f in report.failures}
    assert reasons["empty.jpg"] == "the file is empty"
    assert reasons["notes.jpg"] == "not an image (unrecognised format)"
    assert "above the 89 Mpx safety limit" in reasons["bomb.png"]
    assert "rejected the image (HTTP 400)" in reasons["truncated.jpg"]
    assert reasons["stub.jpg"].startswith("cannot open the image")
    assert report.failed == 5 and report.seen == 10 and report.inferred == 5
    assert report.exit_code == 1


def test_dry_run_sends_nothing_and_reuse_predictions_skips_the_model(roboflow, env, tmp_path, frames):
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True)
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="roboflow:q", options=options)
    assert report.would_send == report.qualified > 0 and roboflow.requests["upload"].total == 0
    calls = roboflow.requests["infer"].total
    strict = Policy.from_conditionals({"required_objects_count": 3})
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, reuse_predictions=True)
    report = alpolicy.run(str(frames), strict, destination="roboflow:q", options=options)
    assert roboflow.requests["infer"].total == calls
    assert report.reused == 30 and report.inferred == 0
    assert report.sent == len(roboflow.images("q")) == len(expected_uploads(roboflow, frames, {"required_objects_count": 3}))


def test_user_errors_are_one_line(tmp_path, roboflow, env, monkeypatch):
    (tmp_path / "empty").mkdir()
    frames = tmp_path / "frames"
    make_frames(frames, 2)
    dry = (str(frames), "--model", "roboflow:vehicles/3", "--dry-run")
    send = (str(frames), "--model", "roboflow:vehicles/3", "--to", "roboflow:q")
    cases = [
        ((str(tmp_path / "missing"), "--model", "roboflow:vehicles/3", "--to", f"folder:{tmp_path / 'out'}"), "does not exist"),
        ((str(tmp_path / "empty"), "--model", "roboflow:vehicles/3", "--dry-run"), "no images in"),
        ((str(tmp_path), "--model", "robofow:vehicles/3", "--dry-run"), "no inference backend for 'robofow' (did you mean 'roboflow'?)"),
        ((str(tmp_path), "--model", "roboflow:vehicles", "--dry-run"), "should be PROJECT/VERSION"),
        ((*dry, "--timeout", "0"), "argument --timeout: should be a number above 0, got '0'"),
        ((*dry, "--timeout", "nan"), "argument --timeout: should be a number above 0, got 'nan'"),
        ((*dry, "--concurrency", "0"), "argument --concurrency: should be a whole number of at least 1, got '0'"),
        ((*dry, "--concurrency", "x"), "argument --concurrency: should be a whole number of at least 1, got 'x'"),
        ((*dry, "--confidence", "150"), "argument --confidence: should be a number from 0 to 100, got '150'"),
        ((*dry, "--inference-url", "localhost:9001"), "argument --inference-url: 'localhost:9001' should be an http:// or https:// URL"),
        ((*send, "--api-url", "ftp://example.com"), "argument --api-url: 'ftp://example.com' should be an http:// or https:// URL"),
        ((*send, "--labelstudio-url", "http://"), "argument --labelstudio-url: 'http://' should be an http:// or https:// URL"),
        ((*send, "--max-size", "-5"), "argument --max-size: should be a whole number of at least 1, got '-5'"),
        ((*send, "--jpeg-quality", "0"), "argument --jpeg-quality: should be a whole number from 1 to 95, got '0'"),
        ((*send, "--jpeg-quality", "96"), "argument --jpeg-quality: should be a whole number from 1 to 95, got '96'"),
        ((*dry, "--policy", str(tmp_path / "absent.json")), "the policy file"),
        ((*dry, "--split", "nope"), "argument --split: invalid choice: 'nope'"),
        ((*dry, "--no-such-option"), "unrecognized arguments: --no-such-option"),
    ]
    for args, expected in cases:
        result = alpolicy_cli("run", *args, "--journal", str(tmp_path / "j.sqlite"), env=env)
        assert result.code == 2 and expected in result.err, (args, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert result.err.startswith("alpolicy: error: "), result.err
    assert not (tmp_path / "out").exists()
    for variable in ("ROBOFLOW_INFERENCE_URL", "ROBOFLOW_API_URL"):
        result = alpolicy_cli("run", *send, env={**env, variable: "localhost:9001"})
        assert result.code == 2 and f"{variable} 'localhost:9001' should be an http:// or https:// URL" in result.err, result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert roboflow.requests["infer"].total == roboflow.requests["upload"].total == 0
    monkeypatch.delenv("ROBOFLOW_API_KEY")
    with pytest.raises(UsageError, match="ROBOFLOW_API_KEY"):
        alpolicy.run(str(tmp_path), Policy.from_conditionals({}), model="roboflow:vehicles/3", options=RunOptions(journal=None))


def test_the_library_takes_a_path_and_active_learnings_keywords_and_refuses_the_cli_s_mistakes(roboflow, env, tmp_path, frames,
                                                                                                monkeypatch):
    from alpolicy import DestinationOptions, ModelOptions

    policy = Policy.from_conditionals({})
    journal = tmp_path / "j.sqlite"
    monkeypatch.delenv("ROBOFLOW_API_KEY")  # api_key= reaches both the model and the Roboflow destination
    report = alpolicy.run(frames, policy, model="roboflow:vehicles/3", destination="roboflow:q", journal=str(journal),
                          progress=False, concurrency=2, tags=("night",), split="valid", timeout=30, retry_backoff=0.01,
                          api_key=API_KEY)
    monkeypatch.setenv("ROBOFLOW_API_KEY", API_KEY)
    uploaded = roboflow.images("q")
    assert report.sent == len(uploaded) > 0 and report.journal == str(journal) and journal.exists()
    assert all(image["split"] == "valid" and "night" in image["tags"] for image in uploaded)
    calls = roboflow.requests["infer"].total
    wrong_keywords = [
        ({"concurrency": 0}, "concurrency should be a whole number of at least 1, got 0"),
        ({"timeout": 0}, "timeout should be a number above 0, got 0"),
        ({"timeout": float("inf")}, "timeout should be a number above 0, got inf"),
        ({"attempts": 0}, "attempts should be a whole number of at least 1, got 0"),
        ({"retry_backoff": -1}, "retry_backoff should be a number of at least 0, got -1"),
        ({"confidence": 101}, "confidence should be a number from 0 to 100, got 101"),
        ({"inference_url": "localhost:9001"}, "inference_url 'localhost:9001' should be an http:// or https:// URL"),
        ({"api_url": "api.roboflow.com"}, "api_url 'api.roboflow.com' should be an http:// or https:// URL"),
        ({"colour": "red"}, "run() got an unknown keyword 'colour'"),
        ({"options": RunOptions(journal=str(tmp_path / "a.sqlite")), "journal": str(tmp_path / "b.sqlite")},
         "journal is given twice, as a keyword and in options"),
    ]
    for keywords, expected in wrong_keywords:
        keywords = {"journal": None, "progress": False, **keywords}
        with pytest.raises(UsageError, match=re.escape(expected)):
            alpolicy.run(frames, policy, model="roboflow:vehicles/3", destination="roboflow:q", **keywords)
    wrong_options = [
        (lambda: RunOptions(concurrency=0), "concurrency should be"),
        (lambda: RunOptions(max_consecutive_failures=0), "max_consecutive_failures should be"),
        (lambda: ModelOptions(timeout=0), "timeout should be"),
        (lambda: DestinationOptions(attempts=0), "attempts should be"),
    ]
    for make, expected in wrong_options:
        with pytest.raises(UsageError, match=expected):
            make()
    mutated = RunOptions(journal=None, progress=False)
    mutated.model_options.timeout = -1  # set after construction: checked when the run starts
    # the destination's options_schema (alpolicy.plugin_options), before the destination is built
    extras = [({"max_size": -5}, "destination option max_size: -5 is less than the minimum of 1"),
              ({"max_size": 0}, "destination option max_size: 0 is less than the minimum of 1"),
              ({"jpeg_quality": 0}, "destination option jpeg_quality: 0 is less than the minimum of 1"),
              ({"jpeg_quality": "high"}, "destination option jpeg_quality: 'high' is not of type 'integer'")]
    attempts = [(mutated, "timeout should be")]
    attempts += [(RunOptions(journal=None, progress=False, destination_options=DestinationOptions(extra=extra)), expected)
                 for extra, expected in extras]
    for options, expected in attempts:
        with pytest.raises(UsageError, match=re.escape(expected)):
            alpolicy.run(frames, policy, model="roboflow:vehicles/3", destination="roboflow:q", options=options)
    # A keyword fills what options left at its default.
    report = alpolicy.run(frames, policy, model="roboflow:vehicles/3", options=RunOptions(progress=False), journal=None, dry_run=True)
    assert report.journal == ":memory:" and report.would_send == report.qualified
    assert roboflow.requests["infer"].total == calls + 30


def test_cli_run_summary_exit_codes_and_no_key_anywhere(roboflow, env, tmp_path, frames):
    (frames / "broken.jpg").write_text("nope")
    journal = tmp_path / "state" / "journal.sqlite"
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", "roboflow:queue",
                          "--journal", str(journal), "--conditionals", '{"required_objects_count": 2}', env=env)
    assert result.code == 1, result.err  # one image failed
    assert re.search(r"^\s+seen\s+31$", result.out, re.M), result.out
    assert "rejected by rule:" in result.out and "detection_count" in result.out
    assert "failed: " in result.out and "broken.jpg: not an image" in result.out
    log_path = next((tmp_path / "state" / "decisions").glob("journal-run-*.jsonl"))
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(records) == 31
    sent = [r for r in records if r.get("remote_id")]
    assert len(sent) == len(roboflow.images("queue")) > 0
    assert all(r["reasons"] for r in records if "failed" not in r)
    # The key must appear nowhere: output, log, journal (including the WAL).
    artefacts = [result.out, result.err, log_path.read_text()]
    artefacts += [p.read_bytes().decode("latin-1") for p in journal.parent.glob("journal.sqlite*")]
    assert not [a for a in artefacts if API_KEY in a]


def test_images_are_sent_as_on_disk_and_exif_orientation_is_honoured(roboflow, env, tmp_path):
    received: list[bytes] = []

    def predict(image, image_bytes):
        received.append(image_bytes)
        return [{"x": 10, "y": 30, "width": 8, "height": 20, "confidence": 0.5, "class": "car"}]

    roboflow.add_model("rotated", 1, predict=predict)
    folder = tmp_path / "frames"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 80x40, shown 40x80
    Image.new("RGB", (80, 40), (10, 200, 30)).save(folder / "portrait.jpg", exif=exif, quality=93)
    seen: list = []
    options = RunOptions(journal=None, progress=False, dry_run=True)
    alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:rotated/1", options=options,
                 on_result=lambda image, prediction: seen.append(prediction))
    assert received == [(folder / "portrait.jpg").read_bytes()]  # byte for byte: no re-encode
    assert (seen[0].width, seen[0].height) == (40, 80)


def test_progress_prints_plain_periodic_lines_when_not_a_terminal():
    import io

    from alpolicy.runtime.progress import Progress

    stream = io.StringIO()
    progress = Progress(200, stream=stream, enabled=True, interval=0.0)
    for done in (50, 100, 200):
        progress.update(done, "qualified 3")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("████████████████████████ 200/200 100%") and lines[-1].endswith("qualified 3")
    assert Progress(10, stream=io.StringIO()).enabled is False  # auto: off when not a terminal


def test_a_response_slower_than_the_timeout_is_retried(roboflow, env, tmp_path, frames):
    roboflow.set_faults("infer", slow_every=1, slow_delay=1.5, max_faults=2)
    options = RunOptions(journal=None, progress=False, dry_run=True, concurrency=1)
    options.model_options.timeout = 0.4
    options.model_options.retry_backoff = 0.01
    report = alpolicy.run(str(frames), Policy.from_conditionals({}), model="roboflow:vehicles/3", options=options)
    assert report.failed == 0 and report.inferred == 30
    assert report.retries == 2 and roboflow.requests["infer"].faults == {"slow": 2}


def test_use_localhost_sends_inference_to_the_local_server(roboflow, env, tmp_path, frames, monkeypatch):
    monkeypatch.setenv("ROBOFLOW_INFERENCE_URL", "http://127.0.0.1:9/unreachable")  # only the hosted default
    results = alpolicy.active_learning(
        str(frames), ".jpg", ["vehicles", 3], "local-queue", {}, use_localhost=True, local_server=roboflow.url + "/",
        journal=None, progress=False,
    )
    assert len(results) == 30 and roboflow.requests["infer"].total == 30
    assert len(roboflow.images("local-queue")) == len(expected_uploads(roboflow, frames, {}))


def test_cli_progress_is_plain_lines_when_stderr_is_not_a_terminal(roboflow, env, tmp_path, frames):
    roboflow.latency.update(infer=0.2)
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--dry-run", "--concurrency", "1",
                          "--journal", str(tmp_path / "j.sqlite"), env=env)
    assert result.code == 0
    lines = [line for line in result.err.splitlines() if "img/s" in line]
    assert len(lines) >= 2 and "\r" not in result.err  # a line every 5 s, then the final one
    assert lines[-1].startswith("████████████████████████ 30/30 100%")
