"""Launch ov2_node for one camera.

    ros2 launch ov2_ros ov2.launch.py namespace:=front_camera \
        input_topic:=/front_camera/h264 params_file:=/path/to/ov2_node.yaml

Every parameter of the node lives in the params file (defaults: config/ov2_node.yaml, where each
one is described); the model and the standing question can also be given here (backend,
model_path, default_prompt), overriding the file. Several cameras = several launches with
different namespaces.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("ov2_ros"), "config", "ov2_node.yaml")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of this camera's node"),
        DeclareLaunchArgument("input_topic", default_value="image_raw/h264",
                              description="sensor_msgs/CompressedImage topic carrying H.264 (format 'h264')"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="YAML parameters of ov2_node"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model folder (torch; empty: the embedded default) or `ov2 export-onnx` folder"),
        DeclareLaunchArgument("default_prompt", default_value="",
                              description="standing question answered on every new temporal group (empty: none)"),
    ]
    model = {name: LaunchConfiguration(name) for name in ("backend", "model_path", "default_prompt")}
    node = Node(
        package="ov2_ros",
        executable="ov2_node",
        name="ov2_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), model],
        remappings=[("image_raw/h264", LaunchConfiguration("input_topic"))],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    return LaunchDescription([*arguments, node])
