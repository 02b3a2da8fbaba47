"""The exported graphs as TensorRT engines on a CUDA GPU (Jetson Orin/Thor, desktop).

Loads the engines `ov2 build-engines` cached for this machine (ov2_ros/runtime/engines.py) and
refuses, naming why, engines built for another GPU, TensorRT, ONNX or precision, or that fail to
deserialise: rebuild them with `ov2 build-engines`. Tensors live in PyTorch CUDA memory; each
graph runs with TensorRT 10's named-tensor API (set_input_shape, set_tensor_address,
execute_async_v3) on the current CUDA stream. The host side (windows, placeholders, the
generation loop) is the one every backend shares.
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from ov2_ros.model.ov2 import VisionInput, fill_placeholders
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.runtime.engines import (EngineManifest, EngineMismatchError, detect_hardware, engine_cache_root,
                                     engine_dir, import_tensorrt)
from ov2_ros.runtime.onnx_graphs import OnnxManifest, past_names, present_names, read_folder_config
from ov2_ros.runtime.windows import pack_windows, unpack_tokens


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, onnx_folder: str | Path, precision: str = "fp16", cache_root: str | Path | None = None):
        trt = import_tensorrt()
        self.trt = trt
        onnx_folder = Path(onnx_folder)
        onnx = OnnxManifest.load(onnx_folder)
        hardware = detect_hardware()
        self.folder = engine_dir(cache_root or engine_cache_root(onnx_folder), onnx, hardware, precision)
        self.manifest = EngineManifest.load(self.folder)
        reasons = self.manifest.mismatches(onnx, hardware, precision)
        if reasons:
            raise EngineMismatchError(f"engines in {self.folder} do not fit: " + "; ".join(reasons) +
                                      f"; rebuild: ov2 build-engines --onnx {onnx_folder} --precision {precision}")
        self.config = read_folder_config(onnx_folder)
        self.tokenizer = TextTokenizer(onnx_folder / "tokenizer.json")
        self.merger_positions = onnx.merger_positions
        self.present, self.past = present_names(onnx.num_layers), past_names(onnx.num_layers)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.contexts = {}, {}
        # One execution context per engine, whose shapes and addresses a run sets: runs from
        # several threads (the answers of several cameras in one process) take turns.
        self._run_lock = threading.Lock()
        for name, file in self.manifest.engines.items():
            engine = runtime.deserialize_cuda_engine((self.folder / file).read_bytes())
            if engine is None:
                raise EngineMismatchError(f"{self.folder / file} does not deserialise with TensorRT {trt.__version__}; "
                                          f"rebuild: ov2 build-engines --onnx {onnx_folder} --force")
            self.engines[name], self.contexts[name] = engine, engine.create_execution_context()
        self.device = torch.device("cuda")
        self._dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
                        trt.int32: torch.int32, trt.bool: torch.bool}

    def run(self, graph: str, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One engine on named inputs (any device) -> its named outputs (CUDA tensors)."""
        with self._run_lock:
            return self._run(graph, feeds)

    def _run(self, graph: str, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        engine, context, trt = self.engines[graph], self.contexts[graph], self.trt
        limits = self.manifest.profiles[graph]
        keep = []
        for name, tensor in feeds.items():
            low, high = limits[name][0], limits[name][2]
            if any(not lo <= size <= hi for size, lo, hi in zip(tensor.shape, low, high)):
                raise ValueError(f"{graph}: input {name} of shape {tuple(tensor.shape)} is outside the engine's "
                                 f"profile {low}..{high}; rebuild with larger ranges (trt_build/profiles.json)")
            tensor = tensor.to(self.device, self._dtypes[engine.get_tensor_dtype(name)]).contiguous()
            keep.append(tensor)
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=self._dtypes[engine.get_tensor_dtype(name)],
                                  device=self.device)
                context.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run the {graph} engine")
        stream.synchronize()
        return outputs

    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        windows = pack_windows(vision, self.config.encoder, self.merger_positions)
        blocks = self.run("vision", {name: torch.from_numpy(array) for name, array in windows.inputs.items()})
        return unpack_tokens(blocks["vision_tokens"].cpu(), windows)

    def session(self) -> "TensorRTSession":
        return TensorRTSession(self)


class TensorRTSession:
    can_extend = False  # engines are built for the four portable graphs: one token at a time

    def __init__(self, backend: TensorRTBackend):
        self.backend, self.tokens = backend, backend.config.tokens
        self.cache: list[torch.Tensor] = []

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.backend.run("embed", {"input_ids": torch.tensor([ids])})["inputs_embeds"]

    def prefill(self, input_ids, vision_tokens):
        ids = torch.tensor([input_ids], device=self.backend.device)
        embeds = fill_placeholders(self._embed(input_ids), ids, None if vision_tokens is None else
                                   vision_tokens.to(self.backend.device), self.tokens.image_pad)
        out = self.backend.run("prefill", {"inputs_embeds": embeds})
        self.cache = [out[name] for name in self.backend.present]
        return out["logits"][0].float().cpu()

    def step(self, token):
        feeds = {"inputs_embeds": self._embed([token]), **dict(zip(self.backend.past, self.cache))}
        out = self.backend.run("decode", feeds)
        self.cache = [out[name] for name in self.backend.present]
        return out["logits"][0].float().cpu()
