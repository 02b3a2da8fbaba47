"""`ov2 bench ingest`: what ingest costs, against bare PyAV measured in the same run.

Per resolution (synthetic camera stream, no B-frames, 1 s GOP):
  - decode throughput: bare PyAV (`CodecContext.decode` of each access unit, nothing else) vs
    StreamIngest.push (bitstream parsing, loss checks, motion-vector export, frame arrays), on
    the same access units in this process; reported as frames/s and their ratio.
  - publish-to-decoded latency: the real ov2_node in its own process, fed at 30 fps over ROS 2
    by a camera-like publisher whose header stamps are the send times; p50/p99 of (decoded
    wall time - stamp) from the node's /diagnostics, and whether every frame arrived.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ov2_ros.codec.container import H264File
from ov2_ros.codec.decoder import bare_decode_fps
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.codec.ingest import StreamIngest
from ov2_ros.ros.harness import counter, stream_file_through_node
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

RESOLUTIONS = ((640, 480, 2_000_000), (1280, 720, 4_000_000))


def _ingest_fps(access_units: list[bytes], repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        ingest = StreamIngest()
        started = time.perf_counter()
        for index, au in enumerate(access_units):
            ingest.push(au, stamp_ns=1 + index)
        ingest.finish()
        best = max(best, len(access_units) / (time.perf_counter() - started))
    return best


def _ros_latency(source: H264File, timeout_s: float) -> dict:
    report, final = stream_file_through_node(
        source, {"diagnostics_period_s": 0.5, "log_gop_summaries": False}, "ov2_bench_ingest",
        "bench_camera", timeout_s=timeout_s)
    if final is None:
        raise RuntimeError("no diagnostics from ov2_node")
    return {
        "published": report.sent,
        "received": counter(final, "frames_received"),
        "decoded": counter(final, "frames_decoded"),
        "lost": report.sent - counter(final, "frames_decoded"),
        "publish_to_decoded_ms_p50": float(final["stamp_to_decoded_ms_p50"]),
        "publish_to_decoded_ms_p99": float(final["stamp_to_decoded_ms_p99"]),
        "node_decode_ms_mean": float(final["decode_ms_mean"]),
    }


def run_ingest_bench(out_path: str | Path | None = None, duration_s: float = 10.0, repeats: int = 3,
                     with_ros: bool = True) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="ov2_bench_") as work:
        for width, height, bitrate in RESOLUTIONS:
            stream = write_synthetic_stream(
                SceneConfig(width=width, height=height, duration_s=duration_s, seed=7),
                H264EncoderConfig(width=width, height=height, bitrate_bps=bitrate), work,
                f"bench_{width}x{height}", progress=False)
            source = H264File(stream.h264_path)
            access_units = [au.data for au in source]
            bare = max(bare_decode_fps(access_units) for _ in range(repeats))
            ours = _ingest_fps(access_units, repeats)
            row = {"resolution": f"{width}x{height}", "frames": len(access_units),
                   "bitrate_bps": bitrate, "bare_pyav_fps": round(bare, 1),
                   "ingest_fps": round(ours, 1), "ingest_vs_bare": round(ours / bare, 3)}
            if with_ros:
                row.update(_ros_latency(source, timeout_s=30.0))
            results.append(row)
            print(json.dumps(row), flush=True)
    document = {"benchmark": "ingest", "unix_time": time.time(), "repeats": repeats,
                "note": "throughput: best of repeats, one process, 1 decoder thread; latency: real "
                        "ov2_node over ROS 2 at 30 fps", "results": results}
    if out_path is not None:
        Path(out_path).write_text(json.dumps(document, indent=1))
    print("\nresolution   bare PyAV fps   ingest fps   ratio   p50 ms   p99 ms   lost")
    for row in results:
        print(f"{row['resolution']:>10}   {row['bare_pyav_fps']:>13.0f}   {row['ingest_fps']:>10.0f}   "
              f"{row['ingest_vs_bare']:>5.2f}   {row.get('publish_to_decoded_ms_p50', np.nan):>6.1f}   "
              f"{row.get('publish_to_decoded_ms_p99', np.nan):>6.1f}   {row.get('lost', '-'):>4}")
    return document
