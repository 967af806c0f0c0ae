"""The HTML run report of every task type (issue #14): polygons and keypoints drawn over the
thumbnails in SVG, scaled as the boxes are; a classifier's classes written instead of boxes.

Each task gets a real run (replay backend over a stored prediction of its shape, an
in-memory destination, a journal on disk) and the report of that run; the page is parsed (``html.parser``)
for the polygons' points, the keypoints' circles and the classes' text, which must be what the
stored prediction says at the thumbnail's scale (640x480 images, 320x240 thumbnails: every
coordinate halved, computed by hand below). Class and keypoint names carry markup, which must
stay text. In headless Chromium, when installed, each page loads with every image and its SVG.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.report.html import write_run_report
from alpolicy.testing import CollectingDestination

from .test_html_report import _PROBE, ARTIFACTS, chromium, parse

HOSTILE = "<script>alert(1)</script>"
IMAGE = {"width": 640, "height": 480}
#: A detection rule, so that a detection (or a classifier's predicted class) of 0.5 or more is a witness.
POLICY = {"version": 1, "detection": [{"rule": "confidence", "min": 0.5}], "image": {"rule": "witnesses", "min": 1}}


def box(cls: str, confidence: float, x: float, y: float, width: float, height: float, **more: Any) -> dict[str, Any]:
    return {"x": x, "y": y, "width": width, "height": height, "confidence": confidence, "class": cls, "class_id": 0, **more}


DOCUMENTS: dict[str, dict[str, Any]] = {
    "object-detection": {"image": IMAGE, "predictions": [box("car", 0.8, 200, 150, 200, 100)]},
    "instance-segmentation": {"image": IMAGE, "predictions": [
        box("car", 0.8, 200, 150, 200, 100, points=[{"x": 100, "y": 100}, {"x": 300, "y": 100}, {"x": 300, "y": 200},
                                                    {"x": 100, "y": 200}]),
        box(HOSTILE, 0.3, 500, 400, 100, 60, points=[{"x": 450, "y": 370}, {"x": 550, "y": 370}, {"x": 500, "y": 430}]),
    ]},
    "keypoint-detection": {"image": IMAGE, "predictions": [
        box("person", 0.9, 320, 240, 200, 300, keypoints=[
            {"x": 320, "y": 100, "confidence": 0.95, "class_id": 0, "class": "nose"},
            {"x": 300, "y": 300, "confidence": 0.2, "class_id": 1, "class": HOSTILE}]),
    ]},
    "classification": {"image": IMAGE, "predictions": [
        {"class": "dog", "class_id": 0, "confidence": 0.7}, {"class": "cat", "class_id": 1, "confidence": 0.2},
        {"class": HOSTILE, "class_id": 2, "confidence": 0.1}], "top": "dog", "confidence": 0.7},
    "multi-label-classification": {"image": IMAGE, "predictions": {
        "cat": {"confidence": 0.9, "class_id": 0}, HOSTILE: {"confidence": 0.6, "class_id": 1},
        "bird": {"confidence": 0.1, "class_id": 2}}, "predicted_classes": ["cat", HOSTILE]},
}
TASKS = list(DOCUMENTS)


class _Figures(HTMLParser):
    """Per figure of the gallery: its image, overlay, polygons, circles (with their tooltips), and
    a classifier's verdict and score rows."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, Any]] = []
        self.elements: list[str] = []
        self._shape: dict[str, str] | None = None  # the polygon or circle whose <title> is read
        self._text: str | None = None  # "title", "verdict" or "td" while inside one
        self._scores = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        self.elements.append(tag)
        if tag == "figure":
            self.figures.append({"class": found.get("class"), "img": None, "svg": [], "polygons": [], "circles": [],
                                 "verdict": "", "rows": []})
            return
        if not self.figures:
            return
        figure = self.figures[-1]
        if tag == "img":
            figure["img"] = found
        elif tag == "svg" and "overlay" in found.get("class", ""):
            figure["svg"].append(found)
        elif tag in ("polygon", "circle"):
            self._shape = {**found, "title": ""}
            figure["polygons" if tag == "polygon" else "circles"].append(self._shape)
        elif tag == "title" and self._shape is not None:
            self._text = "title"
        elif tag == "div" and found.get("class") == "verdict":
            self._text = "verdict"
        elif tag == "table" and found.get("class") == "scores":
            self._scores = True
        elif tag == "tr" and self._scores:
            figure["rows"].append({"class": found.get("class"), "cells": []})
        elif tag == "td" and self._scores:
            self._text = "td"
            figure["rows"][-1]["cells"].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._scores = False
        if tag in ("polygon", "circle"):
            self._shape = None
        if {"title": "title", "div": "verdict", "td": "td"}.get(tag) == self._text:
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is None or not self.figures:
            return
        figure = self.figures[-1]
        if self._text == "title" and self._shape is not None:
            self._shape["title"] += data
        elif self._text == "verdict":
            figure["verdict"] += data
        elif self._text == "td":
            figure["rows"][-1]["cells"][-1] += data


