"""Metrics on hand-made cases, JumpScore's edge cases included."""
import pytest

from training.metrics import (average_precision, box_accuracy, box_iou, grounding_scores, jumpscore,
                              jumpscore_parse, jumpscore_video, point_accuracy, temporal_iou, trace_errors)


def test_jumpscore_by_hand():
    truth, predicted = [1.0, 2.0, 3.0], [3.0, 1.05, 2.25, 1.5]  # order of the list does not matter
    # d = 0.1 and 0.2: 1.05 TP (P 1, R 1/3), 1.5 FP, 2.25 FP, 3.0 TP (P 2/4, R 2/3) -> 1/3 + 1/6
    assert average_precision(predicted, truth, 0.1) == pytest.approx(0.5)
    assert average_precision(predicted, truth, 0.2) == pytest.approx(0.5)
    # d = 0.3: 2.25 becomes a TP (P 2/3), then 3.0 (P 3/4) -> 1/3 + 2/9 + 1/4
    assert average_precision(predicted, truth, 0.3) == pytest.approx(1 / 3 + 2 / 9 + 1 / 4)
    assert jumpscore_video(predicted, truth) == pytest.approx((0.5 + 0.5 + 1 / 3 + 2 / 9 + 1 / 4) / 3)


def test_jumpscore_edge_cases():
    assert jumpscore_video([], []) == 1.0  # empty truth and empty prediction
    assert jumpscore_video([1.0], []) == 0.0
    assert jumpscore_video([], [1.0]) == 0.0
    assert jumpscore_video([1.0, 2.0], [1.0, 2.0]) == 1.0
    # A duplicate after full recall is a false positive that costs nothing (no interpolation).
    assert jumpscore_video([1.0, 1.01], [1.0]) == 1.0
    # ... but before the next true positive it lowers that one's precision.
    assert average_precision([1.0, 1.01, 2.0], [1.0, 2.0], 0.1) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Greedy: the unmatched truth with the smallest |dt| wins.
    assert average_precision([1.1], [1.0, 1.15], 0.1) == pytest.approx(0.5)
    assert average_precision([1.1, 1.2], [1.0, 1.15], 0.1) == pytest.approx(0.5)  # 1.2 is 0.2 from 1.0
    assert average_precision([1.09], [1.0], 0.1) == 1.0 and average_precision([1.11], [1.0], 0.1) == 0.0
    assert jumpscore([[1.0], []], [[1.0], [2.0]]) == pytest.approx(50.0)


def test_jumpscore_reads_answers_as_the_benchmark_does():
    assert jumpscore_parse("Starts at 0.5s, 1.2 s; see [3, 4, 5]") == [0.5, 1.2]
    assert jumpscore_parse("[1, 2] or rather [3.5, 4, 5]") == [3.5, 4.0, 5.0]
    assert jumpscore_parse("around 1.5 and 2.5") == [1.5, 2.5]
    assert jumpscore_parse("none") == []


def test_grounding_box_and_trace_metrics():
    assert temporal_iou((1.0, 3.0), (2.0, 4.0)) == pytest.approx(1 / 3)
    scores = grounding_scores([(1.0, 3.0), (2.0, 4.0), None], [(1.0, 3.0), (1.0, 3.0), (0.0, 1.0)])
    assert scores == pytest.approx({"R@0.3": 2 / 3, "R@0.5": 1 / 3, "R@0.7": 1 / 3, "mIoU": (1 + 1 / 3) / 3})
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert box_accuracy([[0, 0, 10, 10], [5, 0, 15, 10], None], [[0, 0, 10, 10]] * 3) == pytest.approx(1 / 3)
    truth = [[0, 0], [10, 0], [20, 0]]
    assert trace_errors(truth, truth, 100.0) == (0.0, 0.0)
    ade, fde = trace_errors([[0, 0], [20, 3]], truth, 100.0)  # resampled: (0,0), (10,1.5), (20,3)
    assert ade == pytest.approx((0 + 0.015 + 0.03) / 3) and fde == pytest.approx(0.03)


def test_a_point_counts_when_it_falls_inside_the_things_box():
    boxes = [[10, 10, 20, 30]] * 4
    assert point_accuracy([(15, 20), (20, 30), (21, 20), None], boxes) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        point_accuracy([(15, 20)], boxes)
