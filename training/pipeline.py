"""All four stages in a row, each starting from the previous stage's model:
`python -m training.pipeline --out runs/nano_codec --input codec [--preset nano] [--steps-scale 1.0]
[--encoder-pretrain STEPS [--encoder-worlds WORLD:COUNT,...]] [--centre-vision M] [--trainable PARTS]
[--variation SPLIT] [--then CONFIG[@INPUT] ...]`.
With `--encoder-pretrain`, the preset's random model first has its vision tower pretrained on
the worlds' exact truth (still shots; `--encoder-worlds` adds video clips) (training/encoder_pretrain.py, OUT/s0_encoder): our stand-in for OV2's
pretrained OneVision-Encoder, from which OV2's stage 1 starts. `--centre-vision M` sets every
stage's centre_vision_momentum (training/centre_vision.py says why). `--trainable merger+llm`
keeps the encoder as stage 0 left it through every stage (trained in stages 2-4, the tower loses
what stage 0 taught it about where things are: docs/training.md, the pointing probe).
`--variation train-tints` draws stage 0's and the four stages' worlds with random table tints.
`--then` runs more stage configs after the four, each from the one before, as its config says
(the frozen tower's climb in one command: docs/training.md).
The command and its arguments are written to OUT/command.json, so a model says how it was made."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from ov2_ros.model.checkpoint import save_model
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.synth.worlds import TRAINING_SPLITS
from training.encoder_pretrain import parse_worlds, pretrain
from training.text import build_tokenizer
from training.train import PRECISIONS, TRAINABLE, StageConfig, initial_model, train_stage

STAGES = ("s1_align", "s2_mid", "s3_long", "s4_spatial")
CONFIGS = Path(__file__).resolve().parent / "configs"
ENCODER_WORLDS = {"mid": 2000, "lone": 1000, "closeup": 1000, "stills": 2000}  # still shots per world


def pretrained_encoder(out: Path, preset: str, cache: str, steps: int, seed: int,
                       worlds: dict[str, int] = ENCODER_WORLDS, eval_shots: int = 60, precision: str = "fp32",
                       variation: str = "train") -> str:
    """OUT/s0_encoder: the preset's random model (seeded as stage 1 would seed it) with its
    vision tower pretrained for `steps` steps on `worlds`; kept when already there (a resumed
    pipeline)."""
    folder = out / "s0_encoder"
    if (folder / "encoder_pretrain.json").is_file():
        return str(folder)
    random_init = out / "s0_random"
    if not (random_init / "model.safetensors").is_file():
        build_tokenizer(out / "tokenizer.json")
        torch.manual_seed(seed)
        save_model(initial_model(preset, TextTokenizer(out / "tokenizer.json")), random_init, out / "tokenizer.json")
    result = pretrain(str(random_init), str(folder), worlds, steps, eval_shots=eval_shots, cache_dir=cache,
                      precision=precision, variation=variation)
    print(json.dumps(result["curve"][-1]), flush=True)
    return str(folder)


def stage_plan(input_mode: str, steps_scale: float = 1.0, centre_vision: float | None = None,
               trainable: str | None = None, then: tuple[tuple[str, str | None], ...] = (),
               variation: str | None = None) -> list[tuple[StageConfig, str]]:
    """The stages the pipeline runs, in order, each with its input: the four, with the
    pipeline's overrides, then each `then` config (a rung such as the frozen tower's pointing
    and trace stages) as the config says, on its own input or the pipeline's."""
    plan = []
    for name in STAGES:
        config = StageConfig.load(CONFIGS / f"{name}.json")
        if centre_vision is not None:
            config = dataclasses.replace(config, centre_vision_momentum=centre_vision)
        if trainable is not None:
            config = dataclasses.replace(config, trainable=trainable)
        if variation is not None:
            config = dataclasses.replace(config, variation=variation)
        if steps_scale != 1.0:
            steps = max(1, int(round(config.steps * steps_scale)))
            config = dataclasses.replace(config, steps=steps, warmup_steps=min(config.warmup_steps, steps),
                                         save_every=steps)
        plan.append((config, input_mode))
    plan += [(StageConfig.load(path), stage_input or input_mode) for path, stage_input in then]
    names = [config.name for config, _ in plan]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names repeat ({names}): each stage needs its own folder")
    return plan


def parse_then(value: str) -> tuple[str, str | None]:
    """`CONFIG.json` or `CONFIG.json@INPUT` (e.g. live): a stage to run after the four."""
    path, _, stage_input = value.partition("@")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"no stage config at {path}")
    return path, stage_input or None


def run_pipeline(out: str | Path, input_mode: str, preset: str, cache: str, threads: int | None,
                 steps_scale: float = 1.0, encoder_pretrain_steps: int = 0,
                 centre_vision: float | None = None, encoder_worlds: dict[str, int] = ENCODER_WORLDS,
                 precision: str = "fp32", trainable: str | None = None,
                 then: tuple[tuple[str, str | None], ...] = (), variation: str | None = None) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    init, results = preset, []
    if encoder_pretrain_steps:
        init = pretrained_encoder(out, preset, cache, encoder_pretrain_steps,
                                  StageConfig.load(CONFIGS / f"{STAGES[0]}.json").seed, encoder_worlds,
                                  precision=precision, variation=variation or "train")
    for config, stage_input in stage_plan(input_mode, steps_scale, centre_vision, trainable, then, variation):
        started = time.time()
        result = train_stage(config, out / config.name, init, cache, stage_input, threads=threads,
                             resume=(out / config.name / "last" / "trainer_state.json").is_file(), precision=precision)
        result["wall_s"] = round(time.time() - started, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
        init = str(out / config.name / "last")
    (out / "stages.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--input", default="codec", help="codec, live, frames, or a mix such as codec+live")
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every stage's steps (quick runs)")
    parser.add_argument("--encoder-pretrain", type=int, default=0, metavar="STEPS",
                        help="pretrain the random model's vision tower this many steps first (0: no)")
    parser.add_argument("--encoder-worlds", type=parse_worlds, default=ENCODER_WORLDS, metavar="WORLD:COUNT,...",
                        help="stage 0's worlds and shots (clips) each, e.g. mid:2000,bounce:200 "
                             f"(default {','.join(f'{w}:{n}' for w, n in ENCODER_WORLDS.items())})")
    parser.add_argument("--centre-vision", type=float, default=None, metavar="M",
                        help="every stage's centre_vision_momentum (default: each config's own)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: mixed precision (autocast) in stage 0 and every stage")
    parser.add_argument("--trainable", choices=sorted(TRAINABLE), default=None,
                        help="every stage's trainable parts (default: each config's own; merger+llm keeps stage 0's encoder)")
    parser.add_argument("--then", type=parse_then, nargs="*", default=[], metavar="CONFIG[@INPUT]",
                        help="stage configs to run after the four, in order, each as its config says "
                             "(no overrides), on INPUT or --input (e.g. the frozen tower's rungs)")
    parser.add_argument("--variation", choices=TRAINING_SPLITS, default=None,
                        help="stage 0's and every stage's training split (default: train, each config's own); "
                             "train-tints: random table tints away from the held-out one")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "command.json").write_text(json.dumps({"argv": sys.argv, "args": vars(args)}, indent=1))
    run_pipeline(args.out, args.input, args.preset, args.cache, args.threads, args.steps_scale,
                 args.encoder_pretrain, args.centre_vision, args.encoder_worlds, args.precision, args.trainable,
                 tuple(args.then), args.variation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
