"""The interface every backend implements, and the PyTorch one."""
from __future__ import annotations

from typing import Protocol

import torch

from ov2_ros.model.generate import GenerationConfig, GenerationResult, generate
from ov2_ros.model.ov2 import Ov2Model, VisionInput
from ov2_ros.model.prompt import TextTokenizer


class Backend(Protocol):
    name: str
    tokenizer: TextTokenizer

    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        """(tokens, LLM hidden): one per non-padding 2x2 block."""

    def generate(self, input_ids: list[int], vision_tokens: torch.Tensor | None,
                 config: GenerationConfig) -> GenerationResult:
        ...


class TorchBackend:
    name = "torch"

    def __init__(self, model: Ov2Model, tokenizer: TextTokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    @torch.inference_mode()
    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        vision = VisionInput(vision.pixel_values.to(self.dtype), vision.positions_thw, vision.grid_thw)
        return self.model.vision_tokens(vision)

    def generate(self, input_ids, vision_tokens, config: GenerationConfig) -> GenerationResult:
        return generate(self.model, self.tokenizer, input_ids, vision_tokens, config)
