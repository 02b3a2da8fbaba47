"""Launch ov2_node for one camera, or one node per camera.

    ros2 launch ov2_ros ov2.launch.py namespace:=front_camera \
        input_topic:=/front_camera/h264 params_file:=/path/to/ov2_node.yaml
    ros2 launch ov2_ros ov2.launch.py cameras:=front,wrist \
        default_prompt:="Trace where the gripper moved."

Every parameter of the node lives in the params file (defaults: config/ov2_node.yaml, where each
one is described); the model and the standing question can also be given here (backend, dtype,
model_path, default_prompt), overriding the file.

cameras: one node per camera, each in namespace /<camera> with the same parameters, reading
`input_topic` (or `image_topic`) inside its namespace: with the default image_raw/h264, the node
/front/ov2_node reads /front/image_raw/h264 and publishes /front/ov2/trace, and so on. Names are
checked by ov2_ros.ros.names.camera_namespaces; with several cameras an absolute input topic is
refused (every node would read the same stream).

one_process (default true) runs those nodes in one process (`ov2_node --cameras ...`): its
inference threads serve every camera, answers side by side (one per camera, up to the CPU cores)
and guesses of next windows only while nothing else runs, and each model is loaded once
(ov2_ros/ros/inference.py; two cameras on two cores: p50 0.6-0.8x that of a process per camera,
docs/node.md). one_process:=false gives each camera its own process (a crash then takes one
camera, not all).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ov2_ros.ros import names

MODEL_ARGUMENTS = ("backend", "dtype", "model_path", "default_prompt")


def _camera_nodes(context):
    """The Node actions, once the launch arguments are known."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespaces = names.camera_namespaces(value("cameras")) or [value("namespace")]
    input_topic, image_topic = value("input_topic"), value("image_topic")
    if len(namespaces) > 1 and (input_topic.startswith("/") or image_topic.startswith("/")):
        raise ValueError(f"cameras {namespaces} would all read {input_topic} / {image_topic}: give "
                         f"input_topic and image_topic relative to each camera's namespace")
    parameters = [value("params_file"), {name: value(name) for name in MODEL_ARGUMENTS}]
    remappings = [(names.H264_TOPIC, input_topic), (names.IMAGE_TOPIC, image_topic)]
    if value("one_process").lower() == "true" and len(namespaces) > 1:
        return [Node(
            package="ov2_ros",
            executable="ov2_node",
            parameters=parameters,
            remappings=remappings,  # relative: each camera's node resolves them in its namespace
            arguments=["--cameras", ",".join(namespaces), "--ros-args", "--log-level", value("log_level")],
            output="screen",
        )]
    return [
        Node(
            package="ov2_ros",
            executable="ov2_node",
            name=names.NODE_NAME,
            namespace=namespace,
            parameters=parameters,
            remappings=remappings,
            arguments=["--ros-args", "--log-level", value("log_level")],
            output="screen",
        )
        for namespace in namespaces
    ]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("ov2_ros"), "config", "ov2_node.yaml")
    arguments = [
        DeclareLaunchArgument("cameras", default_value="",
                              description="camera names, comma-separated: one node per camera in namespace "
                                          "/<camera> (empty: one node in `namespace`)"),
        DeclareLaunchArgument("one_process", default_value="true",
                              description="true: the cameras' nodes in one process, sharing its inference threads "
                                          "and each model; false: a process per camera"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the single node"),
        DeclareLaunchArgument("input_topic", default_value=names.H264_TOPIC,
                              description="sensor_msgs/CompressedImage topic carrying H.264 (format 'h264')"),
        DeclareLaunchArgument("image_topic", default_value=names.IMAGE_TOPIC,
                              description="sensor_msgs/Image topic, when the params file sets input: image"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="YAML parameters of ov2_node"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("dtype", default_value="fp32",
                              description="torch: fp32 | fp16 | bf16; onnxruntime: fp32 | int8; tensorrt: fp32 | fp16"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="model folder (torch; empty: the embedded default) or `ov2 export-onnx` folder"),
        DeclareLaunchArgument("default_prompt", default_value="",
                              description="standing question answered on every new temporal group (empty: none)"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_camera_nodes)])
