"""Topic, node and diagnostic names in one place (relative names resolve in the node's
namespace, so several cameras run side by side under namespaces)."""

NODE_NAME = "ov2_node"
H264_TOPIC = "image_raw/h264"  # sensor_msgs/CompressedImage, format "h264", one access unit each
DIAGNOSTICS_TOPIC = "/diagnostics"
H264_FORMAT = "h264"
DIAGNOSTIC_NAME_SUFFIX = "h264 ingest"
