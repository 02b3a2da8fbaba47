"""`ov2 export-onnx`: the model as four ONNX graphs (onnx_graphs.py) that TensorRT 10.3's parser
and ONNX Runtime both take.

Each graph is a thin wrapper that calls the very modules the PyTorch model runs (no second
implementation): the encoder's `encode_windows` and the merger, the token embedding, and the
Qwen3 stack with an explicit KV cache. Exported with torch.export (dynamic windows, window
length, prompt length and cache length) at opset 18, then constant-folded with
onnx-graphsurgeon, checked with onnx.checker and against TensorRT 10.3's operator list
(onnx_ops.py), and written with a manifest of sha256 hashes.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from ov2_ros.model.config import Ov2Config
from ov2_ros.model.llm import KVCache
from ov2_ros.model.ov2 import Ov2Model
from ov2_ros.runtime.onnx_graphs import GRAPHS, OPSET, OnnxManifest, past_names, present_names, sha256_file
from ov2_ros.runtime.onnx_ops import check_graph

EXTERNAL_DATA_BYTES = 1 << 30  # graphs above this keep their weights in a side file (protobuf caps at 2 GiB)
MAX_WINDOWS = 256
MAX_WINDOW_BLOCKS = 8192  # 2x2 blocks per window: 4 canvases of up to 2048 blocks
MAX_SEQUENCE = 32768


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


def _examples(config: Ov2Config, dtype: torch.dtype) -> dict:
    """Example inputs, names and dynamic dimensions of each graph (by input name, or in the
    structure of forward's arguments)."""
    e, l = config.encoder, config.llm
    windows, quarter = torch.export.Dim("windows", min=1, max=MAX_WINDOWS), torch.export.Dim(
        "window_blocks", min=1, max=MAX_WINDOW_BLOCKS)
    sequence = torch.export.Dim("sequence", min=2, max=MAX_SEQUENCE)
    cached = torch.export.Dim("cached", min=1, max=MAX_SEQUENCE)
    w, length, p = 2, 4 * 24, 5
    vision_names = ["pixel_values", "rope_cos", "rope_sin", "valid_patches"]
    vision_args = [torch.randn(w, length, e.patch_dim), torch.randn(w, length, e.head_dim),
                   torch.randn(w, length, e.head_dim), torch.tensor([length, length // 2])]
    vision_dims = {"pixel_values": {0: windows, 1: 4 * quarter}, "rope_cos": {0: windows, 1: 4 * quarter},
                   "rope_sin": {0: windows, 1: 4 * quarter}, "valid_patches": {0: windows}}
    if e.merger_position_embeddings:
        vision_names.append("positions_thw")
        vision_args.append(torch.zeros(w, length, 3, dtype=torch.long))
        vision_dims["positions_thw"] = {0: windows, 1: 4 * quarter}
    kv = lambda n: torch.randn(1, l.num_kv_heads, n, l.head_dim, dtype=dtype)
    past = past_names(l.num_layers)
    return {
        "vision": (vision_names, vision_args, ["vision_tokens"], vision_dims),
        "embed": (["input_ids"], [torch.zeros(1, 7, dtype=torch.long)], ["inputs_embeds"],
                  {"input_ids": {1: sequence}}),
        "prefill": (["inputs_embeds"], [torch.randn(1, 7, l.hidden_size, dtype=dtype)],
                    ["logits", *present_names(l.num_layers)], {"inputs_embeds": {1: sequence}}),
        "decode": (["inputs_embeds", *past], [torch.randn(1, 1, l.hidden_size, dtype=dtype)] + [kv(p) for _ in past],
                   ["logits", *present_names(l.num_layers)],
                   (None, tuple({2: cached} for _ in past))),  # forward(inputs_embeds, *past)
    }


def _export_graph(module: nn.Module, names, args, outputs, dims, path: Path, opset: int) -> None:
    import onnx
    import onnx_graphsurgeon as gs

    # The exporter narrates its steps on stdout and warns about axis names and torchvision.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            shapes = dims if isinstance(dims, tuple) else tuple(dims.get(name) for name in names)
            program = torch.onnx.export(module.eval(), tuple(args), dynamo=True, opset_version=opset,
                                        input_names=names, output_names=outputs, dynamic_shapes=shapes)
    finally:
        registration_log.setLevel(level)
    graph = gs.import_onnx(program.model_proto)
    graph.fold_constants().cleanup().toposort()  # TensorRT wants shapes and axes as constants
    proto = gs.export_onnx(graph)
    weight_bytes = sum(tensor.ByteSize() for tensor in proto.graph.initializer)
    if weight_bytes > EXTERNAL_DATA_BYTES:
        onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(proto, path)
    onnx.checker.check_model(str(path), full_check=True)


def export_onnx(model: Ov2Model, out: str | Path, tokenizer_json: str | Path | None = None,
                source_model: str = "", opset: int = OPSET) -> OnnxManifest:
    """Write vision/embed/prefill/decode .onnx, config.json, tokenizer.json and onnx.json to `out`,
    in the model's dtype (fp32, or fp16 for TensorRT's strongly typed networks)."""
    import onnx

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
               "prefill": PrefillGraph(model), "decode": DecodeGraph(model)}
    manifest = OnnxManifest(dtype=dtype, opset=opset, num_layers=config.llm.num_layers, merger_positions=positions,
                            source_model=source_model,
                            exporter={"torch": torch.__version__, "onnx": onnx.__version__})
    examples = _examples(config, torch_dtype)
    for name in GRAPHS:
        path = out / f"{name}.onnx"
        _export_graph(modules[name], *examples[name], path, opset)
        problems = check_graph(onnx.load(str(path), load_external_data=False))
        if problems:
            raise RuntimeError(f"{path} would not parse in TensorRT 10.3: " + "; ".join(problems))
        entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        data = out / (path.name + ".data")
        if data.is_file():
            entry.update(data=data.name, data_sha256=sha256_file(data))
        manifest.graphs[name] = entry
    config.save(out / "config.json")
    if tokenizer_json is not None:
        shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    manifest.save(out)
    return manifest


def read_folder_config(folder: str | Path) -> Ov2Config:
    return Ov2Config.from_dict(json.loads((Path(folder) / "config.json").read_text()))
