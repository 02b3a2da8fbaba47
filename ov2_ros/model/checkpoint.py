"""Weights in and out: safetensors only (never pickle), memory-mapped.

Three folder layouts:
- ours (`save_model` / `load_model`): config.json (Ov2Config, "format": "ov2_ros"),
  model.safetensors (our parameter names), tokenizer.json.
- the released LLaVA-OneVision-2 (`load_released`): config.json with vision_config/text_config,
  model.safetensors or shards listed in model.safetensors.index.json, tokenizer.json. Names as
  its modeling code: model.visual.*, model.language_model.*, lm_head.weight (older exports:
  visual.*, model.* for the LLM).
- the standalone onevision-encoder (`load_released_encoder`): separate q/k/v/out projections
  (fused here into qkv/proj), optional post-LayerNorm and pooling head.
Missing and unexpected keys are errors, as are shape mismatches.
"""
from __future__ import annotations

import json
import mmap
import shutil
import struct
from pathlib import Path

import torch

from ov2_ros.errors import MissingInputError, Ov2Error
from ov2_ros.model.config import FORMAT_NAME, Ov2Config, encoder_from_hf, from_hf_config
from ov2_ros.model.encoder import OneVisionEncoder
from ov2_ros.model.ov2 import Ov2Model

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CheckpointError(Ov2Error, ValueError):
    """Weights that do not fit the model: missing, unexpected or misshapen tensors, bad files."""


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of one .safetensors file, memory-mapped (copy-on-write): nothing is read until used."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"weights file {path} does not exist")
    with open(path, "rb") as handle:
        if path.stat().st_size < 8:
            raise CheckpointError(f"{path} is too short to be a safetensors file")
        header_size = struct.unpack("<Q", handle.read(8))[0]
        if header_size > path.stat().st_size - 8:
            raise CheckpointError(f"{path}: header size {header_size} runs past the end of the file")
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: header is not JSON ({error})") from None
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    data_start = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {entry.get('dtype')}")
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = 1
        for size in shape:
            count *= size
        if end - begin != count * dtype.itemsize or data_start + end > len(mapped):
            raise CheckpointError(f"{path}: tensor {name} {shape} {entry['dtype']} does not fit its byte range")
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        tensors[name] = torch.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + begin).view(shape)
    return tensors


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({name: t.detach().contiguous() for name, t in tensors.items()}, str(path), metadata=metadata)


def read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or every shard named in model.safetensors.index.json."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_tensors = read_safetensors(folder / shard)
            tensors.update({k: v for k, v in shard_tensors.items() if weight_map.get(k) == shard})
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{folder}: the index lists tensors its shards do not hold: {missing[:5]}")
        return tensors
    single = folder / "model.safetensors"
    if not single.is_file():
        raise MissingInputError(f"{folder} has neither model.safetensors nor model.safetensors.index.json")
    return read_safetensors(single)


def _assign(model: torch.nn.Module, tensors: dict[str, torch.Tensor], dtype: torch.dtype, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: {len(missing)} missing keys {missing[:6]}, {len(unexpected)} unexpected "
                              f"keys {unexpected[:6]}")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{source}: {name} has shape {tuple(tensor.shape)}, the config implies "
                                  f"{tuple(expected[name].shape)}")
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()},
                          strict=True, assign=True)


