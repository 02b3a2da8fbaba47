"""The 2x2 merger (method.md 2.1): LayerNorm per patch, the 4 patches of each 2x2 block
concatenated (they are consecutive rows: the tokenizer writes blocks in that order), then
Linear(4D -> 4D), GELU, Linear(-> LLM hidden). Names as the release: merger.ln_q, merger.mlp.0,
merger.mlp.2 (and pos_emb_h / pos_emb_w when the checkpoint uses merger position embeddings).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ov2_ros.model.config import EncoderConfig


class PatchMerger(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.group = config.spatial_merge_size ** 2
        self.merge_size = config.spatial_merge_size
        merged = config.hidden_size * self.group
        self.ln_q = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(merged, merged), nn.GELU(), nn.Linear(merged, config.out_hidden_size))
        self.position_embeddings = config.merger_position_embeddings
        if self.position_embeddings:
            self.pos_emb_h = nn.Embedding(self.position_embeddings, config.out_hidden_size)
            self.pos_emb_w = nn.Embedding(self.position_embeddings, config.out_hidden_size)

    def forward(self, hidden: torch.Tensor, positions_thw: torch.Tensor) -> torch.Tensor:
        # hidden (N, D) in 2x2 block order -> (N/4, out)
        if hidden.shape[0] % self.group:
            raise ValueError(f"{hidden.shape[0]} patches are not whole {self.merge_size}x{self.merge_size} blocks")
        merged = self.mlp(self.ln_q(hidden).reshape(-1, self.group * hidden.shape[-1]))
        if self.position_embeddings:
            # (N/4, 3); padding blocks (-1) look up row 0: they are dropped before the LLM anyway
            block = positions_thw.view(-1, self.group, 3)[:, 0].long().clamp(min=0) // self.merge_size
            merged = merged + self.pos_emb_h(block[:, 1]) + self.pos_emb_w(block[:, 2])
        return merged
