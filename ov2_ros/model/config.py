"""Model configurations as dataclasses, serialised as JSON next to the safetensors weights.

`Ov2Config` is ours (config.json of a model folder written by `save_model`); `from_hf_config`
reads the released LLaVA-OneVision-2 config.json (nested `vision_config` / `text_config`) and
the standalone onevision-encoder config into the same dataclasses.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ov2_ros.errors import Ov2Error
from ov2_ros.tokenizer.geometry import BLOCK_PX, DEFAULT_MAX_PIXELS

FORMAT_NAME = "ov2_ros"
FORMAT_VERSION = 1


class ConfigError(Ov2Error, ValueError):
    """A config.json that is not a model this package can build."""


@dataclass(frozen=True)
class EncoderConfig:
    """OneVision-Encoder (method.md 2.1) and its 2x2 merger. Defaults: OV2 "large"."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"  # "gelu" (erf) or "gelu_pytorch_tanh"
    rope_theta: float = 10000.0
    window_canvases: int = 4  # attention windows: this many consecutive canvases (one group)
    spatial_merge_size: int = 2
    out_hidden_size: int = 4096  # the LLM's hidden size: what the merger projects to
    use_head: bool = False  # standalone encoder release: post-LayerNorm and attention-pooling head
    merger_position_embeddings: int = 0  # >0: learned (h, w) embeddings after the merger (OV2 option)

    def __post_init__(self):
        head_dim, rest = divmod(self.hidden_size, self.num_heads)
        if rest or head_dim % 32:
            raise ConfigError(f"encoder hidden_size {self.hidden_size} / num_heads {self.num_heads} must give "
                              "a head dim divisible by 32 (3D RoPE splits half of it 4:6:6)")
        if self.hidden_act not in ("gelu", "gelu_pytorch_tanh"):
            raise ConfigError(f"encoder hidden_act {self.hidden_act!r} is not 'gelu' or 'gelu_pytorch_tanh'")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Values per patch row of pixel_values: channels x patch x patch (588 for 3x14x14)."""
        return self.num_channels * self.patch_size * self.patch_size


@dataclass(frozen=True)
class LLMConfig:
    """Qwen3 decoder (method.md 2.2). Defaults: Qwen3-8B as in OV2-8B."""

    vocab_size: int = 151_936
    hidden_size: int = 4096
    intermediate_size: int = 12_288
    num_layers: int = 36
    num_heads: int = 32
    num_kv_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40_960
    tie_word_embeddings: bool = False
    attention_bias: bool = False

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"LLM num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"LLM head_dim {self.head_dim} must be even for RoPE")


@dataclass(frozen=True)
class TokenIds:
    """Special token ids the model and prompt builder need (Qwen2/3 vocabulary defaults)."""

    image_pad: int = 151_655
    video_pad: int = 151_656
    vision_start: int = 151_652
    vision_end: int = 151_653
    im_start: int = 151_644
    im_end: int = 151_645
    end_of_text: int = 151_643


@dataclass(frozen=True)
class Ov2Config:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tokens: TokenIds = field(default_factory=TokenIds)
    # The frame area (tokenizer max_pixels, method.md 1.3) the model was trained at: the node and
    # the tools tokenize at it unless told otherwise. 150,000 is OV2's processor default; a small
    # model trained on small worlds records theirs (more pixels would be unseen scales, and slower).
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if self.max_pixels < BLOCK_PX * BLOCK_PX:
            raise ConfigError(f"max_pixels {self.max_pixels} is below one {BLOCK_PX}x{BLOCK_PX} block")
        if self.encoder.out_hidden_size != self.llm.hidden_size:
            raise ConfigError(f"merger projects to {self.encoder.out_hidden_size} but the LLM hidden size is "
                              f"{self.llm.hidden_size}")

    def to_dict(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Ov2Config":
        if data.get("format") != FORMAT_NAME:
            raise ConfigError(f"config is not an {FORMAT_NAME} model config (format={data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"config format_version {data.get('format_version')} is not {FORMAT_VERSION}")
        return cls(encoder=_build(EncoderConfig, data["encoder"], "encoder"),
                   llm=_build(LLMConfig, data["llm"], "llm"),
                   tokens=_build(TokenIds, data["tokens"], "tokens"),
                   max_pixels=int(data.get("max_pixels", DEFAULT_MAX_PIXELS)))  # configs before it: OV2's

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def _build(kind, values: dict, where: str):
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {where} config keys {unknown}; known: {sorted(names)}")
    return kind(**values)


def encoder_from_hf(vision: dict, out_hidden_size: int | None = None) -> EncoderConfig:
    """The released vision_config (inside LLaVA-OneVision-2's config.json) or the standalone
    onevision-encoder config.json."""
    if vision.get("layer_norm_type", "layer_norm") != "layer_norm":
        raise ConfigError(f"encoder layer_norm_type {vision['layer_norm_type']!r} is not supported (layer_norm)")
    use_position = bool(vision.get("use_patch_position_encoding", False))
    return EncoderConfig(
        hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
        num_layers=vision["num_hidden_layers"], num_heads=vision["num_attention_heads"],
        patch_size=vision["patch_size"], num_channels=vision.get("num_channels", 3),
        layer_norm_eps=vision.get("layer_norm_eps", 1e-6), hidden_act=vision.get("hidden_act", "gelu"),
        rope_theta=vision.get("rope_theta", 10000.0), window_canvases=vision.get("frame_windows_size", 4),
        spatial_merge_size=vision.get("spatial_merge_size", 2),
        out_hidden_size=out_hidden_size or vision.get("out_hidden_size", vision["hidden_size"]),
        use_head=bool(vision.get("use_head", False)),
        merger_position_embeddings=vision.get("max_position_embeddings", 8192) if use_position else 0,
    )


def llm_from_hf(text: dict) -> LLMConfig:
    """A Qwen3 text_config (transformers 4.x `rope_theta` or 5.x `rope_parameters`)."""
    if text.get("model_type", "qwen3") != "qwen3":
        raise ConfigError(f"text_config model_type {text.get('model_type')!r} is not qwen3")
    rope_theta = text.get("rope_theta")
    if rope_theta is None:
        rope_theta = (text.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0)
    scaling = text.get("rope_scaling") or {}
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise ConfigError(f"rope_scaling {scaling} is not supported (plain RoPE only)")
    heads = text["num_attention_heads"]
    return LLMConfig(
        vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
        intermediate_size=text["intermediate_size"], num_layers=text["num_hidden_layers"],
        num_heads=heads, num_kv_heads=text.get("num_key_value_heads", heads),
        head_dim=text.get("head_dim") or text["hidden_size"] // heads,
        rms_norm_eps=text.get("rms_norm_eps", 1e-6), rope_theta=float(rope_theta),
        max_position_embeddings=text.get("max_position_embeddings", 40_960),
        tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
        attention_bias=bool(text.get("attention_bias", False)),
    )


def from_hf_config(data: dict) -> Ov2Config:
    """LLaVA-OneVision-2's config.json: `vision_config`, `text_config` and token ids."""
    for key in ("vision_config", "text_config"):
        if key not in data:
            raise ConfigError(f"config.json has no {key!r}: not a LLaVA-OneVision-2 checkpoint")
    llm = llm_from_hf(data["text_config"])
    defaults = TokenIds()
    tokens = TokenIds(
        image_pad=data.get("image_token_id", defaults.image_pad),
        video_pad=data.get("video_token_id", defaults.video_pad),
        vision_start=data.get("vision_start_token_id", defaults.vision_start),
        vision_end=data.get("vision_end_token_id", defaults.vision_end),
    )
    return Ov2Config(encoder=encoder_from_hf(data["vision_config"], llm.hidden_size), llm=llm, tokens=tokens)


def preset(name: str, vocab_size: int, tokens: TokenIds = TokenIds()) -> Ov2Config:
    """Small configurations trained here ("nano", "small"), and OV2-8B's shapes ("ov2-8b")."""
    if name == "nano":
        encoder = EncoderConfig(hidden_size=192, intermediate_size=768, num_layers=4, num_heads=3, out_hidden_size=256)
        llm = LLMConfig(vocab_size=vocab_size, hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4,
                        num_kv_heads=2, head_dim=64, rope_theta=1_000_000.0, max_position_embeddings=8192,
                        tie_word_embeddings=True)
    elif name == "small":
        encoder = EncoderConfig(hidden_size=384, intermediate_size=1536, num_layers=8, num_heads=6, out_hidden_size=512)
        llm = LLMConfig(vocab_size=vocab_size, hidden_size=512, intermediate_size=1536, num_layers=8, num_heads=8,
                        num_kv_heads=4, head_dim=64, rope_theta=1_000_000.0, max_position_embeddings=16384,
                        tie_word_embeddings=True)
    elif name == "ov2-8b":
        encoder, llm = EncoderConfig(), LLMConfig(vocab_size=vocab_size)
    else:
        raise ConfigError(f"unknown preset {name!r}; known: nano, small, ov2-8b")
    return Ov2Config(encoder=encoder, llm=llm, tokens=tokens)