def _config_json(folder: Path) -> dict:
    if not folder.is_dir():
        raise MissingInputError(f"model folder {folder} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise MissingInputError(f"{folder} has no config.json")
    return json.loads(path.read_text())


def _build(config: Ov2Config, tensors: dict[str, torch.Tensor], dtype: torch.dtype, source: str) -> Ov2Model:
    with torch.device("meta"):
        model = Ov2Model(config)
    if config.llm.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
        # Tied: lm_head shares the embedding; state_dict still lists it, so give it the same tensor.
        if "language_model.embed_tokens.weight" in tensors:
            tensors["lm_head.weight"] = tensors["language_model.embed_tokens.weight"]
    _assign(model, tensors, dtype, source)
    if config.llm.tie_word_embeddings:
        model.lm_head.weight = model.language_model.embed_tokens.weight
    return model.eval()


def load_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> Ov2Model:
    """A model saved by `save_model`."""
    folder = Path(folder)
    config = Ov2Config.from_dict(_config_json(folder))
    return _build(config, read_safetensors(folder / "model.safetensors"), dtype, str(folder))


def save_model(model: Ov2Model, folder: str | Path, tokenizer_json: str | Path | None = None,
               state: dict[str, torch.Tensor] | None = None) -> None:
    """config.json + model.safetensors (+ tokenizer.json copied in). `state`: the weights to
    write when they are not the module's own (gathered from a sharded model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / "config.json")
    state = dict(model.state_dict() if state is None else state)
    if model.config.llm.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # one tensor, stored once
    write_safetensors(state, folder / "model.safetensors", {"format": "ov2_ros"})
    if tokenizer_json is not None and Path(tokenizer_json).resolve() != (folder / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_json, folder / "tokenizer.json")


def released_name(name: str) -> str:
    """Release checkpoint name -> ours (both the current and the older export's prefixes)."""
    for prefix, ours in (("model.visual.", "visual."), ("model.language_model.", "language_model."),
                         ("visual.", "visual."), ("model.", "language_model."), ("lm_head.", "lm_head.")):
        if name.startswith(prefix):
            return ours + name[len(prefix):]
    return name


def load_released(folder: str | Path, dtype: torch.dtype = torch.bfloat16) -> Ov2Model:
    """LLaVA-OneVision-2 (e.g. LLaVA-OneVision-2-8B-Instruct) from a local Hugging Face folder."""
    folder = Path(folder)
    config = from_hf_config(_config_json(folder))
    tensors = {released_name(name): tensor for name, tensor in read_folder_weights(folder).items()}
    return _build(config, tensors, dtype, str(folder))


def released_encoder_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Standalone encoder names -> ours: q/k/v_proj fused into qkv (rows q, then k, then v),
    out_proj -> proj."""
    ours = {}
    for name, tensor in tensors.items():
        if ".self_attn.q_proj." in name:
            k_name, v_name = name.replace("q_proj", "k_proj"), name.replace("q_proj", "v_proj")
            if k_name not in tensors or v_name not in tensors:
                raise CheckpointError(f"{name} has no matching k_proj/v_proj tensors")
            ours[name.replace("q_proj", "qkv")] = torch.cat([tensor, tensors[k_name], tensors[v_name]], dim=0)
        elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        else:
            ours[name.replace(".self_attn.out_proj.", ".self_attn.proj.")] = tensor
    return ours


def load_released_encoder(folder: str | Path, dtype: torch.dtype = torch.float32) -> OneVisionEncoder:
    """onevision-encoder-large (or -lang) from a local Hugging Face folder."""
    folder = Path(folder)
    data = _config_json(folder)
    if data.get("model_type") != "onevision_encoder":
        raise CheckpointError(f"{folder}/config.json model_type is {data.get('model_type')!r}, not onevision_encoder")
    config = encoder_from_hf(data)
    with torch.device("meta"):
        encoder = OneVisionEncoder(config)
    _assign(encoder, released_encoder_tensors(read_folder_weights(folder)), dtype, str(folder))
    return encoder.eval()


def load_any_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> Ov2Model:
    """One of our folders or a released LLaVA-OneVision-2 folder, told apart by config.json."""
    folder = Path(folder)
    ours = _config_json(folder).get("format") == FORMAT_NAME
    return load_model(folder, dtype) if ours else load_released(folder, dtype)


def load_any(folder: str | Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from one of our folders or a released LLaVA-OneVision-2 folder."""
    from ov2_ros.model.prompt import TextTokenizer

    folder = Path(folder)
    model = load_any_model(folder, dtype)
    tokenizer = TextTokenizer(folder / "tokenizer.json")
    if tokenizer.token_ids() != model.config.tokens:
        raise CheckpointError(f"{folder}: tokenizer.json's special token ids {tokenizer.token_ids()} differ from "
                              f"the config's {model.config.tokens}")
    return model, tokenizer
