"""Hostile predictions (issue #12, item 5): every number is validated where a prediction enters.

Each hostile answer -- ``Infinity``, ``1e400``, a ``NaN`` confidence or box, 100,000 nested
brackets, an image 0, -5 or ``true`` pixels wide, a confidence of 57.0, a 40 MB answer, 100,001
detections -- fails its one image with one located line, through the loopback Roboflow server,
the replay backend and ``alpolicy explain``; the other images are decided and sent, the run
ends with exit 1 and no traceback, and ``alpolicy report`` works afterwards. A journal written
by an older alpolicy, holding ``NaN``, no longer breaks the report, the reuse of predictions or a
rerun. Hypothesis then throws hostile numbers at the validator: a prediction is either fully
finite and in range, or refused with :class:`PredictionFormatError` -- never anything else.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import sqlite3
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alpolicy
from alpolicy import ModelOptions, Policy, RunOptions
from alpolicy.errors import ServiceError
from alpolicy.io.images import ImageFile
from alpolicy.io.http import BodyTooLarge, read_body
from alpolicy.io.jsonsafe import JsonError, check_tree, loads
from alpolicy.runtime.journal import Journal
from alpolicy.policy.prediction import Prediction, PredictionFormatError, parse_prediction

from .cli import alpolicy as cli
from .conftest import make_frames
from .corpus.predictions import GOOD_BOX, HOSTILE, HUGE, NESTED, H, W, document, hostile_documents, text, with_box

TAKE_ALL = {"version": 1, "name": "take-all", "image": {"rule": "detection_count", "min": 0}}
def check_failures(journal_path: Path, names: dict[str, str], run_id: int | None = None) -> dict[str, str]:
    """Every hostile image failed once, at inference, with its one-line located reason; no other failed."""
    journal = Journal(journal_path)
    try:
        failures = journal.failures(run_id)
    finally:
        journal.close()
    by_name = {Path(f["path"]).name: f for f in failures}
    assert len(by_name) == len(failures), "an image failed twice"
    assert set(by_name) == set(names), sorted(by_name)
    for name, case in names.items():
        failure = by_name[name]
        error = failure["error"]
        assert failure["stage"] == "inference", failure
        assert re.search(HOSTILE[case][1], error), (case, error)
        assert "\n" not in error and "Traceback" not in error and len(error) < 400, (case, error)
    return {name: by_name[name]["error"] for name in names}


def frames_with_cases(folder: Path, good: int = 3) -> tuple[list[Path], dict[str, str]]:
    """One frame per hostile case, then ``good`` frames; ``{frame name: case}``."""
    paths = make_frames(folder, len(HOSTILE) + good)
    return paths, {path.name: case for path, case in zip(paths, HOSTILE)}


def write_policy(tmp_path: Path) -> str:
    path = tmp_path / "take-all.json"
    path.write_text(json.dumps(TAKE_ALL))
    return str(path)


def assert_report_works(journal: Path, out: Path, env: dict[str, str] | None = None) -> str:
    result = cli("report", str(journal), "--out", str(out), env=env)
    assert result.code == 0 and "Traceback" not in result.err, result.err
    return (out / "index.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- through the loopback server


def test_hostile_answers_of_the_inference_server_fail_their_image_only(roboflow, env, tmp_path):
    paths, cases = frames_with_cases(tmp_path / "src")
    by_sha = {hashlib.sha256(path.read_bytes()).hexdigest(): HOSTILE[cases[path.name]][0]
              for path in paths if path.name in cases}
    roboflow.add_model("vehicles", 3, answer=lambda image: by_sha.get(hashlib.sha256(image).hexdigest()))
    journal = tmp_path / "state" / "journal.sqlite"
    result = cli("run", str(tmp_path / "src"), "--model", "roboflow:vehicles/3", "--to", "roboflow:dest",
                 "--policy", write_policy(tmp_path), "--journal", str(journal), "--no-progress", "--json", env=env,
                 timeout=600)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err
    report = json.loads(result.out)
    good = len(paths) - len(cases)
    assert (report["seen"], report["failed"], report["sent"], report["pending"]) == (len(paths), len(cases), good, 0)
    check_failures(journal, cases)
    # Nothing asked twice (a bad answer is not retried), nothing sent twice, the rest all sent.
    requests_ = roboflow.requests
    assert requests_["infer"].total == len(paths)
    assert requests_["upload"].total == good == len(roboflow.images("dest"))
    assert {image["name"] for image in roboflow.images("dest")} == {p.name for p in paths if p.name not in cases}
    assert_report_works(journal, tmp_path / "report", env)


def test_a_response_larger_than_the_bound_is_refused_before_it_is_read(roboflow, env, tmp_path):
    """``--max-response-mb`` and ``--max-detections`` are the user's bounds (a tenth of a MiB here)."""
    (path,) = make_frames(tmp_path / "src", 1)
    roboflow.add_model("vehicles", 3, answer=lambda image: HUGE[:200_000] + b'"}')
    result = cli("run", str(tmp_path / "src"), "--model", "roboflow:vehicles/3", "--dry-run", "--no-progress",
                 "--journal", str(tmp_path / "j.sqlite"), "--max-response-mb", "0.1", env=env)
    assert result.code == 1 and "Traceback" not in result.err
    assert re.search(r"the answer is 0\.2 MB, above the limit of 0\.1 MB", result.out), result.out
    roboflow.add_model("vehicles", 3, answer=lambda image: text(document(box=GOOD_BOX) | {"predictions": [GOOD_BOX] * 3}))
    result = cli("run", str(tmp_path / "src"), "--model", "roboflow:vehicles/3", "--dry-run", "--no-progress",
                 "--journal", str(tmp_path / "j2.sqlite"), "--max-detections", "2", env=env)
    assert result.code == 1 and "3 detections, above the limit of 2 (max_detections)" in result.out, result.out


