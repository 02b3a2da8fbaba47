"""`ov2 canvases`: tokenize an H.264 file and write what the model would see.

Writes canvas_000.png..., positions_thw.npy (one row per patch, canvas order, block layout),
meta.json (sizes, groups, timings) and bitcost.png (the bit-cost stream with group boundaries
and where the selected blocks fall).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ov2_ros.codec.container import H264File
from ov2_ros.codec.ingest import FrameRecord, StreamIngest
from ov2_ros.errors import MissingInputError
from ov2_ros.tokenizer.geometry import MERGE, PATCH_PX
from ov2_ros.tokenizer.pipeline import (
    TokenizedVideo,
    TokenizerConfig,
    sample_frames_baseline,
    tokenize_frames,
    uniform_indices,
)


def decode_file(path: str | Path, export_macroblocks: bool = True) -> tuple[H264File, list[FrameRecord], dict]:
    """Every frame of a file through the live ingest (display order), with per-frame codec data
    (motion vectors, and macroblock QPs for the bitcost scorer) and decode statistics. Stamps
    are the presentation times (ns from the first frame)."""
    source = H264File(path)
    ingest = StreamIngest(max_stamp_gap_ns=10**18, export_macroblocks=export_macroblocks)  # a file has no transport gaps
    frames: list[FrameRecord] = []
    started = time.perf_counter()
    for au in source:
        frames += ingest.push(au.data, 1 + int(round(au.pts_seconds * 1e9))).frames
    frames += ingest.finish()
    counters = ingest.counters.to_dict()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded ({counters})")
    return source, frames, {"decode_s": time.perf_counter() - started, "ingest": counters}


def tokenize_file(path: str | Path, mode: str = "offline", config: TokenizerConfig = TokenizerConfig(),
                  sample_frames: int | None = None, frames_baseline: int | None = None
                  ) -> tuple[TokenizedVideo, H264File, list[FrameRecord], dict]:
    """Decode and tokenize a file. frames_baseline=N gives the frame-sampling baseline with N
    frames instead (0: as many frames as the codec run makes canvases)."""
    source, frames, stats = decode_file(path, export_macroblocks=config.saliency == "bitcost")
    sample = set(uniform_indices(len(frames), sample_frames)) if sample_frames else None
    if frames_baseline is None:
        video = tokenize_frames(frames, config, mode, sample)
    else:
        count = frames_baseline or tokenize_frames(frames, config, mode, sample).canvas_count
        video = sample_frames_baseline(frames, len(frames), count, config.max_pixels,
                                       config.grouping.images_per_group)
    video.timings_s.update({"decode_s": stats["decode_s"]})
    return video, source, frames, stats


def write_canvases(video: TokenizedVideo, out_dir: str | Path, source: H264File, frames: list[FrameRecord],
                   config: TokenizerConfig, extra: dict | None = None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("canvas_*.png"):
        stale.unlink()
    for index, canvas in enumerate(video.canvases):
        cv2.imwrite(str(out_dir / f"canvas_{index:03d}.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    np.save(out_dir / "positions_thw.npy", video.positions_thw.astype(np.int32), allow_pickle=False)
    fps = source.info.fps
    geometry = video.geometry
    groups = []
    for group in video.groups:
        entry = group.to_meta()
        entry.update({"start_frame": group.first_t, "end_frame": group.last_t,
                      "start_s": round(group.first_t / fps, 4), "end_s": round(group.last_t / fps, 4)})
        groups.append(entry)
    meta = {
        "source": str(source.path), "container": source.info.container, "mode": video.mode,
        "fps": fps, "frames": len(frames), "source_size": [geometry.source_height, geometry.source_width],
        "processed_size": [geometry.height, geometry.width], "patch_size": PATCH_PX, "merge": MERGE,
        "patches_per_canvas": geometry.patches_per_canvas, "canvases": video.canvas_count,
        "positions_layout": "rows in canvas order; within a canvas 2x2 blocks in raster order, "
                            "the 4 patches of a block row-major; (t, h, w) = (display frame index, "
                            "patch row, patch column); padding (-1, -1, -1)",
        "kept_fraction": round(float((video.positions_thw[:, 0] >= 0).sum())
                               / max(1, len(frames) * geometry.patches_per_canvas), 5),
        "config": config.to_dict(), "groups": groups,
        "timings_s": {k: round(v, 4) for k, v in video.timings_s.items()},
        **(extra or {}),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    plot_bitcost(video, frames, fps, out_dir / "bitcost.png")
    return meta


@dataclass(frozen=True)
class CanvasFolder:
    """What `ov2 canvases` wrote, read back: per group its canvases and positions."""

    canvases: list[np.ndarray]  # per group (C, H, W, 3) uint8 RGB
    positions_thw: list[np.ndarray]  # per group (C * H * W / 196, 3) int32
    fps: float
    source_size: tuple[int, int]  # (height, width)
    meta: dict


def read_canvases(out_dir: str | Path) -> CanvasFolder:
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    if not meta_path.is_file():
        raise MissingInputError(f"{out_dir} has no meta.json: not a folder written by `ov2 canvases`")
    meta = json.loads(meta_path.read_text())
    positions = np.load(out_dir / "positions_thw.npy", allow_pickle=False)
    height, width = meta["processed_size"]
    per_canvas = (height // PATCH_PX) * (width // PATCH_PX)
    canvases, group_positions, index = [], [], 0
    for group in meta["groups"]:
        images = []
        for number in range(index, index + group["canvases"]):
            path = out_dir / f"canvas_{number:03d}.png"
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.shape[:2] != (height, width):
                raise MissingInputError(f"{path} is missing or not a {width}x{height} image")
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        canvases.append(np.stack(images))
        group_positions.append(positions[index * per_canvas:(index + group["canvases"]) * per_canvas])
        index += group["canvases"]
    if index * per_canvas != len(positions):
        raise ValueError(f"{out_dir}: meta.json lists {index} canvases, positions_thw.npy has {len(positions)} rows")
    return CanvasFolder(canvases, group_positions, float(meta["fps"]), tuple(meta["source_size"]), meta)


def plot_bitcost(video: TokenizedVideo, frames: list[FrameRecord], fps: float, path: Path) -> None:
    """Bit cost per frame (by picture type, log scale) with group boundaries, and the number of
    selected blocks per frame below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([f.display_index for f in frames]) / fps
    bits = np.array([f.bit_cost_bits for f in frames], float)
    types = np.array([f.picture_type for f in frames])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.3]})
    for letter, colour in (("I", "tab:red"), ("P", "tab:blue"), ("B", "tab:green")):
        mask = types == letter
        if mask.any():
            top.bar(t[mask], bits[mask] / 1000, width=1.0 / fps, color=colour, label=f"{letter} frames")
    top.set_yscale("log")
    top.set_ylabel("bit cost (kbit)")
    selected = np.zeros(len(frames))
    index_of = {f.display_index: i for i, f in enumerate(frames)}
    for group in video.groups:
        for axis in (top, bottom):
            axis.axvline(group.first_t / fps, color="black", linewidth=0.8, alpha=0.6)
        for frame_t in group.selected_blocks[:, 0] if len(group.selected_blocks) else []:
            selected[index_of[int(frame_t)]] += 1
        if group.canvases.shape[0]:
            bottom.plot(group.positions_thw[0, 0] / fps, 0, marker="v", color="tab:red", markersize=6)
    bottom.bar(t, selected, width=1.0 / fps, color="tab:purple")
    bottom.set_ylabel("selected\nblocks")
    bottom.set_xlabel("time (s); vertical lines: group starts; red marks: I-canvas frames")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(f"{len(video.groups)} groups, {video.canvas_count} canvases ({video.mode})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
