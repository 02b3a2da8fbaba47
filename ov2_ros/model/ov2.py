"""The whole OV2 model: encoder + merger (`visual`), Qwen3 (`language_model`) and `lm_head`.

Vision path: canvases' patches -> encoder (windows of 4 canvases) -> merger (one token per 2x2
block) -> padding blocks dropped (t < 0: the prompt has no placeholder for them) -> the tokens
replace the `<|image_pad|>` ids of the prompt in order; a count mismatch is an error.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ov2_ros.errors import Ov2Error
from ov2_ros.model.config import Ov2Config
from ov2_ros.model.encoder import OneVisionEncoder, window_lengths
from ov2_ros.model.llm import KVCache, Qwen3Model
from ov2_ros.model.merger import PatchMerger


class PlaceholderMismatchError(Ov2Error, ValueError):
    """The prompt's <|image_pad|> count differs from the number of vision tokens."""


@dataclass
class VisionInput:
    """What the tokenizer hands the model (method.md 1.5), as tensors.

    pixel_values (N, C*P*P) float: patches normalised with the CLIP mean/std, rows in 2x2 block
    order per canvas; positions_thw (N, 3) long: (t, h, w) per row, (-1, -1, -1) for padding;
    grid_thw (G, 3) long: (canvases, patch rows, patch cols) per group (or one row for a whole
    video as the released processor writes it); windows of 4 canvases are cut from it."""

    pixel_values: torch.Tensor
    positions_thw: torch.Tensor
    grid_thw: torch.Tensor

    def __post_init__(self):
        n = self.pixel_values.shape[0]
        if self.positions_thw.shape != (n, 3):
            raise ValueError(f"positions_thw {tuple(self.positions_thw.shape)} does not match {n} patch rows")
        declared = int(self.grid_thw.prod(-1).sum()) if len(self.grid_thw) else 0
        if declared != n:
            raise ValueError(f"grid_thw declares {declared} patches, pixel_values has {n}")


class VisionTower(OneVisionEncoder):
    """The encoder plus the merger, named as the release's `model.visual`."""

    def __init__(self, config: Ov2Config):
        super().__init__(config.encoder)
        self.merger = PatchMerger(config.encoder)

    def hidden(self, vision: VisionInput) -> torch.Tensor:
        """Encoder's last hidden state (N, D)."""
        lengths = window_lengths(vision.grid_thw, self.config.window_canvases)
        return super().forward(vision.pixel_values, vision.positions_thw, lengths)

    def forward(self, vision: VisionInput) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (hidden (N, D), merged (N/4, LLM hidden)) including padding blocks."""
        hidden = self.hidden(vision)
        return hidden, self.merger(hidden, vision.positions_thw)


def content_blocks(positions_thw: torch.Tensor, merge_size: int = 2) -> torch.Tensor:
    """(N/4,) bool: the 2x2 blocks that are not padding (their first patch has t >= 0)."""
    return positions_thw.view(-1, merge_size * merge_size, 3)[:, 0, 0] >= 0


def fill_placeholders(embeds: torch.Tensor, input_ids: torch.Tensor, vision_tokens: torch.Tensor | None,
                      image_pad: int) -> torch.Tensor:
    """embeds (1, L, hidden) of input_ids (1, L): the vision tokens (n, hidden) replace the
    embeddings at the n <|image_pad|> ids, in order; a count mismatch is an error."""
    slots = input_ids == image_pad
    count = int(slots.sum())
    available = 0 if vision_tokens is None else vision_tokens.shape[0]
    if count != available:
        raise PlaceholderMismatchError(f"the prompt has {count} <|image_pad|> placeholders but the video gave "
                                       f"{available} vision tokens")
    if count:
        embeds = embeds.masked_scatter(slots[..., None], vision_tokens.to(embeds.dtype))
    return embeds


class Ov2Model(nn.Module):
    def __init__(self, config: Ov2Config):
        super().__init__()
        self.config = config
        self.visual = VisionTower(config)
        self.language_model = Qwen3Model(config.llm)
        self.lm_head = nn.Linear(config.llm.hidden_size, config.llm.vocab_size, bias=False)
        if config.llm.tie_word_embeddings:
            self.lm_head.weight = self.language_model.embed_tokens.weight

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Fresh weights for training from scratch (GPT-style): matrices and embeddings
        N(0, std), biases 0, norms 1; residual output projections scaled by 1/sqrt(2 x layers)."""
        for name, parameter in self.named_parameters():
            if parameter.dim() == 1:  # norm weights 1; biases (norms' included) 0
                is_norm_weight = name.endswith(".weight") and ("norm" in name or name.endswith("ln_q.weight"))
                parameter.fill_(1.0 if is_norm_weight else 0.0)
            else:
                parameter.normal_(0.0, std)
        encoder, llm = self.visual.encoder.layers, self.language_model.layers
        residual_outputs = [(layer.self_attn.proj, layer.mlp.fc2, len(encoder)) for layer in encoder] + [
            (layer.self_attn.o_proj, layer.mlp.down_proj, len(llm)) for layer in llm]
        for attention_out, mlp_out, depth in residual_outputs:
            attention_out.weight.mul_((2 * depth) ** -0.5)
            mlp_out.weight.mul_((2 * depth) ** -0.5)

    def vision_tokens(self, vision: VisionInput, encoder_hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(tokens, LLM hidden): one per non-padding 2x2 block, in canvas order. encoder_hidden
        (N, D), when given: the encoder's output for `vision` computed before (a frozen
        encoder's), so only the merger runs."""
        if encoder_hidden is None:
            _, merged = self.visual(vision)
        else:
            merged = self.visual.merger(encoder_hidden, vision.positions_thw)
        return merged[content_blocks(vision.positions_thw, self.config.encoder.spatial_merge_size)]

    def embed(self, input_ids: torch.Tensor, vision_tokens: torch.Tensor | None) -> torch.Tensor:
        """input_ids (1, L) -> (1, L, hidden) with vision tokens at the <|image_pad|> ids."""
        return fill_placeholders(self.language_model.embed_tokens(input_ids), input_ids, vision_tokens,
                                 self.config.tokens.image_pad)

    def logits(self, inputs_embeds: torch.Tensor, cache: KVCache | None = None,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.language_model(inputs_embeds, cache, segment_ids))

    def forward(self, input_ids: torch.Tensor, vision: VisionInput | None,
                segment_ids: torch.Tensor | None = None, encoder_hidden: torch.Tensor | None = None,
                logits_at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows, L, vocab) of whole (possibly packed) sequences with their vision: training.
        encoder_hidden, when given: vision's encoder output computed before (a frozen encoder's).
        logits_at (rows, L) bool, when given: only those positions' logits, (N, vocab) in row-major
        order (training needs the answers' alone; a long prompt's others would cost a vocabulary
        row each)."""
        vision_tokens = None if vision is None else self.vision_tokens(vision, encoder_hidden)
        hidden = self.language_model(self.embed(input_ids, vision_tokens), None, segment_ids)  # (rows, L, hidden)
        return self.lm_head(hidden if logits_at is None else hidden[logits_at])

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config.llm.num_layers)
