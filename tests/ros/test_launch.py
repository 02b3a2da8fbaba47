"""Several cameras: one ov2_node per camera namespace, as launch/ov2.launch.py starts them."""
import ast
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ov2_ros.codec.container import H264File
from ov2_ros.msg import ModelText
from ov2_ros.ros import names
from ov2_ros.ros.conversions import time_to_ns
from ov2_ros.ros.harness import counter, start_node_process, stop_process
from ov2_ros.ros.publisher import AccessUnitPublisher, play

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "ov2.launch.py"
PARAMS_FILE = REPO / "config" / "ov2_node.yaml"


def test_camera_names_become_namespaces():
    assert names.camera_namespaces("front,wrist") == ["/front", "/wrist"]
    assert names.camera_namespaces(" robot1/front  robot1/wrist ") == ["/robot1/front", "/robot1/wrist"]
    assert names.camera_namespaces("/front/, ") == ["/front"]
    assert names.camera_namespaces("") == []
    for bad, reason in (("2nd_camera", "not a valid ROS namespace"), ("front-left", "not a valid ROS namespace"),
                        ("front,wrist,front", "given twice")):
        with pytest.raises(ValueError, match=reason):
            names.camera_namespaces(bad)


def test_launch_arguments_name_real_node_parameters():
    """What the launch file passes as parameters are parameters of the node's params file."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    model_arguments = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                           and node.targets[0].id == "MODEL_ARGUMENTS")
    passed = set(ast.literal_eval(model_arguments))
    parameters = yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]
    assert passed <= set(parameters), passed - set(parameters)
    assert passed | {"cameras", "one_process", "namespace", "input_topic", "image_topic", "params_file", "log_level"} == declared


def _start_camera_node(namespace: str) -> subprocess.Popen:
    """ov2_node with what launch_ros gives a Node action of ov2.launch.py: namespace, params
    file, the default input topics."""
    return start_node_process({"diagnostics_period_s": 0.2}, namespace=namespace, params_file=PARAMS_FILE)


def _assert_each_camera_gets_its_own_stream(node, watcher, namespaces, stream):
    """Different amounts of the same stream to each camera: each node counts exactly its own."""
    source = H264File(stream.h264_path)
    sent = {namespace: source.info.frame_count - 15 * index for index, namespace in enumerate(namespaces)}
    for namespace in namespaces:
        publisher = AccessUnitPublisher(node, f"{namespace}/{names.H264_TOPIC}", frame_id=f"{namespace[1:]}_optical")
        assert publisher.wait_for_subscribers(1, timeout_s=60.0), f"{namespace}/ov2_node never subscribed"
        report = play(publisher, source, pacing="acked", max_frames=sent[namespace])
        assert report.sent == sent[namespace] and report.unacked == 0
    for namespace in namespaces:
        values = watcher.wait_for(
            lambda v, n=sent[namespace]: counter(v, "frames_received") == n and counter(v, "queue_depth") == 0,
            30.0, name_prefix=f"{namespace}/{names.NODE_NAME}")
        assert values is not None, f"{namespace}: {watcher.latest(namespace)}"
        assert values["hardware_id"] == f"{namespace[1:]}_optical"
        assert counter(values, "frames_decoded") + counter(values, "frames_pending_in_decoder") == sent[namespace]


def test_cameras_in_sibling_namespaces_read_their_own_streams(ros, p_stream):
    node, watcher = ros
    namespaces = names.camera_namespaces("launch_front,launch_wrist")
    processes = [_start_camera_node(namespace) for namespace in namespaces]
    try:
        _assert_each_camera_gets_its_own_stream(node, watcher, namespaces, p_stream)
    finally:
        for process in processes:
            stop_process(process)


def test_cameras_of_one_process_share_its_model_and_each_answers_on_its_own_stream(ros, p_stream):
    """`ov2_node --cameras a,b`: two nodes in one process, one inference thread and one model
    for both; each counts its own stream and answers the standing question on its own frames."""
    node, watcher = ros
    namespaces = names.camera_namespaces("one_front,one_wrist")
    process = start_node_process({"diagnostics_period_s": 0.2, "default_prompt": "Trace where the gripper moved.",
                                  "budget_canvases": 4}, cameras=namespaces, params_file=PARAMS_FILE)
    texts = {namespace: [] for namespace in namespaces}
    for namespace in namespaces:
        node.create_subscription(ModelText, f"{namespace}/{names.TEXT_TOPIC}", texts[namespace].append, 10)
    duration_s = H264File(p_stream.h264_path).info.duration_seconds
    try:
        # One after the other, the second once the first's last stamp has passed (stamps follow
        # the stream's timestamps from when playing began): the streams' stamps do not overlap.
        starts = []
        for namespace in namespaces:
            starts.append(time.time_ns())
            _assert_each_camera_gets_its_own_stream(node, watcher, [namespace], p_stream)
            time.sleep(duration_s + 0.1)
        sent_between = dict(zip(namespaces, zip(starts, [*starts[1:], time.time_ns()])))
        for namespace in namespaces:
            values = watcher.wait_for(lambda v: counter(v, "answers_standing") >= 1, 60.0,
                                      name_prefix=f"{namespace}/{names.NODE_NAME}")
            assert values is not None, f"{namespace}: {watcher.latest(namespace)}"
            assert counter(values, "cameras_in_process") == 2 and counter(values, "answers_failed") == 0
            assert values["model"] == "torch:fp32:embedded default"
        deadline = time.monotonic() + 30.0
        while not all(texts.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for namespace in namespaces:
            assert texts[namespace], f"{namespace} published no answer"
            before, after = sent_between[namespace]
            for text in texts[namespace]:
                assert text.header.frame_id == f"{namespace[1:]}_optical"
                assert before <= time_to_ns(text.window_start) <= time_to_ns(text.window_end) <= after
    finally:
        stop_process(process)
    assert process.returncode == 0  # both nodes shut down cleanly, the shared thread with them


@pytest.mark.parametrize("arguments, reason", [
    (["--cameras", "2nd_camera"], "camera name '2nd_camera' is not a valid ROS namespace"),
    (["--cameras", "front,front"], "camera 'front' is given twice"),
    (["--cameras", "front,wrist", "--answer-threads", "0"], "--answer-threads must be at least 1"),
])
def test_ov2_node_refuses_bad_process_arguments_with_the_reason(arguments, reason):
    run = subprocess.run([sys.executable, "-m", "ov2_ros.ros.node", *arguments, "--ros-args"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and reason in run.stderr, run.stderr


RUN_LAUNCH = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))
sys.exit(service.run())
"""


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="ROS 2 launch is not among the PyPI wheels installed here: this test runs on a machine "
                           "with ROS 2 Jazzy (the namespaces it builds are tested above with the real node)")
@pytest.mark.parametrize("one_process", ["false", "true"])
def test_launch_file_starts_one_node_per_camera(ros, colcon_install, p_stream, tmp_path, one_process):
    node, watcher = ros
    namespaces = names.camera_namespaces(f"launched_front_{one_process},launched_wrist_{one_process}")
    launch_file = colcon_install.package / "share" / "ov2_ros" / "launch" / "ov2.launch.py"
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_LAUNCH, str(launch_file), "cameras:=" + ",".join(n[1:] for n in namespaces),
         f"one_process:={one_process}"],
        env={**colcon_install.env, "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]}, cwd=tmp_path,
        start_new_session=True)
    try:
        _assert_each_camera_gets_its_own_stream(node, watcher, namespaces, p_stream)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # launch shuts its nodes down on SIGINT
        stop_process(process, timeout_s=15.0)
