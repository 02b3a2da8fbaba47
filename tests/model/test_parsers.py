"""Every output format of method.md 2.3: written, parsed back, near misses tolerated, nonsense refused."""
import pytest
import regex

from ov2_ros.model.parsers import (OUTPUT_PATTERNS, Box, EventTimes, FrameSize, OutputParseError, PointTrack,
                                   TemporalSegment, Trace, TrackPoint, Waypoint, format_box, format_events,
                                   format_segment, format_trace, format_tracks, parse_box, parse_events,
                                   parse_output, parse_segment, parse_trace, parse_tracks)

FRAME = FrameSize(1280, 720)


def test_round_trips_hold_within_the_formats_resolution():
    segment = TemporalSegment(3.2, 5.1)
    assert parse_segment(format_segment(segment)) == segment
    events = EventTimes((0.28, 0.95, 1.61, 12.0))
    assert parse_events(format_events(events)) == events
    assert parse_events(format_events(EventTimes(()))) == EventTimes(())
    box = Box(128.0, 72.0, 640.0, 360.0)
    assert parse_box(format_box(box, FRAME), FRAME) == box
    tracks = [PointTrack(1, "red cube", (TrackPoint(0.5, 128.0, 72.0), TrackPoint(1.0, 256.0, 144.0))),
              PointTrack(2, "red cube", (TrackPoint(0.5, 640.0, 360.0),)),
              PointTrack(1, "gripper", (TrackPoint(0.0, 1280.0, 720.0),))]
    assert sorted(parse_tracks(format_tracks(tracks, FRAME), FRAME), key=str) == sorted(tracks, key=str)
    trace = Trace(tuple(Waypoint(128.0 * i, 72.0 * i, 0.4 + 0.01 * i) for i in range(1, 8)))
    parsed = parse_trace(format_trace(trace, FRAME), FRAME)
    assert [(w.x, w.y) for w in parsed.waypoints] == [(w.x, w.y) for w in trace.waypoints]
    assert [w.depth_m for w in parsed.waypoints] == pytest.approx([w.depth_m for w in trace.waypoints])
    flat = Trace(tuple(Waypoint(w.x, w.y, None) for w in trace.waypoints))
    assert parse_trace(format_trace(flat, FRAME), FRAME) == flat


def test_written_outputs_match_the_strict_patterns():
    frame = FRAME
    samples = {"segment": format_segment(TemporalSegment(0.0, 12.5)),
               "events": format_events(EventTimes((0.28, 0.95))),
               "box": format_box(Box(0, 0, 1280, 720), frame),
               "tracks": format_tracks([PointTrack(3, "blue plate", (TrackPoint(2.0, 10.0, 20.0),))], frame),
               "trace": format_trace(Trace(tuple(Waypoint(10.0 * i, 5.0 * i, 0.5) for i in range(5))), frame),
               "trace2d": format_trace(Trace(tuple(Waypoint(10.0 * i, 5.0 * i, None) for i in range(10))), frame)}
    for name, text in samples.items():
        assert regex.fullmatch(OUTPUT_PATTERNS[name], text), (name, text)
    assert samples["box"] == "[0, 0, 999, 999]"  # x1000, clipped to 999


def test_near_misses_are_understood():
    assert parse_segment("the event happens from 3.2s to 5.1s.") == TemporalSegment(3.2, 5.1)
    assert parse_segment("5.1 – 3.2 seconds") == TemporalSegment(3.2, 5.1)
    assert parse_events("Starts: [0.95s, 0.28s , 1.61]") == EventTimes((0.28, 0.95, 1.61))
    assert parse_box("The cube is at [500,250, 100, 750].", FRAME) == Box(128.0, 180.0, 640.0, 540.0)
    tracks = parse_tracks("<tracks coords='0.5 1 500 500; 1 1 1100 -5'>cube </tracks>", FRAME)
    assert tracks == [PointTrack(1, "cube", (TrackPoint(0.5, 640.0, 360.0), TrackPoint(1.0, 1280.0, 0.0)))]
    assert len(parse_trace("[[100,200,0.5],[110, 210, 0.45], [120, 220]]", FRAME).waypoints) == 3


@pytest.mark.parametrize("output_format,text", [
    ("segment", "I cannot tell"), ("events", "no events"), ("box", "[1, 2, 3]"),
    ("tracks", "tracks: 1 2 3"), ("trace", "move left"),
])
def test_nonsense_is_refused_with_the_expected_format(output_format, text):
    with pytest.raises(OutputParseError, match="expected"):
        parse_output(text, output_format, FRAME)


def test_pixel_formats_need_the_frame_size():
    with pytest.raises(ValueError, match="frame size"):
        parse_output("[1, 2, 3, 4]", "box")
    with pytest.raises(ValueError, match="unknown output format"):
        parse_output("x", "poem")


def test_the_question_wording_picks_the_answer_format():
    from ov2_ros.model.parsers import infer_format
    jumpscore = ("List the start timestamps in s of each jump in the video. The start is defined as the "
                 "moment the feet leave the ground.")
    assert infer_format(jumpscore) == "events"
    assert infer_format("When does the gripper release the cube?") == "segment"
    assert infer_format("Where is the blue plate?") == "box"
    assert infer_format("Track the red cube.") == "tracks"
    assert infer_format("Point to the red cube.") == infer_format("Where is the mug? Point at it.") == "tracks"
    assert infer_format("What does the sign point out?") is None
    assert infer_format("Put the red cube on the blue plate: give the gripper's waypoints.") == "trace2d"
    assert infer_format("Give the gripper's waypoints with depth in metres.") == "trace"
    assert infer_format("Describe the video.") is None
