"""The exported ONNX graphs on ONNX Runtime (CPU): where there is no GPU.

Vision: canvases' patch rows -> padded windows (windows.py) -> vision graph -> tokens. Text:
the embed graph gives the prompt's embeddings, the vision tokens fill its <|image_pad|> slots
(the same function the PyTorch model uses), the prefill graph returns the next-token logits and
the KV cache, and each decode step feeds the cache back (explicit inputs and outputs). Where
the folder has the extend graph (fused-attention exports since revision 6), a session instead
keeps the cache in buffers that every pass updates in place (OnnxRuntimeBufferSession): a
token and its draft in one pass, or the rest of a prompt whose start is cached
(model/generate.py's PrefixSession), without copying the cache.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ov2_ros.model.ov2 import VisionInput, fill_placeholders
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.runtime.onnx_graphs import (OnnxFolderError, OnnxManifest, buffer_names, past_names, present_names,
                                         read_folder_config)
from ov2_ros.runtime.ort_int8 import INT8_MAX_WEIGHT_BYTES
from ov2_ros.runtime.windows import pack_windows, unpack_tokens


ORT_PRECISIONS = ("fp32", "int8")


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, folder: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 fused_attention: bool = True, precision: str = "fp32"):
        """precision: "fp32" runs the export's own graphs (fp16 ones for an fp16 export); "int8"
        the variants with int8 weights (ort_int8.py) that an fp32 export carries."""
        import onnxruntime as ort

        folder = Path(folder)
        self.manifest = OnnxManifest.load(folder)
        self.manifest.verify(folder)
        if precision not in ORT_PRECISIONS:
            raise ValueError(f"ONNX Runtime precision {precision!r} is not one of {ORT_PRECISIONS}")
        if precision == "int8" and not (fused_attention and self.manifest.ort_int8_graphs):
            raise OnnxFolderError(f"{folder} has no int8 graphs" + (
                " for unfused attention (they are made from the fused ones)" if self.manifest.ort_int8_graphs else
                f" ({self.manifest.dtype} export; `ov2 export-onnx` writes them for fp32 exports whose weights "
                f"are under {INT8_MAX_WEIGHT_BYTES >> 30} GB)"))
        self.precision = precision
        self.config = read_folder_config(folder)
        self.tokenizer = TextTokenizer(folder / "tokenizer.json")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]
        # fused_attention: the *.ort.onnx variants where the export has them (ort_attention.py).
        # int8 checks draft tokens with the fp32 extend ("extend_drafts"): an int8 graph
        # quantises a pass's activations with one scale, so a row's logits would depend on the
        # draft tokens after it. The rest of a prompt (only its last row's logits are read, as of
        # a prefill) and a single token run "extend" at the backend's precision.
        int8 = precision == "int8"
        sessions: dict[Path, ort.InferenceSession] = {}

        def load(name: str, int8_variant: bool) -> ort.InferenceSession:
            path = self.manifest.graph_path(folder, name, fused_attention, int8_variant)
            if path not in sessions:
                sessions[path] = ort.InferenceSession(str(path), options, providers=providers)
            return sessions[path]

        self.graphs = {name: load(name, int8) for name in ("vision", "embed", "prefill")}
        if fused_attention and "extend" in self.manifest.ort_graphs:
            self.graphs["extend"], self.graphs["extend_drafts"] = load("extend", int8), load("extend", False)
            if "past_length" not in {i.name for i in self.graphs["extend"].get_inputs()}:
                warnings.warn(f"{folder} was exported before ov2_ros's export revision 6: its extend graph copies the "
                              "KV cache every pass, so it is not used and answers decode one token at a time; export "
                              "the model again (`ov2 export-onnx`) for draft tokens", stacklevel=2)
                del self.graphs["extend"], self.graphs["extend_drafts"]
        if "extend" not in self.graphs:  # one token at a time, the cache as arrays
            self.graphs["decode"] = load("decode", int8)
        self.present = present_names(self.manifest.num_layers)
        self.past = past_names(self.manifest.num_layers)
        self.buffers = buffer_names(self.manifest.num_layers)
        self.buffers_written = buffer_names(self.manifest.num_layers, written=True)

    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        windows = pack_windows(vision, self.config.encoder, self.manifest.merger_positions)
        (blocks,) = self.graphs["vision"].run(["vision_tokens"], windows.inputs)
        return unpack_tokens(blocks, windows)

    def embed(self, input_ids: list[int]) -> np.ndarray:
        (embeds,) = self.graphs["embed"].run(["inputs_embeds"], {"input_ids": np.asarray([input_ids], dtype=np.int64)})
        return embeds  # (1, S, hidden)

    def session(self) -> "OnnxRuntimeSession | OnnxRuntimeBufferSession":
        return OnnxRuntimeBufferSession(self) if "extend" in self.graphs else OnnxRuntimeSession(self)

    def prefill(self, input_ids: list[int], vision_tokens: torch.Tensor | None) -> tuple[torch.Tensor, list[np.ndarray]]:
        """A whole prompt -> its next-token logits (vocab,) and the KV cache, per layer key and
        value (1, KV, S, hd)."""
        embeds = torch.from_numpy(self.embed(input_ids))
        embeds = fill_placeholders(embeds, torch.tensor([input_ids]), vision_tokens, self.config.tokens.image_pad)
        logits, *cache = self.graphs["prefill"].run(["logits", *self.present], {"inputs_embeds": embeds.numpy()})
        return torch.from_numpy(logits[0]).float(), cache


class OnnxRuntimeSession:
    """One token at a time through the decode graph, the cache fed back as arrays: folders
    without the extend graph."""

    can_extend = False

    def __init__(self, backend: OnnxRuntimeBackend):
        self.backend = backend
        self.tokens = backend.config.tokens
        self.cache: list[np.ndarray] = []

    @property
    def length(self) -> int:
        return self.cache[0].shape[2] if self.cache else 0

    def prefill(self, input_ids, vision_tokens):
        logits, self.cache = self.backend.prefill(input_ids, vision_tokens)
        return logits

    def step(self, token):
        feeds = {"inputs_embeds": self.backend.embed([token]), **dict(zip(self.backend.past, self.cache))}
        logits, *self.cache = self.backend.graphs["decode"].run(["logits", *self.backend.present], feeds)
        return torch.from_numpy(logits[0]).float()


class OnnxRuntimeBufferSession:
    """The cache in buffers of `capacity` positions, bound as the extend graph's input and output
    alike, so each pass writes its new positions in place and reads the past where it is (the
    decode graph's way copies the whole cache every token). `truncate` only shortens the length:
    what lies after it is overwritten by the next pass."""

    can_extend = True
    HEADROOM = 256  # positions allocated past the prompt: an answer, with its last draft

    def __init__(self, backend: OnnxRuntimeBackend):
        self.backend = backend
        self.tokens = backend.config.tokens
        self.buffers: list[np.ndarray] = []  # per layer key, value: (1, KV, capacity, hd)
        self.bound: list = []  # the buffers as OrtValues (sharing their memory)
        self._bindings: dict = {}  # graph -> its IOBinding to these buffers
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def prefill(self, input_ids, vision_tokens):
        logits, cache = self.backend.prefill(input_ids, vision_tokens)
        self._length = 0
        self._reserve(cache[0].shape[2])
        for buffer, part in zip(self.buffers, cache):
            buffer[:, :, :part.shape[2]] = part
        self._length = cache[0].shape[2]
        return logits

    def step(self, token):
        return self.extend([token])[-1]

    def extend(self, tokens, vision_tokens=None):
        embeds = self.backend.embed(tokens)
        graph = "extend" if len(tokens) == 1 else "extend_drafts"  # several generated tokens: a draft
        if vision_tokens is not None:  # a prompt's rest; generated tokens are embedded as they are
            embeds = fill_placeholders(torch.from_numpy(embeds), torch.tensor([tokens]), vision_tokens,
                                       self.tokens.image_pad).numpy()
            graph = "extend"
        self._reserve(self._length + len(tokens))
        binding = self._binding(graph)
        binding.bind_cpu_input("inputs_embeds", np.ascontiguousarray(embeds))
        binding.bind_cpu_input("past_length", np.array([self._length], dtype=np.int64))
        binding.bind_output("logits")  # unallocated again: its rows follow this pass's tokens
        self.backend.graphs[graph].run_with_iobinding(binding)
        self._length += len(tokens)
        return torch.from_numpy(binding.get_outputs()[0].numpy()[0]).float()  # (len(tokens), vocab)

    def _binding(self, graph: str):
        """The graph's IOBinding with this session's buffers as its cache inputs and outputs."""
        if graph not in self._bindings:
            binding = self.backend.graphs[graph].io_binding()
            binding.bind_output("logits")  # first: get_outputs() lists the outputs in the order bound
            for name, written, value in zip(self.backend.buffers, self.backend.buffers_written, self.bound):
                binding.bind_ortvalue_input(name, value)
                binding.bind_ortvalue_output(written, value)
            self._bindings[graph] = binding
        return self._bindings[graph]

    def truncate(self, length):
        if not 0 <= length <= self._length:
            raise ValueError(f"cannot keep {length} positions of a cache holding {self._length}")
        self._length = length

    def _reserve(self, positions: int) -> None:
        """Buffers that hold `positions`, the kept past copied when they must grow (to HEADROOM
        more, or twice their size: a long generation copies its cache a few times, not often)."""
        capacity = self.buffers[0].shape[2] if self.buffers else 0
        if capacity >= positions:
            return
        from onnxruntime import OrtValue

        config = self.backend.config.llm
        shape = (1, config.num_kv_heads, max(positions + self.HEADROOM, 2 * capacity), config.head_dim)
        grown = [np.zeros(shape, np.float32) for _ in self.backend.buffers]  # extend graphs: fp32 exports only
        for new, old in zip(grown, self.buffers):
            new[:, :, :self._length] = old[:, :, :self._length]
        self.buffers = grown
        self.bound = [OrtValue.ortvalue_from_numpy(buffer) for buffer in grown]
        self._bindings = {}
