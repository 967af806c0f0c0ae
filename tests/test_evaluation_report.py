"""The evaluation page (``alpolicy.report.evaluation``): the document of ``alpolicy evaluate``, drawn.

A real run (replay backend, through the CLI with ``--report``) stores the predictions and writes
the run report; the evaluation document is written here by hand (its numbers worked out in the
comments), so that every position and count on the page can be checked against arithmetic done
here, not against the code under test. The page is parsed with :mod:`html.parser` and opened in
headless Chromium.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alpolicy.errors import UsageError
from alpolicy.report.evaluation import COLOURS, write_evaluation_report
from alpolicy.testing import image_folder

from .cli import alpolicy
from .test_html_escaping import ATTRIBUTE, SCRIPT, _assert_no_script_runs
from .test_html_report import ARTIFACTS, _PROBE, chromium, parse

HOSTILE_NAME = f"{ATTRIBUTE}.jpg"  # a file name that is markup (no "/" in a name)
STORED_SIZE = (640, 480)  # the model saw 640 x 480; the files are 320 x 240: the boxes scale by 1/2


def box(klass: str, x: float, y: float, w: float, h: float, confidence: float | None = None) -> dict[str, Any]:
    detection: dict[str, Any] = {"class": klass, "x": x, "y": y, "width": w, "height": h}
    if confidence is not None:
        detection["confidence"] = confidence
    return detection


CAR = box("car", 100, 100, 40, 20, 0.9)
FP_DOG = box("dog", 300, 200, 60, 60, 0.8)
WC_PRED, WC_TRUTH = box("cat", 500, 300, 80, 80, 0.6), box("dog", 505, 300, 80, 80)
PERSON = box("person", 200, 350, 50, 100)

#: errors per image (miss + false positive + 2 x wrong class), worked out by hand:
#: frame_00000 4, frame_00001 2, frame_00002 1, hostile 1, frame_00003 0, gone 1 -> 9 over 6 images.
PER_IMAGE: dict[str, dict[str, Any]] = {
    "frame_00000.jpg": {"miss": 1, "false_positive": 1, "wrong_class": 1, "errors": 4, "matches": [[CAR, box("car", 101, 100, 40, 20)]],
                        "unmatched_predictions": [FP_DOG, WC_PRED], "unmatched_truths": [PERSON, WC_TRUTH],
                        "wrong_class_pairs": [[WC_PRED, WC_TRUTH]]},
    "frame_00001.jpg": {"miss": 2, "false_positive": 0, "wrong_class": 0, "errors": 2, "matches": [],
                        "unmatched_predictions": [], "unmatched_truths": [PERSON, box("car", 400, 100, 30, 30)]},
    "frame_00002.jpg": {"miss": 0, "false_positive": 1, "wrong_class": 0, "errors": 1, "matches": [],
                        "unmatched_predictions": [box(SCRIPT, 320, 240, 100, 100, 0.7)], "unmatched_truths": []},
    HOSTILE_NAME: {"miss": 1, "false_positive": 0, "wrong_class": 0, "errors": 1, "matches": [],
                   "unmatched_predictions": [], "unmatched_truths": [box(ATTRIBUTE, 320, 240, 100, 100)]},
    "frame_00003.jpg": {"miss": 0, "false_positive": 0, "wrong_class": 0, "errors": 0, "matches": [CAR],
                        "unmatched_predictions": [], "unmatched_truths": []},
    "gone.jpg": {"miss": 0, "false_positive": 1, "wrong_class": 0, "errors": 1, "matches": [],
                 "unmatched_predictions": [FP_DOG], "unmatched_truths": []},
}

#: A picks frame_00000 + frame_00002: captured 5; random 2/6 x 9 = 3; oracle 4 + 2 = 6; efficiency 2/3.
#: B picks frame_00003, gone, hostile: captured 2; random 3/6 x 9 = 4.5; oracle 4 + 2 + 1 = 7; efficiency -1.
#: C picks nothing: 0 / 0 / 0, efficiency null.
POLICIES = [
    {"policy": "a.json", "name": "<b>A</b>", "picked": 2, "images": ["frame_00000.jpg", "frame_00002.jpg"], "errors_captured": 5,
     "by_kind": {"miss": 1, "false_positive": 2, "wrong_class": 1}, "by_class": {"person": 1, "dog": 2, "car": 0, SCRIPT: 1},
     "random_mean": 3.0, "random_spread": {"draws": 1000, "seed": 0, "std": 1.2, "p05": 1, "p95": 5}, "oracle": 6,
     "efficiency": 2 / 3},
    {"policy": "b.json", "name": SCRIPT, "picked": 3, "images": ["frame_00003.jpg", "gone.jpg", HOSTILE_NAME], "errors_captured": 2,
     "by_kind": {"miss": 1, "false_positive": 1, "wrong_class": 0}, "by_class": {"dog": 1, ATTRIBUTE: 1},
     "random_mean": 4.5, "random_spread": {"draws": 1000, "seed": 0, "std": 1.5, "p05": 2, "p95": 7}, "oracle": 7,
     "efficiency": -1.0},
    {"policy": "c.json", "name": "nothing", "picked": 0, "images": [], "errors_captured": 0, "by_kind": {}, "by_class": {},
     "random_mean": 0.0, "random_spread": {"draws": 1000, "seed": 0, "std": 0, "p05": 0, "p95": 0}, "oracle": 0, "efficiency": None},
]


def document() -> dict[str, Any]:
    return {"ground_truth": "GT.coco.json", "journal": "journal.sqlite", "iou": 0.5, "budget": None, "evaluated": 6,
            "errors_total": 9, "errors_total_by_kind": {"miss": 4, "false_positive": 3, "wrong_class": 1},
            "errors_total_by_class": {"person": 2, "dog": 3, "car": 1, SCRIPT: 1, ATTRIBUTE: 1},
            "oracle": 9, "skipped": {"no ground truth": 1, "no prediction": 0}, "per_image": PER_IMAGE, "policies": POLICIES}


# ---------------------------------------------------------------------- a real run, then the page
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluation")
    frames = image_folder(root / "frames", 4, size=(320, 240))
    shutil.copy(frames[0], root / "frames" / HOSTILE_NAME)
    shutil.copy(frames[1], root / "frames" / "gone.jpg")
    predictions = root / "predictions"
    predictions.mkdir()
    for image in (root / "frames").iterdir():
        stored = {"image": {"width": STORED_SIZE[0], "height": STORED_SIZE[1]},
                  "predictions": [CAR | {"class_id": 0}, FP_DOG | {"class_id": 1}]}
        (predictions / f"{image.stem}.json").write_text(json.dumps(stored))
    (root / "policy.json").write_text(json.dumps({"version": 1, "detection": [{"rule": "confidence", "min": 0.85}],
                                                  "image": {"rule": "witnesses", "min": 1}}))
    journal, report = root / "journal.sqlite", root / "report"
    run = alpolicy("run", str(root / "frames"), "--model", f"replay:{predictions}", "--policy", str(root / "policy.json"),
                   "--to", f"folder:{root / 'queue'}", "--journal", str(journal), "--report", str(report))
    assert run.code == 0, run.err
    (root / "frames" / "gone.jpg").unlink()  # stored in the journal, gone from the disk
    page = write_evaluation_report(document(), journal, report)
    assert page == report / "evaluation.html"
    return {"root": root, "journal": journal, "report": report, "page": page}


class _Evaluation(HTMLParser):
    """The bars, the table cells, the figures with their overlay shapes, the headings and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[int, dict[str, Any]] = {}
        self.cells: dict[tuple[str, str], str] = {}
        self.figures: list[dict[str, Any]] = []
        self.legend_colours: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._bar: dict[str, Any] | None = None
        self._cell: tuple[str, str] | None = None
        self._caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        self.tags.append((tag, found))
        if tag == "g" and found.get("class") == "policy":
            self._bar = self.bars.setdefault(int(found["data-policy"]), {"data": found})
        elif self._bar is not None and tag in ("rect", "line"):
            self._bar[found["class"]] = found
        elif tag == "td" and "data-key" in found:
            self._cell = (found["data-policy"], found["data-key"])
        elif tag == "figure":
            self.figures.append({"imgs": [], "rects": [], "missing": False, "caption": []})
        elif self.figures and tag == "img":
            self.figures[-1]["imgs"].append(found["src"])
        elif self.figures and tag == "rect":
            self.figures[-1]["rects"].append(found)
        elif self.figures and tag == "div" and found.get("class") == "missing":
            self.figures[-1]["missing"] = True
        elif tag == "figcaption":
            self._caption = True
        elif tag == "i" and "border-color:" in found.get("style", ""):
            self.legend_colours.append(found["style"].split("border-color:")[1])

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._bar = None
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self.cells[self._cell] = data
            self._cell = None
        if self._caption:
            self.figures[-1]["caption"].append(data)


