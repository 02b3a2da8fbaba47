"""Attention as ONNX Runtime's fused kernel, for the graphs only ONNX Runtime runs.

The portable graphs (what TensorRT parses) spell attention out as MatMul / Softmax / MatMul,
which materialises every (L x L) score matrix: on a CPU that makes the exported encoder slower
than PyTorch's fused attention. For ONNX Runtime the exporter translates each
`scaled_dot_product_attention` instead into one `com.microsoft.MultiHeadAttention` node (ORT's
CPU kernel never holds the whole score matrix). Masks map as the model uses them: a (W, 1, 1, L)
key mask (padded encoder windows) becomes key_padding_mask, a 2-D (S, L) mask (causal prefill)
an additive attention_bias; the query heads that share a KV head become extra query rows of it
(no copy of the cache per query head).

The prefill graph's causal attention is cut into PREFILL_QUERY_BLOCKS blocks of query rows, each
attending only to the keys up to its last row (`ort_causal_prefill_attention`): ORT's kernels
compute every masked score before zeroing it, so one attention over a prompt of L tokens costs
L x L scores where causal needs about half; eight blocks compute 9/16 of them (a prompt of
~1,200 tokens: the int8 prefill 0.63x, fp32 0.75x; `ov2 bench prefill`, docs/deployment.md).

The extend graph (new tokens on a KV cache: drafts, a prompt's rest) keeps its cache in buffers
of a fixed capacity that the runtime binds as input and output alike, so no pass copies the
cache: each layer's attention is one `com.microsoft.GroupQueryAttention` node, which writes the
new positions' keys and values after the past ones, in place, and attends causally over both
(`attend_in_buffers`). Forgetting positions (rejected drafts) is then only a shorter length.
"""
from __future__ import annotations

import math

import onnx
import torch
from onnxscript import ir
from onnxscript import opset18 as op
from onnxscript._internal.values import Op, Opset

from ov2_ros.model.llm import causal_attention


def _contrib_op(name: str, inputs: list[tuple[str, str, bool]], outputs: list[str], attributes: dict) -> Op:
    """An onnxscript Op for the subset of an ONNX Runtime contrib op's signature used here
    (onnxruntime docs/ContribOperators.md). inputs: (name, type, optional); outputs of type T."""
    schema_class = onnx.defs.OpSchema

    def parameter(name, type_name, optional=True):
        option = schema_class.FormalParameterOption.Optional if optional else schema_class.FormalParameterOption.Single
        return schema_class.FormalParameter(name, type_name, "", param_option=option)

    schema = schema_class(
        name, "com.microsoft", 1,
        inputs=[parameter(*spec) for spec in inputs],
        outputs=[parameter(output, "T", optional=index > 0) for index, output in enumerate(outputs)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("M", ["tensor(int32)"], "")],
        attributes=[schema_class.Attribute(attribute, kind, "") for attribute, kind in attributes.items()])
    return Op(Opset("com.microsoft", 1), name, schema)


_INT, _FLOAT = onnx.defs.OpSchema.AttrType.INT, onnx.defs.OpSchema.AttrType.FLOAT
MULTI_HEAD_ATTENTION = _contrib_op(
    "MultiHeadAttention",
    [("query", "T", False), ("key", "T", True), ("value", "T", True), ("bias", "T", True),
     ("key_padding_mask", "M", True), ("attention_bias", "T", True)],
    ["output"], {"num_heads": _INT, "scale": _FLOAT})
GROUP_QUERY_ATTENTION = _contrib_op(
    "GroupQueryAttention",
    [("query", "T", False), ("key", "T", True), ("value", "T", True), ("past_key", "T", True),
     ("past_value", "T", True), ("seqlens_k", "M", False), ("total_sequence_length", "M", False)],
    ["output", "present_key", "present_value"], {"num_heads": _INT, "kv_num_heads": _INT, "scale": _FLOAT})


