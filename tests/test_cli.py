"""The `ov2` command as a user runs it (a separate process)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OV2 = [sys.executable, "-m", "ov2_ros.cli"]


def _run(*args, timeout=180):
    return subprocess.run([*OV2, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy())


def test_synth_stream_then_probe(tmp_path):
    result = _run("synth-stream", "--out", tmp_path, "--name", "cli", "--width", "256", "--height", "192",
                  "--duration", "1", "--gop", "10", "--b-frames", "2", "--bitrate", "500k", "--seed", "3")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout.strip().splitlines()[-1])
    assert files["frames"] == 30 and all(Path(files[k]).is_file() for k in ("h264", "mp4", "ground_truth"))
    probe = _run("probe", files["h264"])
    assert probe.returncode == 0, probe.stderr
    summary = json.loads(probe.stdout)
    assert (summary["width"], summary["height"], summary["frame_count"]) == (256, 192, 30)
    assert summary["has_b_frames"] and summary["gop_frames"] == 10 and summary["idr_count"] == 3


def test_synth_stream_renders_a_training_world_with_its_episode_truth(tmp_path):
    from ov2_ros.synth.worlds import StillsWorld, Variation, WorldConfig

    result = _run("synth-stream", "--world", "stills", "--variation", "heldout", "--out", tmp_path, "--width", "160",
                  "--height", "120", "--duration", "0.5", "--seed", "4")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout.strip().splitlines()[-1])
    truth = json.loads(Path(files["ground_truth"]).read_text())
    world = StillsWorld(WorldConfig(duration_s=0.5, seed=4, variation=Variation("heldout")))
    assert files["frames"] == 15 and truth["episode"] == json.loads(json.dumps(world.episode_truth()))


@pytest.mark.parametrize("args, message", [
    (["probe", "/nonexistent/clip.mp4"], "no such H.264 file"),
    (["publish", "/nonexistent/clip.mp4"], "no such H.264 file"),
    (["synth-stream", "--out", "/tmp/ov2_never", "--width", "321"], "even"),
])
def test_bad_input_fails_with_a_clear_message(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_publish_reaches_a_subscriber_in_another_process(p_stream):
    """`ov2 publish` paced by acknowledgements: every access unit arrives, in order, stamped."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from ov2_ros.ros.harness import SpinningNode, stop_process

    rclpy.init()
    spinning = SpinningNode("ov2_cli_listener")
    received = []
    spinning.node.create_subscription(CompressedImage, "/cli_cam/image_raw/h264", received.append,
                                      QoSProfile(depth=300, reliability=ReliabilityPolicy.RELIABLE))
    publisher = subprocess.Popen([*OV2, "publish", p_stream.mp4_path, "--topic", "/cli_cam/image_raw/h264",
                                  "--frame-id", "cli_optical", "--pacing", "acked"],
                                 stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        output, _ = publisher.communicate(timeout=60)
    finally:
        stop_process(publisher)
        spinning.close()
        rclpy.try_shutdown()
    assert publisher.returncode == 0 and "sent 60 access units" in output
    assert len(received) == 60
    assert {m.format for m in received} == {"h264"} and {m.header.frame_id for m in received} == {"cli_optical"}
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in received]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] == pytest.approx(33_333_333, abs=2)


def test_canvases_writes_what_the_model_sees(b_stream, tmp_path):
    out = tmp_path / "canvases"
    result = _run("canvases", b_stream.h264_path, "--out", out, "--mode", "stream", "--max-group-frames", "20")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    import numpy as np

    positions = np.load(out / "positions_thw.npy")
    canvases = sorted(out.glob("canvas_*.png"))
    assert len(canvases) == meta["canvases"] > 0
    assert positions.shape == (meta["canvases"] * meta["patches_per_canvas"], 3)
    assert meta["processed_size"] == [252, 308] and meta["fps"] == 30.0
    assert sum(g["frame_count"] for g in meta["groups"]) == meta["frames"] == 60
    assert all(g["frame_count"] <= 20 for g in meta["groups"])
    assert (out / "bitcost.png").stat().st_size > 10_000
    baseline = _run("canvases", b_stream.mp4_path, "--out", tmp_path / "frames", "--frames-baseline", "6")
    assert baseline.returncode == 0, baseline.stderr
    assert json.loads((tmp_path / "frames" / "meta.json").read_text())["canvases"] == 6


def test_canvases_refuses_a_file_that_is_not_h264(tmp_path):
    bad = tmp_path / "noise.h264"
    bad.write_bytes(bytes(range(256)) * 40)
    result = _run("canvases", bad, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
