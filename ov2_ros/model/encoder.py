"""OneVision-Encoder (method.md 2.1): a ViT over packed canvases, positions from true (t, h, w).

Input rows are patches, already cut and packed by the tokenizer: pixel_values (N, C*P*P), each
row one PxP patch flattened channel-major and normalised with the CLIP mean/std, rows in 2x2
block order; positions_thw (N, 3) in the same order. No CLS token, no absolute positions: a
patch knows where and when it is only through the 3D RoPE.

Attention is full inside a window of `window_canvases` consecutive canvases (one group: an
I-canvas and three P-canvases) and blocked across windows, in every layer. Windows come from
grid_thw as in the release: each row (canvases, h, w) is cut into chunks of 4 canvases.

Module and parameter names mirror the released checkpoint (`model.visual.*`), so loading is a
prefix strip (ov2_ros/model/checkpoint.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ov2_ros.model.config import EncoderConfig
from ov2_ros.model.rope import angles_thw, apply_rope_3d


def window_lengths(grid_thw: torch.Tensor | list, window_canvases: int) -> list[int]:
    """Patches per attention window: every row (t, h, w) of grid_thw split into chunks of
    `window_canvases` along t (the last chunk may be shorter)."""
    lengths = []
    for t, h, w in (tuple(int(v) for v in row) for row in grid_thw):
        full, rest = divmod(t, window_canvases)
        lengths += [window_canvases * h * w] * full + ([rest * h * w] if rest else [])
    return lengths


class EncoderAttention(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # fused q, k, v (with bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x (W, L, D): W windows of L patches, each attending only within itself;
        # cos/sin (W, 1, L, head_dim) fp32; key_mask (W, 1, 1, L) bool, False for padding rows
        w, length, d = x.shape
        q, k, v = self.qkv(x).view(w, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (W, H, L, hd)
        q, k = apply_rope_3d(q, cos, sin), apply_rope_3d(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # (W, H, L, hd)
        return self.proj(out.transpose(1, 2).reshape(w, length, d))


def _runs(lengths: list[int]) -> list[tuple[int, int]]:
    """[(length, how many in a row), ...] of consecutive equal window lengths."""
    runs: list[list[int]] = []
    for length in lengths:
        if runs and runs[-1][0] == length:
            runs[-1][1] += 1
        else:
            runs.append([length, 1])
    return [(length, count) for length, count in runs]


class EncoderMLP(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.approximate = "tanh" if config.hidden_act == "gelu_pytorch_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = EncoderAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EncoderMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), cos, sin, key_mask)
        return x + self.mlp(self.layer_norm2(x))


class EncoderLayers(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))


class PatchEmbedding(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        # Kept as the release's Conv2d (weight (D, C, P, P), no bias); applied to flattened
        # patches as one matrix product, which is what a stride-P conv on one patch computes.
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size,
                                         stride=config.patch_size, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # (..., C*P*P) -> (..., D)
        weight = self.patch_embedding.weight
        return F.linear(pixel_values.to(weight.dtype), weight.flatten(1))


class AttentionPoolingHead(nn.Module):
    """The standalone encoder release's pooling head: a learned probe attends over the patches."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_heads, batch_first=True)
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = EncoderMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (N, D) -> (D,)
        pooled, _ = self.attention(self.probe, x[None], x[None], need_weights=False)
        return (pooled + self.mlp(self.norm(pooled)))[0, 0]


class OneVisionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = PatchEmbedding(config)
        self.layernorm_pre = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = EncoderLayers(config)
        if config.use_head:
            self.layernorm_post = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.head = AttentionPoolingHead(config)

    def forward(self, pixel_values: torch.Tensor, positions_thw: torch.Tensor,
                lengths: list[int]) -> torch.Tensor:
        """pixel_values (N, C*P*P), positions_thw (N, 3), lengths: patches per window (sum N).
        Returns the last layer's hidden states (N, D) (after layernorm_post if the model has one)."""
        n = pixel_values.shape[0]
        if sum(lengths) != n or positions_thw.shape != (n, 3):
            raise ValueError(f"{n} patches, {positions_thw.shape[0]} positions and "
                             f"windows of {sum(lengths)} patches do not agree")
        angles = angles_thw(positions_thw, self.config.head_dim, self.config.rope_theta)  # (N, hd)
        cos, sin = angles.cos(), angles.sin()
        out = torch.empty(n, self.config.hidden_size, dtype=self.embeddings.patch_embedding.weight.dtype,
                          device=pixel_values.device)
        start = 0
        # Windows never see each other in any layer, so consecutive windows of equal length run
        # through the whole stack as one batch (the common case: every group has 4 canvases of
        # the same size): attention costs sum(L_i^2), not N^2, and no padding is needed.
        for length, count in _runs(lengths):
            rows = slice(start, start + length * count)
            as_windows = lambda t: t[rows].unflatten(0, (count, length))  # (W, L, ...)
            out[rows] = self.encode_windows(as_windows(pixel_values), as_windows(cos), as_windows(sin)).flatten(0, 1)
            start = rows.stop
        return out

    def encode_windows(self, pixel_values: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                       key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values (W, L, C*P*P), cos/sin (W, L, head_dim) fp32 of the 3D RoPE angles,
        key_mask (W, L) bool (False: a row padding a short window to L, which no patch attends to)
        -> hidden states (W, L, D). The exported encoder is exactly this."""
        cos, sin = cos[:, None], sin[:, None]  # (W, 1, L, hd): shared by the heads
        if key_mask is not None:
            key_mask = key_mask[:, None, None, :]  # (W, 1, 1, L)
        x = self.layernorm_pre(self.embeddings(pixel_values))
        for layer in self.encoder.layers:
            x = layer(x, cos, sin, key_mask)
        if self.config.use_head:
            x = self.layernorm_post(x)
        return x

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooling head's (D,) summary of `hidden` (standalone encoder only)."""
        if not self.config.use_head:
            raise ValueError("this encoder has no pooling head (use_head is false)")
        return self.head(hidden)