def test_the_bounded_reader_stops_a_body_without_a_length_at_the_bound():
    """A chunked answer has no Content-Length to refuse up front: reading stops at the bound."""
    response = requests.Response()
    response.status_code, response.raw = 200, io.BytesIO(b"x" * 300_000)
    with pytest.raises(BodyTooLarge, match="larger than the limit of 0.1 MB"):
        read_body(response, 100_000, what="inference")
    response = requests.Response()
    response.status_code, response.raw = 200, io.BytesIO(b"x" * 1000)
    assert read_body(response, 1000, what="inference") == b"x" * 1000


def test_a_hostile_error_body_is_one_line_too(roboflow, env, tmp_path):
    """The one error-body reader (``server_message``) meets 100,000 brackets in a 503's body."""
    (path,) = make_frames(tmp_path / "src", 1)
    roboflow.set_faults("infer", down=True, error_body=NESTED.decode())
    backend = alpolicy.get_registry().backends["roboflow"].factory("vehicles/3", ModelOptions(attempts=1))
    try:
        with pytest.raises(ServiceError) as caught:
            backend.predict(ImageFile.from_path(path))
    finally:
        backend.close()
    assert str(caught.value).startswith("inference failed after 1 attempts: HTTP 503: [[[[")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


# ---------------------------------------------------------------------- through the replay backend


def test_hostile_prediction_files_fail_their_image_only(tmp_path):
    paths, cases = frames_with_cases(tmp_path / "src")
    stored = tmp_path / "preds"
    stored.mkdir()
    for path in paths:
        raw = HOSTILE[cases[path.name]][0] if path.name in cases else text(document())
        (stored / f"{path.stem}.json").write_bytes(raw)
    journal = tmp_path / "state" / "journal.sqlite"
    out = tmp_path / "queue"
    result = cli("run", str(tmp_path / "src"), "--model", f"replay:{stored}", "--to", f"folder:{out}",
                 "--policy", write_policy(tmp_path), "--journal", str(journal), "--no-progress", timeout=600)
    assert result.code == 1 and "Traceback" not in result.err, result.err
    errors = check_failures(journal, cases)
    for name, error in errors.items():
        assert str(stored / f"{Path(name).stem}.json") in error  # the file is named
    good = [p.name for p in paths if p.name not in cases]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(good)
    for record in (out / "predictions").iterdir():
        loads(record.read_bytes())  # strict JSON: no NaN, no Infinity written
    assert_report_works(journal, tmp_path / "report")


