"""Tests of the example backend, run against the installed package (``pip install .``).

They use :mod:`alpolicy.testing`: real images, one-image runs through the real pipeline, and the
fixtures of ``alpolicy.testing.pytest_plugin`` (enabled in ``conftest.py``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import alpolicy
from alpolicy.testing import CollectingDestination, image_folder, registry_with, run_one

from alpolicy_example_backend import plugin

HEADER = "image,class,confidence,x,y,width,height\n"


def write_csv(folder, text: str):
    path = folder / "predictions.csv"
    path.write_text(HEADER + text)
    return path


def options(**extra) -> alpolicy.RunOptions:
    """What ``run_one`` uses by default (no journal file, no log, no progress), with model options."""
    return alpolicy.RunOptions(journal=None, progress=False, retry_for=0, decisions_log="",
                               model_options=alpolicy.ModelOptions(extra=extra))


def test_the_backend_is_discovered_through_its_entry_point():
    assert alpolicy.get_registry().backends["csv"].plugin == "example-backend"


def test_a_run_gets_the_rows_of_its_image(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    csv = write_csv(tmp_path, f"{image.name},car,0.9,48,36,20,10\n{image.name},bus,0.4,10,10,8,8\nother.jpg,car,1,1,1,1,1\n")
    destination = CollectingDestination()
    report = run_one(image, backend=f"csv:{csv}", destination=destination, registry=registry_with(plugin), options=options())
    assert report.sent == 1
    prediction = destination.deliveries[0].prediction
    assert (prediction.width, prediction.height) == (96, 72)  # the image's own size
    assert [(d["class"], d["confidence"]) for d in prediction.detections] == [("car", 0.9), ("bus", 0.4)]
    assert prediction.model_id == f"csv:{csv}"


def test_min_confidence_leaves_rows_out(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    csv = write_csv(tmp_path, f"{image.name},car,0.9,48,36,20,10\n{image.name},bus,0.4,10,10,8,8\n")
    backend = plugin.CsvBackend(str(csv), alpolicy.ModelOptions(extra={"min_confidence": 0.5}))
    assert [d["class"] for d in backend.predict(alpolicy.ImageFile.from_path(image)).detections] == ["car"]


def test_an_image_without_rows_fails_unless_missing_is_empty(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    csv = write_csv(tmp_path, "other.jpg,car,0.9,48,36,20,10\n")
    report = run_one(image, backend=f"csv:{csv}", registry=registry_with(plugin), options=options())
    assert (report.failed, report.sent) == (1, 0)  # an ImageError: this image fails, the run goes on
    assert report.failures[0]["error"] == f"predictions.csv has no row for {image.name}"
    destination = CollectingDestination()
    report = run_one(image, backend=f"csv:{csv}", destination=destination, registry=registry_with(plugin),
                     options=options(missing="empty"))
    assert report.sent == 1 and destination.deliveries[0].prediction.detections == []


@pytest.mark.parametrize(("text", "message"), [
    ("a.jpg,car,high,1,1,1,1\n", "predictions.csv, line 2: confidence 'high' is not a number"),
    ("a.jpg,car,57,1,1,1,1\n", "predictions.csv, line 2: confidence 57 is not within 0..1"),
])
def test_a_malformed_csv_is_one_line_at_its_line(tmp_path, text, message):
    with pytest.raises(alpolicy.UsageError) as caught:
        plugin.CsvBackend(str(write_csv(tmp_path, text)), alpolicy.ModelOptions())
    assert str(caught.value).endswith(message)


def test_the_options_are_checked_against_the_schema(tmp_path):
    (image,) = image_folder(tmp_path / "frames", 1)
    csv = write_csv(tmp_path, "")
    with pytest.raises(alpolicy.UsageError, match="model option missing: 'skip' is not one of"):
        run_one(image, backend=f"csv:{csv}", registry=registry_with(plugin), options=options(missing="skip"))


def test_the_fingerprint_changes_with_the_file_and_the_options(tmp_path):
    csv = write_csv(tmp_path, "a.jpg,car,0.9,1,1,1,1\n")
    first = plugin.CsvBackend(str(csv), alpolicy.ModelOptions()).fingerprint
    assert first.startswith(f"csv:{csv}@")
    assert plugin.CsvBackend(str(csv), alpolicy.ModelOptions(extra={"missing": "empty"})).fingerprint != first
    write_csv(tmp_path, "a.jpg,car,0.8,1,1,1,1\n")  # re-exported: another model's answers
    assert plugin.CsvBackend(str(csv), alpolicy.ModelOptions()).fingerprint != first


def test_predict_from_many_threads_at_once(tmp_path):
    images = image_folder(tmp_path / "frames", 8)
    csv = write_csv(tmp_path, "".join(f"{path.name},car,0.{index + 1},10,10,4,4\n" for index, path in enumerate(images)))
    backend = plugin.CsvBackend(str(csv), alpolicy.ModelOptions())
    files = [alpolicy.ImageFile.from_path(path) for path in images] * 10
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(backend.predict, files))
    assert [a.detections[0]["confidence"] for a in answers] == [float(f"0.{i % 8 + 1}") for i in range(80)]
