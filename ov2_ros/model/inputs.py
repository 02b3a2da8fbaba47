"""From the tokenizer's canvases to the model's inputs, as the released processor prepares them:
pixels rescaled to [0, 1] and normalised with the CLIP mean/std, each 14x14 patch one row
flattened channel-major (C, P, P), rows in the canvas's block layout; one grid_thw row per group
(canvases, patch rows, patch cols), so the encoder's windows are exactly the groups."""
from __future__ import annotations

import numpy as np
import torch

from ov2_ros.model.ov2 import VisionInput
from ov2_ros.tokenizer.canvas import TokenizedGroup
from ov2_ros.tokenizer.geometry import MERGE, PATCH_PX

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def canvas_patch_rows(canvases: np.ndarray) -> np.ndarray:
    """(C, H, W, 3) uint8 canvases -> (C * H/14 * W/14, 3*14*14) float32 normalised patch rows
    in block layout: 2x2 blocks in raster order, the 4 patches of a block row-major."""
    count, height, width, _ = canvases.shape
    rows, cols = height // PATCH_PX, width // PATCH_PX
    pixels = (canvases.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    # (C, block_row, sub_row, P, block_col, sub_col, P, ch) -> (C, block_row, block_col, sub_row, sub_col, ch, P, P)
    patches = pixels.reshape(count, rows // MERGE, MERGE, PATCH_PX, cols // MERGE, MERGE, PATCH_PX, 3)
    patches = patches.transpose(0, 1, 4, 2, 5, 7, 3, 6)
    return np.ascontiguousarray(patches.reshape(count * rows * cols, 3 * PATCH_PX * PATCH_PX))


def vision_input(groups: list[TokenizedGroup]) -> VisionInput:
    """The groups of a tokenized video (or of a live window) as one VisionInput."""
    return vision_input_from([g.canvases for g in groups], [g.positions_thw for g in groups])


def vision_input_from(canvases: list[np.ndarray], positions_thw: list[np.ndarray]) -> VisionInput:
    """Per group: (C, H, W, 3) uint8 canvases and their (C*H*W/196, 3) positions."""
    if not canvases:
        raise ValueError("no groups: the video gave nothing to look at")
    grid = []
    for group_canvases, group_positions in zip(canvases, positions_thw, strict=True):
        count, height, width, _ = group_canvases.shape
        grid.append((count, height // PATCH_PX, width // PATCH_PX))
        if len(group_positions) != count * (height // PATCH_PX) * (width // PATCH_PX):
            raise ValueError(f"{len(group_positions)} positions for {count} canvases of {height}x{width}")
    return VisionInput(pixel_values=torch.from_numpy(np.concatenate([canvas_patch_rows(c) for c in canvases])),
                       positions_thw=torch.from_numpy(np.concatenate(positions_thw)).long(),
                       grid_thw=torch.tensor(grid, dtype=torch.long))


def raster_to_block_order(rows: np.ndarray, grid_thw: np.ndarray, merge_size: int = MERGE) -> np.ndarray:
    """Reorder per-patch rows given canvas by canvas in raster order (as the released processor
    writes patch positions) into the 2x2 block order of the pixel rows."""
    parts, start = [], 0
    for t, h, w in np.asarray(grid_thw).tolist():
        count = t * h * w
        grid = rows[start:start + count].reshape(t, h // merge_size, merge_size, w // merge_size, merge_size, -1)
        parts.append(grid.transpose(0, 1, 3, 2, 4, 5).reshape(count, -1))
        start += count
    if start != len(rows):
        raise ValueError(f"grid_thw covers {start} rows, got {len(rows)}")
    return np.concatenate(parts)
