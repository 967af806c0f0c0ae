"""The fault matrix: every fault the loopback Roboflow server can inject, end to end through the
pipeline, each asserting what the destination holds, what the server was asked and what the
journal says.

Every figure is observed, never written down: per test, the requests the server logged per route
and per image, the faults it injected, the images it stored per content and the pre-labels per
image (:func:`observe`). Each test asserts its own observation (0 lost, 0 duplicates, 0 half-sent,
no request the faults do not explain); the last test sums them into
``test-artifacts/fault-tally.json`` and prints the ``fault tally:`` line RELIABILITY.md quotes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.runtime.journal import Journal

from .conftest import make_frames
from .servers.roboflow import ImageRequests
from .test_pipeline_roboflow import expected_uploads

FRAMES = 24
PROJECT = "faults"
ROUTES = ("infer", "upload", "annotate")
#: What each test observed, by test name: summed into test-artifacts/fault-tally.json.
TALLY: dict[str, "Observed"] = {}


@dataclass
class Observed:
    """One test's figures, all computed from what the server logged and stored."""

    requests: dict[str, int]  # requests the server logged, per route
    faults: dict[str, dict[str, int]]  # faults it injected, per route and kind
    images_expected: int  # qualifying images (the SDK oracle over the server's answers)
    images_stored: int
    images_lost: int  # qualifying, not stored
    images_unexpected: int  # stored, not qualifying
    duplicates: int  # a content or a file name stored more than once
    half_sent: int  # stored without a pre-label
    pre_labels_twice: int  # stored with more than one pre-label
    resent: int  # images whose upload or annotate requests the injected faults do not explain
    inferred_again: int  # inference answers beyond one per image (answers the run threw away)

    @property
    def faults_injected(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.faults.values())


def triage(folder: Path, tmp_path: Path, **tweaks) -> alpolicy.RunReport:
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=4)
    options.model_options.retry_backoff = options.destination_options.retry_backoff = 0.01
    options.model_options.attempts = options.destination_options.attempts = tweaks.pop("attempts", 12)
    for key, value in tweaks.items():
        setattr(options, key, value)
    return alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                        destination=f"roboflow:{PROJECT}", options=options)


def beyond_the_faults(per_image: dict[str, ImageRequests]) -> dict[str, ImageRequests]:
    """The images whose requests the injected faults do not explain.

    A client that repeats a request only when it got no usable answer sends, per image, one
    request plus one per fault injected on that image's requests; and the server does the work
    (stores, annotates) at most once plus once per fault that did the work but hid the answer
    (a lost or too slow response). Anything more is a re-send the content de-duplication would
    hide on the server and a real service might not.
    """
    over = {}
    for key, counts in per_image.items():
        unseen = counts.faults.get("lose_response", 0) + counts.faults.get("slow", 0)
        if counts.requests > 1 + sum(counts.faults.values()) or counts.done > 1 + unseen:
            over[key] = counts
    return over


def observe(roboflow, folder: Path) -> Observed:
    """This test's figures, from the server's request log and store."""
    expected = set(expected_uploads(roboflow, folder, {}))
    stats = roboflow.requests
    images = roboflow.images(PROJECT)
    names = {image["name"] for image in images}
    per_content = Counter(image["sha256"] for image in images)
    per_name = Counter(image["name"] for image in images)
    annotations = roboflow.annotations(PROJECT)
    return Observed(
        requests={route: stats[route].total for route in ROUTES},
        faults={route: dict(stats[route].faults) for route in ROUTES},
        images_expected=len(expected),
        images_stored=len(images),
        images_lost=len(expected - names),
        images_unexpected=len(names - expected),
        duplicates=sum(n - 1 for n in per_content.values()) + sum(n - 1 for n in per_name.values()),
        half_sent=sum(1 for image in images if not annotations.get(image["id"])),
        pre_labels_twice=sum(1 for image in images if len(annotations.get(image["id"], [])) > 1),
        resent=len(beyond_the_faults(stats["upload"].images)) + len(beyond_the_faults(stats["annotate"].images)),
        inferred_again=stats["infer"].by_status.get(200, 0) - FRAMES,
    )


def assert_requests_within_the_fault_schedule(roboflow, folder: Path, expected: list[str]) -> None:
    """Upload requests per content and annotate requests per image, bounded by their faults."""
    stats = roboflow.requests
    expected_content = {hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in expected}
    assert set(stats["upload"].images) == expected_content, "uploads of images that do not qualify, or none of some that do"
    assert beyond_the_faults(stats["upload"].images) == {}, "an upload was sent again although its answer had arrived"
    stored_ids = {image["id"] for image in roboflow.images(PROJECT)}
    assert set(stats["annotate"].images) == stored_ids, "a pre-label sent for an unknown image, or not sent"
    assert beyond_the_faults(stats["annotate"].images) == {}, "a pre-label was sent again although its answer had arrived"


