"""The exported ONNX graphs on ONNX Runtime (CPU): where there is no GPU.

Vision: canvases' patch rows -> padded windows (windows.py) -> vision graph -> tokens. Text:
the embed graph gives the prompt's embeddings, the vision tokens fill its <|image_pad|> slots
(the same function the PyTorch model uses), the prefill graph returns the next-token logits and
the KV cache, and each decode step feeds the cache back (explicit inputs and outputs); the
extend graph, where the folder has it (fused-attention exports since revision 4), takes a token
and its draft in one pass, or the rest of a prompt whose start is cached (model/generate.py's
PrefixSession).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ov2_ros.model.ov2 import VisionInput, fill_placeholders
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.runtime.onnx_graphs import OnnxFolderError, OnnxManifest, past_names, present_names, read_folder_config
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
        # int8 checks draft tokens with the fp32 extend: an int8 graph quantises a pass's
        # activations with one scale, so a row's logits would depend on the draft tokens after
        # it. The rest of a prompt ("extend_prompt": only its last row's logits are read, as of
        # a prefill) runs the int8 extend, as the int8 prefill runs a whole prompt.
        int8 = precision == "int8"
        names = list(self.manifest.graphs)
        if fused_attention and "extend" in self.manifest.ort_graphs:
            names.append("extend")
        paths = {name: self.manifest.graph_path(folder, name, fused_attention, int8 and name != "extend")
                 for name in names}
        if "extend" in paths:
            paths["extend_prompt"] = self.manifest.graph_path(folder, "extend", fused_attention, int8)
        sessions = {path: ort.InferenceSession(str(path), options, providers=providers) for path in set(paths.values())}
        self.graphs = {name: sessions[path] for name, path in paths.items()}  # fp32: one extend for both
        self.present = present_names(self.manifest.num_layers)
        self.past = past_names(self.manifest.num_layers)

    def vision_tokens(self, vision: VisionInput) -> torch.Tensor:
        windows = pack_windows(vision, self.config.encoder, self.manifest.merger_positions)
        (blocks,) = self.graphs["vision"].run(["vision_tokens"], windows.inputs)
        return unpack_tokens(blocks, windows)

    def embed(self, input_ids: list[int]) -> np.ndarray:
        (embeds,) = self.graphs["embed"].run(["inputs_embeds"], {"input_ids": np.asarray([input_ids], dtype=np.int64)})
        return embeds  # (1, S, hidden)

    def session(self) -> "OnnxRuntimeSession":
        return OnnxRuntimeSession(self)


class OnnxRuntimeSession:
    def __init__(self, backend: OnnxRuntimeBackend):
        self.backend = backend
        self.tokens = backend.config.tokens
        self.cache: list[np.ndarray] = []
        self.can_extend = "extend" in backend.graphs

    @property
    def length(self) -> int:
        return self.cache[0].shape[2] if self.cache else 0

    def prefill(self, input_ids, vision_tokens):
        embeds = torch.from_numpy(self.backend.embed(input_ids))
        embeds = fill_placeholders(embeds, torch.tensor([input_ids]), vision_tokens, self.tokens.image_pad)
        logits, *self.cache = self.backend.graphs["prefill"].run(["logits", *self.backend.present],
                                                                {"inputs_embeds": embeds.numpy()})
        return torch.from_numpy(logits[0]).float()

    def step(self, token):
        feeds = {"inputs_embeds": self.backend.embed([token]), **dict(zip(self.backend.past, self.cache))}
        logits, *self.cache = self.backend.graphs["decode"].run(["logits", *self.backend.present], feeds)
        return torch.from_numpy(logits[0]).float()

    def extend(self, tokens, vision_tokens=None):
        embeds = self.backend.embed(tokens)
        graph = "extend"
        if vision_tokens is not None:  # a prompt's rest; generated tokens are embedded as they are
            embeds = fill_placeholders(torch.from_numpy(embeds), torch.tensor([tokens]), vision_tokens,
                                       self.tokens.image_pad).numpy()
            graph = "extend_prompt"
        feeds = {"inputs_embeds": embeds, **dict(zip(self.backend.past, self.cache))}
        logits, *self.cache = self.backend.graphs[graph].run(["logits", *self.backend.present], feeds)
        return torch.from_numpy(logits[0]).float()  # (len(tokens), vocab)

    def truncate(self, length):
        self.cache = [np.ascontiguousarray(part[:, :, :length]) for part in self.cache]
