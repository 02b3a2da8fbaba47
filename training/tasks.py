"""Questions and answers from a world's exact truth, in OV2's output strings (method.md 2.3).

Each task has many wordings, so the model learns the task, not a sentence; the answer is always
written by ov2_ros.model.parsers' writers, the same strings a released OV2 emits. `Task.name`
says which suite evaluates it and which format constrains the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ov2_ros.model.parsers import (Box, EventTimes, FrameSize, PointTrack, TemporalSegment, Trace, TrackPoint,
                                   Waypoint, format_box, format_events, format_segment, format_trace,
                                   format_tracks)


@dataclass(frozen=True)
class QA:
    task: str  # "events", "segment", "box", "point", "tracks", "trace", "predicted_trace", "caption", "count"
    question: str
    answer: str
    output_format: str | None  # the parsers format of the answer, None for free text


EVENT_WORDINGS = (
    "List the start timestamps in s of each bounce in the video. The start is defined as the moment the {obj} leaves the floor.",
    "List the start timestamps in s of each jump of the {obj} in the video. The start is defined as the moment it leaves the ground.",
    "At what times does the {obj} leave the floor? Give every start time in seconds.",
    "Give the start time of each bounce of the {obj}, in seconds.",
    "When does each bounce start? List all start timestamps in s.",
    "Write down the start timestamps in s of every time the {obj} bounces off the floor.",
)
COUNT_WORDINGS = ("How many times does the {obj} bounce?", "Count the bounces of the {obj}.",
                  "How many bounces are there in the video?")
BOUNCE_CAPTIONS = ("Describe the video.", "What happens in the video?", "Summarise the clip.")
SEGMENT_WORDINGS = {
    "reach": ("When does the gripper reach for the {target}?", "When does the arm move toward the {target}?"),
    "grasp": ("When does the gripper grasp the {target}?", "When are the fingers closing on the {target}?",
              "During which seconds does the gripper grab the {target}?"),
    "lift": ("When is the {target} lifted?", "When does the gripper lift the {target} off the table?"),
    "carry": ("When is the {target} carried to the {plate}?", "When does the gripper move the {target} across the table?"),
    "place": ("When is the {target} put down on the {plate}?", "When does the gripper lower the {target}?"),
    "release": ("When does the gripper release the {target}?", "When do the fingers open to let go of the {target}?"),
}
BOX_WORDINGS = ("Where is the {thing}? Give its bounding box.", "Locate the {thing}.",
                "Give the bounding box of the {thing}.", "Where is the {thing} in the image?")
TRACK_WORDINGS = ("Track the {target}.", "Track the {target} through the video.",
                  "Give the point track of the {target}.")
TRACE_WORDINGS = ("Trace the gripper's path during the video.", "Give the waypoints of the gripper's trajectory.",
                  "Trace where the gripper moved.")
PREDICT_WORDINGS = ("{instruction}. Give the waypoints the gripper should follow.",
                    "Task: {instruction}. What trace should the gripper follow? Give the waypoints.",
                    "{instruction}: give the gripper's trajectory as waypoints.")
PICKPLACE_CAPTIONS = ("Describe the video.", "What happens in the video?", "What did the robot do?")
WHICH_WORDINGS = ("Which object did the gripper move?", "Which object was picked up?")
WHERE_WORDINGS = ("Where did the {target} end up?", "Where was the {target} put?")
# Pointing answers in the point-track format (method.md 2.3) with one point at the first frame.
POINT_WORDINGS = ("Point to the {thing}.", "Point at the {thing}.", "Where is the {thing}? Point to it.",
                  "Show me the {thing} with a point.")
TABLE_WORDINGS = ("What is on the table?", "List the objects on the table from left to right.",
                  "Which objects do you see?")


def bounce_tasks(episode: dict, rng) -> list[QA]:
    obj = episode["object"]
    times = episode["event_times_s"]
    count = len(times)
    return [
        QA("events", str(rng.choice(EVENT_WORDINGS)).format(obj=obj), format_events(EventTimes(tuple(times))), "events"),
        QA("count", str(rng.choice(COUNT_WORDINGS)).format(obj=obj), str(count), None),
        QA("caption", str(rng.choice(BOUNCE_CAPTIONS)), f"A {obj} bounces on the floor {count} times.", None),
    ]


def pickplace_tasks(episode: dict, truth_frames: list[dict], frame: FrameSize, rng) -> list[QA]:
    target, plate = episode["target"], episode["plate"]
    segments = {s["phase"]: s for s in episode["segments"]}
    phase = str(rng.choice(list(SEGMENT_WORDINGS)))
    segment = segments[phase]
    first = truth_frames[0]
    object_boxes = {o["label"]: o["box_xyxy"] for o in first["objects"]}
    thing = str(rng.choice([plate, *object_boxes]))
    box = episode["plate_box_xyxy"] if thing == plate else object_boxes[thing]
    fps = 1.0 / max(1e-9, truth_frames[1]["time_s"] - truth_frames[0]["time_s"]) if len(truth_frames) > 1 else 30.0
    track_points = []
    for t in np.arange(0.0, truth_frames[-1]["time_s"] + 1e-6, 1.0):
        record = truth_frames[min(len(truth_frames) - 1, int(round(t * fps)))]
        x0, y0, x1, y1 = next(o["box_xyxy"] for o in record["objects"] if o["label"] == target)
        track_points.append(TrackPoint(round(float(t), 1), (x0 + x1) / 2, (y0 + y1) / 2))
    path = Trace(tuple(Waypoint(x, y, None) for x, y in episode["gripper_path"]))
    words = {"target": target, "plate": plate}
    return [
        QA("segment", str(rng.choice(SEGMENT_WORDINGS[phase])).format(**words),
           format_segment(TemporalSegment(segment["start_s"], segment["end_s"])), "segment"),
        QA("box", str(rng.choice(BOX_WORDINGS)).format(thing=thing), format_box(Box(*box), frame), "box"),
        QA("tracks", str(rng.choice(TRACK_WORDINGS)).format(**words),
           format_tracks([PointTrack(1, target, tuple(track_points))], frame), "tracks"),
        QA("trace", str(rng.choice(TRACE_WORDINGS)), format_trace(path, frame), "trace2d"),
        QA("caption", str(rng.choice(PICKPLACE_CAPTIONS)), f"The gripper picks up the {target} and puts it on the {plate}.", None),
        QA("caption", str(rng.choice(WHICH_WORDINGS)), f"The {target}.", None),
        QA("caption", str(rng.choice(WHERE_WORDINGS)).format(**words), f"On the {plate}.", None),
    ]


def predicted_trace_task(episode: dict, frame: FrameSize, rng) -> QA:
    """For a clip cut before the arm moves: where should the gripper go, given the instruction."""
    instruction = episode["instruction"]
    path = Trace(tuple(Waypoint(x, y, None) for x, y in episode["gripper_path"]))
    question = str(rng.choice(PREDICT_WORDINGS)).format(instruction=instruction[0].upper() + instruction[1:])
    return QA("predicted_trace", question, format_trace(path, frame), "trace2d")


def thing_box(thing: dict, frame: FrameSize, wording: str) -> QA:
    """A still's thing (label, box_xyxy, centre_xy): its box, asked in `wording`."""
    return QA("box", wording.format(thing=thing["label"]), format_box(Box(*thing["box_xyxy"]), frame), "box")