def read(page: Path) -> _Evaluation:
    parsed = _Evaluation()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed


def test_one_bar_per_policy_with_the_captured_mark_at_the_efficiency_of_the_bar(evaluated):
    page = read(evaluated["page"])
    assert sorted(page.bars) == [0, 1, 2]
    for index, efficiency in [(0, 2 / 3), (1, -1.0)]:
        bar = page.bars[index]
        left, width, mark = float(bar["range"]["x"]), float(bar["range"]["width"]), float(bar["captured"]["x1"])
        assert (mark - left) / width == pytest.approx(efficiency, abs=1e-3)
    a, b = page.bars[0], page.bars[1]
    # one axis of errors for every bar: A's bar spans 6 - 3 = 3 errors, B's 7 - 4.5 = 2.5
    assert float(a["range"]["width"]) / float(b["range"]["width"]) == pytest.approx(3 / 2.5, abs=1e-3)
    per_error = float(a["range"]["width"]) / 3
    assert float(b["range"]["x"]) - float(a["range"]["x"]) == pytest.approx(1.5 * per_error, abs=1e-2)  # random 4.5 vs 3
    # the random spread p05-p95 as a band: A's 1..5, B's 2..7
    assert float(a["spread"]["width"]) == pytest.approx(4 * per_error, abs=1e-2)
    assert float(b["spread"]["x"]) - float(a["spread"]["x"]) == pytest.approx(per_error, abs=1e-2)
    assert float(page.bars[2]["range"]["width"]) == 0 and page.bars[2]["data"]["data-efficiency"] == ""
    text = "".join(page.text)
    assert "efficiency 0.67" in text and "efficiency -1.00" in text and "efficiency n/a" in text


