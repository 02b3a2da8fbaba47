"""Host side of the exported vision graph: patch rows -> padded windows with their RoPE cos/sin,
and the graph's per-window block tokens -> the model's vision tokens. Shared by the ONNX Runtime
and TensorRT backends, so both feed the graph exactly alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ov2_ros.model.config import EncoderConfig
from ov2_ros.model.encoder import window_lengths
from ov2_ros.model.ov2 import VisionInput, content_blocks
from ov2_ros.model.rope import angles_thw


@dataclass
class VisionWindows:
    """The vision graph's inputs (names as onnx_graphs.py) and how to undo the padding."""

    inputs: dict[str, np.ndarray]
    lengths: list[int]  # patches per window before padding
    keep: torch.Tensor  # (N/4,) bool: the non-padding blocks, in row order

    @property
    def shape(self) -> tuple[int, int]:
        """(windows, padded window length)."""
        return self.inputs["pixel_values"].shape[:2]


def pack_windows(vision: VisionInput, config: EncoderConfig, with_positions: bool) -> VisionWindows:
    lengths = window_lengths(vision.grid_thw, config.window_canvases)
    longest = max(lengths)
    angles = angles_thw(vision.positions_thw, config.head_dim, config.rope_theta)  # (N, hd)
    columns = {"pixel_values": vision.pixel_values.float(), "rope_cos": angles.cos(), "rope_sin": angles.sin()}
    if with_positions:
        columns["positions_thw"] = vision.positions_thw.long()
    inputs = {name: np.zeros((len(lengths), longest, *column.shape[1:]), dtype=column.numpy().dtype)
              for name, column in columns.items()}
    start = 0
    for index, length in enumerate(lengths):
        for name, column in columns.items():
            inputs[name][index, :length] = column[start:start + length].numpy()
        start += length
    inputs["valid_patches"] = np.asarray(lengths, dtype=np.int64)
    return VisionWindows(inputs, lengths, content_blocks(vision.positions_thw, config.spatial_merge_size))


def unpack_tokens(vision_tokens: np.ndarray | torch.Tensor, windows: VisionWindows, group: int = 4) -> torch.Tensor:
    """(W, L/4, hidden) from the graph -> (tokens, hidden) of the non-padding blocks in order."""
    blocks = torch.as_tensor(vision_tokens)
    rows = torch.cat([blocks[index, :length // group] for index, length in enumerate(windows.lengths)])
    return rows[windows.keep]
