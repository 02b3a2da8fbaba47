"""Optimisation profiles: the input shape ranges (min, opt, max) each engine accepts, computed
from what the robot will feed it (a JSON config: canvas size, canvases per query, prompt length,
KV capacity) and the model's dimensions. Every input of every graph gets a range; names and
ranks follow ov2_ros.runtime.onnx_graphs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ov2_ros.model.config import Ov2Config
from ov2_ros.runtime.onnx_graphs import past_names

DEFAULT_PROFILE_CONFIG = Path(__file__).resolve().parent / "profiles.json"


@dataclass(frozen=True)
class ProfileConfig:
    max_pixels: int | None = None  # the tokenizer's canvas area bound; None: the model's own (config.max_pixels)
    canvases: tuple[int, int, int] = (4, 16, 20)  # canvases per query: min, opt, max
    prompt_tokens: tuple[int, int, int] = (16, 3200, 4096)  # prompt length incl. vision tokens (~191 per canvas)
    kv_capacity: int = 4608  # longest sequence (prompt + answer) the decode engine serves
    workspace_mib: int = 2048

    def __post_init__(self):
        for name in ("canvases", "prompt_tokens"):
            low, opt, high = getattr(self, name)
            if not 1 <= low <= opt <= high:
                raise ValueError(f"{name} must be 1 <= min <= opt <= max, got {(low, opt, high)}")
        if self.kv_capacity <= self.prompt_tokens[2]:
            raise ValueError(f"kv_capacity {self.kv_capacity} must exceed the longest prompt {self.prompt_tokens[2]}")

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PROFILE_CONFIG) -> "ProfileConfig":
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown profile settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict:
        return asdict(self)


def patches_per_canvas(max_pixels: int, patch: int) -> int:
    """The most patches one canvas can have: (H/14) x (W/14) with H x W <= max_pixels and H, W
    multiples of 28 (tokenizer.geometry), so a multiple of 4 at most max_pixels / 14^2."""
    return (max_pixels // (patch * patch)) // 4 * 4


def compute_profiles(config: ProfileConfig, model: Ov2Config, merger_positions: bool) -> dict[str, dict[str, list]]:
    """graph -> input name -> [min shape, opt shape, max shape]."""
    e, l = model.encoder, model.llm
    per_canvas = patches_per_canvas(config.max_pixels or model.max_pixels, e.patch_size)
    window = e.window_canvases
    windows = [max(1, -(-c // window)) for c in config.canvases]  # ceil(canvases / 4)
    lengths = [4, min(window, config.canvases[1]) * per_canvas, window * per_canvas]  # patches per window
    vision = {}
    for name, tail in (("pixel_values", [e.patch_dim]), ("rope_cos", [e.head_dim]), ("rope_sin", [e.head_dim])):
        vision[name] = [[w, n, *tail] for w, n in zip(windows, lengths)]
    vision["valid_patches"] = [[w] for w in windows]
    if merger_positions:
        vision["positions_thw"] = [[w, n, 3] for w, n in zip(windows, lengths)]
    low, opt, high = config.prompt_tokens
    kv = lambda n: [1, l.num_kv_heads, n, l.head_dim]
    cached = [low, opt, config.kv_capacity - 1]  # the decode step sees the prompt and what followed
    return {
        "vision": vision,
        "embed": {"input_ids": [[1, 1], [1, opt], [1, high]]},
        "prefill": {"inputs_embeds": [[1, max(2, low), l.hidden_size], [1, opt, l.hidden_size], [1, high, l.hidden_size]]},
        "decode": {"inputs_embeds": [[1, 1, l.hidden_size]] * 3, **{name: [kv(n) for n in cached] for name in past_names(l.num_layers)}},
    }