def test_the_tables_show_the_documents_numbers(evaluated):
    cells = read(evaluated["page"]).cells
    assert [cells[("0", key)] for key in ("picked", "errors_captured", "random_mean", "random_spread", "oracle", "efficiency")] == [
        "2", "5", "3", "1–5", "6", "0.67"]
    assert [cells[("1", key)] for key in ("picked", "errors_captured", "random_mean", "random_spread", "oracle", "efficiency")] == [
        "3", "2", "4.50", "2–7", "7", "-1.00"]
    assert cells[("2", "efficiency")] == "n/a"
    assert [cells[("0", kind)] for kind in ("miss", "false_positive", "wrong_class")] == ["1", "2", "1"]
    assert [cells[("total", kind)] for kind in ("miss", "false_positive", "wrong_class", "errors")] == ["4", "3", "1", "9"]
    assert cells[("0", "class:dog")] == "2" and cells[("1", "class:dog")] == "1" and cells[("total", "class:dog")] == "3"
    assert cells[("1", f"class:{ATTRIBUTE}")] == "1" and cells[("0", f"class:{ATTRIBUTE}")] == "0"


def test_each_policy_has_a_gallery_of_its_picked_images_with_the_errors_drawn_by_kind(evaluated):
    page = read(evaluated["page"])
    names = [figure["caption"][2] for figure in page.figures]  # badge, space, <b>name</b>
    assert names == ["frame_00000.jpg", "frame_00002.jpg", "frame_00003.jpg", "gone.jpg", HOSTILE_NAME]

    def kinds(figure: dict[str, Any]) -> dict[str, int]:
        counted: dict[str, int] = {}
        for rect in figure["rects"]:
            counted[rect["class"]] = counted.get(rect["class"], 0) + 1
        return counted

    first, second, third, gone, hostile = page.figures
    assert kinds(first) == {"match": 1, "false-positive": 1, "miss": 1, "wrong-class": 2}  # the pair: both boxes
    assert kinds(second) == {"false-positive": 1} and kinds(third) == {"match": 1} and kinds(hostile) == {"miss": 1}
    colours = {rect["class"]: rect["stroke"] for figure in page.figures for rect in figure["rects"]}
    assert colours == {"match": COLOURS["match"], "false-positive": COLOURS["false_positive"], "miss": COLOURS["miss"],
                       "wrong-class": COLOURS["wrong_class"]}
    assert len(set(colours.values())) == 4
    assert set(page.legend_colours) == set(COLOURS.values())
    assert [float(rect["stroke-width"]) for rect in first["rects"] if rect["class"] == "match"] == [1.0]
    # the miss (person at 200,350, 50 x 100 in the model's 640 x 480 pixels) on the 320 x 240 thumbnail: halved
    miss = next(rect for rect in first["rects"] if rect["class"] == "miss")
    assert [float(miss[k]) for k in ("x", "y", "width", "height")] == [87.5, 150.0, 25.0, 50.0]
    for figure in (first, second, third, hostile):
        assert len(figure["imgs"]) == 1 and not figure["missing"]
        with Image.open(evaluated["report"] / figure["imgs"][0]) as image:
            assert image.size == (320, 240)


def test_an_image_gone_from_the_disk_is_shown_by_name_without_a_thumbnail(evaluated):
    gone = read(evaluated["page"]).figures[3]
    assert gone["missing"] and not gone["imgs"] and not gone["rects"]
    caption = "".join(gone["caption"])
    assert "gone.jpg" in caption and "false positive: dog 0.8" in caption and "1 error" in caption


