"""Canvases and true positions (method.md 1.5).

A group becomes up to `images_per_group` canvases of the processed frame size:
  canvas 0   the I-canvas: the group's first usable frame, whole;
  canvas 1.. P-canvases: the group's global top-K candidate blocks, sorted by (frame, row, col)
             and packed in raster order of canvas blocks, each 2x2 cell one source block.
`positions_thw` has one row per patch: canvases in order, and within a canvas the "block
layout" the merger expects (blocks in raster order, the 4 patches of a block row-major). A row
is the patch's true source position (t = frame index in the stream, h, w = patch row/column in
the processed frame); padding patches are (-1, -1, -1) and black. Canvases that would hold only
padding are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ov2_ros.tokenizer.frames import ScoredFrame
from ov2_ros.tokenizer.geometry import BLOCK_PX, MERGE, PATCH_PX, FrameGeometry
from ov2_ros.tokenizer.groups import GroupBoundary

PADDING = -1


def rebase_t(positions_thw: np.ndarray, first_t: int) -> np.ndarray:
    """positions with t counted from first_t (a window shown from its first frame); padding rows
    (-1, -1, -1) stay as they are."""
    rebased = positions_thw.copy()
    rebased[rebased[:, 0] >= 0, 0] -= first_t
    return rebased


@dataclass(frozen=True, repr=False)
class TokenizedGroup:
    """One temporal group as canvases, with where every patch came from."""

    index: int
    first_t: int  # frame index (display order) of the group's first and last frame
    last_t: int
    first_stamp_ns: int
    last_stamp_ns: int
    frame_count: int  # frames the group spans (scored frames)
    stop_reason: str
    readiness: float
    coverage: int
    threshold: float
    canvases: np.ndarray  # (C, H, W, 3) uint8, C <= images_per_group
    positions_thw: np.ndarray  # (C * patches_per_canvas, 3) int32, block layout per canvas
    selected_blocks: np.ndarray  # (K, 3) int32: (t, block_row, block_col) in the P-canvases

    @property
    def kept_fraction(self) -> float:
        """Non-padding patches shown to the model / patches of all frames in the group."""
        patches_per_frame = self.positions_thw.shape[0] // max(1, self.canvases.shape[0])
        real = int((self.positions_thw[:, 0] >= 0).sum())
        return real / max(1, self.frame_count * patches_per_frame)

    def to_meta(self) -> dict:
        return {"index": self.index, "first_t": self.first_t, "last_t": self.last_t,
                "first_stamp_ns": self.first_stamp_ns, "last_stamp_ns": self.last_stamp_ns,
                "frame_count": self.frame_count, "stop_reason": self.stop_reason,
                "readiness": round(self.readiness, 3), "coverage_bins": self.coverage,
                "threshold": round(self.threshold, 3) if np.isfinite(self.threshold) else None,
                "canvases": int(self.canvases.shape[0]), "selected_blocks": int(len(self.selected_blocks)),
                "kept_fraction": round(self.kept_fraction, 5)}

    def __repr__(self) -> str:
        return (f"TokenizedGroup(index={self.index}, t={self.first_t}..{self.last_t}, "
                f"canvases={self.canvases.shape}, positions={self.positions_thw.shape}, "
                f"stop={self.stop_reason})")


def block_layout(block_rows: int, block_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(patch_row, patch_col) of a canvas's patches in block layout order."""
    block_row, block_col = np.divmod(np.arange(block_rows * block_cols), block_cols)
    sub_row, sub_col = np.divmod(np.arange(MERGE * MERGE), MERGE)
    rows = (block_row[:, None] * MERGE + sub_row[None, :]).ravel()
    cols = (block_col[:, None] * MERGE + sub_col[None, :]).ravel()
    return rows.astype(np.int32), cols.astype(np.int32)


def select_blocks(frames: list[ScoredFrame], budget: int) -> np.ndarray:
    """The group's global top-K candidate blocks of frames 1.., as (frame number in group,
    block_row, block_col) rows sorted by frame, row, column."""
    block_cols = frames[0].block_scores.shape[1]
    scores, numbers, blocks = [], [], []
    for number, frame in enumerate(frames[1:], start=1):
        if frame.usable:
            flat = frame.block_scores.ravel()
            scores.append(flat)
            numbers.append(np.full(flat.size, number, np.int32))
            blocks.append(np.arange(flat.size, dtype=np.int32))
    if not scores or budget == 0:
        return np.zeros((0, 3), np.int32)
    scores, numbers, blocks = np.concatenate(scores), np.concatenate(numbers), np.concatenate(blocks)
    if scores.size > budget:
        keep = np.argpartition(-scores, budget - 1)[:budget]
        numbers, blocks = numbers[keep], blocks[keep]
    order = np.lexsort((blocks, numbers))
    rows, cols = np.divmod(blocks[order], block_cols)
    return np.stack([numbers[order], rows, cols], axis=1).astype(np.int32)


