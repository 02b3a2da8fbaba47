"""`ov2 publish FILE`: a camera-like H.264 publisher. Plays an H.264 file (Annex-B, MP4, MKV)
as sensor_msgs/CompressedImage with format "h264", one access unit per message in decode order,
SPS/PPS in front of every IDR, header stamps = start time + presentation time.

Two pacings: `realtime` sends each access unit at its decode time (like a camera), `acked`
sends the next one as soon as every subscriber has acknowledged the last (RELIABLE only), so a
file goes through as fast as the subscriber takes it with nothing lost.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

from ov2_ros.codec.container import EncodedAccessUnit, H264File
from ov2_ros.ros import names
from ov2_ros.ros.conversions import ns_to_time


# Fast DDS answers a reliable writer's HEARTBEAT with an ACKNACK; its default heartbeat period is
# 3 s, so waiting for the acknowledgement of a lone message takes up to 3 s. A 2 ms period makes
# acknowledgement-paced playback run at hundreds of messages per second.
_PROMPT_ACK_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <data_writer profile_name="ov2_prompt_acknowledgements" is_default_profile="true">
    <times><heartbeatPeriod><sec>0</sec><nanosec>2000000</nanosec></heartbeatPeriod></times>
  </data_writer>
</profiles>
"""


def use_prompt_acknowledgements() -> None:
    """Make this process's Fast DDS writers heartbeat every 2 ms. Call before rclpy.init();
    does nothing when the user already gave a Fast DDS profile file or another RMW."""
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return
    if os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return
    handle, path = tempfile.mkstemp(prefix="ov2_fastdds_", suffix=".xml")
    with os.fdopen(handle, "w") as profile:
        profile.write(_PROMPT_ACK_PROFILE)
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = path


class AccessUnitPublisher:
    """Publishes Annex-B access units on a topic as CompressedImage (format "h264")."""

    def __init__(self, node: Node, topic: str = names.H264_TOPIC, frame_id: str = "camera",
                 depth: int = 300, reliable: bool = True):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.node = node
        self.frame_id = frame_id
        self.publisher = node.create_publisher(CompressedImage, topic, qos)

    def publish(self, data: bytes, stamp_ns: int, fmt: str = names.H264_FORMAT) -> None:
        message = CompressedImage(format=fmt, data=data)
        message.header.stamp = ns_to_time(stamp_ns)
        message.header.frame_id = self.frame_id
        self.publisher.publish(message)

    def wait_for_subscribers(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.publisher.get_subscription_count() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait_acked(self, timeout_s: float) -> bool:
        return self.publisher.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9)))


@dataclass(frozen=True)
class PlaybackReport:
    sent: int
    wall_seconds: float
    unacked: int  # messages not acknowledged in time (acked pacing only)


def play(publisher: AccessUnitPublisher, source: H264File, pacing: str = "realtime",
         speed: float = 1.0, loops: int = 1, start_frame: int = 0, max_frames: int | None = None,
         ack_timeout_s: float = 5.0) -> PlaybackReport:
    """Publish a file's access units. loops=0 repeats forever; stamps keep increasing across
    loops. start_frame > 0 starts mid-stream (a late joiner's view of a live camera)."""
    if pacing not in ("realtime", "acked"):
        raise ValueError(f"pacing must be 'realtime' or 'acked', got '{pacing}'")
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    period = 1.0 / source.info.fps
    base_ns = time.time_ns()
    started = time.monotonic()
    sent = unacked = 0
    loop = 0
    loop_offset_s = 0.0
    first_dts: float | None = None
    while loops == 0 or loop < loops:
        last: EncodedAccessUnit | None = None
        for au in source:
            if loop == 0 and au.decode_index < start_frame:
                continue
            if max_frames is not None and sent >= max_frames:
                return PlaybackReport(sent, time.monotonic() - started, unacked)
            if first_dts is None:
                first_dts = au.dts_seconds
            if pacing == "realtime":
                due = started + (loop_offset_s + au.dts_seconds - first_dts) / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # Stamp = when the picture would have been captured: sending starts at base_ns with
            # the first access unit; B-frame streams carry display-order stamps in decode order.
            stamp_s = loop_offset_s + au.pts_seconds - first_dts
            publisher.publish(au.data, base_ns + int(round(stamp_s * 1e9)))
            sent += 1
            if pacing == "acked" and not publisher.wait_acked(ack_timeout_s):
                unacked += 1
            last = au
        if last is None:
            break
        loop += 1
        loop_offset_s += max(last.pts_seconds, last.dts_seconds) + period
    return PlaybackReport(sent, time.monotonic() - started, unacked)


def publish_file(path: str, topic: str = names.H264_TOPIC, frame_id: str = "camera",
                 pacing: str = "realtime", speed: float = 1.0, loops: int = 1, start_frame: int = 0,
                 max_frames: int | None = None, fps_if_unknown: float = 30.0, qos_depth: int = 300,
                 reliable: bool = True, wait_subscribers: int = 0, wait_timeout_s: float = 30.0) -> int:
    """The `ov2 publish` command: returns a process exit code."""
    source = H264File(path, fps_if_unknown=fps_if_unknown)
    if pacing == "acked":
        use_prompt_acknowledgements()
    rclpy.init()
    try:
        node = rclpy.create_node("ov2_publisher")
        publisher = AccessUnitPublisher(node, topic, frame_id, qos_depth, reliable)
        topic_name = publisher.publisher.topic_name
        wanted = max(wait_subscribers, 1 if pacing == "acked" else 0)
        if wanted and not publisher.wait_for_subscribers(wanted, wait_timeout_s):
            print(f"no {wanted} subscriber(s) on {topic_name} after {wait_timeout_s} s")
            return 1
        info = source.info
        print(f"publishing {info.path}: {info.width}x{info.height} {info.fps:.2f} fps, {info.frame_count} "
              f"access units{' with B-frames' if info.has_b_frames else ''} on {topic_name}", flush=True)
        report = play(publisher, source, pacing, speed, loops, start_frame, max_frames)
        publisher.wait_acked(5.0)
        print(f"sent {report.sent} access units in {report.wall_seconds:.2f} s"
              + (f"; {report.unacked} not acknowledged in time" if report.unacked else ""), flush=True)
        node.destroy_node()
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    except RuntimeError:  # rclpy raises RCLError (a RuntimeError) once the context is shut down
        if rclpy.ok():
            raise
        return 130  # stopped by a signal while publishing
    finally:
        rclpy.try_shutdown()
