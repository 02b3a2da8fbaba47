"""int8 variants of the ONNX Runtime graphs, for CPUs (the path where there is no GPU).

ONNX Runtime's dynamic quantisation: every MatMul / Gemm with a constant weight gets int8
weights (per output channel, 7 bits of range: see quantise_int8) and quantises its activations
on the fly, per call, so nothing is calibrated and no data set is needed; attention (the fused
MultiHeadAttention), norms and RoPE stay fp32. On a CPU with VNNI the matrix products run on
int8 dot products: for the default model on one thread, prefill 1.6x and decode 1.5x the fp32
graphs' speed (`ov2 bench runtime`).
The graphs are written self-contained (their int8 weights inside the .onnx), which caps them
at ONNX's 2 GB protobuf: fp32 exports above INT8_MAX_WEIGHT_BYTES get no int8 variant.

TensorRT never reads these (its 10.3 parser takes neither MatMulInteger nor DynamicQuantizeLinear,
onnx_ops.py); engines are built from the portable graphs.
"""
from __future__ import annotations

import logging
from pathlib import Path

INT8_MAX_WEIGHT_BYTES = 4 << 30  # fp32 weights -> about a quarter as int8, inside 2 GB with room
QUANTISED_OPS = ("MatMul", "Gemm")


def quantise_int8(fp32_graph: Path, out: Path) -> None:
    """fp32_graph (an `*.ort.onnx` with its external weights beside it) -> out, weights int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser advises ONNX shape pre-processing on the root logger, for static
    # quantisation's calibration; dynamic int8 weights do not need it.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # reduce_range: 7-bit weights. On x86 CPUs without VNNI (AVX2 only) ONNX Runtime's
        # u8 x s8 kernel sums pairs of products in int16 and saturates with full-range
        # weights: there a test model's vision tokens were 14 % off PyTorch and its logits up
        # to 35 %; with 7 bits 1.8 % and 1 % (AMD EPYC, AVX2; tests/runtime/test_onnx_export.py).
        quantize_dynamic(fp32_graph, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=list(QUANTISED_OPS),
                         # activation x activation products (none outside attention today) stay
                         # fp32: quantising both sides on every call costs more than it saves
                         extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
