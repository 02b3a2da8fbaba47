"""OV2's output strings (method.md 2.3) <-> typed results, in seconds and source-image pixels.

Each format has a writer (what a model should emit; training targets use it), a tolerant parser
(near misses: other dashes, "to", missing units, spaces, brackets, stray text around the answer)
and a strict pattern that constrained decoding holds the model to (ov2_ros/model/generate.py).
A parser that finds nothing usable raises OutputParseError saying what it expected.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ov2_ros.errors import Ov2Error

_NUMBER = r"-?\d+(?:\.\d+)?"


class OutputParseError(Ov2Error, ValueError):
    """Model text that does not hold the requested format."""


@dataclass(frozen=True)
class TemporalSegment:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class EventTimes:
    times_s: tuple[float, ...]


@dataclass(frozen=True)
class Box:
    """Pixels of the source image: (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class TrackPoint:
    t_s: float
    x: float  # source pixels
    y: float


@dataclass(frozen=True)
class PointTrack:
    track_id: int
    label: str
    points: tuple[TrackPoint, ...]


@dataclass(frozen=True)
class Waypoint:
    x: float  # source pixels
    y: float
    depth_m: float | None  # None in the 2-D variant


@dataclass(frozen=True)
class Trace:
    waypoints: tuple[Waypoint, ...]


@dataclass(frozen=True)
class FrameSize:
    width: int
    height: int


# ---- temporal grounding: "The event happens in 3.2 - 5.1 seconds" ----

def format_segment(segment: TemporalSegment) -> str:
    return f"The event happens in {segment.start_s:.1f} - {segment.end_s:.1f} seconds"


def parse_segment(text: str) -> TemporalSegment:
    match = re.search(rf"({_NUMBER})\s*(?:s|sec|seconds)?\s*(?:-|–|—|to|until)\s*({_NUMBER})", text)
    if match is None:
        raise OutputParseError(f"expected a time span like 'The event happens in 3.2 - 5.1 seconds', got {text!r}")
    start, end = sorted((float(match.group(1)), float(match.group(2))))
    return TemporalSegment(max(0.0, start), max(0.0, end))


# ---- dense events (JumpScore): "[0.28, 0.95, 1.61]" ----

def format_events(events: EventTimes) -> str:
    return "[" + ", ".join(f"{t:.2f}" for t in events.times_s) + "]"


def parse_events(text: str) -> EventTimes:
    body = text[text.find("[") + 1:text.rfind("]")] if "[" in text else text
    values = [float(v) for v in re.findall(_NUMBER, body)]
    if not values and not re.search(r"\[\s*\]", text):
        raise OutputParseError(f"expected a list of start times like '[0.28, 0.95]', got {text!r}")
    return EventTimes(tuple(sorted(max(0.0, v) for v in values)))


# ---- boxes: "[x1, y1, x2, y2]", integers 0..999 of the frame x1000 ----

def _to_unit(value: float, size: int) -> int:
    return min(999, max(0, int(round(value / size * 1000))))


def format_box(box: Box, frame: FrameSize) -> str:
    values = (_to_unit(box.x1, frame.width), _to_unit(box.y1, frame.height),
              _to_unit(box.x2, frame.width), _to_unit(box.y2, frame.height))
    return "[" + ", ".join(str(v) for v in values) + "]"


def parse_box(text: str, frame: FrameSize) -> Box:
    values = [float(v) for v in re.findall(_NUMBER, text)]
    if len(values) < 4:
        raise OutputParseError(f"expected a box '[x1, y1, x2, y2]' (0..999), got {text!r}")
    x1, x2 = sorted(min(999.0, max(0.0, v)) for v in (values[0], values[2]))
    y1, y2 = sorted(min(999.0, max(0.0, v)) for v in (values[1], values[3]))
    return Box(x1 * frame.width / 1000, y1 * frame.height / 1000, x2 * frame.width / 1000, y2 * frame.height / 1000)


# ---- point tracks: '<tracks coords="t id x y;...">label</tracks>', x, y in 0..1000 ----

def format_tracks(tracks: list[PointTrack], frame: FrameSize) -> str:
    """One <tracks> element per label (points of all its ids, in time order)."""
    by_label: dict[str, list[tuple[float, int, TrackPoint]]] = {}
    for track in tracks:
        by_label.setdefault(track.label, []).extend((p.t_s, track.track_id, p) for p in track.points)
    parts = []
    for label, points in by_label.items():
        coords = ";".join(f"{t:.1f} {track_id} {_to_unit1000(p.x, frame.width)} {_to_unit1000(p.y, frame.height)}"
                          for t, track_id, p in sorted(points, key=lambda item: (item[0], item[1])))
        parts.append(f'<tracks coords="{coords}">{label}</tracks>')
    return "".join(parts)


def _to_unit1000(value: float, size: int) -> int:
    return min(1000, max(0, int(round(value / size * 1000))))


def parse_tracks(text: str, frame: FrameSize) -> list[PointTrack]:
    elements = re.findall(r"<tracks\s+coords\s*=\s*[\"']([^\"']*)[\"']\s*>(.*?)</tracks\s*>", text, re.S)
    if not elements:
        raise OutputParseError(f"expected '<tracks coords=\"t id x y;...\">label</tracks>', got {text!r}")
    tracks: dict[tuple[str, int], list[TrackPoint]] = {}
    for coords, label in elements:
        for entry in filter(None, (e.strip() for e in coords.split(";"))):
            values = re.findall(_NUMBER, entry)
            if len(values) != 4:
                raise OutputParseError(f"track point {entry!r} is not 't id x y'")
            t, track_id, x, y = float(values[0]), int(float(values[1])), float(values[2]), float(values[3])
            tracks.setdefault((label.strip(), track_id), []).append(TrackPoint(
                t, min(1000.0, max(0.0, x)) * frame.width / 1000, min(1000.0, max(0.0, y)) * frame.height / 1000))
    return [PointTrack(track_id, label, tuple(sorted(points, key=lambda p: p.t_s)))
            for (label, track_id), points in tracks.items()]


# ---- manipulation traces: "[[x, y, d], ...]" (or "[[x, y], ...]"), x, y in 0..1000 ----

def format_trace(trace: Trace, frame: FrameSize) -> str:
    def one(w: Waypoint) -> str:
        xy = f"{_to_unit1000(w.x, frame.width)}, {_to_unit1000(w.y, frame.height)}"
        return f"[{xy}]" if w.depth_m is None else f"[{xy}, {w.depth_m:.2f}]"
    return "[" + ", ".join(one(w) for w in trace.waypoints) + "]"


def parse_trace(text: str, frame: FrameSize) -> Trace:
    points = re.findall(r"\[\s*([^\[\]]+?)\s*\]", text)
    waypoints = []
    for point in points:
        values = [float(v) for v in re.findall(_NUMBER, point)]
        if len(values) not in (2, 3):
            continue
        x, y = (min(1000.0, max(0.0, v)) for v in values[:2])
        waypoints.append(Waypoint(x * frame.width / 1000, y * frame.height / 1000,
                                  values[2] if len(values) == 3 else None))
    if not waypoints:
        raise OutputParseError(f"expected waypoints '[[x, y, d], ...]', got {text!r}")
    return Trace(tuple(waypoints))


# ---- strict patterns for constrained decoding (bounded, so generation always ends) ----

_T = r"\d{1,4}\.\d"
_XY = r"(?:1000|\d{1,3})"
_WAYPOINT_3D = rf"\[{_XY}, {_XY}, \d{{1,2}}\.\d{{2}}\]"
_WAYPOINT_2D = rf"\[{_XY}, {_XY}\]"
_TRACK_POINT = rf"{_T} \d{{1,2}} {_XY} {_XY}"
MAX_EVENTS, MAX_TRACK_POINTS = 256, 128

OUTPUT_PATTERNS: dict[str, str] = {
    "segment": rf"The event happens in {_T} - {_T} seconds",
    "events": rf"\[(?:\d{{1,4}}\.\d{{2}}(?:, \d{{1,4}}\.\d{{2}}){{0,{MAX_EVENTS - 1}}})?\]",
    "box": r"\[\d{1,3}, \d{1,3}, \d{1,3}, \d{1,3}\]",
    "tracks": rf'<tracks coords="{_TRACK_POINT}(?:;{_TRACK_POINT}){{0,{MAX_TRACK_POINTS - 1}}}">[a-z][a-z ]{{0,31}}</tracks>',
    "trace": rf"\[{_WAYPOINT_3D}(?:, {_WAYPOINT_3D}){{4,9}}\]",
    "trace2d": rf"\[{_WAYPOINT_2D}(?:, {_WAYPOINT_2D}){{4,9}}\]",
}
# Longest text each pattern admits (characters); every allowed token adds at least one.
OUTPUT_MAX_CHARS = {"segment": 48, "events": 2 + MAX_EVENTS * 9, "box": 20,
                    "tracks": 16 + MAX_TRACK_POINTS * 18 + 2 + 32 + 9, "trace": 2 + 10 * 22, "trace2d": 2 + 10 * 14}


def parse_output(text: str, output_format: str, frame: FrameSize | None = None):
    """Dispatch on format name; frame is needed for boxes, tracks and traces."""
    if output_format == "segment":
        return parse_segment(text)
    if output_format == "events":
        return parse_events(text)
    if output_format not in ("box", "tracks", "trace", "trace2d"):
        raise ValueError(f"unknown output format {output_format!r}; known: {sorted(OUTPUT_PATTERNS)}")
    if frame is None:
        raise ValueError(f"format {output_format!r} needs the frame size to give pixels")
    if output_format == "box":
        return parse_box(text, frame)
    if output_format == "tracks":
        return parse_tracks(text, frame)
    return parse_trace(text, frame)


# Question wordings -> the format the answer comes in (checked in this order).
_FORMAT_CUES = (
    ("events", r"start timestamps|list the (?:start )?times|each (?:jump|bounce|repetition|time)|how many times .* when"),
    ("tracks", r"\btrack|\bpoint (?:to|at)\b|with a point"),  # a point: a track of one point
    ("trace", r"\btrace\b|waypoint|trajector|path of the (?:gripper|arm|hand)|should (?:the )?(?:gripper|arm) move"),
    ("box", r"bounding box|\bbox\b|where (?:is|are)|locate|\bdetect"),
    ("segment", r"\bwhen\b|what time|which seconds|time span|temporal"),
)


def infer_format(question: str) -> str | None:
    """The output format a question asks for, from its wording; None for free text."""
    lowered = question.lower()
    for output_format, cue in _FORMAT_CUES:
        if re.search(cue, lowered):
            if output_format == "trace" and not re.search(r"depth|3-?d\b|metres|meters", lowered):
                return "trace2d"  # waypoints with depth only when the question asks for it
            return output_format
    return None


def asks_for_plan(question: str) -> bool:
    """A trace question about where the gripper should go (a prediction), not where it went."""
    return re.search(r"\bshould\b|\bplan\b|\bpredict|\bwill\b", question.lower()) is not None
