"""Topic, node and diagnostic names in one place (relative names resolve in the node's
namespace, so several cameras run side by side under namespaces)."""

import re

NODE_NAME = "ov2_node"
H264_TOPIC = "image_raw/h264"  # sensor_msgs/CompressedImage, format "h264", one access unit each
DIAGNOSTICS_TOPIC = "/diagnostics"
IMAGE_TOPIC = "image_raw"  # sensor_msgs/Image, when the node's input is "image" (it encodes them)
H264_FORMAT = "h264"
DIAGNOSTIC_NAME_SUFFIX = "h264 ingest"

# Perception: results (typed and raw text), questions in (topic and service).
TEXT_TOPIC = "ov2/text"  # ov2_ros/ModelText, one per answer
SEGMENTS_TOPIC = "ov2/segments"  # ov2_ros/TemporalSegmentArray (segment and event answers)
GROUNDINGS_TOPIC = "ov2/groundings"  # ov2_ros/SpatialGroundingArray (boxes)
TRACKS_TOPIC = "ov2/tracks"  # ov2_ros/PointTrackArray
TRACE_TOPIC = "ov2/trace"  # ov2_ros/ManipulationTrace
ANNOTATED_TOPIC = "ov2/annotated"  # sensor_msgs/Image: the newest frame with the answer drawn (visualize)
MARKERS_TOPIC = "ov2/markers"  # visualization_msgs/MarkerArray (visualize)
PROMPT_TOPIC = "ov2/prompt"  # std_msgs/String: a one-shot question, answered on the topics above
QUERY_SERVICE = "ov2/query"  # ov2_ros/srv/Query: a one-shot question, answered in the response

_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")


def camera_namespaces(cameras: str) -> list[str]:
    """The launch argument `cameras` ("front,wrist" or "robot1/front robot1/wrist": names split
    by commas or spaces) as absolute namespaces ["/front", "/wrist"], one ov2_node each. Names
    follow ROS name rules (letters, digits, underscores, not starting with a digit; "/" between
    levels); a bad or repeated name is refused with the reason, since two nodes in one
    namespace would share topics."""
    namespaces = []
    for camera in re.split(r"[,\s]+", cameras.strip()):
        if not camera:
            continue
        camera = camera.strip("/")
        if not _CAMERA_NAME.fullmatch(camera):
            raise ValueError(f"camera name '{camera}' is not a valid ROS namespace (letters, digits and "
                             f"underscores, not starting with a digit, '/' between levels)")
        if f"/{camera}" in namespaces:
            raise ValueError(f"camera '{camera}' is given twice: each camera needs its own namespace")
        namespaces.append(f"/{camera}")
    return namespaces
