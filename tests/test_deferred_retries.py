"""Deferred retries: an image whose attempts all happened to land on faults is retried in rounds at
the end of the stream, so a run against a flaky (not a dead) service ends with nothing pending.

The faults are the issue's: on every route, every 5th request answers 503, every 6th response is
lost after the work is done, every 11th request is throttled. With 2 attempts per request many
images exhaust their attempts during the stream; the old pipeline left them pending (sends) or
failed (inference) and exited 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, RunOptions
from alpolicy.runtime.journal import Journal

from .cli import alpolicy as alpolicy_cli
from .conftest import make_frames
from .test_pipeline_roboflow import expected_uploads

PROJECT = "deferred"
FRAMES = 30
ROUTES = ("infer", "upload", "annotate")


def flaky(roboflow) -> None:
    for route in ROUTES:
        roboflow.set_faults(route, error_every=5, lose_response_every=6, throttle_every=11, retry_after=0.02)


def triage(folder: Path, journal: Path, **tweaks) -> alpolicy.RunReport:
    options = RunOptions(journal=str(journal), progress=False, concurrency=4)
    options.model_options.retry_backoff = options.destination_options.retry_backoff = 0.01
    options.model_options.attempts = options.destination_options.attempts = tweaks.pop("attempts", 2)
    options.round_backoff = 0.02  # first wait between deferred rounds (doubled per round)
    for key, value in tweaks.items():
        setattr(options, key, value)
    return alpolicy.run(str(folder), Policy.from_conditionals({}), model="roboflow:vehicles/3",
                        destination=f"roboflow:{PROJECT}", options=options)


def assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder: Path, journal: Path) -> None:
    expected = sorted(expected_uploads(roboflow, folder, {}))
    images = roboflow.images(PROJECT)
    assert sorted(image["name"] for image in images) == expected, "an image was lost or stored twice"
    annotations = roboflow.annotations(PROJECT)
    assert all(len(annotations.get(image["id"], [])) == 1 for image in images), "an image has no (or two) pre-labels"
    # Every upload the server processed is one image's first, or a retry after its answer was lost:
    # no image was uploaded again once its upload had been answered (its checkpoint was resumed).
    stats = roboflow.requests["upload"]
    assert sum(image["upload_count"] for image in images) == len(images) + stats.faults.get("lose_response", 0)
    early = sum(count for kind, count in stats.faults.items() if kind not in ("lose_response", "slow"))  # no work done
    assert stats.total == sum(image["upload_count"] for image in images) + early
    db = Journal(journal)
    assert db.delivery_counts(f"roboflow:{PROJECT}") == {"sent": len(expected)}
    db.close()


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_flaky_server_ends_with_nothing_pending_or_failed(roboflow, env, tmp_path, seed):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=seed)
    flaky(roboflow)
    report = triage(folder, tmp_path / "journal.sqlite")
    assert (report.pending, report.failed) == (0, 0), report.failures
    assert report.status == "completed" and report.exit_code == 0
    assert report.retried_later >= 1, "no image needed a deferred round: the faults did not bite"
    assert sum(sum(roboflow.requests[route].faults.values()) for route in ROUTES) >= 10
    assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder, tmp_path / "journal.sqlite")
    assert f"retried at the end of the stream" in report.summary()


def test_the_cli_ends_with_exit_code_0_under_the_issue_faults(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, FRAMES, seed=14)
    flaky(roboflow)
    journal = tmp_path / "journal.sqlite"
    result = alpolicy_cli("run", str(folder), "--model", "roboflow:vehicles/3", "--to", f"roboflow:{PROJECT}",
                          "--journal", str(journal), "--retry-for", "120", "--no-progress", env=env)
    assert result.code == 0, result.out + result.err
    assert "pending" not in result.out
    assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder, journal)


def test_a_destination_down_for_good_ends_pending_at_the_deadline(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, 12, seed=15)
    roboflow.set_faults("upload", down=True)
    journal = tmp_path / "journal.sqlite"
    report = triage(folder, journal, retry_for=0.5, max_consecutive_failures=10_000)
    qualifying = len(expected_uploads(roboflow, folder, {}))
    assert report.status == "completed" and report.sent == 0 and report.failed == 0
    assert report.pending == qualifying and report.exit_code == 1
    assert report.retry_rounds >= 1 and report.retried_later == qualifying
    assert "still pending after retrying for 0.5 s" in (report.message or "")
    assert roboflow.images(PROJECT) == []
    db = Journal(journal)
    assert db.delivery_counts(f"roboflow:{PROJECT}") == {"pending": qualifying}
    db.close()
    roboflow.clear_faults()
    again = triage(folder, journal)
    assert again.sent == qualifying and again.pending == 0
    assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder, journal)


def test_a_destination_down_for_good_trips_the_breaker_in_the_deferred_rounds(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, 12, seed=15)
    roboflow.set_faults("upload", down=True)
    qualifying = len(expected_uploads(roboflow, folder, {}))
    # Fewer failures in a row than the breaker allows during the stream, more after one round.
    report = triage(folder, tmp_path / "journal.sqlite", retry_for=600, max_consecutive_failures=qualifying + 2)
    assert report.status == "aborted" and "in a row" in (report.message or "")
    assert report.pending == qualifying and report.sent == 0 and report.failed == 0
    assert report.retry_rounds >= 1


def test_a_model_server_that_recovers_during_the_rounds_loses_no_image(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, 12, seed=16)
    # Inference down for the stream's first 12 requests (6 images x 2 attempts), then it recovers.
    roboflow.set_faults("infer", error_every=1, max_faults=12)
    report = triage(folder, tmp_path / "journal.sqlite", concurrency=1)
    assert (report.failed, report.pending, report.inferred) == (0, 0, 12), report.failures
    assert report.retried_later == 6
    assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder, tmp_path / "journal.sqlite")


def test_retry_for_must_not_be_negative(tmp_path):
    folder = tmp_path / "frames"
    make_frames(folder, 1)
    result = alpolicy_cli("run", str(folder), "--model", "replay:sidecar", "--dry-run", "--retry-for", "-1")
    assert result.code == 2 and result.err.strip().count("\n") == 0 and "--retry-for" in result.err
    result = alpolicy_cli("run", str(folder), "--model", "replay:sidecar", "--dry-run", "--retry-for", "soon")
    assert result.code == 2 and result.err.strip().count("\n") == 0 and "--retry-for" in result.err
    with pytest.raises(alpolicy.UsageError, match="retry_for"):
        alpolicy.run(str(folder), Policy.from_conditionals({}), model="replay:sidecar",
                     options=RunOptions(journal=None, dry_run=True, retry_for=-1))


# ---------------------------------------------------------------- the SDK drop-in
def test_the_drop_in_returns_images_re_inferred_in_a_deferred_round_in_folder_order(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    names = [path.name for path in make_frames(folder, 12, seed=17)]
    roboflow.set_faults("infer", error_every=3, max_faults=4)  # 4 images fail once, then succeed in a round
    results = alpolicy.active_learning(
        raw_data_location=str(folder), raw_data_extension=".jpg", inference_endpoint=["vehicles", 3],
        upload_destination=PROJECT, conditionals={}, journal=str(tmp_path / "journal.sqlite"), progress=False,
        attempts=1, retry_backoff=0.01, concurrency=2,
    )
    assert roboflow.requests["infer"].faults == {"error": 4}, "the faults did not bite"
    assert roboflow.requests["infer"].total == 12 + 4  # the 4 were inferred again, in a deferred round
    assert [Path(result["image"]).name for result in results] == names  # the folder's (natural) order
    assert all(isinstance(result["predictions"], list) for result in results)
    assert_each_qualifying_image_stored_once_with_its_pre_label(roboflow, folder, tmp_path / "journal.sqlite")


def test_the_drop_in_takes_retry_for(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    names = [path.name for path in make_frames(folder, 12, seed=17)]
    roboflow.set_faults("infer", error_every=3, max_faults=4)
    results = alpolicy.active_learning(
        raw_data_location=str(folder), raw_data_extension=".jpg", inference_endpoint=["vehicles", 3],
        upload_destination=PROJECT, conditionals={}, journal=str(tmp_path / "journal.sqlite"), progress=False,
        attempts=1, retry_backoff=0.01, concurrency=2, retry_for=0,
    )
    assert roboflow.requests["infer"].total == 12  # no deferred round: the 4 failed images wait for the next run
    returned = [Path(result["image"]).name for result in results]
    assert len(returned) == 8 and returned == [name for name in names if name in returned]
    db = Journal(tmp_path / "journal.sqlite")
    assert len(list(db.iter_predictions())) == 8
    assert db.runs()[-1]["status"] == "completed"
    db.close()
    with pytest.raises(alpolicy.UsageError, match="retry_for"):
        alpolicy.active_learning(raw_data_location=str(folder), raw_data_extension=".jpg", inference_endpoint=["vehicles", 3],
                                 upload_destination=PROJECT, journal=None, progress=False, retry_for=-1)
