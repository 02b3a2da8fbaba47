"""`ov2 demo`: the README's main job. Renders a synthetic tabletop scene, encodes it to H.264,
starts the real `ov2_node` in its own process, streams the scene to it over ROS 2 like a camera
(realtime, one access unit per message) and reports what the node decoded and how it cut the
stream into temporal groups of canvases."""
from __future__ import annotations

import json
from pathlib import Path

from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.ros.harness import counter, stream_file_through_node
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

_REPORTED = (
    "frames_received", "frames_decoded", "frames_pending_in_decoder", "frames_dropped_waiting_for_idr",
    "decode_errors", "frames_dropped_queue_full", "width", "height", "input_rate_hz",
    "decode_ms_mean", "decode_ms_p99", "stamp_to_decoded_ms_p50", "stamp_to_decoded_ms_p99",
    "groups_emitted", "kept_fraction", "tokenizer_ms_mean", "last_group",
)


def run_demo(out_dir: str | Path, duration_s: float = 6.0, seed: int = 0, width: int = 640,
             height: int = 480, start_frame: int = 0) -> int:
    out_dir = Path(out_dir)
    stream = write_synthetic_stream(
        SceneConfig(width=width, height=height, duration_s=duration_s, seed=seed),
        H264EncoderConfig(width=width, height=height), out_dir, "demo_scene")
    source = H264File(stream.h264_path)
    print(f"scene: {stream.h264_path} ({source.info.frame_count} access units, ground truth in "
          f"{stream.truth_path.name})", flush=True)

    try:
        report, final = stream_file_through_node(source, {"diagnostics_period_s": 0.5}, "ov2_demo",
                                                 "demo_camera", start_frame, timeout_s=30.0)
    except RuntimeError as error:
        print(error)
        return 1
    if final is None:
        print("no final diagnostics from ov2_node")
        return 1
    summary = {"published": report.sent, **{key: final[key] for key in _REPORTED}}
    (out_dir / "demo_diagnostics.json").write_text(json.dumps(final, indent=1))
    print("\nwhat ov2_node decoded and tokenized (from its /diagnostics):")
    for key, value in summary.items():
        print(f"  {key:28s} {value}")
    print(f"full diagnostics: {out_dir / 'demo_diagnostics.json'}")
    decoded_all = counter(final, "frames_decoded") + counter(final, "frames_pending_in_decoder")
    return 0 if decoded_all + counter(final, "frames_dropped_waiting_for_idr") == report.sent else 1