def test_a_hostile_coco_file_fails_the_images_it_describes_badly(tmp_path):
    """A COCO file is the user's dataset: read whole, but a bad size or score fails its image only."""
    make_frames(tmp_path / "src", 5)
    coco = (b'{"images": ['
            b'{"id": 1, "file_name": "frame_00000.jpg", "width": 96, "height": 72},'
            b'{"id": 2, "file_name": "frame_00001.jpg", "width": Infinity, "height": 72},'
            b'{"id": 3, "file_name": "frame_00002.jpg", "width": 96, "height": 72},'
            b'{"id": 4, "file_name": "frame_00003.jpg", "width": 96, "height": 72},'
            b'{"id": 5, "file_name": "frame_00004.jpg", "width": 96, "height": 72}],'
            b'"categories": [{"id": 1, "name": "car"}], "annotations": ['
            b'{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5},'
            b'{"id": 11, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5], "score": NaN},'
            b'{"id": 12, "image_id": 4, "category_id": 1, "bbox": [1e400, 1, 5, 5], "score": 0.5},'
            b'{"id": 13, "image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 57}]}')
    (tmp_path / "coco.json").write_bytes(coco)
    report = alpolicy.run(str(tmp_path / "src"), Policy.from_dict(TAKE_ALL), model=f"replay:{tmp_path / 'coco.json'}",
                          options=RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True))
    failures = {Path(f["path"]).name: f["error"] for f in report.failures}
    assert sorted(failures) == ["frame_00001.jpg", "frame_00002.jpg", "frame_00003.jpg", "frame_00004.jpg"]
    assert re.search(r"image\.width: Infinity is not a finite number", failures["frame_00001.jpg"])
    assert re.search(r"predictions\[0\]\.confidence: NaN is not a finite number", failures["frame_00002.jpg"])
    assert re.search(r"predictions\[0\]\.x: Infinity is not a finite number", failures["frame_00003.jpg"])
    assert re.search(r"predictions\[0\]\.confidence: 57 is outside 0\.\.1", failures["frame_00004.jpg"])
    assert report.qualified == 1 and report.exit_code == 1


# ---------------------------------------------------------------------- alpolicy explain


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_explain_refuses_a_hostile_prediction_file_in_one_line(tmp_path, case):
    raw, reason = HOSTILE[case]
    path = tmp_path / f"{case}.json"
    path.write_bytes(raw)
    result = cli("explain", "--conditionals", "{}", str(path))
    assert result.code == 2 and "Traceback" not in result.err, result.err[-2000:]
    line = result.err.strip()
    assert "\n" not in line and line.startswith(f"alpolicy: error: {path}: "), line[:500]
    assert re.search(reason, line), line[:500]


# ---------------------------------------------------------------------- journals of older versions


def test_nan_stored_by_an_older_alpolicy_breaks_neither_the_report_nor_a_rerun(tmp_path):
    """alpolicy 0.1 accepted NaN and stored it as ``NaN`` in the journal: the report then crashed
    at every call, and ``--reuse-predictions`` decided on NaN. Now: the report notes it, a rerun
    with the model infers that image again, a rerun without one fails that image alone."""
    paths = make_frames(tmp_path / "src", 3)
    stored = tmp_path / "preds"
    stored.mkdir()
    for path in paths:
        (stored / f"{path.stem}.json").write_bytes(text(document()))
    journal = tmp_path / "journal.sqlite"
    options = RunOptions(journal=str(journal), progress=False, dry_run=True)
    first = alpolicy.run(str(tmp_path / "src"), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}", options=options)
    assert first.qualified == 3
    with sqlite3.connect(journal) as db:  # what 0.1 wrote for a NaN confidence
        db.execute("UPDATE predictions SET prediction = replace(prediction, '0.9', 'NaN') WHERE path LIKE ?",
                   ("%frame_00001.jpg",))
    page = assert_report_works(journal, tmp_path / "report")
    assert "1 stored prediction is not valid" in page

    reuse = alpolicy.run(str(tmp_path / "src"), Policy.from_dict(TAKE_ALL), options=RunOptions(
        journal=str(journal), progress=False, dry_run=True, reuse_predictions=True))
    assert [Path(f["path"]).name for f in reuse.failures] == ["frame_00001.jpg"]
    assert re.search(r"stored prediction is not valid: predictions\[0\]\.confidence: NaN is not a finite number",
                     reuse.failures[0]["error"])
    again = alpolicy.run(str(tmp_path / "src"), Policy.from_dict(TAKE_ALL), model=f"replay:{stored}", options=options)
    assert (again.inferred, again.reused, again.failed, again.qualified) == (1, 2, 0, 3)
    assert_report_works(journal, tmp_path / "report2")


# ---------------------------------------------------------------------- the validator itself


