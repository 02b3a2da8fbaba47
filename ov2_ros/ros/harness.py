"""Run the real node in its own process and watch its /diagnostics: shared by `ov2 demo`,
`ov2 bench ingest` and the tests, so that all of them exercise the node exactly as deployed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from ov2_ros.ros import names
from ov2_ros.ros.conversions import diagnostic_values
from ov2_ros.ros.publisher import AccessUnitPublisher, play


def start_node_process(parameters: dict | None = None, remaps: dict | None = None,
                       namespace: str = "", params_file: str | Path | None = None, stdout=None,
                       env: dict | None = None, cameras: list[str] | None = None,
                       answer_threads: int | None = None) -> subprocess.Popen:
    """Start `ov2_node` (python -m ov2_ros.ros.node) in a new process group: one node in
    `namespace`, or with `cameras` (namespaces) one node per camera in the one process, sharing
    `answer_threads` inference threads (None: ov2_node's default, one per camera up to the cores)."""
    if cameras and namespace:
        raise ValueError("give either one node's namespace or the cameras of one process")
    command = [sys.executable, "-m", "ov2_ros.ros.node"]
    if cameras:
        command += ["--cameras", ",".join(cameras)]
    if answer_threads is not None:
        command += ["--answer-threads", str(answer_threads)]
    command += ["--ros-args"]
    if params_file is not None:
        command += ["--params-file", str(params_file)]
    for name, value in (parameters or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        command += ["-p", f"{name}:={text}"]
    for source, target in (remaps or {}).items():
        command += ["-r", f"{source}:={target}"]
    if namespace:
        command += ["-r", f"__ns:={namespace}"]
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                            env=env or os.environ.copy(), start_new_session=True)


def start_camera_processes(parameters: dict, namespaces: list[str], one_process: bool = True,
                           answer_threads: int | None = None) -> list[subprocess.Popen]:
    """ov2_node for several cameras, as the launch file starts them: the nodes of one process
    (`--cameras`), or with one_process False a process per camera namespace."""
    if one_process:
        return [start_node_process(parameters, cameras=namespaces, answer_threads=answer_threads)]
    return [start_node_process(parameters, namespace=namespace) for namespace in namespaces]


def stop_process(process: subprocess.Popen, timeout_s: float = 5.0) -> int:
    """SIGINT the process group, then SIGKILL it if it has not exited in time."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


class DiagnosticsWatcher:
    """Subscribes to /diagnostics in this process (spun on a background thread) and keeps the
    newest ov2 ingest status per node."""

    def __init__(self, node: Node):
        self._latest: dict[str, dict] = {}
        self._condition = threading.Condition()
        node.create_subscription(DiagnosticArray, names.DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        with self._condition:
            for status in message.status:
                if status.name.endswith(names.DIAGNOSTIC_NAME_SUFFIX):
                    self._latest[status.name] = {
                        "level": int.from_bytes(status.level, "little"), "message": status.message,
                        "hardware_id": status.hardware_id, **diagnostic_values(status)}
            self._condition.notify_all()

    def latest(self, name_prefix: str = "") -> dict | None:
        with self._condition:
            for name, values in self._latest.items():
                if name.startswith(name_prefix):
                    return dict(values)
        return None

    def wait_for(self, predicate, timeout_s: float, name_prefix: str = "") -> dict | None:
        """Block until the newest status satisfies predicate(values); returns it or None."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while True:
                for name, values in self._latest.items():
                    if name.startswith(name_prefix) and predicate(values):
                        return dict(values)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)


class SpinningNode:
    """An rclpy node of this process, spun on a background thread until closed."""

    def __init__(self, name: str):
        self.node = rclpy.create_node(name)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._thread.join(timeout=2.0)


@contextmanager
def ros_client(name: str):
    """This process's rclpy context with one node spun on a background thread (yielded), for
    scripts that talk to ov2_node processes; both are closed on exit."""
    rclpy.init()
    try:
        spinning = SpinningNode(name)
        try:
            yield spinning.node
        finally:
            spinning.close()
    finally:
        rclpy.try_shutdown()


def call_service(client, request, timeout_s: float, attempts: int = 1):
    """The service's response, or None when none came within timeout_s on any of `attempts` tries.
    A response can be lost while discovery completes, though wait_for_service said the service is
    there (ros2/rclpy#1191): give attempts > 1 only for requests that are safe to repeat."""
    for _ in range(attempts):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if future.done():
            return future.result()
        client.remove_pending_request(future)
    return None


def counter(values: dict, key: str) -> int:
    return int(values.get(key, "0"))


def stream_file_through_node(source, node_parameters: dict, client_name: str, frame_id: str,
                             start_frame: int = 0, timeout_s: float = 30.0):
    """Start ov2_node in its own process, play `source` (an H264File) to it in real time like a
    camera, and return (PlaybackReport, the node's final ingest diagnostics, or None if they never
    accounted for every message sent). Raises RuntimeError if the node never subscribes."""
    node_process = start_node_process(node_parameters)
    try:
        with ros_client(client_name) as node:
            watcher = DiagnosticsWatcher(node)
            publisher = AccessUnitPublisher(node, frame_id=frame_id)
            if not publisher.wait_for_subscribers(1, timeout_s):
                raise RuntimeError(f"ov2_node did not subscribe within {timeout_s} s")
            report = play(publisher, source, pacing="realtime", start_frame=start_frame)
            final = watcher.wait_for(lambda v: counter(v, "frames_received") >= report.sent
                                     and counter(v, "queue_depth") == 0, timeout_s)
    finally:
        stop_process(node_process)
    return report, final
