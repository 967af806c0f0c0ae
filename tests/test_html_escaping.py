"""Hostile text in every HTML page: policy names, rule names, tags, notes, classes, file names.

Both pages (the run report of ``alpolicy run --report`` and the what-if page of ``alpolicy
compare --report``) are written by the real CLI from a real run whose policy, folders and file
names carry markup. The pages are parsed: the markup must arrive as text (it is in the page's
text) and never as an element or an attribute; in headless Chromium, when installed, no script
of the data may run (a probe records any ``alert``).
"""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from .cli import alpolicy
from .conftest import make_frames
from .test_html_report import chromium, chromium_binary

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
STYLE = "</style>"
HOSTILE = (SCRIPT, ATTRIBUTE, STYLE)
CLASSES = ["car", *HOSTILE]


def _policy(confidence_min: float) -> dict[str, Any]:
    """Markup everywhere a user can type text into a policy."""
    return {
        "version": 1,
        "name": "".join(HOSTILE),
        "description": SCRIPT,
        "tags": list(HOSTILE),
        "detection": [{"rule": "confidence", "min": confidence_min, "note": SCRIPT, "tag": ATTRIBUTE},
                      {"rule": "classes", "include": CLASSES, "tag": STYLE}],
        "image": {"all": [{"rule": "witnesses", "min": 1, "tag": SCRIPT, "note": ATTRIBUTE}]},
        "sampling": [{"rule": "limit", "max": 6, "name": SCRIPT, "tags": [ATTRIBUTE, STYLE], "note": STYLE}],
    }


class _Elements(HTMLParser):
    """Every element and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {key: value or "" for key, value in attrs}))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _assert_inert(html_text: str, where: str) -> None:
    page = _Elements()
    page.feed(html_text)
    names = [tag for tag, _ in page.tags]
    assert "script" not in names, f"{where}: a <script> element came from the data"
    assert names.count("style") == 1, f"{where}: a style element came from the data"
    handlers = [(tag, key) for tag, attrs in page.tags for key in attrs if key.startswith("on")]
    assert not handlers, f"{where}: event-handler attributes came from the data: {handlers}"
    assert not [attrs for tag, attrs in page.tags if tag == "img" and attrs.get("src") == "x"], f"{where}: an <img src=x>"
    text = "".join(page.text)
    for hostile in HOSTILE:  # the data is on the page, as text: the checks above looked at it
        assert hostile in text, f"{where}: {hostile!r} is not shown as text"


#: Injected by the test only, first in <head>: any alert() of the page is recorded in the DOM.
_ALERT_PROBE = ("<script>window.alert = function (m) { document.documentElement.setAttribute('data-alerted', "
                "(document.documentElement.getAttribute('data-alerted') || '') + '|' + m); };</script>")


def _assert_no_script_runs(index: Path, profile: Path) -> None:
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text(encoding="utf-8").replace("<head>", "<head>" + _ALERT_PROBE, 1), encoding="utf-8")
    dumped = chromium(probe.as_uri(), profile, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _Elements()
    dom.feed(dumped.stdout)
    assert [tag for tag, _ in dom.tags][:2] == ["html", "head"] and "body" in [tag for tag, _ in dom.tags], "the page did not load"
    alerted = dom.tags[0][1].get("data-alerted")
    assert alerted is None, f"{index}: a script of the data ran: alert{alerted}"


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """A real run and a real what-if, through the CLI, in folders whose names are markup too."""
    root = tmp_path_factory.mktemp("hostile")
    hostile_dir = root / "<script>alert(1)<" / "script>" / "<" / "style>"  # the path reads .../<script>alert(1)</script>/</style>/
    frames = make_frames(hostile_dir / "frames", 12, size=(160, 120))
    named = []
    for index, frame in enumerate(frames):
        target = frame.with_name(f"{ATTRIBUTE}{index}.jpg" if index % 2 else f"<script>alert({index})<.jpg")  # no "/" in a name
        frame.rename(target)
        named.append(target)
    predictions = hostile_dir / "predictions"
    predictions.mkdir()
    rng = random.Random(3)
    for index, frame in enumerate(named):
        if index == 5:
            continue  # no stored prediction: a failure (with the hostile path in its message)
        detections = [{"x": 80, "y": 60, "width": 40 + 5 * n, "height": 30, "confidence": round(rng.uniform(0.2, 0.95), 3),
                       "class": CLASSES[(index + n) % len(CLASSES)], "class_id": 0} for n in range(3)]
        (predictions / f"{frame.stem}.json").write_text(json.dumps({"image": {"width": 160, "height": 120}, "predictions": detections}))
    policy_a, policy_b = hostile_dir / f"{ATTRIBUTE}a.json", hostile_dir / f"{SCRIPT[:8]}b.json"
    policy_a.write_text(json.dumps(_policy(0.5)))
    policy_b.write_text(json.dumps(_policy(0.3) | {"detection": [{"rule": "confidence", "max": 0.6, "note": SCRIPT}]}))
    journal, report, whatif = root / "journal.sqlite", hostile_dir / "report", hostile_dir / "whatif"
    run = alpolicy("run", str(hostile_dir / "frames"), "--model", f"replay:{predictions}", "--policy", str(policy_a),
                   "--to", f"folder:{hostile_dir / 'queue'}", "--journal", str(journal), "--report", str(report))
    assert run.code == 1, run.err  # one image failed (no stored prediction)
    compared = alpolicy("compare", str(journal), str(policy_a), str(policy_b), "--report", str(whatif))
    assert compared.code == 0, compared.err
    assert "A only" in compared.out and "note: sampling rules of A not applied" in compared.out
    return {"run report": report / "index.html", "what-if": whatif / "index.html"}


@pytest.mark.parametrize("which", ["run report", "what-if"])
def test_markup_in_the_data_stays_text_on_every_page(pages, which):
    _assert_inert(pages[which].read_text(encoding="utf-8"), which)


@pytest.mark.parametrize("which", ["run report", "what-if"])
def test_no_script_of_the_data_runs_in_a_browser(pages, which, tmp_path):
    chromium_binary()  # skips when Chromium is not installed
    _assert_no_script_runs(pages[which], tmp_path / "profile")


# ---------------------------------------------------------------------- the template layer itself
def test_the_template_layer_escapes_every_value_unless_it_is_markup():
    from alpolicy.report.html import write_page
    from alpolicy.report.markup import Markup, escape, html, join

    cell = html('<td title="{}">{:.1f} {n}</td>', ATTRIBUTE, 0.25, n=SCRIPT)
    assert cell == '<td title="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;">0.2 &lt;script&gt;alert(1)&lt;/script&gt;</td>'
    assert isinstance(cell, Markup) and html("<tr>{}</tr>", cell) == f"<tr>{cell}</tr>"  # markup is not escaped twice
    assert escape(escape(STYLE)) == "&lt;/style&gt;" and escape(cell) is cell
    assert Markup("<b>") + SCRIPT == "<b>&lt;script&gt;alert(1)&lt;/script&gt;"  # what is added to markup is text
    assert join([Markup("<i>"), "<i>"], "|") == "<i>|&lt;i&gt;"
    with pytest.raises(TypeError, match="Markup"):
        write_page(Path("."), "<p>pasted</p>")  # a page not built with the layer is not written
