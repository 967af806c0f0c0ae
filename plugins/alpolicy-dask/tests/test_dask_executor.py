"""The Dask executor decides, queues and journals exactly what a local run does, on a real cluster.

A LocalCluster of 2 worker processes (conftest.py, once for the module) and one the CLI starts
itself (``dask-local:2``); the real ``alpolicy`` command; a worker killed with SIGKILL mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import alpolicy
from alpolicy.plugins import get_registry
from alpolicy.runtime.pipeline import make_destination

import distributed  # noqa: F401  (installed by make install: a missing one fails, never skips)
import alpolicy_onnx  # noqa: F401
from alpolicy_dask import worker  # noqa: E402

#: Uncertain frames, well exposed, not near-duplicates, at most 12: every sampling stage that
#: measures pixels (quality, perceptual hash) and keeps state (near_duplicate, limit).
POLICY = {
    "version": 1, "name": "dask-test",
    "detection": [{"rule": "confidence", "min": 0.2, "max": 0.7}],
    "image": {"rule": "witnesses", "min": 1},
    "sampling": [
        {"rule": "quality", "min_sharpness": 1, "max_dark_fraction": 0.99},
        {"rule": "near_duplicate", "max_distance": 1, "scope": "all"},
        {"rule": "limit", "max": 12, "per": "run"},
    ],
}
#: What differs between two runs whatever the executor: clocks and the backend's random detection ids.
VOLATILE = {"created_at", "date_created", "detection_id"}


def alpolicy_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alpolicy", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def cli_run(frames: Path, out: Path, *extra: str) -> dict[str, Any]:
    policy = out.parent / "policy.json"
    policy.write_text(json.dumps(POLICY))
    done = alpolicy_cli("run", str(frames), "--model", "onnx:demo", "--confidence", "20", "--policy", str(policy),
                        "--to", f"folder:{out / 'queue'}", "--journal", str(out / "journal.sqlite"),
                        "--concurrency", "2", "--json", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_volatile(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(item) for item in value]
    return value


def queue(folder: Path) -> dict[str, Any]:
    """Every file of a queue: images byte for byte, JSON documents less their volatile fields."""
    files: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            content = path.read_bytes()
            files[str(path.relative_to(folder))] = without_volatile(json.loads(content)) if path.suffix == ".json" else content
    return files


def decisions(log: str, root: Path) -> list[dict[str, Any]]:
    """The decisions log in input order (sends are logged as they finish), the run's folder as ROOT."""
    lines = Path(log).read_text().replace(str(root), "ROOT").splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda record: record["seq"])


def address(cluster) -> str:
    return "dask:" + cluster[0].scheduler_address.removeprefix("tcp:")


def test_dask_local_decides_and_queues_exactly_as_a_local_run_and_a_rerun_sends_nothing(frames, tmp_path, cluster):
    local = cli_run(frames, tmp_path / "local")
    on_dask = cli_run(frames, tmp_path / "dask", "--executor", "dask-local:2")
    assert on_dask["seen"] == local["seen"] == 48
    assert local["sent"] >= 3 and on_dask["sent"] == local["sent"] and on_dask["failed"] == 0
    assert decisions(on_dask["decisions_log"], tmp_path / "dask") == decisions(local["decisions_log"], tmp_path / "local")
    assert queue(tmp_path / "dask" / "queue") == queue(tmp_path / "local" / "queue")

    before = queue(tmp_path / "dask" / "queue")
    again = cli_run(frames, tmp_path / "dask", "--executor", address(cluster))
    assert again["sent"] == 0 and again["already_sent"] == local["sent"] and again["inferred"] == 0
    assert queue(tmp_path / "dask" / "queue") == before


def test_the_model_loads_once_per_worker_not_per_task(frames, cluster):
    _, client = cluster
    model = Path(sys.modules["alpolicy_onnx"].__file__).parent / "models" / "demo-shapes.onnx"
    spec = f"onnx:{model}"
    for _ in range(2):  # 2 runs x 24 batches of 2 images
        report = alpolicy.run(frames, POLICY, model=spec, executor=address(cluster), concurrency=2, dry_run=True,
                              journal=None, decisions_log="", progress=False)
        assert report.inferred == 48 and report.failed == 0
    loads = client.run(worker.loads)
    assert [counts.get(spec) for counts in loads.values()] == [1, 1], loads


def test_service_errors_on_a_worker_come_back_as_service_errors(frames, tmp_path, cluster):
    from remote_frames import remote_images

    cache = tmp_path / "cache"
    cache.mkdir()
    images = remote_images(sorted(map(str, frames.glob("*.jpg")))[:12], str(cache), down={3, 8})
    report = alpolicy.run(images, POLICY, model="onnx:demo", executor=address(cluster), concurrency=2, dry_run=True,
                          journal=None, decisions_log="", progress=False, retry_for=0.5, confidence=20,
                          options=alpolicy.RunOptions(round_backoff=0.1))
    assert report.retried_later == 2  # deferred and retried in a round: a ServiceError, not a failed file
    assert report.inferred == 10 and report.failed == 2
    assert all("the store is down (503)" in failure["error"] for failure in report.failures), report.failures
    assert sorted(os.listdir(cache)) == sorted(image.name for image in images if "_down_" not in image.name)


