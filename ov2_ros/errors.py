"""One error hierarchy for ov2_ros. Each error also subclasses the builtin a caller would catch
without knowing ov2_ros (ValueError for bad data, FileNotFoundError for missing files), and its
message says what was expected, what was found and what to do."""


class Ov2Error(Exception):
    """Base class of every error ov2_ros raises on purpose."""


class CorruptBitstreamError(Ov2Error, ValueError):
    """H.264 bytes that do not parse: no start code, a forbidden bit set, a truncated header."""


class UnsupportedStreamError(Ov2Error, ValueError):
    """A readable file or stream that is not something ov2_ros handles (not H.264, no video)."""


class MissingInputError(Ov2Error, FileNotFoundError):
    """A file or folder that the caller named does not exist."""


class RosUnavailableError(Ov2Error, ImportError):
    """A ROS-only feature was asked for where rclpy or the ov2_ros interfaces are not built."""
