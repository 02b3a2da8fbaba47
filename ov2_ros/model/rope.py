"""Rotary position embeddings: the encoder's 3D (t, h, w) RoPE and the LLM's plain 1-D RoPE.

3D RoPE (method.md 2.1): half of the head dim (32 of 64 for OV2 "large") is split t:h:w = 4:6:6
(8:12:12 frequencies). For an axis with n frequencies, inv_freq[i] = theta^(-i/n). A patch's
angle vector is [t * inv_t | h * inv_h | w * inv_w], tiled twice to the head dim; channel j uses
angle j mod half. The rotation pairs channels *interleaved*: (x0, x1, x2, x3, ...) ->
(-x1, x0, -x3, x2, ...). So channels 2i and 2i+1 form one rotated pair but use angles 2i and
2i+1: that is how every public implementation (and so every released checkpoint) does it.
Angles are computed and applied in fp32; inv_freq is always derived, never loaded.
"""
from __future__ import annotations

import torch


def axis_frequencies(head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inv_freq for t, h and w: (head_dim/8,), (3*head_dim/16,), (3*head_dim/16,) fp32."""
    unit = head_dim // 2 // 16
    sizes = (4 * unit, 6 * unit, 6 * unit)
    return tuple(1.0 / theta ** (torch.arange(n, dtype=torch.float32) / n) for n in sizes)


def angles_thw(positions_thw: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """positions_thw (N, 3) integers -> angles (N, head_dim) fp32, the half tiled twice."""
    inv_t, inv_h, inv_w = (f.to(positions_thw.device) for f in axis_frequencies(head_dim, theta))
    positions = positions_thw.to(torch.float32)
    half = torch.cat([positions[:, 0:1] * inv_t, positions[:, 1:2] * inv_h, positions[:, 2:3] * inv_w], dim=-1)
    return torch.cat([half, half], dim=-1)


def rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...) along the last dim."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def apply_rope_3d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., N, head_dim), cos/sin of the angles (N, head_dim) fp32 (broadcast against x):
    rotated in fp32, returned in x's dtype. cos/sin come in precomputed so that every layer
    shares them and an exported encoder can take them from the host."""
    x32 = x.to(torch.float32)
    return (x32 * cos + rotate_interleaved(x32) * sin).to(x.dtype)


def angles_1d(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """LLM RoPE: positions (L,) -> angles (L, head_dim) fp32, [p * inv | p * inv]."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    half = positions.to(torch.float32)[:, None] * inv[None, :]
    return torch.cat([half, half], dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x_a, x_b) halves -> (-x_b, x_a): the Qwen/Llama pairing of channel i with i + D/2."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope_1d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, L, head_dim), cos/sin (L, head_dim) or (B, 1, L, head_dim) fp32."""
    x32 = x.to(torch.float32)
    return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)
