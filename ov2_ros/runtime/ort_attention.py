"""Attention as ONNX Runtime's fused kernel, for the graphs only ONNX Runtime runs.

The portable graphs (what TensorRT parses) spell attention out as MatMul / Softmax / MatMul,
which materialises every (L x L) score matrix: on a CPU that makes the exported encoder slower
than PyTorch's fused attention. For ONNX Runtime the exporter translates each
`scaled_dot_product_attention` instead into one `com.microsoft.MultiHeadAttention` node (ORT's
CPU kernel never holds the whole score matrix). Masks map as the model uses them: a (W, 1, 1, L)
key mask (padded encoder windows) becomes key_padding_mask, a 2-D (S, L) mask (causal prefill)
an additive attention_bias; the query heads that share a KV head become extra query rows of it
(no copy of the cache per query head).
"""
from __future__ import annotations

import math

import onnx
import torch
from onnxscript import ir
from onnxscript import opset18 as op
from onnxscript._internal.values import Op, Opset


def _multi_head_attention() -> Op:
    schema_class = onnx.defs.OpSchema

    def parameter(name, type_name, optional=True):
        option = schema_class.FormalParameterOption.Optional if optional else schema_class.FormalParameterOption.Single
        return schema_class.FormalParameter(name, type_name, "", param_option=option)

    # The subset of the contrib op's signature used here (onnxruntime docs/ContribOperators.md).
    schema = schema_class(
        "MultiHeadAttention", "com.microsoft", 1,
        inputs=[parameter("query", "T", optional=False), parameter("key", "T"), parameter("value", "T"),
                parameter("bias", "T"), parameter("key_padding_mask", "M"), parameter("attention_bias", "T")],
        outputs=[parameter("output", "T", optional=False)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("M", ["tensor(int32)"], "")],
        attributes=[schema_class.Attribute("num_heads", schema_class.AttrType.INT, ""),
                    schema_class.Attribute("scale", schema_class.AttrType.FLOAT, "")])
    return Op(Opset("com.microsoft", 1), "MultiHeadAttention", schema)


MULTI_HEAD_ATTENTION = _multi_head_attention()


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
    group = heads // kv_heads
    q = op.Reshape(query, op.Constant(value_ints=[0, kv_heads, group, -1, head_dim]))  # (B, N_kv, G, S, H)
    q = op.Reshape(op.Transpose(q, perm=[0, 2, 3, 1, 4]),
                   op.Constant(value_ints=[0, -1, kv_heads * head_dim]))  # (B, G*S, N_kv*H)
    key_padding, bias = None, None
    if attn_mask is not None:
        if len(attn_mask.shape) == 4:  # (W, 1, 1, L): which keys exist
            key_padding = op.Cast(op.Reshape(attn_mask, op.Constant(value_ints=[0, -1])), to=ir.DataType.INT32)
        else:  # (S, L): which key each query may see
            zero = op.CastLike(op.Constant(value_float=0.0), query)
            blocked = op.CastLike(op.Constant(value_float=float("-inf")), query)
            bias = op.Unsqueeze(op.Where(attn_mask, zero, blocked), op.Constant(value_ints=[0, 1]))  # (1, 1, S, L)
            if group > 1:
                bias = op.Tile(bias, op.Constant(value_ints=[1, 1, group, 1]))  # (1, 1, G*S, L)
    out = MULTI_HEAD_ATTENTION(q, key, value, None, key_padding, bias, num_heads=kv_heads,
                               scale=scale if scale is not None else 1.0 / math.sqrt(head_dim))  # (B, G*S, N_kv*H)
    out = op.Reshape(out, op.Constant(value_ints=[0, group, -1, kv_heads, head_dim]))  # (B, G, S, N_kv, H)
    return op.Reshape(op.Transpose(out, perm=[0, 3, 1, 2, 4]),
                      op.Constant(value_ints=[0, heads, -1, head_dim]))  # (B, N, S, H)


TRANSLATION = {torch.ops.aten.scaled_dot_product_attention.default: ort_attention}