def assert_exactly_once(roboflow, folder: Path, tmp_path: Path, request) -> None:
    """The destination holds every qualifying image once, each pre-labelled; the server was asked
    nothing the faults do not explain; the journal agrees. Records the figures for the tally."""
    observed = TALLY[request.node.name] = observe(roboflow, folder)
    assert observed.inferred_again == 0, f"images inferred more than once: {observed}"
    assert observed.images_expected > 0 and observed.images_stored == observed.images_expected, observed
    assert (observed.images_lost, observed.images_unexpected) == (0, 0), f"an image was lost or not asked for: {observed}"
    assert observed.duplicates == 0, f"an image was stored twice: {observed}"
    assert (observed.half_sent, observed.pre_labels_twice) == (0, 0), f"an image without its one pre-label: {observed}"
    assert_requests_within_the_fault_schedule(roboflow, folder, sorted(expected_uploads(roboflow, folder, {})))
    assert observed.resent == 0
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts(f"roboflow:{PROJECT}") == {"sent": observed.images_expected}
    journal.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    frames = tmp_path / "frames"
    make_frames(frames, FRAMES, seed=8)
    return frames


@pytest.mark.parametrize(
    ("route", "fault"),
    [
        ("infer", {"error_every": 3}),
        ("upload", {"error_every": 2, "error_status": 502}),
        ("annotate", {"error_every": 3, "error_status": 500}),
        ("infer", {"throttle_every": 4, "retry_after": 0.2}),
        ("upload", {"throttle_every": 3, "retry_after": 0.2}),
        ("infer", {"reset_every": 3}),
        ("upload", {"reset_every": 2, "max_faults": 4}),
        ("upload", {"lose_response_every": 2, "max_faults": 4}),
        ("annotate", {"lose_response_every": 2, "max_faults": 4}),
    ],
    ids=lambda value: value if isinstance(value, str) else "-".join(f"{k}={v}" for k, v in value.items()),
)
def test_transient_faults_lose_nothing_and_send_nothing_twice(roboflow, env, folder, tmp_path, request, route, fault):
    roboflow.set_faults(route, **fault)
    report = triage(folder, tmp_path)
    assert report.failed == 0 and report.pending == 0
    assert sum(roboflow.requests[route].faults.values()) >= 2, "the fault was never injected"
    assert_exactly_once(roboflow, folder, tmp_path, request)


def test_retry_after_is_honoured(roboflow, env, folder, tmp_path, request):
    roboflow.set_faults("infer", throttle_every=1, retry_after=0.5, max_faults=1)
    started = time.monotonic()
    report = triage(folder, tmp_path, concurrency=1)
    assert report.failed == 0 and time.monotonic() - started >= 0.5  # a lower bound: cannot flake on a slow machine
    assert report.retries == 1 and roboflow.requests["infer"].faults == {"throttle": 1}
    assert_exactly_once(roboflow, folder, tmp_path, request)


def test_a_response_slower_than_the_timeout_on_upload_is_retried_into_a_duplicate(roboflow, env, folder, tmp_path, request):
    # Stored, then answered too late. The timeout leaves room for a busy machine: a timeout on a
    # request the server did not slow down would be a re-send no fault explains.
    roboflow.set_faults("upload", slow_every=2, slow_delay=3.0, max_faults=3)
    report = alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3", destination=f"roboflow:{PROJECT}",
                          options=_options(tmp_path, timeout=1.5))
    assert report.failed == 0 and roboflow.requests["upload"].faults == {"slow": 3}
    assert_exactly_once(roboflow, folder, tmp_path, request)


def _options(tmp_path: Path, timeout: float) -> RunOptions:
    options = RunOptions(journal=str(tmp_path / "journal.sqlite"), progress=False, concurrency=4)
    options.destination_options.timeout = timeout
    options.destination_options.retry_backoff = options.model_options.retry_backoff = 0.01
    return options


def test_the_destination_down_for_the_whole_run_leaves_everything_pending_for_the_next(roboflow, env, folder, tmp_path, request):
    roboflow.set_faults("upload", down=True)
    first = triage(folder, tmp_path, attempts=2, max_consecutive_failures=1000, retry_for=0.2, round_backoff=0.05)
    qualifying = len(expected_uploads(roboflow, folder, {}))
    assert first.sent == 0 and first.pending == qualifying and first.failed == 0 and first.exit_code == 1
    assert roboflow.images(PROJECT) == []
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts(f"roboflow:{PROJECT}") == {"pending": qualifying}
    journal.close()
    roboflow.clear_faults()
    calls = roboflow.requests["infer"].total
    second = triage(folder, tmp_path)
    assert second.sent == qualifying and roboflow.requests["infer"].total == calls  # predictions reused
    assert_exactly_once(roboflow, folder, tmp_path, request)


