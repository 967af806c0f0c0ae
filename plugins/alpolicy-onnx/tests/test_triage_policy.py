"""The recommended triage policy (examples/demo-policy.json, chosen by benchmarks/study_triage.py)
picks the frames that hold the demo detector's errors, measured through the real ``alpolicy
evaluate`` on footage of a seed of its own (neither the study's 1..4 nor the benchmark's 101..103)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alpolicy import Policy
from alpolicy_onnx.synthetic import COCO_FILE, write_footage

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RECOMMENDED = EXAMPLES / "demo-policy.json"
SEED, FRAMES = 16, 100


def alpolicy(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "alpolicy", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_recommended_policy_captures_more_errors_than_least_confidence_at_a_10_percent_budget(tmp_path):
    Policy.from_file(RECOMMENDED)
    frames = tmp_path / "frames"
    write_footage(frames, n_frames=FRAMES, seed=SEED)
    journal = tmp_path / "journal.sqlite"
    alpolicy("run", str(frames), "--model", "onnx:demo", "--confidence", "20", "--dry-run", "--journal", str(journal))
    least = tmp_path / "least-confidence.json"
    least.write_text(json.dumps({"version": 1, "name": "least confidence",
                                 "image": {"rule": "uncertainty", "measure": "least_confidence", "reduce": "max"}}))
    document = json.loads(alpolicy("evaluate", "--ground-truth", str(frames / COCO_FILE), "--journal", str(journal),
                                   "--policy", str(RECOMMENDED), "--policy", str(least),
                                   "--budget", str(FRAMES // 10), "--json"))
    assert document["evaluated"] == FRAMES and document["errors_total"] > 0
    recommended, baseline = document["policies"]
    assert recommended["picked"] == baseline["picked"] == FRAMES // 10
    assert recommended["errors_captured"] > baseline["errors_captured"]
    assert recommended["efficiency"] > baseline["efficiency"]
    assert recommended["efficiency"] >= 0.5, recommended  # the target: halfway from random to the oracle