class Counting:
    """A folder destination that counts its sends per image (what it stores could hide a repeat)."""

    def __init__(self, folder: Path) -> None:
        self.inner = make_destination(f"folder:{folder}", alpolicy.DestinationOptions(), get_registry())
        self.sends: Counter[str] = Counter()

    def send(self, delivery):
        self.sends[delivery.image.name] += 1
        return self.inner.send(delivery)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_worker_killed_mid_run_loses_nothing_and_nothing_is_sent_twice(frames, tmp_path, cluster):
    _, client = cluster
    common = dict(model="onnx:demo", confidence=20, concurrency=2, progress=False)
    reference = Counting(tmp_path / "local" / "queue")
    expected = alpolicy.run(frames, POLICY, destination=reference, journal=str(tmp_path / "local" / "j.sqlite"), **common)

    victim = sorted(client.scheduler_info()["workers"])[0]
    seen: dict[str, Any] = {}

    def kill_after_six(image, prediction):
        """From the 6th result on, the first moment the victim holds a batch of the run: kill it
        (at a fixed count the victim may, on a busy machine, have just handed back all it held)."""
        seen["results"] = seen.get("results", 0) + 1
        if seen["results"] >= 6 and not seen.get("held") and seen["results"] <= 40:
            held = set(client.processing(workers=[victim]).get(victim, ())) | set(client.has_what(workers=[victim]).get(victim, ()))
            seen["held"] = [key for key in held if str(key).startswith("alpolicy-batch")]
            if seen["held"]:
                os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)

    sink = Counting(tmp_path / "dask" / "queue")
    report = alpolicy.run(frames, POLICY, destination=sink, journal=str(tmp_path / "dask" / "j.sqlite"),
                          executor=address(cluster), on_result=kill_after_six, **common)
    assert seen["held"], "the killed worker held no batch of the run: the test proved nothing"
    assert report.status == "completed" and report.failed == 0 and report.inferred == 48
    assert set(sink.sends.values()) == {1} and sink.sends == reference.sends
    assert report.sent == expected.sent >= 3
    assert decisions(report.decisions_log, tmp_path / "dask") == decisions(expected.decisions_log, tmp_path / "local")
    assert queue(tmp_path / "dask" / "queue") == queue(tmp_path / "local" / "queue")


def test_mistakes_are_one_line(frames, tmp_path, cluster):
    base = ["run", str(frames), "--model", "onnx:demo", "--dry-run", "--journal", ":memory:", "--executor"]
    cases = {
        "nope:3": "no executor for 'nope'",
        "dask-local:zero": "executor 'dask-local:zero': give a whole number of workers, e.g. dask-local:2",
        "dask://127.0.0.1:9": "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
        "dask:127.0.0.1:9": "should look like dask://HOST:PORT",
    }
    for spec, message in cases.items():
        done = alpolicy_cli(*base, spec, env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, (spec, done.stderr)

    class InCode(alpolicy.InferenceBackend):
        def predict(self, image):
            raise AssertionError("never called")

    with pytest.raises(alpolicy.UsageError, match=r"give the model as a spec .* each Dask worker builds its own"):
        alpolicy.run(frames, POLICY, model=InCode(), executor=address(cluster), dry_run=True, journal=None)


def test_the_workers_decide_the_detection_and_image_rules_and_the_driver_takes_their_verdicts(frames, cluster):
    """The stateless stage includes the policy's detection and image rules: each worker sends back
    its verdict with the prediction, and the driver decides from it (decisions identical to a local
    run: the CLI test above)."""
    from alpolicy.plugins import get_registry
    from alpolicy.runtime.executors import make_executor

    executor = make_executor(address(cluster), alpolicy.RunOptions(), get_registry())
    decided: list = []
    report = alpolicy.run(frames, POLICY, model="onnx:demo", executor=executor, concurrency=2, dry_run=True,
                          journal=None, decisions_log="", progress=False, confidence=20,
                          on_result=lambda image, prediction: decided.append(image.name))
    assert report.inferred == 48 and report.failed == 0
    assert executor.verdicts_taken == 48, "every inferred image was decided on a worker"
    local = alpolicy.run(frames, POLICY, model="onnx:demo", concurrency=2, dry_run=True, journal=None, decisions_log="",
                         progress=False, confidence=20)
    assert (report.qualified, report.sampled) == (local.qualified, local.sampled)
