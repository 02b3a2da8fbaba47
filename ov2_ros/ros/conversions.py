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
