"""The repository is one ROS package that colcon builds (interfaces, Python package and
`ros2 run` executables together), as on a robot with ROS 2 Jazzy."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_colcon_builds_the_package_and_the_result_imports(tmp_path):
    venv_bin = Path(sys.executable).parent
    colcon = venv_bin / "colcon"
    assert colcon.is_file(), "colcon comes with requirements.txt (colcon-common-extensions)"
    workspace = tmp_path / "ws"
    source = workspace / "src" / "ov2_ros"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git",
                                                                  "__pycache__", "out", "*.egg-info"))
    prefix = str(Path(sys.prefix))
    env = {**os.environ, "AMENT_PREFIX_PATH": prefix, "CMAKE_PREFIX_PATH": prefix,
           "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    build = subprocess.run(
        [str(colcon), "build", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = workspace / "install" / "ov2_ros"
    assert (install / "lib" / "ov2_ros" / "ov2_node").is_file()
    assert (install / "share" / "ov2_ros" / "config" / "ov2_node.yaml").is_file()
    site = next(install.glob("lib/python3*/site-packages"))
    check = subprocess.run(
        [sys.executable, "-c", "import ov2_ros.msg, ov2_ros.srv, ov2_ros.ros.node, ov2_ros.codec.ingest;"
         "print(ov2_ros.__file__)"],
        env={**env, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
             "AMENT_PREFIX_PATH": f"{install}:{prefix}"},
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert str(site) in check.stdout  # the installed copy, not the source tree
