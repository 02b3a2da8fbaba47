"""The repository is one ROS package that colcon builds (interfaces, Python package and
`ros2 run` executables together), as on a robot with ROS 2 Jazzy."""
import subprocess
import sys


def test_colcon_builds_the_package_and_the_result_imports(colcon_install, tmp_path):
    install = colcon_install.package
    assert (install / "lib" / "ov2_ros" / "ov2_node").is_file()
    assert (install / "share" / "ov2_ros" / "config" / "ov2_node.yaml").is_file()
    assert (install / "share" / "ov2_ros" / "launch" / "ov2.launch.py").is_file()
    check = subprocess.run(
        [sys.executable, "-c", "import ov2_ros.msg, ov2_ros.srv, ov2_ros.ros.node, ov2_ros.codec.ingest;"
         "print(ov2_ros.__file__)"],
        env=colcon_install.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert colcon_install.env["PYTHONPATH"] in check.stdout  # the installed copy, not the source tree
