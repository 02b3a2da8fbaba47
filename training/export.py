"""Export a trained model as the package's embedded default: config.json, model.safetensors in
fp16 and tokenizer.json in ov2_ros/model/default_model/, with a card (how it was made, what it
scores). `python -m training.export --model runs/nano_codec/s4_spatial/last [--card EXTRA.json]`."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ov2_ros.model.checkpoint import load_model, save_model
from ov2_ros.model.default import DEFAULT_MODEL_DIR

MAX_BYTES = 40 * 1024 * 1024


def export_default(model_dir: str | Path, card: dict, out_dir: Path = DEFAULT_MODEL_DIR) -> dict:
    model = load_model(model_dir, torch.float16)
    staging = out_dir.with_name(out_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    save_model(model, staging, Path(model_dir) / "tokenizer.json")
    size = sum(f.stat().st_size for f in staging.iterdir())
    if size > MAX_BYTES:
        shutil.rmtree(staging)
        raise ValueError(f"the exported model takes {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit")
    card = {**card, "source": str(model_dir), "dtype": "fp16", "bytes": size,
            "parameters": sum(p.numel() for p in model.parameters())}
    (staging / "MODEL_CARD.json").write_text(json.dumps(card, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--card", default=None, help="JSON merged into the model card (evaluation, command)")
    args = parser.parse_args(argv)
    card = json.loads(Path(args.card).read_text()) if args.card else {}
    print(json.dumps(export_default(args.model, card)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
