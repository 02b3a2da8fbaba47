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
    if not groups:
        raise ValueError("no groups: the video gave nothing to look at")
    pixel_rows = [canvas_patch_rows(group.canvases) for group in groups]
    grid = [(group.canvases.shape[0], group.canvases.shape[1] // PATCH_PX, group.canvases.shape[2] // PATCH_PX)
            for group in groups]
    return VisionInput(pixel_values=torch.from_numpy(np.concatenate(pixel_rows)),
                       positions_thw=torch.from_numpy(np.concatenate([g.positions_thw for g in groups])).long(),
                       grid_thw=torch.tensor(grid, dtype=torch.long))