def test_hostile_class_policy_and_file_names_stay_text(evaluated, tmp_path):
    text = evaluated["page"].read_text(encoding="utf-8")
    page = read(evaluated["page"])
    assert "script" not in [tag for tag, _ in page.tags]
    assert not [key for _, attrs in page.tags for key in attrs if key.startswith("on")]
    assert not [attrs for tag, attrs in page.tags if tag == "img" and attrs.get("src") == "x"]
    assert "<b>A</b>" in "".join(page.text) and "&lt;b&gt;A&lt;/b&gt;" in text  # the policy's name, as text
    shown = "".join(page.text)
    assert SCRIPT in shown and ATTRIBUTE in shown and HOSTILE_NAME in shown
    assert f"miss: {ATTRIBUTE}" in shown and f"false positive: {SCRIPT} 0.7" in shown
    assert "<b>A</b>" not in text  # escaped in the source
    _assert_no_script_runs(evaluated["page"], tmp_path / "profile")


def test_the_run_reports_page_links_to_the_evaluation_once(evaluated):
    index = evaluated["report"] / "index.html"
    write_evaluation_report(document(), evaluated["journal"], evaluated["report"])  # again: replaced, not added
    text = index.read_text(encoding="utf-8")
    assert text.count('<section id="evaluation">') == 1 and 'href="evaluation.html"' in text
    assert "alpolicy run 1" in text and "Funnel" in text  # the run report is still there
    assert "efficiency 0.67" in text and SCRIPT not in text
    assert 'href="index.html"' in evaluated["page"].read_text(encoding="utf-8")


def test_the_page_loads_in_chromium_with_every_thumbnail(evaluated, tmp_path):
    page_path: Path = evaluated["page"]
    probe = page_path.with_name("evaluation-probe.html")
    probe.write_text(page_path.read_text(encoding="utf-8").replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    dumped = chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    loaded = parse(dumped.stdout)
    assert loaded.body.get("data-probed") == "yes", "the page did not finish loading"
    assert loaded.body["data-errors"] == "" and loaded.body["data-broken"] == ""
    assert int(loaded.body["data-images"]) == 4  # five picked, one gone from the disk
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "evaluation-report.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(page_path.as_uri(), tmp_path / "profile2", "--window-size=1280,2000", "--hide-scrollbars",
                    "--run-all-compositor-stages-before-draw", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]


def test_paths_given_by_name_override_the_journal_and_a_bad_document_is_one_usage_error(evaluated, tmp_path):
    elsewhere = image_folder(tmp_path / "elsewhere", 1, size=(100, 50))[0]
    page = write_evaluation_report(document(), evaluated["journal"], tmp_path / "out", images={"gone.jpg": str(elsewhere)})
    gone = read(page).figures[3]
    assert not gone["missing"] and len(gone["imgs"]) == 1 and [r["class"] for r in gone["rects"]] == ["false-positive"]
    assert not (tmp_path / "out" / "index.html").exists()  # no run report there: nothing to link from
    with pytest.raises(UsageError, match="no list of policies"):
        write_evaluation_report({"per_image": {}}, evaluated["journal"], tmp_path / "bad")


def test_wrong_class_entries_marked_by_kind_pair_up_without_a_pair_list_and_boxless_entries_are_listed(evaluated, tmp_path):
    """The shape ``alpolicy evaluate`` may print instead: each unmatched entry says its ``kind``,
    the wrong-class ones pair up in order, a match is ``{"prediction": ..., "truth": ...}``."""
    entry = {"miss": 1, "false_positive": 1, "wrong_class": 1, "errors": 4,
             "matches": [{"class": "car", "prediction": CAR, "truth": box("car", 101, 100, 40, 20)}],
             "unmatched_predictions": [FP_DOG | {"kind": "false_positive"}, WC_PRED | {"kind": "wrong_class", "truth_class": "dog"}],
             "unmatched_truths": [WC_TRUTH | {"kind": "wrong_class", "predicted_class": "cat"}, PERSON | {"kind": "miss"}]}
    classifier = {"miss": 1, "false_positive": 0, "wrong_class": 0, "errors": 1, "matches": [],
                  "unmatched_predictions": [], "unmatched_truths": [{"class": "sunny", "kind": "miss"}]}
    doc = document() | {"per_image": PER_IMAGE | {"frame_00000.jpg": entry, "frame_00002.jpg": classifier}}
    first, second = read(write_evaluation_report(doc, evaluated["journal"], tmp_path / "out")).figures[:2]
    assert sorted(rect["class"] for rect in first["rects"]) == ["false-positive", "match", "miss", "wrong-class", "wrong-class"]
    assert "wrong class: predicted cat 0.6, truth dog" in "".join(first["caption"])
    assert not second["rects"] and len(second["imgs"]) == 1 and "miss: sunny" in "".join(second["caption"])
