"""Conversions between ROS messages and the offline pipeline's plain types."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import KeyValue


def time_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_time(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def key_values(values: dict) -> list[KeyValue]:
    """Diagnostic values as strings: floats with 3 decimals, booleans lower-case."""
    def text(value) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (float, np.floating)):
            return "nan" if not np.isfinite(value) else f"{float(value):.3f}"
        return str(value)

    return [KeyValue(key=key, value=text(value)) for key, value in values.items()]


def diagnostic_values(status) -> dict[str, str]:
    """The key/value pairs of a diagnostic_msgs/DiagnosticStatus as a dict."""
    return {pair.key: pair.value for pair in status.values}


_CHANNELS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0)),
             "mono8": (1, (0, 0, 0))}


def image_to_rgb(message) -> np.ndarray:
    """A sensor_msgs/Image as (H, W, 3) uint8 RGB: cv_bridge where it is installed, else the same
    conversion in numpy for rgb8, bgr8, rgba8, bgra8 and mono8. Raises ValueError otherwise."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        if message.encoding not in _CHANNELS:
            raise ValueError(f"image encoding '{message.encoding}' is not one of {sorted(_CHANNELS)}") from None
        channels, order = _CHANNELS[message.encoding]
        rows = np.frombuffer(bytes(message.data), np.uint8)
        if message.step < message.width * channels or rows.size < message.step * message.height:
            raise ValueError(f"image of {message.width}x{message.height} {message.encoding} with step {message.step} "
                             f"has {rows.size} bytes") from None
        pixels = rows[:message.step * message.height].reshape(message.height, message.step)
        pixels = pixels[:, :message.width * channels].reshape(message.height, message.width, channels)
        return np.ascontiguousarray(pixels[:, :, list(order)])
    return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(message, desired_encoding="rgb8"))
