"""`ov2 study fidelity`: our tokenizer against OV2's reference (`codec-video-prep` 0.2.5, run
from its own virtual environment) on the same files at matched settings.

For each clip:
  - reference: its CLI on every frame (num_sampled_frames = frame count), our max_pixels,
    PNG canvases; wall time of the whole command.
  - selection IoU on the reference's own sampled frames and groups: for every reference group
    we pick the top-K blocks of its frames with our scores; IoU of the (frame, block) sets of
    the P-canvases, ours vs the reference's. A random choice of K blocks per group is the floor.
  - our full pipeline (offline and stream): group-boundary agreement (a boundary matches within
    +-2 frames; F1 over both sides), P-block IoU, canvas counts, wall time.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from ov2_ros.codec.saliency import SCORERS
from ov2_ros.tokenizer.canvas import select_blocks
from ov2_ros.tokenizer.files import decode_file, write_canvases
from ov2_ros.tokenizer.frames import FrameScorer
from ov2_ros.tokenizer.groups import block_budget
from ov2_ros.tokenizer.pipeline import TokenizedVideo, TokenizerConfig, tokenize_frames

BOUNDARY_TOLERANCE_FRAMES = 2


def run_reference(reference_cli: str, video: Path, out_dir: Path, frame_count: int, max_pixels: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [reference_cli, "--video", str(video), "--out_dir", str(out_dir), "--num_sampled_frames",
         str(frame_count), "--max_pixels", str(max_pixels), "--canvas_format", "png"],
        capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"codec-video-prep failed on {video}: {result.stderr[-2000:]}")
    return read_reference(out_dir, wall)


def read_reference(out_dir: Path, wall_s: float) -> dict:
    """Groups, P-canvas blocks and frames of a finished reference run in `out_dir`."""
    meta = json.loads((out_dir / "meta.json").read_text())
    positions = np.load(out_dir / "src_patch_position.npy")
    frame_ids = np.load(out_dir / "frame_ids.npy").tolist()
    groups, p_blocks = [], set()
    patches_per_canvas = meta["S_full"]
    for group in meta["groups"]:
        first = group["global_img_offset"]
        rows = positions[(first + 1) * patches_per_canvas:(first + group["num_canvases"]) * patches_per_canvas]
        rows = rows[rows[:, 0] >= 0]
        p_blocks |= {(int(t), int(h) // 2, int(w) // 2) for t, h, w in rows}
        groups.append([int(t) for t in group["frame_ids"]])
    return {"wall_s": wall_s, "groups": groups, "p_blocks": p_blocks, "frame_ids": frame_ids,
            "canvases": int(meta["total_images"]), "processed_size": meta["processed_hw"],
            "group_starts": [g[0] for g in groups]}


def iou(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def boundary_f1(ours: list[int], theirs: list[int], tolerance: int = BOUNDARY_TOLERANCE_FRAMES) -> float:
    """F1 of group starts (the first start, frame 0, excluded), matched within `tolerance`."""
    ours, theirs = [t for t in ours if t > 0], [t for t in theirs if t > 0]
    if not ours and not theirs:
        return 1.0
    matched_ours = sum(any(abs(a - b) <= tolerance for b in theirs) for a in ours)
    matched_theirs = sum(any(abs(a - b) <= tolerance for b in ours) for a in theirs)
    precision, recall = matched_ours / max(1, len(ours)), matched_theirs / max(1, len(theirs))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _p_blocks(video: TokenizedVideo) -> set:
    return {(int(t), int(r), int(c)) for g in video.groups for t, r, c in g.selected_blocks}


def compare_clip(video_path: Path, reference_cli: str, work_dir: Path, max_pixels: int = 150_000,
                 saliency: str = "motion_residual", seed: int = 0, reference: dict | None = None) -> dict:
    work_dir.mkdir(parents=True, exist_ok=True)
    config = TokenizerConfig(max_pixels=max_pixels, saliency=saliency)
    started = time.perf_counter()
    # Macroblock types and quantisers cost decoding time: exported only for the scorer using them.
    source, frames, stats = decode_file(video_path, export_macroblocks=saliency == "bitcost")
    decode_s = time.perf_counter() - started
    if reference is None:
        reference = run_reference(reference_cli, video_path, work_dir / "reference", len(frames), max_pixels)

    # Selection on the reference's own frames and groups, with our block scores.
    scorer = FrameScorer(max_pixels, config.saliency)
    scored = {frame.display_index: scorer.score(frame, frame.display_index) for frame in frames}
    geometry = scorer.geometry
    budget = block_budget(config.grouping, geometry.blocks_per_canvas)
    rng = np.random.default_rng(seed)
    ours_on_reference, random_on_reference = set(), set()
    for group in reference["groups"]:
        members = [scored[t] for t in group if t in scored]
        for number, row, col in select_blocks(members, budget):
            ours_on_reference.add((members[number].t, int(row), int(col)))
        candidates = [(frame.t, r, c) for frame in members[1:] for r in range(geometry.block_rows)
                      for c in range(geometry.block_cols)]
        pick = rng.choice(len(candidates), size=min(budget, len(candidates)), replace=False)
        random_on_reference |= {candidates[i] for i in pick}

    row = {"clip": video_path.name, "saliency": saliency, "frames": len(frames), "source_size": [geometry.source_height, geometry.source_width],
           "processed_size": [geometry.height, geometry.width],
           "reference": {"groups": len(reference["groups"]), "canvases": reference["canvases"],
                         "wall_s": round(reference["wall_s"], 3)},
           "selection_iou_on_reference_groups": round(iou(ours_on_reference, reference["p_blocks"]), 4),
           "random_iou_on_reference_groups": round(iou(random_on_reference, reference["p_blocks"]), 4)}
    for mode in ("offline", "stream"):
        started = time.perf_counter()
        video = tokenize_frames(frames, config, mode)
        write_canvases(video, work_dir / f"ours_{saliency}_{mode}", source, frames, config)
        tokenize_s = time.perf_counter() - started
        row[mode] = {
            "groups": len(video.groups), "canvases": video.canvas_count,
            "boundary_f1": round(boundary_f1([g.first_t for g in video.groups], reference["group_starts"]), 4),
            "p_block_iou": round(iou(_p_blocks(video), reference["p_blocks"]), 4),
            "wall_s": round(decode_s + tokenize_s, 3),
            "speedup_vs_reference": round(reference["wall_s"] / (decode_s + tokenize_s), 2),
        }
    return row


def run_study(videos: list[Path], reference_cli: str, work_dir: Path, out_json: Path,
              max_pixels: int = 150_000) -> list[dict]:
    """Both scorers on every clip; the reference runs once per clip."""
    rows = []
    for video in videos:
        frame_count = len(decode_file(video)[1])
        reference = run_reference(reference_cli, video, work_dir / video.stem / "reference", frame_count, max_pixels)
        for saliency in SCORERS:
            row = compare_clip(video, reference_cli, work_dir / video.stem, max_pixels, saliency, reference=reference)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"study": "tokenizer fidelity vs codec-video-prep 0.2.5",
                                    "max_pixels": max_pixels, "rows": rows}, indent=1))
    plot_study(rows, out_json.with_suffix(".png"))
    return rows


def plot_study(rows: list[dict], path: Path) -> None:
    """Selection IoU per clip and scorer, with the random floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(dict.fromkeys(row["clip"] for row in rows))
    x = np.arange(len(clips))
    figure, axis = plt.subplots(figsize=(9, 4))
    for offset, saliency in zip((-0.27, 0.0), SCORERS):
        values = [next(r["selection_iou_on_reference_groups"] for r in rows
                       if r["clip"] == clip and r["saliency"] == saliency) for clip in clips]
        axis.bar(x + offset, values, width=0.27, label=f"ours: {saliency}")
    randoms = [next(r["random_iou_on_reference_groups"] for r in rows if r["clip"] == clip) for clip in clips]
    axis.bar(x + 0.27, randoms, width=0.27, color="grey", label="random choice")
    axis.axhline(0.7, color="black", linestyle="--", linewidth=0.8, label="goal 0.7")
    axis.set_xticks(x, clips, fontsize=8)
    axis.set_ylabel("IoU of selected (frame, block) sets")
    axis.set_title("P-canvas block selection vs codec-video-prep 0.2.5 (its own frames and groups)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
