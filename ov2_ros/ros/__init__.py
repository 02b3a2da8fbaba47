"""ROS 2 layer: the node, the camera-like publisher and message conversions. The only part of
ov2_ros that imports rclpy."""
