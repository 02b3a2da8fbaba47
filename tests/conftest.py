"""Shared fixtures: small synthetic H.264 streams made once per session, and an isolated ROS 2
domain so test runs on one machine never hear each other (or anything else)."""
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

# Before rclpy is initialised anywhere in this process or in the nodes it starts.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def make_stream(directory, name, width=320, height=240, duration_s=2.0, gop=15, b_frames=0, seed=1):
    return write_synthetic_stream(
        SceneConfig(width=width, height=height, duration_s=duration_s, seed=seed),
        H264EncoderConfig(width=width, height=height, gop_frames=gop, b_frames=b_frames,
                          bitrate_bps=600_000),
        directory, name, progress=False)


@pytest.fixture(scope="session")
def p_stream(tmp_path_factory):
    """320x240, 2 s at 30 fps, GOP 15, I/P only."""
    return make_stream(tmp_path_factory.mktemp("p_stream"), "p")


@pytest.fixture(scope="session")
def b_stream(tmp_path_factory):
    """320x240, 2 s at 30 fps, GOP 15, two B-frames between references."""
    return make_stream(tmp_path_factory.mktemp("b_stream"), "b", b_frames=2)


@pytest.fixture(scope="session")
def large_stream(tmp_path_factory):
    """640x480, 2 s, GOP 30: a second resolution for resolution changes."""
    return make_stream(tmp_path_factory.mktemp("large_stream"), "large", 640, 480, gop=30, seed=2)


def media_file(name: str) -> Path:
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"real footage {path} is absent: this test runs where ../shared/media sits beside the "
                    "repository (never committed)")
    return path


@dataclass(frozen=True)
class ColconInstall:
    package: Path  # install/ov2_ros
    env: dict  # environment in which the installed package (not this checkout) is found


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> ColconInstall:
    """This repository built by `colcon build` in a fresh workspace, as on a robot."""
    venv_bin = Path(sys.executable).parent
    colcon = venv_bin / "colcon"
    assert colcon.is_file(), "colcon comes with requirements.txt (colcon-common-extensions)"
    workspace = tmp_path_factory.mktemp("colcon") / "ws"
    shutil.copytree(REPO, workspace / "src" / "ov2_ros", ignore=shutil.ignore_patterns(
        ".venv*", "build", "install", "log", ".git", "__pycache__", "out", "runs", "cache", "*.egg-info"))
    prefix = str(Path(sys.prefix))
    env = {**os.environ, "AMENT_PREFIX_PATH": prefix, "CMAKE_PREFIX_PATH": prefix,
           "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    build = subprocess.run(
        [str(colcon), "build", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    package = workspace / "install" / "ov2_ros"
    site = next(package.glob("lib/python3*/site-packages"))
    return ColconInstall(package, {
        **env, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": f"{package}:{prefix}",
        "LD_LIBRARY_PATH": f"{package / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}"})
