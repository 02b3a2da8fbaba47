"""Shared by the ROS tests: this process's rclpy context with a driver node and a diagnostics
watcher, and real ov2_node processes started per test (each in its own namespace)."""
import pytest
import rclpy

from ov2_ros.ros.harness import DiagnosticsWatcher, SpinningNode, start_node_process, stop_process
from ov2_ros.ros.publisher import use_prompt_acknowledgements


@pytest.fixture(scope="module")
def ros():
    use_prompt_acknowledgements()
    rclpy.init()
    spinning = SpinningNode("ov2_test_driver")
    watcher = DiagnosticsWatcher(spinning.node)
    yield spinning.node, watcher
    spinning.close()
    rclpy.try_shutdown()


@pytest.fixture
def node_under_test(request):
    """Start ov2_node in namespace /<test name>; yields (namespace, process)."""
    processes = []

    def start(namespace, **parameters):
        process = start_node_process({"diagnostics_period_s": 0.2, **parameters}, namespace=namespace)
        processes.append(process)
        return process

    yield start
    for process in processes:
        stop_process(process)
