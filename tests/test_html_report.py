"""The HTML run report, opened in a real headless Chromium, and the policy what-if (`alpolicy compare`).

A real run (replay backend, folder destination, through the CLI with ``--report``) is read back;
the page's numbers are compared with the journal's tables and with counts made here from the
prediction files themselves, every thumbnail must load in the browser and decode with Pillow,
and hostile text (a class named ``<script>...``) must stay text.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alpolicy import Policy
from alpolicy.io.images import ImageFile
from alpolicy.runtime.journal import Journal
from alpolicy.policy.prediction import Prediction
from alpolicy.report.svg import bin_values, positive_range

from .cli import alpolicy
from .conftest import make_frames

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HOSTILE = "<script>alert(1)</script>"
CLASSES = ["car", "person", HOSTILE]
POLICY = {
    "version": 1,
    "name": "<i>report test</i>",
    "detection": [{"rule": "confidence", "min": 0.3, "max": 0.7}, {"rule": "box_area", "min": 900}],
    "image": {"rule": "witnesses", "min": 1},
}
MISSING_PREDICTION = 7  # this frame has no stored prediction: the run records a failure


# ---------------------------------------------------------------------- a real run
def _detections(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"x": rng.uniform(20, 300), "y": rng.uniform(20, 220), "width": rng.uniform(5, 120), "height": rng.uniform(5, 100),
         "confidence": round(rng.random(), 3), "class": rng.choice(CLASSES), "class_id": 0}
        for _ in range(rng.randrange(0, 5))
    ]


@pytest.fixture(scope="module")
def triage(tmp_path_factory) -> dict[str, Any]:
    """40 frames, replayed predictions, a folder destination; `alpolicy run ... --report`."""
    root = tmp_path_factory.mktemp("triage")
    frames = make_frames(root / "frames", 40, size=(320, 240))
    predictions = root / "predictions"
    predictions.mkdir()
    rng = random.Random(11)
    stored: dict[str, dict[str, Any]] = {}
    for index, frame in enumerate(frames):
        if index == MISSING_PREDICTION:
            continue
        document = {"image": {"width": 320, "height": 240}, "predictions": _detections(rng)}
        (predictions / f"{frame.stem}.json").write_text(json.dumps(document))
        stored[str(frame)] = document
    (root / "policy.json").write_text(json.dumps(POLICY))
    journal, report = root / "journal.sqlite", root / "report"
    result = alpolicy("run", str(root / "frames"), "--model", f"replay:{predictions}", "--policy", str(root / "policy.json"),
                      "--to", f"folder:{root / 'queue'}", "--journal", str(journal), "--report", str(report), "--json")
    assert result.code == 1, result.err  # one image failed (no stored prediction)
    assert f"report:        {report / 'index.html'}" in result.err
    return {"root": root, "journal": journal, "report": report, "run": json.loads(result.out), "stored": stored}


def _journal_counts(journal: Path, run_id: int) -> dict[str, int]:
    """The numbers the page must show, straight from the journal's tables."""
    db = sqlite3.connect(journal)
    try:
        one = lambda sql: db.execute(sql, (run_id,)).fetchone()[0]  # noqa: E731
        return {
            "seen": json.loads(one("SELECT summary FROM runs WHERE id = ?"))["seen"],
            "decided": one("SELECT COUNT(*) FROM decisions WHERE run_id = ? AND qualifies IS NOT NULL"),
            "qualified": one("SELECT COUNT(*) FROM decisions WHERE run_id = ? AND qualifies = 1"),
            "sampled": one("SELECT COUNT(*) FROM decisions WHERE run_id = ? AND sampled = 1"),
            "uploaded": one("SELECT COUNT(*) FROM deliveries WHERE run_id = ? AND state = 'sent'"),
            "failed": one("SELECT COUNT(*) FROM failures WHERE run_id = ?"),
            "rejected:witnesses": one("SELECT COUNT(*) FROM decisions WHERE run_id = ? AND rejected_by = 'witnesses'"),
        }
    finally:
        db.close()


def _cascade(stored: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Images with a detection in [0.3, 0.7]; with one that is also larger than 900 px² (counted here, by hand)."""
    in_interval = lambda d: 0.3 <= d["confidence"] <= 0.7  # noqa: E731
    first = sum(any(in_interval(d) for d in doc["predictions"]) for doc in stored.values())
    both = sum(any(in_interval(d) and d["width"] * d["height"] > 900 for d in doc["predictions"]) for doc in stored.values())
    return first, both


# ---------------------------------------------------------------------- reading the page
class _Page(HTMLParser):
    """What the tests look at: data-count cells, images, links, figures, scripts, body attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.figures: list[str] = []
        self.scripts = 0
        self.body: dict[str, str] = {}
        self.text: list[str] = []
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "td" and "data-count" in found:
            self._count = found["data-count"]
        elif tag == "img":
            self.images.append(found["src"])
        elif tag == "a":
            self.links.append(found.get("href", ""))
        elif tag == "figure":
            self.figures.append(found.get("class", ""))
        elif tag == "script":
            self.scripts += 1
        elif tag == "body":
            self.body = found

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._count is not None:
            self.counts[self._count] = int(data)
            self._count = None


def parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


#: Injected (into a copy of the page) by the test only: the report itself has no script. Records
#: resource and script errors from the first byte, then every image that did not decode.
_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(e.target && e.target.src ? 'load ' + e.target.src : 'error ' + e.message); }, true);
window.addEventListener('load', function () {
  var broken = Array.prototype.filter.call(document.images, function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute('data-images', String(document.images.length));
  document.body.setAttribute('data-broken', broken.map(function (i) { return i.getAttribute('src'); }).join('|'));
  document.body.setAttribute('data-errors', window.__errors.join('|'));
  document.body.setAttribute('data-probed', 'yes');
});
</script>"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it): "
                    "the browser checks of the HTML report did not run")
    return found


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=10000", *extra, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


