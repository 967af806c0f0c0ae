"""The Roboflow destination's options: batch recreation, downscaled uploads with rescaled pre-labels."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from PIL import Image

import alpolicy
from alpolicy import Policy, RunOptions, UsageError
from alpolicy.destinations.roboflow import batch_name

from .cli import alpolicy as alpolicy_cli


@pytest.mark.parametrize(
    ("recreation", "today", "expected"),
    [
        ("never", date(2026, 11, 27), "al"),
        ("daily", date(2026, 11, 27), "al_2026_11_27"),
        ("weekly", date(2026, 11, 27), "al_2026_11_23"),  # a Friday: the week began on Monday the 23rd
        ("weekly", date(2026, 11, 23), "al_2026_11_23"),
        ("monthly", date(2026, 11, 27), "al_2026_11_01"),
    ],
)
def test_batch_names_follow_roboflow_inference(recreation, today, expected):
    assert batch_name("al", recreation, today) == expected


BOXES = [
    {"x": 100, "y": 80, "width": 60, "height": 40, "confidence": 0.7, "class": "car"},
    {"x": 500, "y": 300, "width": 30, "height": 90, "confidence": 0.55, "class": "person"},
]


def run_into(project: str, folder, tmp_path, model: str = "roboflow:vehicles/3", **extra):
    options = RunOptions(journal=None, progress=False)
    options.destination_options.batch = "night-shift"
    options.destination_options.extra.update(extra)
    policy = Policy.from_dict({"version": 1, "image": {"rule": "detection_count", "min": 0}})  # send everything
    return alpolicy.run(str(folder), policy, model=model, destination=f"roboflow:{project}", options=options)


def test_daily_batches_get_todays_name(roboflow, env, tmp_path, frames):
    run_into("daily", frames, tmp_path, batch_recreation="daily")
    assert {image["batch"] for image in roboflow.images("daily")} == {batch_name("night-shift", "daily")}


def test_downscaled_uploads_carry_rescaled_boxes(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.effect_noise((640, 480), 40).convert("RGB").save(folder / "big.png")
    roboflow.add_model("fixed", 1, predict=lambda image, content: BOXES)
    report = run_into("small", folder, tmp_path, model="roboflow:fixed/1", max_size=320, jpeg_quality=80)
    assert report.sent == 1
    (image,) = roboflow.images("small")
    assert image["name"] == "big.jpg"
    stored = Image.open(io.BytesIO(roboflow.image_bytes("small", image["id"])))
    assert (stored.format, stored.size) == ("JPEG", (320, 240))
    (annotation,) = roboflow.annotations("small")[image["id"]]
    sent = annotation["annotation"]
    original = roboflow.infer("fixed", 1, (folder / "big.png").read_bytes())
    assert sent["image"] == {"width": 320, "height": 240} and len(sent["predictions"]) == len(original["predictions"]) == 2
    for small, big in zip(sent["predictions"], original["predictions"]):
        assert small["class"] == big["class"] and small["confidence"] == big["confidence"]
        for key in ("x", "y", "width", "height"):
            assert small[key] == pytest.approx(big[key] / 2)


def test_a_retried_downscaled_upload_is_still_a_duplicate(roboflow, env, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.effect_noise((400, 300), 40).convert("RGB").save(folder / "a.png")
    roboflow.set_faults("upload", lose_response_every=1, max_faults=1)
    run_into("retry", folder, tmp_path, max_size=200)
    (image,) = roboflow.images("retry")
    assert image["upload_count"] == 2  # the lost answer, then the retry recognised as the same bytes


def test_bad_destination_options_are_usage_errors(env, frames, tmp_path):
    # checked against the destination's options_schema before it is built (alpolicy.plugin_options)
    with pytest.raises(UsageError, match=re.escape("destination option batch_recreation: 'hourly' is not one of "
                                                   "['never', 'daily', 'weekly', 'monthly']")):
        run_into("x", frames, tmp_path, batch_recreation="hourly")
    with pytest.raises(UsageError, match="^destination option jpeg_quality: 120 is greater than the maximum of 95$"):
        run_into("x", frames, tmp_path, jpeg_quality=120)


def test_to_opt_is_the_same_option_as_its_dedicated_flag(roboflow, env, tmp_path):
    """``--to-opt max_size=64`` and ``--max-size 64`` fill the one option: the same upload."""
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.effect_noise((320, 240), 40).convert("RGB").save(folder / "big.png")
    # Every image is sent, whatever the loopback model answers for this (random) noise.
    send_all = tmp_path / "send-all.json"
    send_all.write_text('{"version": 1, "image": {"rule": "detection_count", "min": 0}}')
    sizes = {}
    for project, flags in (("flag", ("--max-size", "64")), ("opt", ("--to-opt", "max_size=64")), ("plain", ())):
        result = alpolicy_cli("run", str(folder), "--model", "roboflow:vehicles/3", "--to", f"roboflow:{project}",
                              "--policy", str(send_all), "--journal", ":memory:", *flags, env=env)
        assert result.code == 0, result.err
        (image,) = roboflow.images(project)
        sizes[project] = Image.open(io.BytesIO(roboflow.image_bytes(project, image["id"]))).size
    assert sizes == {"flag": (64, 48), "opt": (64, 48), "plain": (320, 240)}
    result = alpolicy_cli("run", str(folder), "--model", "roboflow:vehicles/3", "--to", "roboflow:x", "--journal", ":memory:",
                          "--to-opt", "max_size=0", "--to-opt", "jpeg_quality=best", "--to-opt", "batch_recreation=hourly",
                          "--to-opt", "max-size=3", env=env)
    assert result.code == 2
    assert result.err.splitlines() == [
        "alpolicy: error: invalid plugin options (4 problems)",
        "  --to-opt batch_recreation: 'hourly' is not one of ['never', 'daily', 'weekly', 'monthly']",
        "  --to-opt jpeg_quality: 'best' is not of type 'integer'",
        "  --to-opt max-size: unknown option (did you mean 'max_size'?); options of roboflow: batch_recreation, "
        "jpeg_quality, max_size",
        "  --to-opt max_size: 0 is less than the minimum of 1",
    ]
    assert roboflow.requests["infer"].total == 3  # nothing inferred for the refused command


def test_a_typo_in_the_project_stops_the_run_in_one_line_before_any_image_is_inferred(roboflow, env, tmp_path, frames):
    roboflow.auto_create_projects = False  # the real API: uploads need an existing project
    roboflow.add_project("review")
    journal = tmp_path / "j.sqlite"
    for dry_run in ((), ("--dry-run",)):  # a dry run checks too: the check only reads
        result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", "roboflow:reveiw",
                              "--journal", str(journal), *dry_run, env=env)
        assert result.code == 2, result.err
        assert result.err == ("alpolicy: error: Roboflow project 'reveiw' does not exist in workspace "
                              "'test-workspace' (did you mean 'review'?)\n")
    assert roboflow.requests["infer"].total == roboflow.requests["upload"].total == 0
    # per run: the model's project (its task, 200), then the destination's (404)
    assert roboflow.requests["project"].by_status == {200: 2, 404: 2} and not journal.exists()
    report = alpolicy.run(frames, Policy.from_conditionals({}), model="roboflow:vehicles/3", destination="roboflow:review",
                          journal=None, progress=False)
    assert report.sent == len(roboflow.images("review")) > 0 and report.failed == 0
    assert roboflow.requests["project"].by_status == {404: 2, 200: 4}  # one look per run: the model's, the destination's


def test_an_api_url_that_is_not_the_roboflow_api_is_one_line(roboflow, env, tmp_path, frames):
    import http.server
    import threading

    class NotRoboflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotRoboflow)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{other.server_address[1]}"
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", "roboflow:q", "--api-url", url,
                          "--journal", str(tmp_path / "j.sqlite"), env=env)
    other.shutdown()
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert f"the Roboflow API at {url} did not name the key's workspace (HTTP 200)" in result.err
    assert roboflow.requests["infer"].total == 0