@pytest.mark.parametrize("raw, reason", [
    (text(document(width=640.0)), None),  # a whole float is a size
    (text(document(width=640.5)), r"image\.width: 640\.5 is not a whole number of pixels"),
    (text(document(width="640")), r'image\.width must be a whole number of pixels, not "640"'),
    (text(document(height=2**40)), r"image\.height: 1099511627776 is more than 2,147,483,647 pixels"),
    (with_box(x=True), r"predictions\[0\]\.x must be a number, not true"),
    (with_box(confidence="0.9"), r'predictions\[0\]\.confidence must be a number, not "0\.9"'),
    (with_box(x=int("9" * 400)), r"predictions\[0\]\.x: 9{39}… is far outside the image"),
    (b'{"image": {"width": 96, "height": 72}, "predictions": [], "n": ' + b"9" * 5000 + b"}", r"not valid JSON"),
    (with_box(**{"class": 3}), r"predictions\[0\]\.class must be a string, not 3"),
    (with_box(class_id=True), r"predictions\[0\]\.class_id must be a 64-bit integer, not true"),
    (with_box(x=-10), None),  # a box overshooting an edge a little is kept as it is
    (with_box(x=-200), r"predictions\[0\]\.x: the box spans -210\.\.-190"),
    (with_box(points=[{"x": 1, "y": 2}]), None),
    (with_box(points={"x": 1}), r"predictions\[0\]\.points must be a list"),
    (with_box(x=41, points=[{"x": 1, "y": 2}]).replace(b'"y": 2', b'"y": NaN'),
     r"predictions\[0\]\.points\[0\]\.y: NaN is not a finite number"),
    (text(document(debug=[1, 2])).replace(b"2]", b"-Infinity]"), r"extra\.debug\[1\]: -Infinity is not a finite number"),
    (text(document(debug=json.loads("[" * 80 + "]" * 80))), r"extra\.debug(\[0\])+: nested too deeply"),
    (b'{"image": {"width": 96, "height": 72}, "predictions": [1]}', r"predictions\[0\] must be an object, not 1"),
    (b"\xff\xfe{", r"not (valid JSON|UTF-8)"),
])
def test_the_validator_names_the_place_of_each_problem(raw, reason):
    if reason is None:
        prediction = parse_prediction(raw)
        assert prediction.checked and isinstance(prediction.width, int)
        return
    with pytest.raises(PredictionFormatError) as caught:
        parse_prediction(raw)
    message = str(caught.value)
    assert re.search(reason, message) and "\n" not in message and len(message) < 300, message


def test_a_prediction_built_in_code_is_validated_by_the_pipeline(tmp_path):
    """A third-party backend builds a Prediction itself: the pipeline checks it once."""

    class Broken:
        model_id = "broken/1"

        def predict(self, image):
            return Prediction(W, H, [{**GOOD_BOX, "confidence": math.inf}] if image.name.endswith("1.jpg") else [GOOD_BOX])

        def close(self):
            pass

    make_frames(tmp_path / "src", 3)
    report = alpolicy.run(str(tmp_path / "src"), Policy.from_dict(TAKE_ALL), model=Broken(),
                          options=RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, dry_run=True))
    assert [(Path(f["path"]).name, f["error"]) for f in report.failures] == [
        ("frame_00001.jpg", "the model returned an invalid prediction: predictions[0].confidence: Infinity is not a finite number")
    ]
    assert report.qualified == 2


# ---------------------------------------------------------------------- fuzzing (hostile_documents: tests/corpus)

def assert_finite_and_in_range(prediction: Prediction) -> None:
    assert type(prediction.width) is int and type(prediction.height) is int
    assert 0 < prediction.width and 0 < prediction.height
    for detection in prediction.detections:
        for key in ("x", "y", "width", "height", "confidence"):
            assert type(detection[key]) in (int, float) and math.isfinite(detection[key]), detection
        assert 0 <= detection["confidence"] <= 1 and detection["width"] >= 0 and detection["height"] >= 0
        assert isinstance(detection["class"], str)
    check_tree(prediction.to_json(), "$")  # JSON-safe everywhere: what the journal writes back
    json.dumps(prediction.to_json(), allow_nan=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_documents())
def test_fuzz_a_prediction_is_finite_and_in_range_or_refused(document_):
    try:
        prediction = Prediction.from_json(document_)
    except PredictionFormatError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert_finite_and_in_range(prediction)
    raw = json.dumps(document_).encode()  # NaN/Infinity spelt as Python writes them
    try:
        prediction = parse_prediction(raw)
    except PredictionFormatError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert_finite_and_in_range(prediction)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_fuzz_any_bytes_parse_or_fail_in_one_line(raw):
    for call in (lambda: parse_prediction(raw), lambda: loads(raw)):
        try:
            call()
        except (PredictionFormatError, JsonError) as error:
            assert "\n" not in str(error)