# ---------------------------------------------------------------------- the run report
def test_the_report_loads_in_chromium_with_every_image_and_the_journals_counts(triage, tmp_path):
    report: Path = triage["report"]
    index = report / "index.html"
    html_text = index.read_text(encoding="utf-8")
    probe = report / "probe.html"  # same folder: the same relative links
    probe.write_text(html_text.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    started = time.monotonic()
    dumped = chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom")
    browser_seconds = time.monotonic() - started
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = parse(dumped.stdout)

    assert page.body.get("data-probed") == "yes", "the page did not finish loading"
    assert page.body["data-errors"] == "", page.body["data-errors"]
    assert page.body["data-broken"] == "", f"images that did not load: {page.body['data-broken']}"
    assert int(page.body["data-images"]) == len(page.images) > 0
    assert page.scripts == 1, "only the test's probe may be a script: hostile text became markup"
    assert HOSTILE in "".join(page.text) and "<i>report test</i>" in "".join(page.text)

    expected = _journal_counts(triage["journal"], triage["run"]["run_id"])
    assert {name: page.counts[name] for name in expected} == expected
    run = triage["run"]
    assert (page.counts["seen"], page.counts["qualified"], page.counts["sampled"], page.counts["uploaded"], page.counts["failed"]) == (
        run["seen"], run["qualified"], run["sampled"], run["sent"], run["failed"]) == (40, run["qualified"], run["sent"], run["sent"], 1)
    assert (page.counts["detection:confidence"], page.counts["detection:box_area"]) == _cascade(triage["stored"])
    assert page.counts["qualified"] == page.counts["detection:box_area"]  # witnesses >= 1

    rejected = expected["decided"] - expected["sampled"]
    assert page.figures.count("chosen") == expected["sampled"] > 0
    assert page.figures.count("rejected") == min(rejected, 48) > 0

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "html-report.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(index.as_uri(), tmp_path / "profile2", "--window-size=1280,2400", "--hide-scrollbars",
                    "--run-all-compositor-stages-before-draw", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
    print(f"\nscreenshot: {screenshot} (browser load {browser_seconds:.1f}s)")


def test_every_image_and_link_of_the_report_resolves_relative_to_it(triage):
    report: Path = triage["report"]
    page = parse((report / "index.html").read_text(encoding="utf-8"))
    assert page.images and all(not src.startswith(("/", "file:", "http")) for src in page.images)
    for src in page.images:
        with Image.open(report / urllib.parse.unquote(src)) as image:
            image.load()
            assert max(image.size) <= 320
    local = [link for link in page.links if not link.startswith(("http:", "https:"))]
    assert local, "originals and destination files should be linked"
    for link in local:
        assert not link.startswith(("/", "file:")), link
        assert (report / urllib.parse.unquote(link)).is_file(), link
    queue_links = [link for link in local if "/queue/images/" in link]
    assert len(queue_links) == page.figures.count("chosen")  # each chosen image links to its copy in the queue


def test_report_command_defaults_to_the_last_run_and_fails_in_one_line(triage, tmp_path):
    journal = str(triage["journal"])
    result = alpolicy("report", journal, "--out", str(tmp_path / "again"))
    assert result.code == 0, result.err
    assert "alpolicy run 1" in (tmp_path / "again" / "index.html").read_text(encoding="utf-8")
    for args, message in [
        (("report", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "x")), "no journal at"),
        (("report", journal, "--out", str(tmp_path / "x"), "--run", "9"), "no run 9 in the journal; runs: 1"),
        (("report", str(triage["root"] / "policy.json"), "--out", str(tmp_path / "x")), "is not an alpolicy journal"),
        (("compare", str(tmp_path / "nope.sqlite"), str(triage["root"] / "policy.json"), str(triage["root"] / "policy.json")), "no journal at"),
    ]:
        failed = alpolicy(*args)
        assert failed.code == 2 and failed.err.startswith("alpolicy: error: ") and message in failed.err, failed.err
        assert failed.err.count("\n") == 1 and "Traceback" not in failed.err
    assert not (tmp_path / "nope.sqlite").exists(), "a report must not create a journal"