def ort_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """aten.scaled_dot_product_attention -> MultiHeadAttention. query (B, N, S, H), key/value
    (B, N_kv, L, H) -> (B, N, S, H).

    Grouped-query attention without copying K and V per query head: the G = N / N_kv query heads
    that share a KV head (heads kv*G .. kv*G+G-1) become G x S query rows of an N_kv-head
    attention, and the mask rows repeat G times. Decoding one token, that saves two copies of
    the whole cache per layer and step."""
    if dropout_p or is_causal:
        raise NotImplementedError("the exported model never uses dropout or is_causal")
    heads, head_dim, kv_heads = query.shape[1], query.shape[3], key.shape[1]
    q = _rows_by_kv_head(query, kv_heads)  # (B, G, S, N_kv, H)
    key_padding, mask = None, None
    if attn_mask is not None:
        if len(attn_mask.shape) == 4:  # (W, 1, 1, L): which keys exist
            key_padding = op.Cast(op.Reshape(attn_mask, op.Constant(value_ints=[0, -1])), to=ir.DataType.INT32)
        else:  # (S, L): which key each query may see
            mask = attn_mask
    out = _attend(q, key, value, mask, key_padding, scale, heads // kv_heads, kv_heads, head_dim)  # (B, G, S, N_kv, H)
    return _heads_first(out, heads, head_dim)


def ort_causal_prefill_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, blocks: int):
    """As ort_attention, for a causal (S, L) mask under which query row i sees no key after
    L - S + i (the prefill's: L = S): the rows in `blocks` blocks, each block attending to the
    keys up to its last row only, the blocks' outputs concatenated. Blocks are cut from the
    sequence length at run time; an empty block (S < blocks) gives no rows."""
    if dropout_p or is_causal or attn_mask is None or len(attn_mask.shape) != 2:
        raise NotImplementedError("the prefill attention takes a causal (S, L) mask, no dropout")
    heads, head_dim, kv_heads = query.shape[1], query.shape[3], key.shape[1]
    q = _rows_by_kv_head(query, kv_heads)  # (B, G, S, N_kv, H)
    rows, keys = op.Shape(query, start=2, end=3), op.Shape(key, start=2, end=3)  # [S], [L]
    count = op.Constant(value_ints=[blocks])
    edges = [op.Div(op.Mul(rows, op.Constant(value_ints=[i])), count) for i in range(blocks + 1)]
    first, past, axis = op.Constant(value_ints=[0]), op.Sub(keys, rows), lambda a: op.Constant(value_ints=[a])
    parts = []
    for start, end in zip(edges[:-1], edges[1:]):
        seen = op.Add(end, past)  # keys [0, seen) are all this block's rows may see
        block_mask = op.Slice(op.Slice(attn_mask, start, end, axis(0)), first, seen, axis(1))  # (s, seen)
        parts.append(_attend(op.Slice(q, start, end, axis(2)), op.Slice(key, first, seen, axis(2)),
                             op.Slice(value, first, seen, axis(2)), block_mask, None, scale, heads // kv_heads,
                             kv_heads, head_dim))  # (B, G, s, N_kv, H)
    return _heads_first(op.Concat(*parts, axis=2), heads, head_dim)


