"""`ov2 bench tokenizer`: what live tokenization costs, against bare decoding in the same run.

  throughput  one core (this process pinned to CPU 0, OpenCV single-threaded): bare PyAV
              decode of every access unit vs the live path (StreamIngest + StreamingTokenizer)
              at frame strides 1, 2 and 4; reported in frames/s and as ratios to bare decode,
              with decoding that only exports motion vectors as the floor of the live path.
  reference   wall time of `ov2 canvases`' work (decode, tokenize, write PNG canvases) vs
              `codec-video-prep` 0.2.5 on the same file and frame budget, when its CLI is given.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2

from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.codec.decoder import bare_decode_fps
from ov2_ros.codec.ingest import StreamIngest
from ov2_ros.documents import write_json
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream
from ov2_ros.tokenizer.files import tokenize_file, write_canvases
from ov2_ros.tokenizer.pipeline import StreamingTokenizer, TokenizerConfig

STRIDES = (1, 2, 4)


def _live_fps(access_units: list[bytes], stride: int) -> tuple[float, int]:
    ingest = StreamIngest(decoder_threads=1)
    tokenizer = StreamingTokenizer(TokenizerConfig(frame_stride=stride))
    groups = 0
    started = time.perf_counter()
    for index, au in enumerate(access_units):
        for frame in ingest.push(au, 1 + index).frames:
            groups += len(tokenizer.push(frame))
    for frame in ingest.finish():
        groups += len(tokenizer.push(frame))
    groups += len(tokenizer.flush())
    return len(access_units) / (time.perf_counter() - started), groups


def _throughput(path: Path, repeats: int) -> dict:
    access_units = [au.data for au in H264File(path)]
    bare = max(bare_decode_fps(access_units) for _ in range(repeats))
    with_vectors = max(bare_decode_fps(access_units, export_motion_vectors=True) for _ in range(repeats))
    row = {"file": path.name, "frames": len(access_units), "bare_decode_fps": round(bare, 1),
           "decode_with_motion_vectors_fps": round(with_vectors, 1),
           "decode_with_motion_vectors_vs_bare": round(with_vectors / bare, 3)}
    for stride in STRIDES:
        best, groups = max(_live_fps(access_units, stride) for _ in range(repeats))
        row[f"live_stride{stride}_fps"] = round(best, 1)
        row[f"live_stride{stride}_vs_bare"] = round(best / bare, 3)
        row[f"live_stride{stride}_groups"] = groups
    return row


def _versus_reference(path: Path, reference_cli: str, work: Path) -> dict:
    started = time.perf_counter()
    config = TokenizerConfig()
    video, source, frames, stats = tokenize_file(path, "offline", config)
    write_canvases(video, work / "ours", source, frames, config)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([reference_cli, "--video", str(path), "--out_dir", str(work / "reference"),
                    "--num_sampled_frames", str(len(frames)), "--max_pixels", str(config.max_pixels),
                    "--canvas_format", "png"], check=True, capture_output=True, timeout=1800)
    reference = time.perf_counter() - started
    return {"ours_wall_s": round(ours, 3), "reference_wall_s": round(reference, 3),
            "speedup_vs_reference": round(reference / ours, 2), "canvases": video.canvas_count}


def run_tokenizer_bench(out_path: str | Path | None = None, reference_cli: str | None = None,
                        media: list[Path] = (), duration_s: float = 10.0, repeats: int = 2) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ov2_bench_tok_") as work:
        work = Path(work)
        files = [write_synthetic_stream(
            SceneConfig(width=1280, height=720, duration_s=duration_s, seed=11),
            H264EncoderConfig(width=1280, height=720, bitrate_bps=4_000_000), work, "synthetic_720p",
            progress=False).mp4_path, *media]
        affinity = os.sched_getaffinity(0)
        threads = cv2.getNumThreads()
        for path in files:
            os.sched_setaffinity(0, {min(affinity)})
            cv2.setNumThreads(1)
            try:
                row = _throughput(path, repeats)
            finally:
                os.sched_setaffinity(0, affinity)
                cv2.setNumThreads(threads)
            if reference_cli:
                row.update(_versus_reference(path, reference_cli, work / path.stem))
            rows.append(row)
            print(json.dumps(row), flush=True)
    document = {"benchmark": "tokenizer", "unix_time": time.time(), "repeats": repeats,
                "note": "throughput pinned to one core; live = ingest (parse, decode, motion vectors, "
                        "arrays) + streaming tokenizer; reference = codec-video-prep 0.2.5 CLI",
                "rows": rows}
    write_json(out_path, document)
    return document
