"""Shared fixtures: small synthetic H.264 streams made once per session, and an isolated ROS 2
domain so test runs on one machine never hear each other (or anything else)."""
import os
from pathlib import Path

import pytest

from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

# Before rclpy is initialised anywhere in this process or in the nodes it starts.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


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
