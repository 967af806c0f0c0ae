"""The ``diversity`` sampling rule (#16): k-center greedy over image embeddings, held to the end
of the stream; the ``pixels`` and ``clip`` embedders; a batch that covers more scenes."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import statistics
from pathlib import Path

import pytest

import alpolicy
from alpolicy import Policy, PolicyError, RunOptions
from alpolicy.io.images import ImageFile
from alpolicy.pixels.embedding import DIMENSIONS, pixel_embedding
from alpolicy.policy.rule import Candidate
from alpolicy.rules.diversity import k_center_greedy, make_diversity
from alpolicy_onnx.synthetic import write_footage  # the demo's footage generator

from .cli import alpolicy as cli
from .conftest import API_KEY

SCENE_FRAMES = 600  # ten scenes of about 60 frames
BUDGET = 10


# ---------------------------------------------------------------------- the algorithm, by hand
def test_k_center_greedy_picks_the_farthest_point_each_time_ties_in_stream_order():
    points = [(0, 0), (1, 0), (10, 0), (10, 1), (5, 5)]
    # from (0,0): (10,1) is farthest (10.05); then (5,5) (6.40 from (10,1), 7.07 from (0,0));
    # then (1,0) and (10,0) are both 1 from their nearest pick: the first in stream order.
    picks = k_center_greedy(points, 4, first=0)
    assert [index for index, _ in picks] == [0, 3, 4, 1]
    assert picks[0][1] == math.inf
    assert picks[1][1] == pytest.approx(math.hypot(10, 1)) and picks[2][1] == pytest.approx(math.hypot(5, 4))
    # from (10,0): (0,0) at 10, then (5,5); (1,0) and (10,1) then tie at 1: stream order. k > N: each once
    assert [i for i, _ in k_center_greedy(points, 9, first=2)] == [2, 0, 4, 1, 3]
    assert k_center_greedy(points, 0) == [] and k_center_greedy([], 3) == []


def test_cosine_ignores_length_euclidean_does_not():
    points = [(1, 0), (10, 0), (0, 1), (0.7, 0.7)]
    # cosine: (10,0) is (1,0) again (distance 0), so (0,1) comes second and (0.7,0.7) third
    assert [i for i, _ in k_center_greedy(points, 3, first=0, metric="cosine")] == [0, 2, 3]
    assert [i for i, _ in k_center_greedy(points, 3, first=0, metric="euclidean")] == [0, 1, 2]


def _candidates(points, scores) -> list[Candidate]:
    out = []
    for seq, (point, score) in enumerate(zip(points, scores), 1):
        image = ImageFile(f"/nowhere/f{seq}.jpg", 1000, 1)
        image.derived["embedding:pixels"] = list(point) if point is not None else None
        out.append(Candidate(image, score, seq))
    return out


def test_the_first_pick_is_the_highest_score_ties_and_unscored_in_stream_order():
    rule = make_diversity({"budget": 2, "metric": "euclidean"})
    points = [(0, 0), (5, 0), (5, 1), (9, 9)]
    chosen, reasons = rule.select(_candidates(points, [0.2, 0.7, 0.7, None]), 2)
    assert chosen == [1, 3]  # 0.7 twice: the earlier; then the farthest from (5,0)
    assert reasons[1].startswith("pick 1 of 2 (first centre)") and reasons[3].startswith("pick 2 of 2")
    assert reasons[0].startswith("not among the 2 most diverse") and "nearest pick /nowhere/f2.jpg" in reasons[0]
    chosen, _ = rule.select(_candidates(points, [None] * 4), 2)
    assert chosen == [0, 3]  # nothing scored: the first in stream order
    seeded = make_diversity({"budget": 2, "seed": 7})
    assert seeded.select(_candidates(points, [0.2, 0.7, 0.7, None]), 1)[0] == seeded.select(_candidates(points, [0] * 4), 1)[0]


def test_a_candidate_that_could_not_be_embedded_is_never_picked():
    rule = make_diversity({"budget": 3})
    chosen, reasons = rule.select(_candidates([(1, 0), None, (0, 1)], [0, 9, 0]), 3)
    assert chosen == [0, 2] and reasons[1] == "could not embed the image: not picked"


def test_a_fraction_is_rounded_up():
    assert make_diversity({"fraction": 0.1}).size(95) == 10 and make_diversity({"fraction": 0.1}).size(100) == 10
    assert make_diversity({"budget": 4}).size(100) == 4


# ---------------------------------------------------------------------- the pixels embedder
def test_pixel_embeddings_of_one_scene_are_closer_than_those_of_another_scene(tmp_path):
    truth = json.loads(write_footage(tmp_path, n_frames=240, seed=3, size=(320, 240)).read_text())["frames"]
    vectors = [pixel_embedding(str(tmp_path / frame["file"])) for frame in truth]
    scenes = [frame["scene"] for frame in truth]
    assert len(set(scenes)) == 4 and all(len(v) == DIMENSIONS and math.isclose(math.hypot(*v), 1) for v in vectors)
    within, across = [], []
    for i in range(len(vectors)):
        nearest = min((j for j in range(len(vectors)) if j != i), key=lambda j: math.dist(vectors[i], vectors[j]))
        assert scenes[nearest] == scenes[i], truth[i]["file"]
        for j in range(i + 1, len(vectors)):
            (within if scenes[i] == scenes[j] else across).append(math.dist(vectors[i], vectors[j]))
    assert statistics.median(within) * 3 < statistics.median(across)


# ---------------------------------------------------------------------- through a real run
@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> tuple[Path, Path, dict[str, int]]:
    """Ten scenes of synthetic footage and replayed predictions where one scene is hard (the
    model hesitates there): the top scores all lie in it."""
    root = tmp_path_factory.mktemp("footage")
    frames, predictions = root / "frames", root / "predictions"
    truth = json.loads(write_footage(frames, n_frames=SCENE_FRAMES, seed=7, size=(160, 120)).read_text())["frames"]
    predictions.mkdir()
    hard = 3
    draw = random.Random(0)
    for frame in truth:
        confidence = draw.uniform(0.4, 0.6) if frame["scene"] == hard else draw.uniform(0.8, 0.99)
        answer = {"image": {"width": 160, "height": 120}, "predictions": [
            {"x": 50, "y": 50, "width": 10, "height": 10, "confidence": round(confidence, 4), "class": "circle", "class_id": 0}]}
        (predictions / f"{Path(frame['file']).stem}.json").write_text(json.dumps(answer))
    return frames, predictions, {frame["file"]: frame["scene"] for frame in truth}


def _policy(tmp_path: Path, sampling: list, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1, "image": {"rule": "uncertainty"}, "sampling": sampling}))
    return str(path)


def _run(tmp_path: Path, footage, sampling: list, tag: str, *extra: str, env=None):
    frames, predictions, _ = footage
    result = cli("run", str(frames), "--model", f"replay:{predictions}", "--policy", _policy(tmp_path, sampling),
                 "--journal", str(tmp_path / f"{tag}.sqlite"), "--to", f"folder:{tmp_path / tag}", "--no-progress",
                 *extra, env=env)
    return result


def _sent(tmp_path: Path, tag: str) -> list[str]:
    folder = tmp_path / tag / "images"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _decisions(tmp_path: Path, tag: str) -> list[dict]:
    lines = (tmp_path / "decisions" / f"{tag}-run-1.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_diverse_batch_covers_more_scenes_than_top_k_or_random_picks(tmp_path, footage):
    _, _, scene_of = footage
    diverse = _run(tmp_path, footage, [{"rule": "diversity", "budget": BUDGET}], "diverse")
    assert diverse.code == 0, diverse.err
    best = _run(tmp_path, footage, [{"rule": "top_k", "k": BUDGET}], "best")
    assert best.code == 0, best.err
    diverse_picks, best_picks = _sent(tmp_path, "diverse"), _sent(tmp_path, "best")
    assert len(diverse_picks) == len(best_picks) == BUDGET
    covered = len({scene_of[name] for name in diverse_picks})
    assert len({scene_of[name] for name in best_picks}) == 1  # the top scores are all in the hard scene
    names = sorted(scene_of)
    draws = [len({scene_of[n] for n in random.Random(seed).sample(names, BUDGET)}) for seed in range(500)]
    assert covered >= 8 and covered > statistics.mean(draws) + 1
    records = _decisions(tmp_path, "diverse")
    assert sum(r["sampled"] for r in records) == BUDGET and len(records) == SCENE_FRAMES
    first = next(r for r in records if r.get("sampling", "").startswith("diversity: pick 1 of"))
    assert scene_of[Path(first["image"]).name] == 3  # the highest score is the first centre
    assert "rejected by rule" in diverse.out and f"diversity      {SCENE_FRAMES - BUDGET}" in diverse.out


def test_the_same_picks_every_time_and_a_dry_run_spends_nothing(tmp_path, footage):
    sampling = [{"rule": "diversity", "fraction": 0.02, "metric": "euclidean"}]
    dry = _run(tmp_path, footage, sampling, "same", "--dry-run")
    assert dry.code == 0, dry.err
    would = sorted(Path(r["image"]).name for r in _decisions(tmp_path, "same") if r["sampled"])
    assert len(would) == math.ceil(0.02 * SCENE_FRAMES) and _sent(tmp_path, "same") == []
    real = _run(tmp_path, footage, sampling, "same")  # the same journal: the dry run left it as it was
    assert real.code == 0, real.err
    assert _sent(tmp_path, "same") == would
    again = _run(tmp_path, footage, sampling, "again")  # a fresh journal and destination
    assert _sent(tmp_path, "again") == would
    rerun = _run(tmp_path, footage, sampling, "same")  # the budget is spent: images already sent count
    assert rerun.code == 0 and _sent(tmp_path, "same") == would
    assert "already sent       " + str(len(would)) in rerun.out and "sampled             0" in rerun.out


def test_diversity_and_top_k_in_one_policy_is_one_line_at_validation(tmp_path):
    path = _policy(tmp_path, [{"rule": "top_k", "k": 3}, {"rule": "diversity", "budget": 3}])
    result = cli("validate", path)
    assert result.code == 2
    assert "$.sampling[0]: 'top_k' cannot be combined with 'diversity' at $.sampling[1]" in result.err + result.out
    with pytest.raises(PolicyError, match="one end-of-stream selector"):
        Policy.from_dict({"version": 1, "sampling": [{"rule": "diversity", "budget": 1}, {"rule": "diversity", "budget": 2}]})


@pytest.mark.parametrize("rule, message", [
    ({"rule": "diversity"}, "$.sampling[0]: give the batch size: budget (images) or fraction"),
    ({"rule": "diversity", "budget": 3, "fraction": 0.5}, "$.sampling[0]: give the batch size"),
    ({"rule": "diversity", "budget": 3, "embedder": "clips"}, "$.sampling[0].embedder: unknown embedder 'clips' (did you mean 'clip'?)"),
    ({"rule": "diversity", "budget": 3, "embedder": "clip", "embedder_options": {"inference_ur": "http://x"}},
     "$.sampling[0].embedder_options: unknown option 'inference_ur' of embedder 'clip' (did you mean 'inference_url'?)"),
    ({"rule": "diversity", "budget": 3, "metric": "manhattan"}, "$.sampling[0].metric"),
    ({"rule": "diversity", "budget": -1}, "$.sampling[0].budget"),
])
def test_parameter_mistakes_are_located(rule, message):
    with pytest.raises(PolicyError) as raised:
        Policy.from_dict({"version": 1, "sampling": [rule]})
    assert message in str(raised.value)
    assert len([line for line in str(raised.value).splitlines() if line.startswith("  $")]) == 1


def test_the_rule_and_its_embedders_are_listed(tmp_path):
    rules = cli("rules")
    assert rules.code == 0 and "diversity" in rules.out
    registry = alpolicy.get_registry()
    assert {"pixels", "clip"} <= set(registry.embedders)
    assert registry.embedders["clip"].plugin == "alpolicy.backends.clip"
    plugins = cli("plugins", "--json")
    assert plugins.code == 0, plugins.err
    listed = {name for plugin in json.loads(plugins.out) for name in plugin["embedders"]}
    assert {"pixels", "clip"} <= listed
    text = cli("plugins").out
    assert "embedders: pixels" in text and "embedders: clip" in text


# ---------------------------------------------------------------------- the clip embedder
def _clip_sampling(roboflow, budget: int = 4) -> list:
    return [{"rule": "diversity", "budget": budget, "embedder": "clip",
             "embedder_options": {"inference_url": roboflow.url, "attempts": 2, "retry_backoff": 0}}]


@pytest.fixture
def small_footage(tmp_path) -> tuple[Path, Path, dict[str, int]]:
    frames, predictions = tmp_path / "frames", tmp_path / "predictions"
    truth = json.loads(write_footage(frames, n_frames=120, seed=11, size=(160, 120)).read_text())["frames"]
    predictions.mkdir()
    for frame in truth:
        answer = {"image": {"width": 160, "height": 120}, "predictions": [
            {"x": 50, "y": 50, "width": 10, "height": 10, "confidence": 0.5, "class": "circle", "class_id": 0}]}
        (predictions / f"{Path(frame['file']).stem}.json").write_text(json.dumps(answer))
    return frames, predictions, {frame["file"]: frame["scene"] for frame in truth}


def _secret_anywhere(tmp_path: Path, *texts: str) -> bool:
    if any(API_KEY in text for text in texts):
        return True
    return any(API_KEY.encode() in path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())


def test_clip_embeddings_from_the_inference_server_one_request_per_candidate(tmp_path, roboflow, env, small_footage):
    result = _run(tmp_path, small_footage, _clip_sampling(roboflow), "clip", env=env)
    assert result.code == 0, result.err
    assert len(_sent(tmp_path, "clip")) == 4
    stats = roboflow.requests["clip"]
    assert stats.total == 120 and stats.by_status == {200: 120}  # one per candidate, no retry, no second ask
    calls = roboflow.clip_calls()
    assert all(call["query_key"] and call["body_key"] and call["images"] == 1 for call in calls)
    assert not _secret_anywhere(tmp_path, result.out, result.err)
    _, _, scene_of = small_footage
    assert len({scene_of[name] for name in _sent(tmp_path, "clip")}) == 2  # both scenes of the footage


def test_clip_server_down_leaves_the_images_pending_and_a_later_run_finishes(tmp_path, roboflow, env, small_footage):
    roboflow.set_faults("clip", down=True)
    down = _run(tmp_path, small_footage, _clip_sampling(roboflow), "down", "--retry-for", "0", env=env)
    assert down.code != 0 or "pending" in down.out + down.err
    assert _sent(tmp_path, "down") == []  # nothing picked from a part of the candidates
    assert "CLIP embedding" in down.out + down.err and "Traceback" not in down.err
    assert not _secret_anywhere(tmp_path, down.out, down.err)
    failures = sqlite3.connect(tmp_path / "down.sqlite").execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    assert failures >= 1
    roboflow.clear_faults()
    again = _run(tmp_path, small_footage, _clip_sampling(roboflow), "down", env=env)
    assert again.code == 0, again.err
    assert len(_sent(tmp_path, "down")) == 4


def test_a_server_without_clip_is_one_line(tmp_path, env, small_footage, monkeypatch):
    from .servers.roboflow import FakeRoboflow

    with FakeRoboflow(api_key=API_KEY, clip=False) as server:
        result = _run(tmp_path, small_footage, _clip_sampling(server), "noclip", env=env)
        assert server.requests["clip"].total >= 1
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "has no CLIP (/clip/embed_image: HTTP 404)" in lines[0]
    assert _sent(tmp_path, "noclip") == []


def test_clip_needs_a_key_one_line(tmp_path, small_footage, roboflow):
    result = _run(tmp_path, small_footage, _clip_sampling(roboflow), "nokey", env={"ROBOFLOW_API_KEY": ""})
    assert result.code == 2 and "the clip embedder needs a Roboflow API key" in result.err
    assert len(result.err.strip().splitlines()) == 1 and roboflow.requests["clip"].total == 0


def test_an_embedding_that_failed_is_asked_again_in_a_deferred_round_and_the_prediction_kept(tmp_path, roboflow, env, small_footage):
    frames, predictions, _ = small_footage
    roboflow.set_faults("clip", error_every=1, max_faults=6)  # one at a time: the first 3 images fail both attempts
    policy = {"version": 1, "image": {"rule": "uncertainty"}, "sampling": _clip_sampling(roboflow)}
    options = RunOptions(journal=str(tmp_path / "j.sqlite"), progress=False, concurrency=1, retry_for=30, round_backoff=0.02)
    report = alpolicy.run(str(frames), policy, model=f"replay:{predictions}", destination=f"folder:{tmp_path / 'out'}",
                          options=options)
    assert report.status == "completed" and report.failed == 0 and report.sent == 4
    assert report.retried_later == 3 and report.retry_rounds == 1
    assert report.inferred == 120  # the predictions were kept, not asked again
    stats = roboflow.requests["clip"]
    assert stats.total == 126 and stats.by_status == {503: 6, 200: 120}
