"""The ov2_ros interfaces as built by tools/setup.sh: importable as ov2_ros.msg / ov2_ros.srv,
with the fields later issues fill, and surviving serialization over the wire format."""
import math

import pytest

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message

from ov2_ros.msg import (
    ManipulationTrace,
    ModelText,
    PointTrack,
    PointTrackArray,
    SpatialGrounding,
    SpatialGroundingArray,
    TemporalSegment,
    TemporalSegmentArray,
    TracePoint,
)
from ov2_ros.srv import Query


def _roundtrip(message):
    return deserialize_message(serialize_message(message), type(message))


def test_every_result_message_carries_a_header():
    for message_type in (TemporalSegment, TemporalSegmentArray, SpatialGrounding, SpatialGroundingArray,
                         ManipulationTrace, PointTrackArray, ModelText):
        assert "header" in message_type.get_fields_and_field_types()
        assert message_type.get_fields_and_field_types()["header"] == "std_msgs/Header"


def test_trace_with_optional_depth_survives_serialization():
    trace = ManipulationTrace(label="put the red cube on the blue plate", predicted=True,
                              image_width=640, image_height=480, request_id="q-1")
    trace.header.frame_id = "camera_optical"
    trace.header.stamp = Time(sec=12, nanosec=5)
    trace.waypoints = [TracePoint(stamp=Time(sec=12), x=100.5, y=200.25, depth_m=0.62, confidence=0.9),
                       TracePoint(stamp=Time(sec=13), x=110.0, y=190.0, depth_m=math.nan, confidence=math.nan)]
    copy = _roundtrip(trace)
    assert copy.label == trace.label and copy.predicted and copy.header.stamp.nanosec == 5
    assert [(p.x, p.y) for p in copy.waypoints] == [(100.5, 200.25), (110.0, 190.0)]
    assert copy.waypoints[0].depth_m == pytest.approx(0.62, abs=1e-6)  # float32 on the wire
    assert math.isnan(copy.waypoints[1].depth_m)


def test_segments_boxes_and_tracks_roundtrip():
    segments = TemporalSegmentArray(request_id="q-2", segments=[
        TemporalSegment(label="grasp", start=Time(sec=3, nanosec=200_000_000), end=Time(sec=5, nanosec=100_000_000),
                        score=0.8)])
    boxes = SpatialGroundingArray(groundings=[SpatialGrounding(label="red cube", x_min=1.0, y_min=2.0, x_max=30.0,
                                                               y_max=40.0, image_width=640, image_height=480)])
    tracks = PointTrackArray(tracks=[PointTrack(track_id=7, label="gripper",
                                                points=[TracePoint(x=1.0, y=2.0)] * 3)])
    assert _roundtrip(segments).segments[0].end.nanosec == 100_000_000
    assert _roundtrip(boxes).groundings[0].x_max == 30.0
    assert len(_roundtrip(tracks).tracks[0].points) == 3


def test_query_service_request_and_response_fields():
    request = Query.Request(prompt="When does the gripper grasp the red cube?", output_format="temporal",
                            window_s=10.0, max_new_tokens=64, publish=True)
    assert _roundtrip(request).prompt == request.prompt
    response_fields = Query.Response.get_fields_and_field_types()
    for field in ("success", "message", "request_id", "header", "text", "segments", "groundings",
                  "tracks", "traces"):
        assert field in response_fields