def _rows_by_kv_head(query, kv_heads: int):
    """(B, N, S, H) -> (B, G, S, N_kv, H): the G = N / N_kv query heads that share a KV head
    (heads kv*G .. kv*G+G-1) side by side."""
    head_dim = query.shape[3]
    q = op.Reshape(query, op.Constant(value_ints=[0, kv_heads, query.shape[1] // kv_heads, -1, head_dim]))
    return op.Transpose(q, perm=[0, 2, 3, 1, 4])


def _heads_first(out, heads: int, head_dim: int):
    """(B, G, S, N_kv, H) -> (B, N, S, H)."""
    return op.Reshape(op.Transpose(out, perm=[0, 3, 1, 2, 4]), op.Constant(value_ints=[0, heads, -1, head_dim]))


def _attend(q, key, value, mask, key_padding, scale, group: int, kv_heads: int, head_dim: int):
    """One MultiHeadAttention node: q (B, G, S, N_kv, H) as G x S query rows of an N_kv-head
    attention over key/value (B, N_kv, L, H), with a (S, L) bool mask (its rows repeated G times)
    or a key padding mask -> (B, G, S, N_kv, H). Shapes are spelt from the tensors (no -1) and
    a 0 in them means 0 (allowzero), so an empty block of rows stays well defined."""
    batch, rows = op.Shape(q, start=0, end=1), op.Shape(q, start=2, end=3)
    grouped_rows = op.Mul(rows, op.Constant(value_ints=[group]))
    flat = op.Reshape(q, op.Concat(batch, grouped_rows, op.Constant(value_ints=[kv_heads * head_dim]), axis=0),
                      allowzero=1)
    bias = None
    if mask is not None:
        zero = op.CastLike(op.Constant(value_float=0.0), q)
        blocked = op.CastLike(op.Constant(value_float=float("-inf")), q)
        bias = op.Unsqueeze(op.Where(mask, zero, blocked), op.Constant(value_ints=[0, 1]))  # (1, 1, S, L)
        if group > 1:
            bias = op.Tile(bias, op.Constant(value_ints=[1, 1, group, 1]))  # (1, 1, G*S, L)
    out = MULTI_HEAD_ATTENTION(flat, key, value, None, key_padding, bias, num_heads=kv_heads,
                               scale=scale if scale is not None else 1.0 / math.sqrt(head_dim))  # (B, G*S, N_kv*H)
    return op.Reshape(out, op.Concat(batch, op.Constant(value_ints=[group]), rows,
                                     op.Constant(value_ints=[kv_heads, head_dim]), axis=0), allowzero=1)


@torch.library.custom_op("ov2_ros::attend_in_buffers", mutates_args=())
def attend_in_buffers(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_buffer: torch.Tensor,
                      value_buffer: torch.Tensor, past_length: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The new positions' k, v (B, KV, S, hd) written into the buffers (B, KV, capacity, hd)
    after their first past_length (1,) positions; q (B, H, S, hd) attends causally over those
    and the new ones -> (out (B, H, S, hd), key_buffer, value_buffer). Here (tracing, tests) on
    copies of the buffers; exported as GroupQueryAttention, which writes them in place."""
    past, new = int(past_length.reshape(-1)[0]), k.shape[2]
    keys, values = key_buffer.clone(), value_buffer.clone()
    keys[:, :, past:past + new], values[:, :, past:past + new] = k, v
    return causal_attention(q, keys[:, :, :past + new], values[:, :, :past + new], past), keys, values


@attend_in_buffers.register_fake
def _attend_in_buffers_shapes(q, k, v, key_buffer, value_buffer, past_length):
    return torch.empty_like(q), torch.empty_like(key_buffer), torch.empty_like(value_buffer)


def ort_attend_in_buffers(q, k, v, key_buffer, value_buffer, past_length):
    """attend_in_buffers -> one GroupQueryAttention node (ONNX Runtime's CPU kernel attends
    causally within the new rows and over the past; given the same buffer as past and present it
    writes the new keys and values in place)."""
    heads, head_dim, kv_heads = q.shape[1], q.shape[3], k.shape[1]

    def rows_first(x):  # (B, N, S, hd) -> (B, S, N * hd)
        return op.Reshape(op.Transpose(x, perm=[0, 2, 1, 3]), op.Constant(value_ints=[0, 0, -1]))

    total = op.Add(past_length, op.Shape(q, start=2, end=3))  # (1,) int64: past + new positions
    seqlens_k = op.Cast(op.Sub(total, op.Constant(value_ints=[1])), to=ir.DataType.INT32)  # (B,): last index
    total_length = op.Cast(op.Squeeze(total, op.Constant(value_ints=[0])), to=ir.DataType.INT32)  # scalar
    out, keys, values = GROUP_QUERY_ATTENTION(rows_first(q), rows_first(k), rows_first(v), key_buffer, value_buffer,
                                              seqlens_k, total_length, num_heads=heads, kv_num_heads=kv_heads,
                                              scale=1.0 / math.sqrt(head_dim))  # (B, S, H * hd)
    out = op.Transpose(op.Reshape(out, op.Constant(value_ints=[0, 0, heads, head_dim])), perm=[0, 2, 1, 3])
    return out, keys, values


PREFILL_QUERY_BLOCKS = 8
TRANSLATION = {torch.ops.aten.scaled_dot_product_attention.default: ort_attention}
EXTEND_TRANSLATION = {**TRANSLATION, torch.ops.ov2_ros.attend_in_buffers.default: ort_attend_in_buffers}


def prefill_translation(blocks: int = PREFILL_QUERY_BLOCKS) -> dict:
    """The prefill graph's translation table: causal attention in `blocks` blocks of rows (1:
    one attention over every score, as ort_attention)."""
    if blocks < 1:
        raise ValueError(f"the prefill needs at least one block of query rows, got {blocks}")

    def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        return ort_causal_prefill_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, blocks)

    return {torch.ops.aten.scaled_dot_product_attention.default: attention}
