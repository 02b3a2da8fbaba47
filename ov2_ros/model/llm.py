"""Qwen3 decoder (method.md 2.2): RMSNorm, grouped-query attention with q/k RMSNorm, SwiGLU MLP,
plain 1-D RoPE, untied (or tied) LM head, and a KV cache for generation.

Names as Qwen3ForCausalLM: embed_tokens, layers.{i}.self_attn.{q,k,v,o}_proj,
self_attn.{q,k}_norm, mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm, norm,
and lm_head at the top (ov2_ros/model/ov2.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ov2_ros.model.config import LLMConfig
from ov2_ros.model.rope import angles_1d, apply_rope_1d


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32, scale in the input dtype (as Qwen3). Written as a division by the
        # root, not a product with rsqrt: the exported graph is then the pattern ONNX Runtime
        # fuses into one SimplifiedLayerNormalization kernel (7 nodes -> 1, 17 times per step).
        x32 = x.to(torch.float32)
        normed = x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


@dataclass
class KVCache:
    """Per layer, keys and values of every position seen so far: (B, KV heads, L, head_dim)."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @classmethod
    def empty(cls, num_layers: int) -> "KVCache":
        return cls([None] * num_layers, [None] * num_layers)

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (draft tokens the model did not confirm)."""
        self.keys = [k[:, :, :length] for k in self.keys]
        self.values = [v[:, :, :length] for v in self.values]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Append the new positions' k, v (B, KV, L, hd) to the layer's cache; their queries q
        (B, H, L, hd) attend causally over cache + new -> (B, H, L, hd). (The ONNX Runtime
        export swaps in a cache that writes into preallocated buffers: onnx_export.py.)"""
        past = 0 if self.keys[layer] is None else self.keys[layer].shape[2]
        k, v = self.extend(layer, k, v)
        return causal_attention(q, k, v, past)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """q (B, H, L, hd) of the positions after the first `past` of k, v (B, KV, past + L, hd):
    position i sees the past ones and the new ones <= i. enable_gqa: each group of query heads
    reads its KV head, without copying the cache."""
    length = q.shape[2]
    mask = None
    if length > 1:
        mask = torch.ones(length, k.shape[2], dtype=torch.bool, device=q.device).tril(diagonal=past)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


class Attention(nn.Module):
    def __init__(self, config: LLMConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_heads * config.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=bias)
        self.o_proj = nn.Linear(config.num_heads * config.head_dim, config.hidden_size, bias=bias)
        self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps)  # per head, before RoPE
        self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps)

    def queries_keys_values(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """x (B, L, hidden) -> q (B, H, L, hd) and k (B, KV, L, hd), normed and rotated, and v (B, KV, L, hd)."""
        b, length, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, length, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, length, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope_1d(q, *rope), apply_rope_1d(k, *rope), v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None, layer: int,
                spans: list[list[tuple[int, int]]] | None = None, causal_rows: bool = False) -> torch.Tensor:
        # x (B, L, hidden); rope: cos, sin (L, head_dim) or (B, 1, L, head_dim) for these L new positions;
        # spans (packed sequences, training, no cache): per row, the [start, end) runs that attend
        # causally within themselves alone; causal_rows (training, no cache): plain causal
        # attention over each row; neither: causal over cache + new
        b, length, _ = x.shape
        q, k, v = self.queries_keys_values(x, rope)
        if spans is not None:
            # One fused causal call per run, not a (L, L) block-diagonal mask: a masked kernel
            # computes every score of the row, the runs' own triangles are a fraction of them.
            out = torch.cat([torch.cat([F.scaled_dot_product_attention(q[row:row + 1, :, start:end], k[row:row + 1, :, start:end],
                                                                       v[row:row + 1, :, start:end], is_causal=True, enable_gqa=True)
                                        for start, end in row_spans], dim=2)
                             for row, row_spans in enumerate(spans)])  # (B, H, L, hd)
        elif causal_rows:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        elif cache is not None:
            out = cache.attend(layer, q, k, v)
        else:
            out = causal_attention(q, k, v, past=0)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, rope, cache, layer, spans=None, causal_rows=False):
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, layer, spans, causal_rows)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nn.Module):
    """Token embeddings, decoder layers and the final norm (no LM head)."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, inputs_embeds: torch.Tensor, cache: KVCache | None = None,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """inputs_embeds (B, L, hidden) at the positions after what `cache` holds -> (B, L, hidden).
        segment_ids (B, L): packed sequences (training): each segment attends causally to itself
        only and its positions restart at 0, as if it were alone."""
        spans, causal_rows = None, False
        if segment_ids is not None and cache is None and _one_sequence_per_row(segment_ids):
            # Each row one sequence from position 0, then padding: plain causal attention over
            # the rows gives the sequences' tokens the same outputs as attending run by run
            # (padding comes after them), in one batched call instead of one per run.
            causal_rows, segment_ids = True, None
        if segment_ids is not None:
            if cache is not None:
                raise ValueError("packed sequences (segment_ids) are for training, without a KV cache")
            length = segment_ids.shape[1]
            starts = torch.ones_like(segment_ids, dtype=torch.bool)
            starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
            spans = _runs(starts)
            index = torch.arange(length, device=segment_ids.device).expand_as(segment_ids)
            segment_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
            angles = angles_1d((index - segment_start).reshape(-1), self.config.head_dim, self.config.rope_theta)
            angles = angles.view(*segment_ids.shape, -1)[:, None]  # (B, 1, L, head_dim)
        else:
            start = cache.length if cache is not None else 0  # an int, or a (1,) tensor in an exported graph
            positions = start + torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
            angles = angles_1d(positions, self.config.head_dim, self.config.rope_theta)
        rope = (angles.cos(), angles.sin())  # once for every layer
        x = inputs_embeds
        for index, layer in enumerate(self.layers):
            x = layer(x, rope, cache, index, spans, causal_rows)
        return self.norm(x)


def _runs(starts: torch.Tensor) -> list[list[tuple[int, int]]]:
    """starts (B, L) bool, True where a run begins (always at 0) -> per row, each run's [start, end)."""
    length = starts.shape[1]
    spans = []
    for row in starts:
        begins = row.nonzero()[:, 0].tolist()
        spans.append(list(zip(begins, [*begins[1:], length])))
    return spans


def _one_sequence_per_row(segment_ids: torch.Tensor) -> bool:
    """segment_ids (B, L): does every row hold one segment from its start, then only padding (-1)?"""
    starts_new = (segment_ids[:, 1:] != segment_ids[:, :-1]) & (segment_ids[:, 1:] >= 0)
    return bool((segment_ids[:, 0] >= 0).all()) and not bool(starts_new.any())
