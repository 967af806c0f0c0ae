"""Tests of the example destination, run against the installed package (``pip install .``).

They use :mod:`alpolicy.testing`: the deliveries the pipeline would hand the destination, real
images, one-image runs, and the fixtures of ``alpolicy.testing.pytest_plugin`` (``conftest.py``).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import alpolicy
from alpolicy.testing import image_folder, make_delivery, registry_with, run_one

from alpolicy_example_destination import plugin


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{") and line.endswith("}")]


def queue(path, **extra) -> plugin.JsonLinesDestination:
    destination = plugin.JsonLinesDestination(str(path), alpolicy.DestinationOptions(extra=extra))
    destination.check()
    return destination


def test_the_destination_is_discovered_through_its_entry_point():
    assert alpolicy.get_registry().destinations["jsonl"].plugin == "example-destination"


def test_one_line_per_image_and_a_second_send_is_a_duplicate(tmp_path, alpolicy_images):
    path = tmp_path / "queue.jsonl"
    destination = queue(path)
    delivery = make_delivery(sorted(alpolicy_images.iterdir())[0])
    first, again = destination.send(delivery), destination.send(delivery)
    destination.close()
    assert (first.remote_id, first.duplicate, again.duplicate) == (delivery.key, False, True)
    (line,) = lines(path)
    assert line["key"] == delivery.key and line["detections"] == delivery.prediction.detections
    assert line["tags"] == delivery.tags and line["metadata"]["source_path"] == delivery.image.display_path


def test_idempotent_across_runs_the_file_is_the_truth(tmp_path, alpolicy_images):
    """A run that crashed after writing, before alpolicy recorded the send, sends it again: a duplicate."""
    path = tmp_path / "queue.jsonl"
    delivery = make_delivery(sorted(alpolicy_images.iterdir())[0])
    first = queue(path)
    first.send(delivery)
    first.close()
    second = queue(path)
    assert second.send(delivery).duplicate is True
    second.close()
    assert len(lines(path)) == 1


def test_a_line_cut_short_by_a_crash_is_ended_and_sent_again(tmp_path, alpolicy_images):
    path = tmp_path / "queue.jsonl"
    kept, torn = (make_delivery(image) for image in sorted(alpolicy_images.iterdir())[:2])
    destination = queue(path)
    destination.send(kept)
    destination.close()
    with open(path, "a") as handle:
        handle.write('{"key": "' + torn.key[:10])  # what a crash mid-write leaves
    destination = queue(path)
    assert destination.send(torn).duplicate is False  # the cut line never counted
    destination.close()
    assert [line["key"] for line in lines(path)] == [kept.key, torn.key]
    assert len(path.read_text().splitlines()) == 3  # the fragment stays on a line of its own


def test_sends_from_many_threads_never_interleave(tmp_path):
    images = image_folder(tmp_path / "frames", 24)
    deliveries = [make_delivery(image) for image in images]
    destination = queue(tmp_path / "queue.jsonl", detections=False)
    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(destination.send, deliveries * 2))  # each one twice, concurrently
    destination.close()
    assert sum(not receipt.duplicate for receipt in receipts) == 24
    written = lines(tmp_path / "queue.jsonl")
    assert sorted(line["key"] for line in written) == sorted(d.key for d in deliveries)
    assert all("detections" not in line for line in written)


def test_a_missing_folder_stops_the_run_before_the_first_image(tmp_path, alpolicy_images):
    image = sorted(alpolicy_images.iterdir())[0]
    with pytest.raises(alpolicy.UsageError, match="jsonl: the folder .* does not exist"):
        run_one(image, destination=f"jsonl:{tmp_path / 'nowhere' / 'queue.jsonl'}", registry=registry_with(plugin))


def test_a_run_through_the_spec_with_options(tmp_path, alpolicy_images):
    image = sorted(alpolicy_images.iterdir())[0]
    path = tmp_path / "queue.jsonl"
    options = alpolicy.RunOptions(journal=None, progress=False, retry_for=0, decisions_log="",
                                  destination_options=alpolicy.DestinationOptions(extra={"detections": False}))
    report = run_one(image, destination=f"jsonl:{path}", registry=registry_with(plugin), options=options)
    assert report.sent == 1 and "detections" not in lines(path)[0]
    options.destination_options = alpolicy.DestinationOptions(extra={"fsynk": True})
    with pytest.raises(alpolicy.UsageError, match="destination option fsynk: unknown option .did you mean 'fsync'"):
        run_one(image, destination=f"jsonl:{path}", registry=registry_with(plugin), options=options)
