"""`python -m training.centre_vision --model DIR --out DIR`: remove the component all vision
tokens share from the merger's output bias, before training further.

Why: trained from scratch for 1,000 steps, the nano model's merger outputs share one large
component: vision tokens have a norm of ~143 while text embeddings have ~0.8, and the mean token
alone has a norm of ~120: two thirds of every token's energy is the same for all of them. The LLM
reads every token through RMSNorm, so the shared part dominates the keys and values it makes of
vision tokens, and the model answered from its priors (the same gripper trace for every clip).
Subtracting the mean vision token (over clips of the training worlds, or those given, codec
canvases or the given input at the given budget) from `merger.mlp.2.bias` keeps exactly what distinguishes tokens; the LLM then
has to be trained further to read them (training/configs/s4_spatial_more.json).

Training on regrows the shared part (the default model of 2026-11-24, centred before its last
1,400 steps: token norm ~347, centred ~6), so a stage can keep it down as it trains:
`centre_vision_momentum` in its config (training/train.py) subtracts that share of each step's
mean vision token from the same bias after every step.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ov2_ros.model.checkpoint import load_any, save_model
from ov2_ros.model.inputs import vision_input_from
from training.data import INPUT_MODES, WORLD_DURATIONS_S, ClipCache, clip_range


@torch.no_grad()
def mean_vision_token(model, cache: ClipCache, clips_per_world: int, budget: int,
                      durations_s: dict = WORLD_DURATIONS_S, input_mode: str = "codec") -> tuple[torch.Tensor, dict]:
    """The mean vision token over training clips (their `input_mode` canvases), and norms before
    and after removing it."""
    tokens = []
    for world, durations in durations_s.items():
        for spec in clip_range(world, 0, clips_per_world, durations):
            vision = cache.vision(spec, input_mode, budget)
            tokens.append(model.vision_tokens(vision_input_from(vision.canvases, vision.positions_thw)))
    tokens = torch.cat(tokens)  # (tokens, LLM hidden)
    mean = tokens.mean(dim=0)
    stats = {"tokens": tokens.shape[0], "token_norm": tokens.norm(dim=-1).mean().item(),
             "mean_norm": mean.norm().item(), "centred_token_norm": (tokens - mean).norm(dim=-1).mean().item(),
             "text_embedding_norm": model.language_model.embed_tokens.weight.norm(dim=-1).mean().item()}
    return mean, stats


@torch.no_grad()
def centre(model, mean_token: torch.Tensor) -> None:
    """Every vision token minus mean_token: the merger's last layer is affine and nothing but
    position embeddings (additive) follows it."""
    model.visual.merger.mlp[2].bias -= mean_token.to(model.visual.merger.mlp[2].bias.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.centre_vision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--out", required=True, help="folder for the centred model")
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--clips", type=int, default=16, help="training clips per world")
    parser.add_argument("--budget", type=int, default=16, help="canvases per clip")
    parser.add_argument("--input", choices=INPUT_MODES, default="codec", help="the clips' canvases")
    parser.add_argument("--worlds", nargs="+", choices=sorted(WORLD_DURATIONS_S), default=sorted(WORLD_DURATIONS_S),
                        help="the worlds whose clips make the mean (default: all)")
    args = parser.parse_args(argv)
    model, tokenizer = load_any(args.model)
    model.eval()
    durations_s = {world: WORLD_DURATIONS_S[world] for world in args.worlds}
    mean, stats = mean_vision_token(model, ClipCache(args.cache), args.clips, args.budget, durations_s, args.input)
    centre(model, mean)
    save_model(model, args.out, tokenizer.path)
    Path(args.out, "centre_vision.json").write_text(json.dumps({**vars(args), **stats}, indent=1))
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
