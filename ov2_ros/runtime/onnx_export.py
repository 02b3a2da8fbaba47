"""`ov2 export-onnx`: the model as four ONNX graphs (onnx_graphs.py) that TensorRT 10.3's parser
and ONNX Runtime both take, and for ONNX Runtime an `extend` graph (several new tokens on the
cache: draft tokens, model/generate.py).

Each graph is a thin wrapper that calls the very modules the PyTorch model runs (no second
implementation): the encoder's `encode_windows` and the merger, the token embedding, and the
Qwen3 stack with an explicit KV cache. Exported with torch.export (dynamic windows, window
length, prompt length and cache length) at opset 18, then constant-folded with
onnx-graphsurgeon, checked with onnx.checker and against TensorRT 10.3's operator list
(onnx_ops.py), and written with their weights in one shared file and a manifest of sha256 hashes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from ov2_ros.model.config import Ov2Config
from ov2_ros.model.llm import KVCache
from ov2_ros.model.ov2 import Ov2Model
from ov2_ros.runtime.onnx_graphs import (GRAPHS, OPSET, WEIGHTS_FILE, OnnxManifest, buffer_names, past_names,
                                         present_names, sha256_file)
from ov2_ros.runtime.onnx_ops import check_graph
from ov2_ros.runtime.ort_int8 import INT8_MAX_WEIGHT_BYTES, quantise_int8

MAX_WINDOWS = 256
MAX_WINDOW_BLOCKS = 8192  # 2x2 blocks per window: 4 canvases of up to 2048 blocks
MAX_SEQUENCE = 32768
# The graphs with fused attention for ONNX Runtime (extend exists only there, and takes the place
# of decode: a session with it steps one token through it, on the cache in place).
ORT_GRAPHS = ("vision", "prefill", "extend")
MAX_EXTEND = 64  # the bound traced for an extend pass's tokens; the exported dimension has none
# What export_onnx writes (2: int8 variants, 3: fusable RMSNorm, 4: extend, 5: block-causal ORT
# prefill, 6: extend on a cache in place); keys cached default exports.
EXPORT_REVISION = 6


class VisionGraph(nn.Module):
    def __init__(self, model: Ov2Model, positions: bool):
        super().__init__()
        self.visual, self.positions = model.visual, positions

    def forward(self, pixel_values, rope_cos, rope_sin, valid_patches, positions_thw=None):
        # pixel_values (W, L, C*P*P); rope_cos/sin (W, L, hd); valid_patches (W,); positions_thw (W, L, 3)
        windows, length, _ = pixel_values.shape
        key_mask = torch.arange(length, device=pixel_values.device)[None, :] < valid_patches[:, None]  # (W, L)
        hidden = self.visual.encode_windows(pixel_values, rope_cos, rope_sin, key_mask)  # (W, L, D)
        flat_positions = positions_thw.reshape(-1, 3) if self.positions else None
        merged = self.visual.merger(hidden.reshape(-1, hidden.shape[-1]), flat_positions)  # (W*L/4, hidden)
        return merged.reshape(windows, -1, merged.shape[-1])


class EmbedGraph(nn.Module):
    def __init__(self, model: Ov2Model):
        super().__init__()
        self.embed_tokens = model.language_model.embed_tokens

    def forward(self, input_ids):
        return self.embed_tokens(input_ids)  # (1, S) -> (1, S, hidden)


class PrefillGraph(nn.Module):
    def __init__(self, model: Ov2Model):
        super().__init__()
        self.language_model, self.lm_head = model.language_model, model.lm_head

    def forward(self, inputs_embeds):
        cache = KVCache.empty(len(self.language_model.layers))
        hidden = self.language_model(inputs_embeds, cache)  # (1, S, hidden)
        logits = self.lm_head(hidden[:, -1])  # (1, vocab): only the next token's
        return (logits, *[t for pair in zip(cache.keys, cache.values) for t in pair])


class DecodeGraph(nn.Module):
    def __init__(self, model: Ov2Model):
        super().__init__()
        self.language_model, self.lm_head = model.language_model, model.lm_head

    def forward(self, inputs_embeds, *past):
        cache = KVCache(list(past[0::2]), list(past[1::2]))  # (1, KV, P, hd) each
        hidden = self.language_model(inputs_embeds, cache)  # (1, 1, hidden)
        return (self.lm_head(hidden[:, -1]), *[t for pair in zip(cache.keys, cache.values) for t in pair])


class BufferCache:
    """The extend graph's KV cache: per layer, key and value buffers of a fixed capacity whose
    first `length` positions hold the past; `attend` writes the new positions after them
    (ort_attention.attend_in_buffers: in place on ONNX Runtime)."""

    def __init__(self, buffers, past_length: torch.Tensor):
        self.keys, self.values = list(buffers[0::2]), list(buffers[1::2])  # (1, KV, capacity, hd) each
        self.length = past_length  # (1,) int64

    def attend(self, layer: int, q, k, v):
        out, self.keys[layer], self.values[layer] = torch.ops.ov2_ros.attend_in_buffers(
            q, k, v, self.keys[layer], self.values[layer], self.length)
        return out


class ExtendGraph(DecodeGraph):
    """Several new tokens on the cache (ONNX Runtime only): their logits at every position, not
    only the last, and the buffers with their keys and values written after the past."""

    def forward(self, inputs_embeds, past_length, *buffers):
        cache = BufferCache(buffers, past_length)
        hidden = self.language_model(inputs_embeds, cache)  # (1, S, hidden), causal among the S
        return (self.lm_head(hidden), *[t for pair in zip(cache.keys, cache.values) for t in pair])  # (1, S, vocab)


def _examples(config: Ov2Config, dtype: torch.dtype) -> dict:
    """Per graph: input names, example inputs, output names, and the dynamic dimensions in the
    structure of forward's arguments (torch.export's dynamic_shapes)."""
    e, l = config.encoder, config.llm
    windows, quarter = torch.export.Dim("windows", min=1, max=MAX_WINDOWS), torch.export.Dim(
        "window_blocks", min=1, max=MAX_WINDOW_BLOCKS)
    sequence = torch.export.Dim("sequence", min=2, max=MAX_SEQUENCE)
    cached = torch.export.Dim("cached", min=1, max=MAX_SEQUENCE)
    extended = torch.export.Dim("extended", min=1, max=MAX_EXTEND)
    capacity = torch.export.Dim("capacity", min=2, max=MAX_SEQUENCE)
    w, length, p = 2, 4 * 24, 5
    vision_names = ["pixel_values", "rope_cos", "rope_sin", "valid_patches"]
    vision_args = [torch.randn(w, length, e.patch_dim), torch.randn(w, length, e.head_dim),
                   torch.randn(w, length, e.head_dim), torch.tensor([length, length // 2])]
    per_patch = {0: windows, 1: 4 * quarter}
    vision_dims = [per_patch, per_patch, per_patch, {0: windows}]
    if e.merger_position_embeddings:
        vision_names.append("positions_thw")
        vision_args.append(torch.zeros(w, length, 3, dtype=torch.long))
        vision_dims.append(per_patch)
    kv = lambda n: torch.randn(1, l.num_kv_heads, n, l.head_dim, dtype=dtype)
    past = past_names(l.num_layers)
    return {
        "vision": (vision_names, vision_args, ["vision_tokens"], tuple(vision_dims)),
        "embed": (["input_ids"], [torch.zeros(1, 7, dtype=torch.long)], ["inputs_embeds"], ({1: sequence},)),
        "prefill": (["inputs_embeds"], [torch.randn(1, 7, l.hidden_size, dtype=dtype)],
                    ["logits", *present_names(l.num_layers)], ({1: sequence},)),
        "decode": (["inputs_embeds", *past], [torch.randn(1, 1, l.hidden_size, dtype=dtype)] + [kv(p) for _ in past],
                   ["logits", *present_names(l.num_layers)],
                   (None, tuple({2: cached} for _ in past))),  # forward(inputs_embeds, *past)
        "extend": (["inputs_embeds", "past_length", *buffer_names(l.num_layers)],
                   [torch.randn(1, 3, l.hidden_size, dtype=dtype), torch.tensor([p])] + [kv(2 * p) for _ in past],
                   ["logits", *buffer_names(l.num_layers, written=True)],
                   ({1: extended}, None, tuple({2: capacity} for _ in past))),
    }


class SharedWeights:
    """One weights file for every graph of the folder. prefill, decode and their ONNX Runtime
    variants hold the same LLM weights (an 8B model: 16 GB each in fp16); each distinct tensor
    (by content) is written once, 4 KiB-aligned, and every graph points into it as ONNX external
    data, which TensorRT's parser and ONNX Runtime read relative to the .onnx file."""

    MIN_BYTES = 1024  # smaller tensors stay inside the graph

    def __init__(self, path: Path):
        self.path = path
        self.offsets: dict[str, tuple[int, int]] = {}  # content sha256 -> (offset, length)
        self.stream = open(path, "wb")

    def externalise(self, proto) -> None:
        import onnx
        from onnx import numpy_helper

        for tensor in proto.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                continue
            raw = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
            if len(raw) < self.MIN_BYTES:
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest not in self.offsets:
                offset = -(-self.stream.tell() // 4096) * 4096
                self.stream.seek(offset)
                self.stream.write(raw)
                self.offsets[digest] = (offset, len(raw))
            offset, length = self.offsets[digest]
            for field_name in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                tensor.ClearField(field_name)
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            del tensor.external_data[:]
            for key, value in (("location", self.path.name), ("offset", str(offset)), ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value

    def close(self) -> dict:
        self.stream.close()
        return {"file": self.path.name, "sha256": sha256_file(self.path), "bytes": self.path.stat().st_size}


def _export_graph(module: nn.Module, names, args, outputs, dims, path: Path, opset: int, weights: SharedWeights,
                  translation: dict | None = None) -> None:
    import onnx
    import onnx_graphsurgeon as gs

    # The exporter narrates its steps on stdout and warns about axis names and torchvision.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module.eval(), tuple(args), dynamo=True, opset_version=opset,
                                        input_names=names, output_names=outputs, dynamic_shapes=dims,
                                        custom_translation_table=translation)
    finally:
        registration_log.setLevel(level)
    graph = gs.import_onnx(program.model_proto)
    graph.fold_constants().cleanup().toposort()  # TensorRT wants shapes and axes as constants
    proto = gs.export_onnx(graph)
    weights.externalise(proto)
    onnx.save_model(proto, path)


def export_onnx(model: Ov2Model, out: str | Path, tokenizer_json: str | Path | None = None,
                source_model: str = "", opset: int = OPSET, prefill_query_blocks: int | None = None) -> OnnxManifest:
    """Write vision/embed/prefill/decode .onnx (+ .ort.onnx and .ort.int8.onnx variants for
    fp32), their shared weights.data, config.json, tokenizer.json and onnx.json to `out`, in the
    model's dtype (fp32, or fp16 for TensorRT's strongly typed networks). prefill_query_blocks:
    the ONNX Runtime prefill's causal blocks (ort_attention.py; default PREFILL_QUERY_BLOCKS)."""
    import onnx

    from ov2_ros.runtime.ort_attention import EXTEND_TRANSLATION, PREFILL_QUERY_BLOCKS, TRANSLATION, prefill_translation

    torch_dtype = model.lm_head.weight.dtype
    dtype = {torch.float32: "fp32", torch.float16: "fp16"}.get(torch_dtype)
    if dtype is None:
        raise ValueError(f"ONNX export takes fp32 or fp16 weights, not {torch_dtype}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    config = model.config
    positions = bool(config.encoder.merger_position_embeddings)
    modules = {"vision": VisionGraph(model, positions), "embed": EmbedGraph(model),
               "prefill": PrefillGraph(model), "decode": DecodeGraph(model), "extend": ExtendGraph(model)}
    manifest = OnnxManifest(dtype=dtype, opset=opset, num_layers=config.llm.num_layers, merger_positions=positions,
                            source_model=source_model,
                            exporter={"torch": torch.__version__, "onnx": onnx.__version__})
    blocks = prefill_query_blocks or PREFILL_QUERY_BLOCKS
    examples = _examples(config, torch_dtype)
    weights = SharedWeights(out / WEIGHTS_FILE)
    try:
        for name in GRAPHS:
            path = out / f"{name}.onnx"
            _export_graph(modules[name], *examples[name], path, opset, weights)
            problems = check_graph(onnx.load(str(path), load_external_data=False))
            if problems:
                raise RuntimeError(f"{path} would not parse in TensorRT 10.3: " + "; ".join(problems))
            manifest.graphs[name] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        if dtype == "fp32":  # ONNX Runtime's fused attention runs on CPUs in fp32
            manifest.exporter["ort_prefill_query_blocks"] = blocks
            for name in ORT_GRAPHS:
                path = out / f"{name}.ort.onnx"
                translation = {"prefill": prefill_translation(blocks), "extend": EXTEND_TRANSLATION}.get(name, TRANSLATION)
                _export_graph(modules[name], *examples[name], path, opset, weights, translation)
                manifest.ort_graphs[name] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    finally:
        manifest.weights = weights.close()
    if manifest.ort_graphs and manifest.weights["bytes"] <= INT8_MAX_WEIGHT_BYTES:
        for name, entry in manifest.ort_graphs.items():
            path = out / f"{name}.ort.int8.onnx"
            quantise_int8(out / entry["file"], path)
            manifest.ort_int8_graphs[name] = {"file": path.name, "sha256": sha256_file(path),
                                              "bytes": path.stat().st_size}
    for entry in [*manifest.graphs.values(), *manifest.ort_graphs.values(), *manifest.ort_int8_graphs.values()]:
        onnx.checker.check_model(str(out / entry["file"]), full_check=True)  # with the weights in place
    config.save(out / "config.json")
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    manifest.save(out)
    return manifest


def cache_root() -> Path:
    """$OV2_CACHE, else ~/.cache/ov2_ros: exports made on demand live here."""
    return Path(os.environ.get("OV2_CACHE") or Path.home() / ".cache" / "ov2_ros")


def exported_default_model(dtype: str = "fp32") -> Path:
    """The embedded default model as an ONNX folder, exported on first use (about 30 s on a
    CPU) into the cache, keyed by the weights' hash and EXPORT_REVISION; later calls, and other
    processes, reuse it."""
    from ov2_ros.model.checkpoint import DTYPE_NAMES, load_any_model
    from ov2_ros.model.default import default_model_dir
    from ov2_ros.runtime.folders import exclusive_lock, publish_folder
    from ov2_ros.runtime.onnx_graphs import MANIFEST_NAME

    model_dir = default_model_dir()
    key = sha256_file(model_dir / "model.safetensors")[:16]
    destination = cache_root() / "onnx" / f"default-{key}-r{EXPORT_REVISION}-{dtype}"
    with exclusive_lock(destination.with_name(destination.name + ".lock")):
        if not (destination / MANIFEST_NAME).is_file():
            staging = destination.with_name(destination.name + f".exporting-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            try:
                export_onnx(load_any_model(model_dir, DTYPE_NAMES[dtype]), staging, model_dir / "tokenizer.json",
                            source_model=str(model_dir))
                publish_folder(staging, destination)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return destination