def test_a_destination_that_keeps_failing_stops_the_run_early_and_loses_nothing(roboflow, env, folder, tmp_path, request):
    roboflow.set_faults("upload", down=True)
    report = triage(folder, tmp_path, attempts=1, max_consecutive_failures=3)
    assert report.status == "aborted" and "they stay pending: run again" in (report.message or "")
    # Every answer the model gave is in the journal, those still in the stopped run's window too;
    # no delivery is left half-way: each send tried is pending (the next run sends it) or failed.
    journal = Journal(tmp_path / "journal.sqlite")
    stored, states = len(list(journal.iter_predictions())), journal.delivery_counts(f"roboflow:{PROJECT}")
    journal.close()
    assert set(states) <= {"pending", "failed"} and sum(states.values()) > 0, states
    assert stored == roboflow.requests["infer"].by_status.get(200, 0), "an answer of the model was thrown away"
    roboflow.clear_faults()
    triage(folder, tmp_path)
    assert_exactly_once(roboflow, folder, tmp_path, request)  # nothing inferred twice


def test_inference_down_decides_nothing_and_loses_nothing(roboflow, env, folder, tmp_path, request):
    roboflow.set_faults("infer", down=True)
    report = triage(folder, tmp_path, attempts=2, max_consecutive_failures=5)
    assert report.status == "aborted" and report.inferred == 0 and report.qualified == 0
    assert "nothing is lost: run again to resume" in (report.message or "")
    assert roboflow.images(PROJECT) == []
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.delivery_counts() == {} and list(journal.iter_predictions()) == []
    journal.close()
    roboflow.clear_faults()
    again = triage(folder, tmp_path)
    assert again.inferred == FRAMES and again.failed == 0
    assert_exactly_once(roboflow, folder, tmp_path, request)


def test_zz_write_the_fault_tally(request, capsys):
    """Runs last in this file: sums what each test above observed into the figures
    RELIABILITY.md quotes, writes them to test-artifacts/fault-tally.json and prints one line."""
    here = request.node.module
    ran = {item.name for item in request.session.items if item.module is here and item is not request.node}
    assert set(TALLY) == ran, f"tests that recorded no observation: {sorted(ran - set(TALLY))}"
    faults_by_kind: Counter[str] = Counter()
    for observed in TALLY.values():
        for kinds in observed.faults.values():
            faults_by_kind.update(kinds)
    totals = {
        "runs_with_faults": sum(1 for observed in TALLY.values() if observed.faults_injected),
        "requests": sum(sum(observed.requests.values()) for observed in TALLY.values()),
        "faults_injected": sum(faults_by_kind.values()),
        "faults_by_kind": dict(sorted(faults_by_kind.items())),
        **{key: sum(getattr(observed, key) for observed in TALLY.values())
           for key in ("images_expected", "images_stored", "images_lost", "images_unexpected", "duplicates",
                       "half_sent", "pre_labels_twice", "resent", "inferred_again")},
    }
    out = Path(__file__).resolve().parents[1] / "test-artifacts"
    out.mkdir(exist_ok=True)
    document = {"totals": totals, "tests": {name: asdict(observed) for name, observed in sorted(TALLY.items())}}
    (out / "fault-tally.json").write_text(json.dumps(document, indent=2))
    with capsys.disabled():
        print(f"\nfault tally: {totals['runs_with_faults']} runs with faults, {totals['requests']} requests, "
              f"{totals['faults_injected']} faults injected ({', '.join(f'{n} {k}' for k, n in totals['faults_by_kind'].items())}); "
              f"{totals['images_stored']} of {totals['images_expected']} images stored, {totals['images_lost']} lost, "
              f"{totals['duplicates']} duplicates, {totals['half_sent']} half-sent, "
              f"{totals['resent']} re-sent beyond the faults, {totals['inferred_again']} inferred twice")
    assert all(observed.faults_injected for observed in TALLY.values()), "a run in the fault matrix saw no fault"
    assert (totals["images_lost"], totals["images_unexpected"], totals["duplicates"]) == (0, 0, 0), totals
    assert (totals["half_sent"], totals["pre_labels_twice"], totals["resent"]) == (0, 0, 0), totals
    assert totals["images_stored"] == totals["images_expected"] > 0, totals
