"""Tiny models exported once per test session (export takes a few seconds per graph)."""
import pytest
import torch

from tests.model.conftest import model_dir, tiny_model, tokenizer  # noqa: F401 (the fixtures)
from ov2_ros.model.ov2 import VisionInput
from ov2_ros.runtime.onnx_export import export_onnx


@pytest.fixture(scope="session")
def exported(tokenizer, tmp_path_factory):
    """{variant: (torch model, ONNX folder)}: fp32, fp16, and fp32 with merger position embeddings."""
    def export(name, **kwargs):
        model = tiny_model(tokenizer, seed=7, **kwargs)
        if name == "fp16":
            model = model.half()
        folder = tmp_path_factory.mktemp(f"onnx_{name}")
        export_onnx(model, folder, tokenizer.path, source_model="tiny")
        return model, folder
    return {"fp32": export("fp32"), "fp16": export("fp16"), "positions": export("positions", merger_positions=64)}


def vision_input(grid_thw, seed=0, patch_dim=588, padding_blocks=2) -> VisionInput:
    """Random patches of groups (canvases, rows, cols), block-ordered positions, the last
    `padding_blocks` blocks of every canvas padding (-1, -1, -1)."""
    generator = torch.Generator().manual_seed(seed)
    positions = []
    for canvases, rows, cols in grid_thw:
        for _ in range(canvases):
            blocks = rows * cols // 4
            t = torch.randint(0, 300, (blocks,), generator=generator)
            h = torch.randint(0, 20, (blocks,), generator=generator) * 2
            w = torch.randint(0, 20, (blocks,), generator=generator) * 2
            block = torch.stack([t, h, w], 1)[:, None].repeat(1, 4, 1) + torch.tensor([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]])
            block[blocks - padding_blocks:] = -1
            positions.append(block.reshape(-1, 3))
    positions = torch.cat(positions)
    pixels = torch.randn(positions.shape[0], patch_dim, generator=generator)
    return VisionInput(pixels, positions, torch.tensor(grid_thw))
