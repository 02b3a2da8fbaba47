"""The embedded default model: a small OV2 trained here (training/, docs/training.md), shipped
inside the package so every `--model` option and the node work out of the box."""
from __future__ import annotations

from pathlib import Path

from ov2_ros.errors import MissingInputError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def default_model_dir() -> Path:
    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        raise MissingInputError(f"no default model is embedded in this version ({DEFAULT_MODEL_DIR} is empty); "
                                "pass --model DIR")
    return DEFAULT_MODEL_DIR
