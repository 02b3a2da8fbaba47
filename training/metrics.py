"""Metrics with exact definitions (method.md 3 for JumpScore).

JumpScore: per video and tolerance d in {0.1, 0.2, 0.3} s, predictions sorted by time each
greedily match the unmatched truth time with the smallest |dt| <= d (true positive), else are
false positives; AP = sum_i precision_i * (recall_i - recall_{i-1}) without interpolation; the
video's score is the mean AP over the tolerances; empty truth with empty prediction scores 1.
The benchmark is the mean over videos x 100.
"""
from __future__ import annotations

import json
import re

import numpy as np

# Answer-vs-truth geometry lives in ov2_ros (the demo scores with it too); part of these metrics.
from ov2_ros.model.scoring import box_iou, temporal_iou, trace_errors  # noqa: F401

JUMPSCORE_TOLERANCES_S = (0.1, 0.2, 0.3)


def jumpscore_parse(text: str) -> list[float]:
    """Times from model text, as the benchmark reads them: numbers written "N s" first, then the
    longest JSON list of numbers, then any numbers."""
    with_unit = re.findall(r"(-?\d+(?:\.\d+)?)\s*s\b", text)
    if with_unit:
        return [float(v) for v in with_unit]
    longest: list[float] = []
    for candidate in re.findall(r"\[[^\[\]]*\]", text):
        try:
            values = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(values, list) and all(isinstance(v, (int, float)) for v in values) and len(values) > len(longest):
            longest = [float(v) for v in values]
    if longest:
        return longest
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def average_precision(predicted_s: list[float], truth_s: list[float], tolerance_s: float) -> float:
    if not truth_s:
        return 1.0 if not predicted_s else 0.0
    unmatched = list(truth_s)
    true_positives, ap, previous_recall = 0, 0.0, 0.0
    for rank, time in enumerate(sorted(predicted_s), start=1):
        if unmatched:
            distances = [abs(time - t) for t in unmatched]
            best = int(np.argmin(distances))
            if distances[best] <= tolerance_s + 1e-9:
                unmatched.pop(best)
                true_positives += 1
        recall = true_positives / len(truth_s)
        ap += (true_positives / rank) * (recall - previous_recall)
        previous_recall = recall
    return ap


def jumpscore_video(predicted_s: list[float], truth_s: list[float]) -> float:
    """One video's score in [0, 1]: mean AP over the tolerances."""
    return float(np.mean([average_precision(predicted_s, truth_s, d) for d in JUMPSCORE_TOLERANCES_S]))


def jumpscore(predictions: list[list[float]], truths: list[list[float]]) -> float:
    """The benchmark: mean video score x 100."""
    return 100.0 * float(np.mean([jumpscore_video(p, t) for p, t in zip(predictions, truths, strict=True)]))


def grounding_scores(predicted: list[tuple[float, float] | None], truth: list[tuple[float, float]]) -> dict:
    """R@{0.3, 0.5, 0.7} and mIoU; a missing prediction (parse failure) counts as IoU 0."""
    ious = np.array([0.0 if p is None else temporal_iou(p, t) for p, t in zip(predicted, truth, strict=True)])
    return {"R@0.3": float((ious >= 0.3).mean()), "R@0.5": float((ious >= 0.5).mean()),
            "R@0.7": float((ious >= 0.7).mean()), "mIoU": float(ious.mean())}


def box_accuracy(predicted: list, truth: list, threshold: float = 0.5) -> float:
    """Share of boxes with IoU >= threshold (None = parse failure = miss)."""
    return float(np.mean([p is not None and box_iou(p, t) >= threshold for p, t in zip(predicted, truth, strict=True)]))


def point_accuracy(predicted: list, truth_boxes: list) -> float:
    """Share of points (x, y) inside their thing's box (None = parse failure = miss), as
    pointing benchmarks score a point."""
    return float(np.mean([p is not None and t[0] <= p[0] <= t[2] and t[1] <= p[1] <= t[3]
                          for p, t in zip(predicted, truth_boxes, strict=True)]))