def pack_group(index: int, frames: list[ScoredFrame], boundary: GroupBoundary, geometry: FrameGeometry,
               images_per_group: int) -> TokenizedGroup:
    """Canvases and positions of one group of scored frames (in display order)."""
    frames = list(frames)
    # An unusable first frame swaps places with the first usable one (it cannot be the I-canvas).
    first_usable = next((i for i, frame in enumerate(frames) if frame.usable), None)
    if first_usable not in (None, 0):
        frames[0], frames[first_usable] = frames[first_usable], frames[0]
    blocks_per_canvas = geometry.blocks_per_canvas
    patches_per_canvas = geometry.patches_per_canvas
    layout_rows, layout_cols = block_layout(geometry.block_rows, geometry.block_cols)

    if first_usable is None:  # nothing to show: a group of black or corrupt frames
        selected = np.zeros((0, 3), np.int32)
        canvases = np.zeros((0, geometry.height, geometry.width, 3), np.uint8)
        positions = np.zeros((0, 3), np.int32)
    else:
        selected = select_blocks(frames, (images_per_group - 1) * blocks_per_canvas)
        p_canvases = -(-len(selected) // blocks_per_canvas)
        canvases = np.zeros((1 + p_canvases, geometry.height, geometry.width, 3), np.uint8)
        positions = np.full(((1 + p_canvases) * patches_per_canvas, 3), PADDING, np.int32)
        canvases[0] = frames[0].rgb()
        positions[:patches_per_canvas] = np.stack(
            [np.full(patches_per_canvas, frames[0].t), layout_rows, layout_cols], axis=1)
        if len(selected):
            block_rows, block_cols = geometry.block_rows, geometry.block_cols
            # Each needed frame as (blocks, 28, 28, 3), then one gather of all selected blocks.
            numbers, inverse = np.unique(selected[:, 0], return_inverse=True)
            frame_blocks = np.stack([
                frames[n].rgb().reshape(block_rows, BLOCK_PX, block_cols, BLOCK_PX, 3)
                .transpose(0, 2, 1, 3, 4).reshape(-1, BLOCK_PX, BLOCK_PX, 3) for n in numbers])
            picked = frame_blocks[inverse.ravel(), selected[:, 1] * block_cols + selected[:, 2]]
            cells = np.zeros((p_canvases * blocks_per_canvas, BLOCK_PX, BLOCK_PX, 3), np.uint8)
            cells[: len(picked)] = picked
            # (canvas, cell_row, cell_col, 28, 28, 3) -> (canvas, H, W, 3)
            canvases[1:] = cells.reshape(p_canvases, block_rows, block_cols, BLOCK_PX, BLOCK_PX, 3) \
                .transpose(0, 1, 3, 2, 4, 5).reshape(p_canvases, geometry.height, geometry.width, 3)
            times = np.array([frames[n].t for n in selected[:, 0]], np.int32)
            sub_row, sub_col = np.divmod(np.arange(MERGE * MERGE), MERGE)
            block_positions = np.stack([
                np.repeat(times, MERGE * MERGE),
                (selected[:, 1:2] * MERGE + sub_row[None, :]).ravel(),
                (selected[:, 2:3] * MERGE + sub_col[None, :]).ravel()], axis=1)
            positions[patches_per_canvas:patches_per_canvas + len(block_positions)] = block_positions
            selected = np.stack([times, selected[:, 1], selected[:, 2]], axis=1).astype(np.int32)
    ordered = sorted(frames, key=lambda frame: frame.t)
    return TokenizedGroup(
        index=index, first_t=ordered[0].t, last_t=ordered[-1].t, first_stamp_ns=ordered[0].stamp_ns,
        last_stamp_ns=ordered[-1].stamp_ns, frame_count=len(frames), stop_reason=boundary.stop_reason,
        readiness=boundary.readiness, coverage=boundary.coverage, threshold=boundary.threshold,
        canvases=canvases, positions_thw=positions, selected_blocks=selected)


def patch_pixels(canvas: np.ndarray, row_in_canvas: int, block_cols: int) -> np.ndarray:
    """The 14x14x3 pixels of the patch at `row_in_canvas` (block layout order) of a canvas."""
    block, sub = divmod(row_in_canvas, MERGE * MERGE)
    block_row, block_col = divmod(block, block_cols)
    sub_row, sub_col = divmod(sub, MERGE)
    y, x = (block_row * MERGE + sub_row) * PATCH_PX, (block_col * MERGE + sub_col) * PATCH_PX
    return canvas[y:y + PATCH_PX, x:x + PATCH_PX]
