"""The exported model's contract: which graphs an ONNX folder holds, their inputs and outputs, and
the folder's manifest (`onnx.json`). `ov2 export-onnx` writes it, the ONNX Runtime and TensorRT
backends and trt_build/ read it.

Graphs (and, for fp32, `*.ort.onnx` variants of vision and prefill, with ONNX Runtime's fused
attention, and extend, which takes decode's place there, for ONNX Runtime only: ort_attention.py; and those as `*.ort.int8.onnx`, weights int8 and activations quantised on the
fly: ort_int8.py) (B = 1 sequence; W windows of L patches; S prompt tokens; P cached positions):
- vision:  pixel_values (W, L, C*P*P) fp32, rope_cos / rope_sin (W, L, head_dim) fp32 (the 3D
           RoPE of each patch, computed on the host), valid_patches (W,) int64 (rows past it pad
           a short window), [positions_thw (W, L, 3) int64 when the merger has position
           embeddings] -> vision_tokens (W, L/4, hidden): one per 2x2 block.
- embed:   input_ids (1, S) int64 -> inputs_embeds (1, S, hidden).
- prefill: inputs_embeds (1, S, hidden) -> logits (1, vocab) of the last position,
           present.{i}.key / present.{i}.value (1, kv_heads, S, head_dim) per layer.
- decode:  inputs_embeds (1, 1, hidden), past.{i}.key / past.{i}.value (1, kv_heads, P, head_dim)
           -> logits (1, vocab), present.{i}.key / .value (1, kv_heads, P + 1, head_dim).
- extend:  (ONNX Runtime variants only) inputs_embeds (1, S, hidden) (a token, a token and its
           draft, or the rest of a prompt whose start is cached), past_length (1,)
           int64 = P, buffer.{i}.key / buffer.{i}.value (1, kv_heads, capacity, head_dim), of
           which the first P positions hold the past -> logits (1, S, vocab), one row after each
           new token, and buffer_out.{i}.key / .value: the buffers with the new positions written
           at P..P+S-1 (in place where the runtime binds each buffer as input and output:
           ort_attention.py). Draft tokens (model/generate.py) need it; a folder without it
           (or with the extend graph of exports before revision 6, which copied the cache every
           pass) decodes one token at a time.
`hidden`, logits and the KV cache are in the export dtype (fp32 or fp16); RoPE inputs stay fp32.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ov2_ros.errors import MissingInputError, Ov2Error
from ov2_ros.model.config import Ov2Config

GRAPHS = ("vision", "embed", "prefill", "decode")
MANIFEST_NAME = "onnx.json"
WEIGHTS_FILE = "weights.data"  # every graph's large tensors, each written once (ONNX external data)
FORMAT_VERSION = 1
OPSET = 18  # TensorRT 10.3 (JetPack 6) parses opsets 9-20; 18 has LayerNormalization and no Attention op


class OnnxFolderError(Ov2Error, ValueError):
    """An ONNX folder that is incomplete, altered or of another format version."""


def present_names(num_layers: int) -> list[str]:
    return [f"present.{i}.{part}" for i in range(num_layers) for part in ("key", "value")]


def past_names(num_layers: int) -> list[str]:
    return [f"past.{i}.{part}" for i in range(num_layers) for part in ("key", "value")]


def buffer_names(num_layers: int, written: bool = False) -> list[str]:
    """The extend graph's KV buffers: its inputs, or (written) its outputs."""
    prefix = "buffer_out" if written else "buffer"
    return [f"{prefix}.{i}.{part}" for i in range(num_layers) for part in ("key", "value")]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class OnnxManifest:
    """onnx.json: what was exported, from what, and how to check the files are the ones written."""

    dtype: str  # "fp32" or "fp16"
    opset: int
    num_layers: int
    merger_positions: bool  # the vision graph takes positions_thw
    graphs: dict[str, dict] = field(default_factory=dict)  # name -> {"file", "sha256", "bytes"}
    # The same graphs with attention as ONNX Runtime's fused contrib op (not for TensorRT;
    # ort_attention.py): fp32 exports only.
    ort_graphs: dict[str, dict] = field(default_factory=dict)
    # Those with int8 weights, self-contained (ort_int8.py): fp32 exports under INT8_MAX_WEIGHT_BYTES.
    ort_int8_graphs: dict[str, dict] = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # {"file", "sha256", "bytes"} of the shared weights
    source_model: str = ""
    exporter: dict = field(default_factory=dict)  # torch / onnx versions
    format_version: int = FORMAT_VERSION

    def save(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "OnnxManifest":
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise MissingInputError(f"{folder} is not an exported ONNX folder (no {MANIFEST_NAME}); "
                                    "make one with `ov2 export-onnx`")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise OnnxFolderError(f"{path} has format version {data.get('format_version')}, this ov2_ros reads "
                                  f"{FORMAT_VERSION}; export the model again")
        manifest = cls(**data)
        missing = [name for name in GRAPHS if name not in manifest.graphs]
        if missing or not manifest.weights:
            raise OnnxFolderError(f"{path} lists no graph for {missing} or no weights file")
        return manifest

    def graph_path(self, folder: Path, name: str, ort: bool = False, int8: bool = False) -> Path:
        """The graph's file; ort=True: its ONNX Runtime variant where there is one; int8=True
        (with ort): its int8 variant where there is one."""
        entry = self.graphs.get(name)
        if ort:
            entry = self.ort_graphs.get(name, entry)
            if int8:
                entry = self.ort_int8_graphs.get(name, entry)
        if entry is None:
            raise OnnxFolderError(f"the ONNX folder {folder} has no {name} graph" + (" for ONNX Runtime" if ort else ""))
        path = Path(folder) / entry["file"]
        if not path.is_file():
            raise MissingInputError(f"{path} is missing from the ONNX folder")
        return path

    def verify(self, folder: Path, weights_hash: bool = False) -> None:
        """Every graph file is the one exported (sha256), and the shared weights file has its size
        (its sha256 too with weights_hash: engine builds do it; 16 GB take a minute to hash)."""
        for entries in (self.graphs, self.ort_graphs, self.ort_int8_graphs):
            for entry in entries.values():
                path = Path(folder) / entry["file"]
                if not path.is_file():
                    raise MissingInputError(f"{path} is missing from the ONNX folder")
                if sha256_file(path) != entry["sha256"]:
                    raise OnnxFolderError(f"{path} differs from the file exported (sha256 mismatch); export again")
        weights = Path(folder) / self.weights["file"]
        if not weights.is_file():
            raise MissingInputError(f"{weights} is missing from the ONNX folder")
        if weights.stat().st_size != self.weights["bytes"] or (weights_hash and sha256_file(weights) != self.weights["sha256"]):
            raise OnnxFolderError(f"{weights} differs from the file exported; export again")


def read_folder_config(folder: str | Path) -> Ov2Config:
    """The model config an export carries (config.json, our format)."""
    return Ov2Config.from_dict(json.loads((Path(folder) / "config.json").read_text()))
