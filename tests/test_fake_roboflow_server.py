"""Tests of the fake Roboflow server itself, over real loopback HTTP with ``requests``.

Other tests trust this server to behave like Roboflow and to inject faults exactly as asked,
so both are pinned here: the wire shapes the SDK depends on, and every fault mode with its
counter.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import select
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from PIL import Image

from tests.servers.roboflow import FakeRoboflow, FaultConfig, ImageRequests, parse_multipart

KEY = "rf_test_key"
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def make_image(
    width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG", exif_orientation: int | None = None
) -> bytes:
    """A small image whose bytes (hence default predictions) vary with ``seed``."""
    image = Image.new("RGB", (width, height), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    if exif_orientation is None:
        image.save(buffer, fmt)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


def infer(session: requests.Session | Any, url: str, image: bytes, timeout: float = 10, **params: Any) -> requests.Response:
    """Call hosted inference exactly as ``ObjectDetectionModel.predict`` does."""
    query = {
        "api_key": KEY,
        "name": "YOUR_IMAGE.jpg",
        "overlap": 30,
        "confidence": 40,
        "format": "json",
        **params,
    }
    return session.post(
        f"{url}/proj/1",
        params=query,
        data=base64.b64encode(image).decode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=timeout,
    )


def upload(
    session: requests.Session | Any,
    url: str,
    image: bytes,
    name: str = "frame.png",
    project: str = "dest",
    timeout: float = 10,
    **params: Any,
) -> requests.Response:
    """Upload as ``rfapi.upload_image`` does: query api_key/batch/tag, multipart name/split/file."""
    query = {"api_key": KEY, "batch": "Pip Package Upload", **params}
    fields = {"name": name, "split": "train"}
    return session.post(
        f"{url}/dataset/{project}/upload",
        params=query,
        data=fields,
        files={"file": (name, image, "image/png")},
        timeout=timeout,
    )


def annotate(
    session: requests.Session | Any,
    url: str,
    image_id: str,
    document: Any,
    project: str = "dest",
    **params: Any,
) -> requests.Response:
    """Save an annotation as ``rfapi.save_annotation`` does (JSON envelope, prediction flag)."""
    query = {"api_key": KEY, "name": "frame.json", "jobName": "Pip Package Upload", **params}
    return session.post(
        f"{url}/dataset/{project}/annotate/{image_id}",
        params=query,
        data=json.dumps({"annotationFile": json.dumps(document), "labelmap": None}),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def busy_image(server: FakeRoboflow) -> bytes:
    """An image the default model gives at least three detections at confidence 0."""
    for seed in range(200):
        image = make_image(seed=seed)
        if len(server.infer("proj", 1, image, confidence=0.0, overlap=1.0)["predictions"]) >= 3:
            return image
    raise AssertionError("no busy image found")


@pytest.fixture
def server() -> Iterator[FakeRoboflow]:
    with FakeRoboflow(KEY, models=["proj/1"]) as fake:
        yield fake


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------


def test_inference_answers_the_roboflow_shape(server: FakeRoboflow, session: requests.Session) -> None:
    response = infer(session, server.url, busy_image(server), confidence=0)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"inference_id", "time", "image", "predictions"}
    assert body["image"] == {"width": 64, "height": 48}
    assert isinstance(body["time"], float) and isinstance(body["inference_id"], str)
    assert len(body["predictions"]) >= 3
    for detection in body["predictions"]:
        assert list(detection) == [
            "x",
            "y",
            "width",
            "height",
            "confidence",
            "class",
            "class_id",
            "detection_id",
        ]
        assert 0 <= detection["x"] - detection["width"] / 2 and detection["x"] + detection["width"] / 2 <= 64
        assert (
            0 <= detection["y"] - detection["height"] / 2 and detection["y"] + detection["height"] / 2 <= 48
        )
        assert 0.05 <= detection["confidence"] <= 1.0 and detection["confidence"] == round(
            detection["confidence"], 3
        )
        assert ["car", "person", "bicycle"][detection["class_id"]] == detection["class"]
    confidences = [d["confidence"] for d in body["predictions"]]
    assert confidences == sorted(confidences, reverse=True)


def test_inference_is_deterministic_per_image(server: FakeRoboflow, session: requests.Session) -> None:
    image = busy_image(server)
    first, second = (infer(session, server.url, image, confidence=0).json() for _ in range(2))
    assert first["predictions"] == second["predictions"]
    assert first["inference_id"] != second["inference_id"]


def test_inference_respects_confidence_as_percent_or_fraction(
    server: FakeRoboflow, session: requests.Session
) -> None:
    image = busy_image(server)
    everything = infer(session, server.url, image, confidence=0).json()["predictions"]
    threshold = sorted(d["confidence"] for d in everything)[len(everything) // 2]
    as_percent = infer(session, server.url, image, confidence=threshold * 100).json()["predictions"]
    as_fraction = infer(session, server.url, image, confidence=threshold).json()["predictions"]
    assert as_percent == as_fraction == [d for d in everything if d["confidence"] >= threshold]
    assert 0 < len(as_percent) < len(everything)


def test_custom_predict_gets_the_exif_oriented_image(server: FakeRoboflow, session: requests.Session) -> None:
    seen: list[tuple[int, int]] = []

    def predict(image: Image.Image, image_bytes: bytes) -> list[dict[str, Any]]:
        seen.append(image.size)
        return [{"x": 5, "y": 10, "width": 4, "height": 6, "confidence": 0.91234, "class": "person"}]

    server.add_model("proj", 1, predict=predict)
    rotated = make_image(40, 20, fmt="JPEG", exif_orientation=6)  # stored 40x20, viewed 20x40
    body = infer(session, server.url, rotated).json()
    assert body["image"] == {"width": 20, "height": 40}
    assert seen == [(20, 40)]
    (detection,) = body["predictions"]
    assert detection["confidence"] == 0.912 and detection["class_id"] == 1 and detection["detection_id"]


def test_inference_applies_class_filter_and_overlap(server: FakeRoboflow, session: requests.Session) -> None:
    boxes = [
        {"x": 20, "y": 20, "width": 20, "height": 20, "confidence": 0.9, "class": "car"},
        {"x": 21, "y": 21, "width": 20, "height": 20, "confidence": 0.8, "class": "car"},
        {"x": 21, "y": 21, "width": 20, "height": 20, "confidence": 0.7, "class": "person"},
    ]
    server.add_model("proj", 1, predict=lambda image, data: [dict(b) for b in boxes])
    image = make_image()

    def classes_of(**params: Any) -> list[str]:
        return [d["class"] for d in infer(session, server.url, image, **params).json()["predictions"]]

    assert classes_of(overlap=30) == ["car", "person"]  # the second car is suppressed by NMS
    assert classes_of(overlap=99) == ["car", "car", "person"]
    assert classes_of(overlap=30, classes="person") == ["person"]


def test_inference_accepts_multipart_file_like_inference_model(
    server: FakeRoboflow, session: requests.Session
) -> None:
    image = busy_image(server)
    response = session.post(
        f"{server.url}/proj/1",
        params={"api_key": KEY, "confidence": 0},
        files={"file": ("imageToUpload", image, "image/jpeg")},
    )
    assert (
        response.json()["predictions"]
        == infer(session, server.url, image, confidence=0).json()["predictions"]
    )


def test_inference_errors(server: FakeRoboflow, session: requests.Session) -> None:
    image = make_image()
    wrong_key = infer(session, server.url, image, api_key="nope")
    assert wrong_key.status_code == 401 and "Unauthorized" in wrong_key.json()["message"]
    no_key = session.post(f"{server.url}/proj/1", data=base64.b64encode(image))
    assert no_key.status_code == 401
    unknown = session.post(f"{server.url}/proj/7", params={"api_key": KEY}, data=base64.b64encode(image))
    assert unknown.status_code == 404 and "not found" in unknown.json()["message"]
    junk = session.post(
        f"{server.url}/proj/1", params={"api_key": KEY}, data=base64.b64encode(b"not an image")
    )
    assert junk.status_code == 400
    assert server.requests["infer"].by_status == {401: 2, 404: 1, 400: 1}


def test_a_failing_predict_answers_500(server: FakeRoboflow, session: requests.Session) -> None:
    def broken(image: Image.Image, image_bytes: bytes) -> list[dict[str, Any]]:
        raise KeyError("bug in a test model")

    server.add_model("proj", 1, predict=broken)
    response = infer(session, server.url, make_image())
    assert response.status_code == 500 and response.json() == {"message": "Internal error."}
    assert server.requests["infer"].by_status == {500: 1}


# --------------------------------------------------------------------------------------------
# upload
# --------------------------------------------------------------------------------------------


def test_upload_then_duplicate_returns_the_same_id(server: FakeRoboflow, session: requests.Session) -> None:
    image = make_image(seed=3)
    first = upload(session, server.url, image, tag=["night", "cam-2"], sequence_number=1, sequence_size=9)
    assert first.status_code == 200
    assert first.json() == {"success": True, "id": first.json()["id"]} and len(first.json()["id"]) == 20
    again = upload(session, server.url, image, name="renamed.png")
    assert again.json() == {"duplicate": True, "id": first.json()["id"]}
    (stored,) = server.images("dest")
    assert stored["name"] == "frame.png" and stored["upload_count"] == 2
    assert stored["tags"] == ["night", "cam-2"] and stored["batch"] == "Pip Package Upload"
    assert stored["split"] == "train" and stored["sequence_number"] == "1"
    assert server.image_bytes("dest", stored["id"]) == image


def test_upload_keeps_binary_bytes_exact_and_reads_metadata(
    server: FakeRoboflow, session: requests.Session
) -> None:
    # JPEG bytes containing CR, LF and CRLF must survive the email-based multipart parser.
    image = make_image(97, 61, seed=11, fmt="JPEG") + b"\r\n\r\n--\r\x00\n"
    response = session.post(
        f"{server.url}/dataset/dest/upload",
        params={"api_key": KEY, "batch": "b1"},
        data={"name": "x.jpg", "split": "valid", "metadata": json.dumps({"camera": "c1", "n": 2})},
        files={"file": ("x.jpg", image, "image/jpeg")},
    )
    assert response.json()["success"] is True
    (stored,) = server.images("dest")
    assert server.image_bytes("dest", stored["id"]) == image
    assert stored["metadata"] == {"camera": "c1", "n": 2} and stored["split"] == "valid"


def test_upload_accepts_base64_and_chunked_bodies(server: FakeRoboflow, session: requests.Session) -> None:
    plain = session.post(
        f"{server.url}/dataset/dest/upload",
        params={"api_key": KEY, "name": "b64.png", "split": "test"},
        data=base64.b64encode(make_image(seed=1)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert plain.json()["success"] is True
    chunked = session.post(
        f"{server.url}/dataset/dest/upload",
        params={"api_key": KEY, "name": "raw.png"},
        data=iter([make_image(seed=2)[:10], make_image(seed=2)[10:]]),  # a generator body is sent chunked
        headers={"Content-Type": "image/png"},
    )
    assert chunked.json()["success"] is True
    assert [(i["name"], i["split"]) for i in server.images("dest")] == [
        ("b64.png", "test"),
        ("raw.png", "train"),
    ]


def test_upload_errors_have_the_rest_api_shape(session: requests.Session) -> None:
    with FakeRoboflow(KEY, auto_create_projects=False) as server:
        unknown = upload(session, server.url, make_image())
        assert unknown.status_code == 404 and unknown.json()["error"]["message"]
        server.add_project("dest")
        bad_key = upload(session, server.url, make_image(), api_key="nope")
        assert bad_key.status_code == 401 and bad_key.json()["error"]["type"] == "OAuthException"
        not_image = upload(session, server.url, b"hello")
        assert not_image.status_code == 400 and "image" in not_image.json()["error"]["message"].lower()
        bad_split = session.post(
            f"{server.url}/dataset/dest/upload",
            params={"api_key": KEY},
            data={"split": "holdout"},
            files={"file": ("a.png", make_image(), "image/png")},
        )
        assert bad_split.status_code == 400
        assert server.images("dest") == []


def test_parse_multipart_reads_names_filenames_and_types() -> None:
    prepared = requests.Request(
        "POST",
        "http://x",
        data={"name": "a b.png"},
        files={"file": ("a b.png", b"\x00\r\n\xff", "image/png")},
    ).prepare()
    parts = parse_multipart(prepared.headers["Content-Type"], prepared.body)
    assert parts["name"].text == "a b.png"
    assert (parts["file"].filename, parts["file"].content_type, parts["file"].data) == (
        "a b.png",
        "image/png",
        b"\x00\r\n\xff",
    )


# --------------------------------------------------------------------------------------------
# annotate
# --------------------------------------------------------------------------------------------


def test_annotate_stores_prediction_flag_and_conflicts_like_roboflow(
    server: FakeRoboflow, session: requests.Session
) -> None:
    image_id = upload(session, server.url, make_image()).json()["id"]
    document = {"predictions": [{"x": 1, "y": 2, "width": 3, "height": 4, "class": "car", "confidence": 0.5}]}
    assert annotate(session, server.url, image_id, document, prediction="true").json() == {"success": True}

    conflict = annotate(session, server.url, image_id, document, prediction="true")
    assert conflict.status_code == 409 and "already annotated" in conflict.json()["error"]["message"]
    assert annotate(session, server.url, image_id, {"predictions": []}, overwrite="true").status_code == 200

    first, second = server.annotations("dest")[image_id]
    assert (first["prediction"], first["annotation"], first["name"], first["job_name"]) == (
        True,
        document,
        "frame.json",
        "Pip Package Upload",
    )
    assert first["body"] == {"annotationFile": json.dumps(document), "labelmap": None}
    assert (second["prediction"], second["overwrite"], second["annotation"]) == (
        False,
        True,
        {"predictions": []},
    )
    assert server.requests["annotate"].by_status == {200: 2, 409: 1}


def test_annotate_accepts_a_text_body_and_can_store_every_call(session: requests.Session) -> None:
    with FakeRoboflow(KEY, reject_reannotation=False) as server:
        image_id = upload(session, server.url, make_image()).json()["id"]
        for _ in range(2):  # the inference server's active learning posts the file as text/plain
            response = session.post(
                f"{server.url}/dataset/dest/annotate/{image_id}",
                params={"api_key": KEY, "name": "abc.txt", "prediction": "false"},
                data="0 0.5 0.5 0.2 0.2",
                headers={"Content-Type": "text/plain"},
            )
            assert response.json() == {"success": True}
        records = server.annotations("dest")[image_id]
        assert [(r["annotation_file"], r["annotation"], r["body"]) for r in records] == [
            ("0 0.5 0.5 0.2 0.2", None, None)
        ] * 2


def test_annotate_errors(server: FakeRoboflow, session: requests.Session) -> None:
    image_id = upload(session, server.url, make_image()).json()["id"]
    unknown = annotate(session, server.url, "doesNotExist", {})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]
    assert annotate(session, server.url, image_id, {}, api_key="nope").status_code == 401
    broken = session.post(
        f"{server.url}/dataset/dest/annotate/{image_id}",
        params={"api_key": KEY, "name": "frame.json"},
        json={"annotationFile": "{not json", "labelmap": None},
    )
    assert broken.status_code == 400
    assert server.annotations("dest") == {}


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


def test_error_every_nth_counts_from_when_it_was_set(server: FakeRoboflow, session: requests.Session) -> None:
    image = make_image()
    assert infer(session, server.url, image).status_code == 200
    server.set_faults("infer", error_every=3)
    statuses = [infer(session, server.url, image).status_code for _ in range(6)]
    assert statuses == [200, 200, 503, 200, 200, 503]
    stats = server.requests["infer"]
    assert (stats.total, stats.by_status, stats.faults) == (7, {200: 5, 503: 2}, {"error": 2})


def test_throttle_sends_retry_after(server: FakeRoboflow, session: requests.Session) -> None:
    server.set_faults("upload", throttle_every=2, retry_after=2)
    first = upload(session, server.url, make_image(seed=1))
    throttled = upload(session, server.url, make_image(seed=2))
    assert first.status_code == 200
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert "message" in throttled.json()["error"]
    assert len(server.images("dest")) == 1  # a throttled request does no work
    assert server.requests["upload"].faults == {"throttle": 1}


def test_connection_reset_is_a_real_reset(server: FakeRoboflow, session: requests.Session) -> None:
    server.set_faults("upload", reset_every=1, max_faults=1)
    with pytest.raises(requests.ConnectionError) as caught:
        upload(session, server.url, make_image())
    assert "reset" in str(caught.value).lower()
    assert server.images("dest") == []  # reset before any work
    assert upload(session, server.url, make_image()).json()["success"] is True  # the session reconnects
    stats = server.requests["upload"]
    assert (stats.total, stats.faults, stats.by_status) == (2, {"reset": 1}, {200: 1})


def test_lost_upload_response_is_stored_and_the_retry_is_a_duplicate(
    server: FakeRoboflow, session: requests.Session
) -> None:
    server.set_faults("upload", lose_response_every=1, max_faults=1)
    image = make_image(seed=5)
    with pytest.raises(requests.ConnectionError):
        upload(session, server.url, image)
    (stored,) = server.images("dest")  # the work happened although the client got no answer
    retry = upload(session, server.url, image)
    assert retry.json() == {"duplicate": True, "id": stored["id"]}
    assert server.requests["upload"].faults == {"lose_response": 1}


def test_lost_annotate_response_is_stored_and_the_retry_conflicts(
    server: FakeRoboflow, session: requests.Session
) -> None:
    image_id = upload(session, server.url, make_image()).json()["id"]
    server.set_faults("annotate", lose_response_every=1, max_faults=1)
    with pytest.raises(requests.ConnectionError):
        annotate(session, server.url, image_id, {"predictions": []}, prediction="true")
    assert len(server.annotations("dest")[image_id]) == 1
    assert annotate(session, server.url, image_id, {"predictions": []}, prediction="true").status_code == 409


def test_slow_response_times_out_the_client_after_the_work(
    server: FakeRoboflow, session: requests.Session
) -> None:
    server.set_faults("upload", slow_every=1, slow_delay=30.0)
    with pytest.raises(requests.ReadTimeout):  # the answer is held back far beyond the client's timeout
        upload(session, server.url, make_image(), timeout=0.3)
    assert len(server.images("dest")) == 1
    assert server.requests["upload"].faults == {"slow": 1}
    # close() must not wait for the sleeping handler (the fixture closes the server next).


def test_requests_are_counted_per_image_whatever_the_fault(server: FakeRoboflow, session: requests.Session) -> None:
    """The de-duplication makes a re-sent upload look harmless in ``images()``; the per-image
    counts show every request: by content for uploads (also those a fault stopped before any
    work), by image id for annotations."""
    first, second = make_image(seed=1), make_image(seed=2)
    server.set_faults("upload", reset_every=1, max_faults=1)
    with pytest.raises(requests.ConnectionError):
        upload(session, server.url, first)  # reset: no work done
    server.set_faults("upload", lose_response_every=1, max_faults=1)
    with pytest.raises(requests.ConnectionError):
        upload(session, server.url, first)  # stored, answer lost
    image_id = upload(session, server.url, first).json()["id"]  # duplicate
    upload(session, server.url, second)
    upload(session, server.url, second)  # a re-send no fault explains
    per_content = server.requests["upload"].images
    assert per_content[hashlib.sha256(first).hexdigest()] == ImageRequests(
        requests=3, done=2, faults={"reset": 1, "lose_response": 1}, by_status={200: 1})
    assert per_content[hashlib.sha256(second).hexdigest()] == ImageRequests(requests=2, done=2, by_status={200: 2})
    annotate(session, server.url, image_id, {"predictions": []}, prediction="true")
    annotate(session, server.url, image_id, {"predictions": []}, prediction="true")
    assert server.requests["annotate"].images == {image_id: ImageRequests(requests=2, done=2, by_status={200: 1, 409: 1})}
    assert len(server.annotations("dest")[image_id]) == 1  # what is stored hides the second call


def test_route_down_then_cleared(server: FakeRoboflow, session: requests.Session) -> None:
    server.set_faults("infer", down=True)
    assert [infer(session, server.url, make_image()).status_code for _ in range(3)] == [503] * 3
    server.clear_faults("infer")
    assert infer(session, server.url, make_image()).status_code == 200
    assert server.requests["infer"].faults == {"down": 3}


def test_fault_config_is_validated(server: FakeRoboflow) -> None:
    with pytest.raises(ValueError):
        server.set_faults("download", error_every=1)
    with pytest.raises(ValueError):
        FaultConfig(error_every=-1)
    with pytest.raises(ValueError):
        FaultConfig(slow_every=1)
    assert server.set_faults("upload", reset_every=2) == server.faults("upload")


# --------------------------------------------------------------------------------------------
# concurrency, keep-alive, lifecycle
# --------------------------------------------------------------------------------------------


def test_64_concurrent_clients_are_served_at_the_same_time() -> None:
    """Every one of 64 requests is inside the model at once: each waits at a 64-party barrier,
    which only opens if the server serves them concurrently (serially, the first would wait
    alone until the barrier's timeout and answer 500). The timeout guards against a hang; it
    measures nothing. How much the latency overlaps is measured in benchmarks/bench_test_speeds.py."""
    barrier = threading.Barrier(64, timeout=120)

    def predict(image: Image.Image, image_bytes: bytes) -> list[dict[str, Any]]:
        barrier.wait()
        return []

    with FakeRoboflow(KEY, inference_latency=0.05) as server:
        server.add_model("proj", 1, predict=predict)
        image = make_image()
        with ThreadPoolExecutor(max_workers=64) as pool:
            statuses = list(pool.map(lambda _: infer(requests, server.url, image, timeout=180).status_code, range(64)))
        assert statuses == [200] * 64 and not barrier.broken
        assert server.connections_accepted == 64


def test_keep_alive_reuses_one_connection(server: FakeRoboflow, session: requests.Session) -> None:
    image = make_image()
    for seed in range(3):
        assert infer(session, server.url, image).status_code == 200
        assert upload(session, server.url, make_image(seed=seed)).status_code == 200
    assert server.connections_accepted == 1


def test_keep_alive_requests_are_not_delayed_by_nagle(
    server: FakeRoboflow, session: requests.Session
) -> None:
    # Headers and body are separate writes: without TCP_NODELAY each request waits ~40 ms for
    # the client's delayed ACK, which would swamp any benchmark run against this server. The
    # option is checked on the server's side of the connection; the delay it avoids is measured
    # side by side in benchmarks/bench_test_speeds.py (a wall-clock bound here would flake).
    infer(session, server.url, make_image())
    with server._lock:
        connections = list(server._connections)
    assert len(connections) == 1
    assert connections[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_close_drops_idle_keep_alive_connections(session: requests.Session) -> None:
    server = FakeRoboflow(KEY, models=["proj/1"]).start()
    assert infer(session, server.url, make_image()).status_code == 200
    server.close()
    with pytest.raises(requests.ConnectionError):
        infer(session, server.url, make_image())


def test_reset_forgets_data_counters_and_faults(server: FakeRoboflow, session: requests.Session) -> None:
    upload(session, server.url, make_image())
    server.set_faults("infer", down=True)
    server.reset()
    assert server.images("dest") == [] and server.requests["upload"].total == 0
    assert infer(session, server.url, make_image()).status_code == 200  # model kept, faults gone


def test_subprocess_mode_serves_state_faults_and_stops_on_sigterm(session: requests.Session) -> None:
    command = [sys.executable, "-m", "tests.servers.roboflow", "--port", "0", "--api-key", KEY,
               "--inference-latency", "0.01", "--upload-latency", "0.01", "--model", "proj/1"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "the server did not print READY in time"
        line = process.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.split()[1]

        assert infer(session, url, make_image()).status_code == 200
        faults = session.post(f"{url}/__faults", json={"upload": {"lose_response_every": 1, "max_faults": 1}})
        assert faults.json()["upload"]["lose_response_every"] == 1
        with pytest.raises(requests.ConnectionError):
            upload(session, url, make_image())
        state = session.get(f"{url}/__state").json()
        assert len(state["projects"]["dest"]["images"]) == 1
        assert state["requests"]["upload"]["faults"] == {"lose_response": 1}
        assert state["requests"]["infer"]["by_status"] == {"200": 1}  # JSON keys are strings
        assert state["models"] == ["proj/1"]

        rejected = session.post(f"{url}/__faults", json={"infer": {"down": True}, "nope": {}})
        assert rejected.status_code == 400  # validated as a whole: nothing was applied
        assert infer(session, url, make_image()).status_code == 200

        assert session.post(f"{url}/__reset").json() == {"success": True}
        assert session.get(f"{url}/__state").json()["projects"] == {}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert process.stdout.read() == ""  # READY was the only line
        process.stdout.close()
        process.stderr.close()
    assert code == 0


def test_workspace_and_project_routes_answer_like_the_rest_api(session: requests.Session) -> None:
    """``GET /?api_key`` names the key's workspace, ``GET /{workspace}`` lists its projects and
    ``GET /{workspace}/{project}`` describes one (what ``Roboflow().workspace().project()`` reads)."""
    with FakeRoboflow(KEY, auto_create_projects=False) as server:
        server.add_project("review")
        upload(session, server.url, make_image(), project="review")
        workspace = session.get(f"{server.url}/", params={"api_key": KEY}).json()["workspace"]
        assert workspace == server.workspace
        listed = session.get(f"{server.url}/{workspace}", params={"api_key": KEY}).json()["workspace"]
        assert listed["url"] == workspace and [p["id"] for p in listed["projects"]] == [f"{workspace}/review"]
        found = session.get(f"{server.url}/{workspace}/review", params={"api_key": KEY})
        assert found.status_code == 200 and found.json()["project"]["images"] == 1
        assert found.json()["project"]["id"] == f"{workspace}/review" and found.json()["versions"] == []
        missing = session.get(f"{server.url}/{workspace}/reveiw", params={"api_key": KEY})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "GraphMethodException"
        assert session.get(f"{server.url}/other-workspace/review", params={"api_key": KEY}).status_code == 404
        assert session.get(f"{server.url}/{workspace}/review", params={"api_key": "nope"}).status_code == 401
        assert session.get(f"{server.url}/other-workspace", params={"api_key": KEY}).status_code == 404
        assert server.requests["project"].by_status == {200: 1, 404: 2, 401: 1}
        assert server.requests["workspace"].by_status == {200: 1, 404: 1}
        # A POST on two segments is still inference, on the other host of the real service.
        assert session.post(f"{server.url}/{workspace}/review", params={"api_key": KEY}).status_code == 404
        assert server.requests["infer"].total == 1
    with FakeRoboflow(KEY) as server:  # auto-created projects: every name exists, as for an upload
        answer = session.get(f"{server.url}/{server.workspace}/anything", params={"api_key": KEY})
        assert answer.status_code == 200 and answer.json()["project"]["images"] == 0


# --------------------------------------------------------------------------------------------
# CLIP image embeddings (/clip/embed_image)
# --------------------------------------------------------------------------------------------


def clip_embed(session: requests.Session, url: str, image: bytes, key: str = KEY) -> requests.Response:
    """The request ``InferenceHTTPClient.get_clip_image_embeddings`` makes."""
    body = {"api_key": key, "image": {"type": "base64", "value": base64.b64encode(image).decode("ascii")}}
    return session.post(f"{url}/clip/embed_image", params={"api_key": key}, json=body, timeout=10)


def test_clip_embeddings_are_deterministic_unit_vectors_near_for_similar_images(server, session):
    first = clip_embed(session, server.url, make_image(seed=3))
    assert first.status_code == 200
    (vector,) = first.json()["embeddings"]
    assert len(vector) == 64 and abs(sum(v * v for v in vector) - 1) < 1e-4
    assert clip_embed(session, server.url, make_image(seed=3)).json()["embeddings"] == [vector]
    resized = clip_embed(session, server.url, make_image(width=128, height=96, seed=3)).json()["embeddings"][0]
    other = clip_embed(session, server.url, make_image(seed=90)).json()["embeddings"][0]

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vector, resized) > 0.99 and cos(vector, resized) > cos(vector, other)
    assert server.requests["clip"].total == 4 and server.requests["clip"].by_status == {200: 4}
    assert all(call["query_key"] and call["body_key"] and call["images"] == 1 for call in server.clip_calls())


def test_clip_refuses_a_wrong_key_a_broken_body_and_answers_404_without_clip(server, session):
    assert clip_embed(session, server.url, make_image(), key="nope").status_code == 401
    assert session.post(f"{server.url}/clip/embed_image", params={"api_key": KEY}, data=b"{", timeout=10).status_code == 422
    assert clip_embed(session, server.url, b"not an image").status_code == 400
    server.set_faults("clip", down=True)
    assert clip_embed(session, server.url, make_image()).status_code == 503
    with FakeRoboflow(KEY, clip=False) as bare:
        missing = clip_embed(session, bare.url, make_image())
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
        assert bare.requests["clip"].total == 1
