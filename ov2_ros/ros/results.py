"""Perception results (ov2_ros.runtime.perception) as the ov2_ros messages. Every message's
header carries the camera's frame_id and the stamp of the newest frame the model saw; windows
give the first and last frame stamps; pixel coordinates refer to the source image."""
from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ov2_ros.model.parsers import asks_for_plan
from ov2_ros.msg import (ManipulationTrace, ModelText, PointTrack, PointTrackArray, SpatialGrounding,
                         SpatialGroundingArray, TemporalSegment, TemporalSegmentArray, TracePoint)
from ov2_ros.ros.conversions import ns_to_time
from ov2_ros.runtime.perception import PerceptionResult

# The Query service's format names -> the model's output formats.
SERVICE_FORMATS = {"": "auto", "auto": "auto", "temporal": "segment", "segment": "segment", "events": "events",
                   "box": "box", "tracks": "tracks", "trace": "trace", "trace2d": "trace2d", "text": None}


def header(result: PerceptionResult, frame_id: str) -> Header:
    return Header(stamp=ns_to_time(result.window_end_ns), frame_id=frame_id)


def model_text(result: PerceptionResult, frame_id: str, model_id: str) -> ModelText:
    return ModelText(header=header(result, frame_id), request_id=result.query.request_id, prompt=result.query.prompt,
                     text=result.answer.text, model_id=model_id, window_start=ns_to_time(result.window_start_ns),
                     window_end=ns_to_time(result.window_end_ns), parsed=result.parsed,
                     parse_error=result.answer.parse_error or "")


def segments(result: PerceptionResult, frame_id: str) -> list[TemporalSegment]:
    return [TemporalSegment(header=header(result, frame_id), label=s.label, start=ns_to_time(s.start_ns),
                            end=ns_to_time(s.end_ns), score=1.0) for s in result.segments]


def groundings(result: PerceptionResult, frame_id: str) -> list[SpatialGrounding]:
    height, width = result.image_size
    return [SpatialGrounding(header=header(result, frame_id), label=result.query.prompt, x_min=box.x1, y_min=box.y1,
                             x_max=box.x2, y_max=box.y2, image_width=width, image_height=height, score=1.0)
            for box in result.boxes]


def tracks(result: PerceptionResult) -> list[PointTrack]:
    return [PointTrack(track_id=t.track_id, label=t.label,
                       points=[TracePoint(stamp=ns_to_time(p.stamp_ns), x=p.x, y=p.y, depth_m=math.nan, confidence=1.0)
                               for p in t.points]) for t in result.tracks]


def traces(result: PerceptionResult, frame_id: str) -> list[ManipulationTrace]:
    """Waypoints have no times in OV2's trace format: their stamps stay zero."""
    if result.trace is None:
        return []
    height, width = result.image_size
    points = [TracePoint(x=w.x, y=w.y, depth_m=math.nan if w.depth_m is None else w.depth_m, confidence=1.0)
              for w in result.trace.waypoints]
    return [ManipulationTrace(header=header(result, frame_id), request_id=result.query.request_id,
                              label=result.query.prompt, predicted=asks_for_plan(result.query.prompt),
                              image_width=width, image_height=height, waypoints=points)]


def arrays(result: PerceptionResult, frame_id: str) -> dict[str, object]:
    """The typed messages this result fills, by topic role (only those with content)."""
    window = dict(window_start=ns_to_time(result.window_start_ns), window_end=ns_to_time(result.window_end_ns))
    out = {}
    if result.segments:
        out["segments"] = TemporalSegmentArray(header=header(result, frame_id), request_id=result.query.request_id,
                                               segments=segments(result, frame_id), **window)
    if result.boxes:
        out["groundings"] = SpatialGroundingArray(header=header(result, frame_id), request_id=result.query.request_id,
                                                  groundings=groundings(result, frame_id), **window)
    if result.tracks:
        height, width = result.image_size
        out["tracks"] = PointTrackArray(header=header(result, frame_id), request_id=result.query.request_id,
                                        image_width=width, image_height=height, tracks=tracks(result), **window)
    for trace in traces(result, frame_id):
        out["trace"] = trace
    return out


def image_message(rgb: np.ndarray, header_: Header) -> Image:
    """An rgb8 sensor_msgs/Image: cv_bridge where it is installed (every ROS machine), else the
    same message built from the array."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        height, width = rgb.shape[:2]
        return Image(header=header_, height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                     data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    message = CvBridge().cv2_to_imgmsg(np.ascontiguousarray(rgb), encoding="rgb8")
    message.header = header_
    return message


def markers(result: PerceptionResult, frame_id: str) -> MarkerArray:
    """Boxes and the trace as line strips on a virtual image plane 1 m in front of the camera
    (optical frame: x right, y down, z forward; pixel (u, v) -> ((u - W/2) / W, (v - H/2) / W, 1)),
    so they show in RViz without camera intrinsics. Each answer replaces the previous markers."""
    height, width = result.image_size
    plane = lambda u, v: Point(x=(u - width / 2) / width, y=(v - height / 2) / width, z=1.0)
    head = header(result, frame_id)
    out = [Marker(header=head, ns="ov2", id=0, action=Marker.DELETEALL)]
    for index, box in enumerate(result.boxes):
        corners = [(box.x1, box.y1), (box.x2, box.y1), (box.x2, box.y2), (box.x1, box.y2), (box.x1, box.y1)]
        out.append(Marker(header=head, ns="ov2/boxes", id=index, type=Marker.LINE_STRIP, action=Marker.ADD,
                          points=[plane(u, v) for u, v in corners], color=ColorRGBA(r=1.0, g=0.3, b=0.15, a=1.0),
                          text=result.query.prompt))
    for marker in out[1:]:
        marker.scale.x = 0.005
        marker.pose.orientation.w = 1.0
    if result.trace is not None:
        trace = Marker(header=head, ns="ov2/trace", id=0, type=Marker.LINE_STRIP, action=Marker.ADD,
                       points=[plane(w.x, w.y) for w in result.trace.waypoints],
                       color=ColorRGBA(r=0.15, g=0.8, b=1.0, a=1.0))
        trace.scale.x = 0.005
        trace.pose.orientation.w = 1.0
        out.append(trace)
    return MarkerArray(markers=out)
