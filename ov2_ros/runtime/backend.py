"""One interface for every way of running the model: encode canvases into vision tokens, and
open a decoding session (prefill, then one step per token). The generation loop
(model/generate.py), prompts and parsers are shared; a backend only runs the network.

Backends: `torch` (the PyTorch model, any dtype), `onnxruntime` (an exported ONNX folder, CPU;
onnxruntime_backend.py) and `tensorrt` (engines built by trt_build/; tensorrt_backend.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from ov2_ros.model.config import Ov2Config
from ov2_ros.model.generate import DecodingSession, TorchSession
from ov2_ros.model.ov2 import Ov2Model, VisionInput
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.runtime.onnxruntime_backend import ORT_PRECISIONS

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# What each backend runs in: torch casts its weights; onnxruntime runs an fp32 export as is or
# its int8 graphs (ort_int8.py); tensorrt runs the engines of an fp32 or fp16 export.
PRECISIONS = {"torch": ("fp32", "fp16", "bf16"), "onnxruntime": ORT_PRECISIONS, "tensorrt": ("fp32", "fp16")}


class Backend(Protocol):
    name: str
    config: Ov2Config
    tokenizer: TextTokenizer

    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        """(tokens, LLM hidden): one per non-padding 2x2 block, in canvas order."""

    def session(self) -> DecodingSession:
        """A fresh sequence to generate."""


class TorchBackend:
    name = "torch"

    def __init__(self, model: Ov2Model, tokenizer: TextTokenizer):
        self.model = model.eval()
        self.config = model.config
        self.tokenizer = tokenizer

    @property
    def dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    @torch.inference_mode()
    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        device = self.model.lm_head.weight.device
        vision = VisionInput(vision.pixel_values.to(device, self.dtype), vision.positions_thw.to(device), vision.grid_thw)
        return self.model.vision_tokens(vision)

    def session(self) -> DecodingSession:
        return TorchSession(self.model)


def open_backend(kind: str, path: str | Path | None = None, dtype: str = "fp32", threads: int | None = None) -> Backend:
    """`torch`: a model folder; `onnxruntime`: a folder written by `ov2 export-onnx`; `tensorrt`:
    such a folder, its engines built by `ov2 build-engines`. Without a path: the embedded default
    model (for onnxruntime / tensorrt exported once into the cache, onnx_export.exported_default_model).
    dtype: one of PRECISIONS[kind]."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; one of {BACKENDS}")
    if dtype not in PRECISIONS[kind]:
        raise ValueError(f"the {kind} backend runs in {', '.join(PRECISIONS[kind])}, not {dtype!r}")
    if kind == "torch":
        from ov2_ros.model.checkpoint import DTYPE_NAMES, load_any
        from ov2_ros.model.default import default_model_dir

        model, tokenizer = load_any(path or default_model_dir(), DTYPE_NAMES[dtype])
        return TorchBackend(model, tokenizer)
    if kind == "tensorrt":
        from ov2_ros.runtime.engines import import_tensorrt

        import_tensorrt()  # a clear error now, not after exporting
    if path is None:
        from ov2_ros.runtime.onnx_export import exported_default_model

        path = exported_default_model("fp32" if kind == "onnxruntime" else dtype)
    if kind == "onnxruntime":
        from ov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads, precision=dtype)
    from ov2_ros.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)