def figures_of(page: str) -> _Figures:
    parser = _Figures()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """One real run per task (one 640x480 image, its stored prediction replayed) and its report."""
    made = {}
    for task, document in DOCUMENTS.items():
        root = tmp_path_factory.mktemp(task)
        frames, predictions = root / "frames", root / "predictions"
        frames.mkdir()
        predictions.mkdir()
        Image.new("RGB", (640, 480), (20, 40, 90)).save(frames / "frame.png")
        (predictions / "frame.json").write_text(json.dumps(document))
        options = RunOptions(journal=str(root / "journal.sqlite"), progress=False, decisions_log="")
        report = alpolicy.run(str(frames), Policy.from_dict(POLICY), model=f"replay:{predictions}",
                              destination=CollectingDestination(), options=options)
        assert (report.sent, report.failed) == (1, 0), report.failures
        made[task] = write_run_report(root / "journal.sqlite", root / "report", report.run_id)
    return made


def the_figure(reports: dict[str, Path], task: str) -> dict[str, Any]:
    parsed = figures_of(reports[task].read_text(encoding="utf-8"))
    assert "script" not in parsed.elements, f"{task}: a <script> element came from the data"
    (figure,) = parsed.figures
    assert figure["class"] == "chosen" and figure["img"]["width"] == "320" and figure["img"]["height"] == "240"
    return figure


def test_segmentation_polygons_are_drawn_over_the_thumbnail_at_its_scale(reports):
    figure = the_figure(reports, "instance-segmentation")
    (overlay,) = figure["svg"]
    assert (overlay["viewbox"], overlay["width"], overlay["height"]) == ("0 0 320 240", "320", "240")
    other, witness = figure["polygons"]  # the witness last: on top
    assert witness["points"] == "50.0,50.0 150.0,50.0 150.0,100.0 50.0,100.0"
    assert (witness["class"], witness["stroke"], witness["title"]) == ("witness", "#f28e2b", "car 0.8")
    assert other["points"] == "225.0,185.0 275.0,185.0 250.0,215.0"
    assert (other["class"], other["stroke"], other["title"]) == ("other", "#aaaaaa", f"{HOSTILE} 0.3")
    assert figure["circles"] == []


def test_keypoints_are_small_circles_named_in_their_tooltip_and_hollow_when_unsure(reports):
    figure = the_figure(reports, "keypoint-detection")
    assert figure["polygons"] == []
    nose, hidden = figure["circles"]
    assert (nose["cx"], nose["cy"], nose["r"], nose["class"]) == ("160.0", "50.0", "3", "keypoint")
    assert (nose["fill"], nose["stroke"], nose["title"]) == ("#f28e2b", "#f28e2b", "nose 0.95 (person)")
    assert (hidden["cx"], hidden["cy"], hidden["class"]) == ("150.0", "150.0", "keypoint low")
    assert (hidden["fill"], hidden["stroke-dasharray"], hidden["title"]) == ("none", "2 1.5", f"{HOSTILE} 0.20 (person)")


@pytest.mark.parametrize("task, verdict, rows", [
    ("classification", "top: dog 0.70",
     [("predicted", "dog", "0.70"), ("other", "cat", "0.20"), ("other", HOSTILE, "0.10")]),
    ("multi-label-classification", f"predicted: cat 0.90, {HOSTILE} 0.60",
     [("predicted", "cat", "0.90"), ("predicted", HOSTILE, "0.60"), ("other", "bird", "0.10")]),
])
def test_a_classifier_shows_its_classes_as_text_instead_of_boxes(reports, task, verdict, rows):
    figure = the_figure(reports, task)
    assert figure["verdict"] == verdict
    # every class, best first (the third cell is the confidence's bar)
    assert [(row["class"], *row["cells"][:2]) for row in figure["rows"]] == rows
    assert figure["svg"] == figure["polygons"] == figure["circles"] == []
    thumb = reports[task].parent / figure["img"]["src"]
    with Image.open(thumb) as image:
        assert not _orange_pixels(image), "a classifier's thumbnail has no box drawn in"


def test_a_detector_keeps_its_boxes_and_has_no_overlay(reports):
    figure = the_figure(reports, "object-detection")
    assert figure["svg"] == [] and figure["verdict"] == "" and figure["rows"] == []
    with Image.open(reports["object-detection"].parent / figure["img"]["src"]) as image:
        assert _orange_pixels(image) > 100  # the witness box, drawn into the JPEG


def _orange_pixels(image: Image.Image) -> int:
    data = image.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if data[i] > 200 and 110 < data[i + 1] < 170 and data[i + 2] < 80)


@pytest.mark.parametrize("task", TASKS)
def test_each_task_s_report_loads_in_chromium_with_its_image_and_shapes(reports, task, tmp_path):
    index = reports[task]
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text(encoding="utf-8").replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    dumped = chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = parse(dumped.stdout)
    assert page.body.get("data-probed") == "yes", "the page did not finish loading"
    assert (page.body["data-errors"], page.body["data-broken"]) == ("", "")
    assert page.scripts == 1, "only the test's probe may be a script: hostile text became markup"
    dom = figures_of(dumped.stdout)
    expected = {"instance-segmentation": (2, 0), "keypoint-detection": (0, 2)}.get(task, (0, 0))
    assert (len(dom.figures[0]["polygons"]), len(dom.figures[0]["circles"])) == expected
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"html-report-{task}.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(index.as_uri(), tmp_path / "profile2", "--window-size=1000,1400", "--hide-scrollbars",
                    "--run-all-compositor-stages-before-draw", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
