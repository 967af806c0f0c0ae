"""Average precision: hand-computed cases."""

from __future__ import annotations

import math

import pytest

from alpolicy_onnx.metrics import (
    _xyxy,
    average_precision,
    box_iou,
    interpolated_ap,
    mean_average_precision,
    per_class_average_precision,
    polygon_iou,
)


def box(x1, y1, x2, y2, cls="a", conf=None):
    d = {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1, "class": cls}
    if conf is not None:
        d["confidence"] = conf
    return d


def test_perfect_predictions_score_one():
    truths = [[box(0, 0, 10, 10), box(20, 20, 40, 40, "b")], [box(5, 5, 15, 15)]]
    preds = [[box(0, 0, 10, 10, conf=0.9), box(20, 20, 40, 40, "b", conf=0.8)], [box(5, 5, 15, 15, conf=0.7)]]
    assert mean_average_precision(preds, truths) == pytest.approx(1.0)
    assert mean_average_precision(preds, truths, interpolation="101-point") == pytest.approx(1.0)


def test_false_positive_ranked_first_halves_precision():
    truths = [[box(0, 0, 10, 10)]]
    preds = [[box(50, 50, 60, 60, conf=0.9), box(0, 0, 10, 10, conf=0.5)]]
    # precision at recall 1 is 1/2 -> all-point AP = 0.5
    assert average_precision(preds, truths, "a") == pytest.approx(0.5)
    assert average_precision(preds, truths, "a", interpolation="101-point") == pytest.approx(0.5)


def test_false_positive_ranked_last_does_not_lower_ap():
    truths = [[box(0, 0, 10, 10)]]
    preds = [[box(50, 50, 60, 60, conf=0.1), box(0, 0, 10, 10, conf=0.5)]]
    assert average_precision(preds, truths, "a") == pytest.approx(1.0)


def test_duplicate_detection_is_a_false_positive_and_misses_count():
    truths = [[box(0, 0, 10, 10), box(100, 100, 110, 110)]]
    preds = [[box(0, 0, 10, 10, conf=0.9), box(0, 0, 10, 11, conf=0.8)]]
    # recall reaches 0.5 at precision 1, never more
    assert average_precision(preds, truths, "a") == pytest.approx(0.5)
    # 101-point: recall thresholds 0..0.5 (51 of 101) have precision 1
    assert average_precision(preds, truths, "a", interpolation="101-point") == pytest.approx(51 / 101)


def test_iou_threshold_and_wrong_class():
    truths = [[box(0, 0, 10, 10)]]
    shifted = [[box(5, 0, 15, 10, conf=0.9)]]  # IoU 1/3
    assert average_precision(shifted, truths, "a", iou=0.5) == 0.0
    assert average_precision(shifted, truths, "a", iou=0.3) == pytest.approx(1.0)
    wrong = [[box(0, 0, 10, 10, "b", conf=0.9)]]
    assert per_class_average_precision(wrong, truths) == {"a": 0.0}  # class b has no ground truth: ignored


def test_interpolation_envelope():
    # precision 1, 0.5, 0.667 at recall 1/3, 1/3, 2/3; then nothing more
    precision = [1.0, 0.5, 2 / 3]
    recall = [1 / 3, 1 / 3, 2 / 3]
    assert interpolated_ap(precision, recall) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    with pytest.raises(ValueError):
        interpolated_ap(precision, recall, "11-point")  # type: ignore[arg-type]


def test_no_ground_truth():
    assert math.isnan(average_precision([[box(0, 0, 1, 1, conf=0.5)]], [[]], "a"))
    assert math.isnan(mean_average_precision([[]], [[]]))
    with pytest.raises(ValueError):
        mean_average_precision([[]], [[], []])


def test_box_iou():
    ious = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert ious.tolist() == [[0.5, 0.0, 0.0]]


def shape(points, cls="a", conf=None):
    """An instance with a ``points`` polygon, its box around it."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    d = box(min(xs), min(ys), max(xs), max(ys), cls, conf)
    d["points"] = [{"x": x, "y": y} for x, y in points]
    return d


def test_polygon_iou_of_squares_and_triangles():
    square = shape([(0, 0), (20, 0), (20, 20), (0, 20)])
    half = shape([(10, 0), (20, 0), (20, 20), (10, 20)])
    triangle = shape([(0, 0), (20, 0), (0, 20)])  # half the square, the same box
    far = shape([(100, 100), (110, 100), (110, 110)])
    ious = polygon_iou([square, half, triangle], [square, far])
    assert ious.shape == (3, 2)
    assert ious[0, 0] == pytest.approx(1.0)
    assert ious[1, 0] == pytest.approx(0.5, abs=0.04)  # Pillow fills edge pixels: a little over 1/2
    assert ious[2, 0] == pytest.approx(0.5, abs=0.06)
    assert ious[:, 1].tolist() == [0.0, 0.0, 0.0]
    assert box_iou(_xyxy([triangle]), _xyxy([square]))[0, 0] == pytest.approx(1.0)  # boxes cannot tell
    assert polygon_iou([], [square]).shape == (0, 1)
    assert polygon_iou([{**square, "points": []}], [square]).tolist() == [[0.0]]


def test_mask_average_precision_matches_by_polygon_not_by_box():
    square = [(0, 0), (20, 0), (20, 20), (0, 20)]
    triangle = [(0, 0), (20, 10), (10, 20)]  # the square's box, 3/8 of its area
    truths = [[shape(square)]]
    right = [[shape(square, conf=0.9)]]
    same_box_wrong_mask = [[shape(triangle, conf=0.9)]]
    assert mean_average_precision(same_box_wrong_mask, truths) == pytest.approx(1.0)
    assert mean_average_precision(same_box_wrong_mask, truths, overlap=polygon_iou) == 0.0
    assert mean_average_precision(right, truths, overlap=polygon_iou) == pytest.approx(1.0)
    assert per_class_average_precision(same_box_wrong_mask, truths, iou=0.35, overlap=polygon_iou) == {"a": 1.0}
