"""`ov2 forward`: one forward pass on inputs exactly as the released processor prepares them,
for checking this implementation against the official one (goal: 1e-4 relative in fp32).

IN.npz: pixel_values (N, 588) float, patch_positions (N, 3) int, image_grid_thw (G, 3) int,
optional input_ids (1, L) int. OUT.npz: vision_hidden (N, D) (encoder's last layer, before
merging), vision_merged (N/4, LLM hidden) (every block, padding included), and logits
(1, L, vocab) when input_ids are given (vision tokens of the non-padding blocks fill the
<|image_pad|> ids in order).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ov2_ros.errors import MissingInputError
from ov2_ros.model.checkpoint import load_any_model
from ov2_ros.model.inputs import raster_to_block_order
from ov2_ros.model.ov2 import VisionInput, content_blocks

REQUIRED = ("pixel_values", "patch_positions", "image_grid_thw")


def run_forward(model_dir: str | Path, inputs: str | Path, out: str | Path, dtype: torch.dtype = torch.float32,
                positions_order: str = "block") -> dict:
    """positions_order "raster": patch_positions are per canvas in raster order (as the released
    model receives them; it reorders its RoPE by grid_thw) and are put in block order here."""
    inputs = Path(inputs)
    if not inputs.is_file():
        raise MissingInputError(f"inputs file {inputs} does not exist")
    with np.load(inputs, allow_pickle=False) as data:
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise ValueError(f"{inputs} lacks {missing}; it needs {list(REQUIRED)} and optionally input_ids")
        arrays = {key: data[key] for key in data.files}
    positions = arrays["patch_positions"].reshape(-1, 3)
    if positions_order == "raster":
        positions = raster_to_block_order(positions, arrays["image_grid_thw"])
    elif positions_order != "block":
        raise ValueError(f"positions order {positions_order!r} is not 'block' or 'raster'")
    model = load_any_model(model_dir, dtype)
    vision = VisionInput(torch.from_numpy(arrays["pixel_values"].astype(np.float32)).to(dtype),
                         torch.from_numpy(positions.astype(np.int64)),
                         torch.from_numpy(arrays["image_grid_thw"].astype(np.int64)))
    results = {}
    with torch.inference_mode():
        hidden, merged = model.visual(vision)
        results["vision_hidden"] = hidden.float().numpy()
        results["vision_merged"] = merged.float().numpy()
        if "input_ids" in arrays:
            ids = torch.from_numpy(arrays["input_ids"].astype(np.int64)).reshape(1, -1)
            tokens = merged[content_blocks(vision.positions_thw, model.config.encoder.spatial_merge_size)]
            results["logits"] = model.logits(model.embed(ids, tokens)).float().numpy()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **results)
    return {key: list(value.shape) for key, value in results.items()}
