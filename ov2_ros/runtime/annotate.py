"""Draw a perception result on a frame (numpy + OpenCV): the box, the trace, tracks up to the
frame's time, the segments (highlighted while the frame is inside one), the question and the
answer. Used by `ov2 replay` for its annotated video and by the node's annotated image topic."""
from __future__ import annotations

import cv2
import numpy as np

from ov2_ros.runtime.perception import PerceptionResult

BOX = (255, 80, 40)
TRACE = (40, 200, 255)
TRACK = (255, 220, 40)
ACTIVE = (60, 230, 90)
TEXT = (255, 255, 255)


def _text(image: np.ndarray, line: str, row: int, colour=TEXT) -> None:
    scale = max(0.35, image.shape[0] / 900)
    y = int((row + 1) * 22 * scale / 0.5)
    outline = 2 if scale < 0.5 else 3  # a thinner dark outline on small images keeps letters apart
    cv2.putText(image, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), outline, cv2.LINE_AA)
    cv2.putText(image, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def annotate(image_rgb: np.ndarray, result: PerceptionResult | None, stamp_ns: int) -> np.ndarray:
    """A copy of image_rgb (H, W, 3 uint8, the source image the result's pixels refer to) with
    `result` drawn as of `stamp_ns`."""
    image = np.ascontiguousarray(image_rgb).copy()
    if result is None:
        return image
    thickness = max(1, image.shape[0] // 240)
    for box in result.boxes:
        cv2.rectangle(image, (int(round(box.x1)), int(round(box.y1))), (int(round(box.x2)), int(round(box.y2))),
                      BOX, thickness)
    if result.trace is not None and result.trace.waypoints:
        points = np.array([[w.x, w.y] for w in result.trace.waypoints], dtype=np.int32)
        cv2.polylines(image, [points], False, TRACE, thickness, cv2.LINE_AA)
        for point in points:
            cv2.circle(image, tuple(int(v) for v in point), thickness + 1, TRACE, -1)
    for track in result.tracks:
        seen = np.array([[p.x, p.y] for p in track.points if p.stamp_ns <= stamp_ns], dtype=np.int32)
        if len(seen):
            cv2.polylines(image, [seen], False, TRACK, thickness, cv2.LINE_AA)
            cv2.circle(image, tuple(int(v) for v in seen[-1]), thickness + 2, TRACK, -1)
    _text(image, result.query.prompt[:60], 0)
    _text(image, result.answer.text[:60], 1)
    for index, segment in enumerate(result.segments[:4]):
        start_s = (segment.start_ns - result.window_start_ns) / 1e9
        end_s = (segment.end_ns - result.window_start_ns) / 1e9
        inside = segment.start_ns <= stamp_ns <= max(segment.end_ns, segment.start_ns + 100_000_000)
        _text(image, f"{'>> ' if inside else ''}{start_s:.2f}-{end_s:.2f} s", 2 + index, ACTIVE if inside else TEXT)
    return image