# ---------------------------------------------------------------------- the what-if
def _synthetic_journal(path: Path, count: int, seed: int = 5) -> dict[str, Prediction]:
    """``count`` stored predictions through the journal's own API; the first 50 paths are stored
    twice (the file changed): the newer prediction is the one that counts."""
    rng = random.Random(seed)
    journal = Journal(path)
    latest: dict[str, Prediction] = {}
    try:
        for index in range(count):
            name = f"/data/frames/f{index:06d}.jpg"
            if index < 50:
                journal.save_prediction(ImageFile(name, 1000, 1), "m", Prediction(640, 480, _detections(rng)))
            prediction = Prediction(640, 480, _detections(rng))
            journal.save_prediction(ImageFile(name, 1000, 2), "m", prediction)
            latest[name] = prediction
    finally:
        journal.close()
    return latest


WIDE = {"version": 1, "detection": [{"rule": "confidence", "min": 0.2, "max": 0.8}]}
STRICT = {"version": 1, "detection": [{"rule": "confidence", "min": 0.5, "max": 0.9}, {"rule": "box_area", "min": 900}],
          "image": {"rule": "witnesses", "min": 1}, "sampling": [{"rule": "limit", "max": 10}]}


def test_compare_20000_stored_predictions_with_the_direct_evaluations_counts(tmp_path):
    """The counts of ``alpolicy compare`` over 20,000 stored predictions are those of evaluating
    both policies directly. Its speed is measured in ``benchmarks/bench_test_speeds.py``."""
    latest = _synthetic_journal(tmp_path / "journal.sqlite", 20_000)
    wide, strict = Policy.from_dict(WIDE), Policy.from_dict(STRICT)
    a = {path for path, prediction in latest.items() if wide.evaluate(prediction).qualifies}
    b = {path for path, prediction in latest.items() if strict.evaluate(prediction).qualifies}
    (tmp_path / "a.json").write_text(json.dumps(WIDE))
    (tmp_path / "b.json").write_text(json.dumps(STRICT))

    result = alpolicy("compare", str(tmp_path / "journal.sqlite"), str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert result.code == 0, result.err
    counts = json.loads(result.out)
    assert counts["images"] == 20_000
    assert (counts["a_sends"], counts["b_sends"], counts["both"], counts["a_only"], counts["b_only"]) == (
        len(a), len(b), len(a & b), len(a - b), len(b - a))
    assert 0 < len(b - a) and 0 < len(a - b), "the fixture should make the policies differ both ways"
    assert counts["sampling_not_applied"] == {"A": [], "B": ["limit"]}

    text = alpolicy("compare", str(tmp_path / "journal.sqlite"), str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert f"would send {len(a):>7}" in text.out and "sampling rules of B not applied" in text.out and "limit" in text.out


def test_compare_report_shows_the_differences_with_real_thumbnails(triage, tmp_path):
    wide = dict(POLICY, detection=[{"rule": "confidence", "min": 0.1, "max": 0.9}])
    (tmp_path / "wide.json").write_text(json.dumps(wide))
    out = tmp_path / "whatif"
    result = alpolicy("compare", str(triage["journal"]), str(triage["root"] / "policy.json"), str(tmp_path / "wide.json"),
                      "--report", str(out), "--json")
    assert result.code == 0, result.err
    counts = json.loads(result.out.split("\nreport: ")[0])
    page = parse((out / "index.html").read_text(encoding="utf-8"))
    assert {k: page.counts[k] for k in ("A only", "B only", "both")} == {
        "A only": counts["a_only"], "B only": counts["b_only"], "both": counts["both"]}
    assert counts["b_only"] > 0
    assert page.figures.count("chosen") == min(counts["a_only"], 48) + min(counts["b_only"], 48)
    for src in page.images:
        with Image.open(out / urllib.parse.unquote(src)) as image:
            image.load()
    assert page.scripts == 0


def test_compare_needs_a_model_when_the_journal_holds_several(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    for model in ("m1", "m2"):
        journal.save_prediction(ImageFile("/x/a.jpg", 1, 1), model, Prediction(10, 10, []))
    journal.close()
    (tmp_path / "p.json").write_text(json.dumps(WIDE))
    args = ("compare", str(tmp_path / "j.sqlite"), str(tmp_path / "p.json"), str(tmp_path / "p.json"))
    failed = alpolicy(*args)
    assert failed.code == 2 and "choose one with --model" in failed.err and failed.err.count("\n") == 1
    chosen = alpolicy(*args, "--model", "m2", "--json")
    assert chosen.code == 0 and json.loads(chosen.out)["images"] == 1


# ---------------------------------------------------------------------- the chart helpers
def test_histogram_bins_count_every_value_once():
    values = [0.0, 0.1, 0.5, 0.99, 1.0, 1.5]
    bins = bin_values(values, 0.0, 1.0, 10)
    assert sum(bins.counts) == 5 and bins.outside == 1 and bins.counts[-1] == 2
    areas = [1, 9, 10, 999, 1000, 0]
    lo, hi = positive_range(areas)
    log_bins = bin_values(areas, lo, hi, 30, log=True)
    assert sum(log_bins.counts) == 5 and log_bins.outside == 1 and (lo, hi) == (1, 1000)