def thing_point(thing: dict, frame: FrameSize, wording: str) -> QA:
    """A still's thing: a point on it (its centre), OV2's track format with one point."""
    x, y = thing["centre_xy"]
    return QA("point", wording.format(thing=thing["label"]),
              format_tracks([PointTrack(1, thing["label"], (TrackPoint(0.0, x, y),))], frame), "tracks")


def table_listing(things: list[dict], wording: str) -> QA:
    """A still's things named from left to right: what only the pixels tell (colour, shape)."""
    listed = [t["label"] for t in sorted(things, key=lambda t: t["centre_xy"][0])]
    return QA("caption", wording, "From left to right: " + ", ".join(f"a {label}" for label in listed) + ".", None)


def point_answer_spans(answer: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Character spans of x, y and the label in a one-point answer '<tracks coords="T ID X Y">label</tracks>'."""
    match = re.fullmatch(r'<tracks coords="[\d.]+ \d+ (\d+) (\d+)">(.*)</tracks>', answer)
    if match is None:
        raise ValueError(f"not a one-point track answer: {answer!r}")
    return match.span(1), match.span(2), match.span(3)


def stills_tasks(episode: dict, frame: FrameSize, rng) -> list[QA]:
    """A box and a point for things drawn at random, and the things from left to right."""
    things = episode["things"]
    boxed, pointed = (things[int(i)] for i in rng.integers(len(things), size=2))
    return [
        thing_box(boxed, frame, str(rng.choice(BOX_WORDINGS))),
        thing_point(pointed, frame, str(rng.choice(POINT_WORDINGS))),
        table_listing(things, str(rng.choice(TABLE_WORDINGS))),
    ]
