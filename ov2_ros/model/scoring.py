"""How far an answer is from the truth, the same for training's evaluation and `ov2 demo`:
temporal IoU of segments, IoU of boxes, and trace displacement errors."""
from __future__ import annotations

import numpy as np


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _resample(points: np.ndarray, count: int) -> np.ndarray:
    """A polyline's points at `count` evenly spaced positions of its index."""
    if len(points) == 1:
        return np.repeat(points, count, axis=0)
    where = np.linspace(0, len(points) - 1, count)
    return np.stack([np.interp(where, np.arange(len(points)), points[:, k]) for k in range(2)], axis=1)


def trace_errors(predicted: list, truth: list, diagonal_px: float) -> tuple[float, float]:
    """(ADE, FDE) of one trace as fractions of the image diagonal; the prediction is resampled to
    the truth's number of waypoints (both are spaced evenly in time)."""
    truth_xy = np.asarray(truth, float)[:, :2]
    predicted_xy = _resample(np.asarray(predicted, float)[:, :2], len(truth_xy))
    distances = np.linalg.norm(predicted_xy - truth_xy, axis=1) / diagonal_px
    return float(distances.mean()), float(distances[-1])
