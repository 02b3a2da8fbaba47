"""Train an ov2_ros model, one stage at a time (method.md 4, scaled down; configs in
training/configs/). `python -m training.train --stage CONFIG --out DIR [--init PRESET|DIR]`, or
under torchrun for data-parallel runs (DDP; FSDP2 with "fsdp": true for large models).

Each step packs whole examples (codec canvases or sampled frames at a budget drawn from the
stage's budgets) into one sequence of at most max_tokens, or sets examples_per_step examples side
by side, and minimises the cross-entropy of the answer tokens. AdamW, linear warm-up then cosine decay from lr to lr_min, gradient norm clipped
to 1. Checkpoints (model folder + trainer state, safetensors and JSON, no pickles) every
save_every steps and at the end (DIR/last; with keep_checkpoints also each one's model as
DIR/step_NNNNNN); --resume continues from the last one. Scalars go to
tensorboard (DIR/tensorboard) and DIR/log.jsonl.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ov2_ros.model.checkpoint import load_model, read_safetensors, save_model, write_safetensors
from ov2_ros.model.config import preset
from ov2_ros.model.ov2 import Ov2Model
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.synth.worlds import training_split
from ov2_ros.tokenizer.geometry import FrameGeometry
from ov2_ros.tokenizer.pipeline import TokenizerConfig
from training.centre_vision import centre
from training.data import (IGNORE, INPUT_MODES, ClipCache, ClipSpec, ClipVision, Example, clip_range, examples_for_clip,
                           pack_rows)
from training.text import build_tokenizer

TRAINABLE = {
    "merger": ("visual.merger.",),
    "merger+llm": ("visual.merger.", "language_model.", "lm_head."),
    "llm": ("language_model.", "lm_head."),  # the vision tower (encoder and merger) frozen
    "all": ("",),
}


@dataclass(frozen=True)
class StageConfig:
    name: str
    trainable: str = "all"  # a key of TRAINABLE
    steps: int = 500
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup_steps: int = 50
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    max_tokens: int = 2048  # per packed sequence (one optimizer step)
    # 0: a step is one sequence packed to max_tokens. N > 0: a step is N examples side by side,
    # one per row, padded to the longest, all at one budget drawn for the step (rows of alike
    # lengths); attention costs the square of a row's length, so many examples are cheaper side
    # by side than end to end.
    examples_per_step: int = 0
    clips: dict = field(default_factory=lambda: {"bounce": 100, "pickplace": 100})  # training clips per world
    durations_s: dict = field(default_factory=lambda: {"bounce": [10.0, 20.0], "pickplace": [9.0, 10.0]})
    tasks: tuple[str, ...] | None = None  # None: every task
    budgets: tuple[int, ...] = (4, 8, 16, 32)
    save_every: int = 250
    # True: each save also keeps the model (not the optimizer) as OUT/step_NNNNNN, so held-out
    # suites can score the run's course afterwards (`ov2 eval --model OUT/step_000500`).
    keep_checkpoints: bool = False
    seed: int = 0
    fsdp: bool = False
    # > 0: a model without them gets learned (h, w) embeddings after the merger, this many rows
    # per axis, initial norm merger_position_norm (add_merger_positions); a model that has them
    # keeps its own.
    merger_position_embeddings: int = 0
    merger_position_norm: float = 4.0
    # The LLM's q_norm and k_norm gains multiplied by this at the stage's start (attention logits
    # by its square), for a model whose attention is too soft to pick one token out of a long
    # prompt (scale_attention_gains says why); 1: unchanged.
    qk_norm_scale: float = 1.0
    # > 0: after every step the merger's output bias moves by -momentum x the step's mean vision
    # token (training/centre_vision.py says why); 0: never.
    centre_vision_momentum: float = 0.0
    # Relative weights of tasks in the stage's mix (a task not named weighs 1): a question is kept
    # with probability weight / the largest weight, so {"trace": 4} makes the other tasks a
    # quarter as common as they were against the trace. Empty: every question a clip gives.
    task_weights: dict = field(default_factory=dict)
    # The worlds' training variation: "train" (three background tints) or "train-tints" (any tint
    # away from the held-out one); held-out splits are refused.
    variation: str = "train"

    def __post_init__(self):
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable {self.trainable!r} is not one of {sorted(TRAINABLE)}")
        if self.centre_vision_momentum and self.fsdp:
            raise ValueError("centre_vision_momentum needs the whole merger bias on every rank: not with fsdp")
        if any(weight < 0 for weight in self.task_weights.values()):
            raise ValueError(f"task_weights {self.task_weights}: weights are >= 0")
        training_split(self.variation)
        if self.tasks and not any(self.task_weights.get(task, 1.0) > 0 for task in self.tasks):
            raise ValueError(f"task_weights {self.task_weights} weigh every task of {self.tasks} 0: no question to draw")

    @classmethod
    def load(cls, path: str | Path) -> "StageConfig":
        data = json.loads(Path(path).read_text())
        for key in ("betas", "tasks", "budgets"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def clip_specs(config: StageConfig) -> list[ClipSpec]:
    """The stage's training clips: per world, seeds 0.. with durations drawn per seed."""
    return [spec for world, count in config.clips.items()
            for spec in clip_range(world, 0, count, config.durations_s[world], split=config.variation)]


def trained_frame_area(specs: list[ClipSpec]) -> int:
    """The processed frame area (tokenizer geometry, method.md 1.3) of the training clips: the
    model records it as its max_pixels, so the node shows it frames at the scale it learned."""
    geometries = [FrameGeometry.for_source(s.height, s.width, TokenizerConfig().max_pixels) for s in specs]
    return max(g.height * g.width for g in geometries)


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """A clear error before any work for a precision autocast does not know."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")


def autocast(precision: str):
    """The context a training step's forward pass runs in. bf16: matrix products and attention
    in bfloat16 (torch autocast), weights, norms, residual sums, the loss and the optimizer
    state in fp32; on a CPU with AVX512-BF16 or AMX the nano model's LLM step runs in ~0.55x
    the time of fp32 (docs/training.md). fp32: everything in fp32."""
    check_precision(precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


def lr_at(step: int, config: StageConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_loss(model: torch.nn.Module, batch, encoder_hidden: torch.Tensor | None = None) -> torch.Tensor:
    """The mean cross-entropy of every answer token of every row (encoder_hidden: the batch's
    encoder output, computed before, as FrozenEncoder does)."""
    targets = batch.labels[:, 1:]  # each position predicts the next token
    predicting = torch.zeros_like(batch.labels, dtype=torch.bool)
    predicting[:, :-1] = targets != IGNORE
    logits = model(batch.input_ids, batch.vision, batch.segment_ids, encoder_hidden, predicting)  # (answer tokens, vocab)
    return F.cross_entropy(logits, targets[targets != IGNORE])


class FrozenEncoder:
    """The encoder's output for examples, for an encoder that does not train, each clip input's
    computed once. Why: a stage that trains the LLM (and perhaps the merger) on a frozen
    encoder draws the same clips at the same budgets again and again (a merger+llm trace stage's
    step: 0.84x, docs/training.md). The merger still runs every step, so it can train and
    centring (which moves its output bias) still applies; for a frozen merger that rerun is ~1 %
    of an LLM step. Keyed by the canvases' and positions' bytes, so two inputs share an output
    only when the encoder sees the same thing."""

    def __init__(self, model: Ov2Model):
        self.model = model
        self.hidden: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def key(vision: ClipVision) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        for canvases, positions in zip(vision.canvases, vision.positions_thw):
            digest.update(np.ascontiguousarray(canvases).data)
            digest.update(np.ascontiguousarray(positions).data)
        return digest.digest()

    @torch.no_grad()
    def __call__(self, examples: list[Example]) -> torch.Tensor:
        """(patches, encoder hidden): the examples' encoder output in order, as pack_rows lays
        their canvases (padding patches included; the merger drops their blocks)."""
        hidden = []
        for example in examples:
            key = self.key(example.vision)
            if key not in self.hidden:
                self.hidden[key] = self.model.visual.hidden(example.vision.as_input())
            hidden.append(self.hidden[key])
        return torch.cat(hidden)


def _state_options(full: bool, offload: bool = True):
    """full: gather a sharded model's whole state; offload: onto rank 0's CPU only."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full and offload)


def _checkpoint(model: Ov2Model, optimizer: torch.optim.Optimizer, folder: Path, tokenizer_path, step: int,
                rank: int, sharded: bool) -> None:
    """Model folder + optimizer state (safetensors) + step (JSON). With FSDP2 every rank takes
    part in gathering the full state; rank 0 writes."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(model, options=_state_options(sharded))
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=_state_options(sharded))
    if rank != 0:  # gathered onto rank 0 only
        return
    optimizer_state = optimizer_state["state"]
    save_model(model, folder, tokenizer_path, state=model_state)
    tensors, scalars = {}, {}
    for name, state in optimizer_state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"{name}::{key}"] = value
            else:
                scalars[f"{name}::{key}"] = float(value)
    write_safetensors(tensors, folder / "optimizer.safetensors")
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, "scalars": scalars}))


def _restore_optimizer(model: Ov2Model, optimizer: torch.optim.Optimizer, folder: Path, sharded: bool) -> int:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    saved = json.loads((folder / "trainer_state.json").read_text())
    state: dict[str, dict] = {}
    for key, value in read_safetensors(folder / "optimizer.safetensors").items():
        name, entry = key.split("::", 1)
        state.setdefault(name, {})[entry] = value.clone()
    for key, value in saved["scalars"].items():
        name, entry = key.split("::", 1)
        state.setdefault(name, {})[entry] = torch.tensor(value)
    # Every rank reads the files; each keeps its own shard of the full state.
    groups = get_optimizer_state_dict(model, optimizer, options=_state_options(sharded, offload=False))["param_groups"]
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups},
                             options=_state_options(sharded, offload=False))
    return saved["step"]


def _log_up_to(path: Path, step: int):
    """The training log, opened to append after its records of steps up to `step` (those after
    it, and a line cut off by a killed run, are dropped)."""
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["step"] <= step:
                kept.append(line + "\n")
    path.write_text("".join(kept))
    return open(path, "a")


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@torch.no_grad()
def add_merger_positions(model: Ov2Model, rows: int, norm: float = 4.0) -> Ov2Model:
    """The model with learned (h, w) block embeddings added after its merger (OV2's
    use_patch_position_encoding). Why: the encoder's 3D RoPE is relative, and codec canvases pack
    salient blocks from anywhere in the frame side by side, so no vision token says where in the
    frame it is; boxes, points and traces need exactly that. Initialised as 2-D sinusoids (h in
    the first half of the dimensions, w in the second, so (2, 3) and (3, 2) differ), each
    position's h + w embedding of the given norm (the default model's centred vision tokens:
    ~5), then trained like every other weight."""
    encoder = dataclasses.replace(model.config.encoder, merger_position_embeddings=rows)
    grown = Ov2Model(dataclasses.replace(model.config, encoder=encoder))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if set(missing) != {"visual.merger.pos_emb_h.weight", "visual.merger.pos_emb_w.weight"} or unexpected:
        raise ValueError(f"adding merger positions: missing {missing}, unexpected {unexpected}")
    width = encoder.out_hidden_size // 2
    frequencies = 1.0 / 10000 ** (torch.arange(0, width, 2, dtype=torch.float32) / width)  # (width/2,)
    angles = torch.arange(rows, dtype=torch.float32)[:, None] * frequencies  # (rows, width/2)
    sinusoids = torch.cat([angles.sin(), angles.cos()], dim=-1) * norm / width ** 0.5  # (rows, width)
    merger = grown.visual.merger
    merger.pos_emb_h.weight.zero_()[:, :width] = sinusoids
    merger.pos_emb_w.weight.zero_()[:, width:2 * width] = sinusoids
    return grown.to(next(model.parameters()).dtype)


@torch.no_grad()
def scale_attention_gains(model: Ov2Model, factor: float) -> None:
    """Multiply every LLM layer's q_norm and k_norm weights by `factor`. Why: Qwen3 normalises
    queries and keys (RMS 1 per head dimension), so with gains of 1 an attention logit is at most
    sqrt(head_dim) (8 for our 64) in size; picking one token (the object named in the question)
    out of ~1,300 nearly alike vision and timestamp tokens needs a wider range. Pretrained Qwen3
    has learnt larger gains; ours stayed at 1.00-1.09 after 2,400 steps (the default model until 2026-12-07)."""
    for layer in model.language_model.layers:
        layer.self_attn.q_norm.weight.mul_(factor)
        layer.self_attn.k_norm.weight.mul_(factor)


def initial_model(init: str, tokenizer: TextTokenizer) -> Ov2Model:
    """A preset name (random weights, seeded by the caller) or a model folder."""
    if Path(init).is_dir():
        return load_model(init)
    model = Ov2Model(preset(init, tokenizer.vocab_size, tokenizer.token_ids()))
    model.init_weights()
    return model


def step_rows(config: StageConfig, specs: list[ClipSpec], modes: list[str], cache: ClipCache,
              tokenizer: TextTokenizer, rank: int, step_index: int) -> list[list[Example]]:
    """A step's examples, row by row: a function of (seed, rank, step) alone, so a resumed run
    sees exactly the batches an uninterrupted one would. Clips are drawn at random and their
    questions taken in random order; with task_weights, a question is kept with probability
    its task's weight over the largest weight (a config without them draws what it always did)."""
    rng = np.random.default_rng([config.seed, rank, step_index])
    step_budget = int(rng.choice(config.budgets)) if config.examples_per_step else None
    top_weight = max([1.0, *config.task_weights.values()])  # a task not named weighs 1
    chosen, length = [], 0
    while True:
        spec = specs[int(rng.integers(len(specs)))]
        budget = step_budget or int(rng.choice(config.budgets))
        # One mode draws nothing: single-mode runs keep the batches they always had.
        mode = modes[int(rng.integers(len(modes)))] if len(modes) > 1 else modes[0]
        candidates = examples_for_clip(cache, tokenizer, spec, mode, budget, rng, config.tasks)
        for index in rng.permutation(len(candidates)):
            example = candidates[index]
            keep = config.task_weights.get(example.qa.task, 1.0) / top_weight
            if keep < 1.0 and rng.random() >= keep:
                continue
            if config.examples_per_step:
                chosen.append([example])
                if len(chosen) == config.examples_per_step:
                    return chosen
                continue
            if chosen and length + len(example.input_ids) > config.max_tokens:
                return [chosen]
            chosen.append(example)
            length += len(example.input_ids)


def train_stage(config: StageConfig, out_dir: str | Path, init: str, cache_dir: str | Path, input_mode: str = "codec",
                tokenizer_path: str | Path | None = None, resume: bool = False, threads: int | None = None,
                progress: bool = True, precision: str = "fp32") -> dict:
    check_precision(precision)
    rank, world_size = _distributed()
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if tokenizer_path is None:
        tokenizer_path = Path(init) / "tokenizer.json" if Path(init).is_dir() else out_dir / "tokenizer.json"
        if not Path(tokenizer_path).is_file():
            build_tokenizer(tokenizer_path)
    tokenizer = TextTokenizer(tokenizer_path)
    last = out_dir / "last"
    resume_from_last = resume and (last / "trainer_state.json").is_file()
    model = load_model(last) if resume_from_last else initial_model(init, tokenizer)
    if config.merger_position_embeddings and not model.config.encoder.merger_position_embeddings:
        model = add_merger_positions(model, config.merger_position_embeddings, config.merger_position_norm)
    if config.qk_norm_scale != 1.0 and not resume_from_last:
        scale_attention_gains(model, config.qk_norm_scale)
    prefixes = TRAINABLE[config.trainable]
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(prefixes)
    wrapped: torch.nn.Module = model
    if world_size > 1:
        if config.fsdp:
            from torch.distributed.fsdp import fully_shard
            for layer in [*model.visual.encoder.layers, *model.language_model.layers]:
                fully_shard(layer)
            wrapped = fully_shard(model)
        else:
            wrapped = torch.nn.parallel.DistributedDataParallel(model)
    sharded = world_size > 1 and config.fsdp
    # After sharding: FSDP2 replaces the parameters with sharded ones, which the optimizer must hold.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    step = 0
    if resume_from_last:
        step = _restore_optimizer(model, optimizer, last, sharded)

    modes = input_mode.split("+")  # "codec+live": each clip of a batch drawn in one of them
    if not set(modes) <= set(INPUT_MODES):
        raise ValueError(f"input {input_mode!r}: modes are {INPUT_MODES}, joined with '+' to mix them")
    cache = ClipCache(cache_dir)
    specs = clip_specs(config)
    model.config = dataclasses.replace(model.config, max_pixels=trained_frame_area(specs))
    for spec in tqdm(specs[rank::world_size], desc=f"{config.name}: rendering + encoding clips", disable=not progress or rank):
        cache.clip(spec)

    encoder_frozen = not any(p.requires_grad for name, p in model.visual.named_parameters()
                             if not name.startswith("merger."))
    frozen_encoder = FrozenEncoder(model) if encoder_frozen else None
    vision_means: list[torch.Tensor] = []  # the step's mean vision token, for centre_vision_momentum
    if config.centre_vision_momentum:
        def keep_mean(merger, args, merged):
            content = args[1].view(-1, merger.group, 3)[:, 0, 0] >= 0  # padding blocks never reach the LLM
            vision_means.append(merged.detach()[content].mean(dim=0))
        model.visual.merger.register_forward_hook(keep_mean)

    writer = log = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        # A run stopped between two checkpoints had logged steps that this one takes again from
        # the last checkpoint: both logs forget them, so each step is logged once (log.jsonl
        # starts empty for a run from step 0).
        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=step + 1 if step else None)
        log = _log_up_to(out_dir / "log.jsonl", step)
    model.train()
    bar = tqdm(total=config.steps, initial=step, desc=config.name, disable=not progress or rank, unit="step")
    losses: list[float] = []
    while step < config.steps:
        started = time.perf_counter()
        rows = step_rows(config, specs, modes, cache, tokenizer, rank, step)
        batch = pack_rows(rows, filler=model.config.tokens.end_of_text)
        encoder_hidden = frozen_encoder([e for row in rows for e in row]) if frozen_encoder else None
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        with autocast(precision):
            loss = batch_loss(wrapped, batch, encoder_hidden)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, 1.0))
        optimizer.step()
        if vision_means:
            mean = torch.stack(vision_means).mean(dim=0)
            if world_size > 1:  # every rank moves its copy of the bias alike
                dist.all_reduce(mean)
                mean /= world_size
            centre(model, config.centre_vision_momentum * mean)
            vision_means.clear()
        step += 1
        losses.append(float(loss.detach()))
        seconds = time.perf_counter() - started
        if rank == 0:
            record = {"step": step, "loss": round(losses[-1], 5), "lr": optimizer.param_groups[0]["lr"],
                      "grad_norm": round(grad_norm, 4), "tokens": int((batch.segment_ids >= 0).sum()),
                      "examples": batch.examples, "seconds": round(seconds, 3)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            for key in ("loss", "lr", "grad_norm"):
                writer.add_scalar(f"{config.name}/{key}", record[key], step)
            writer.add_scalar(f"{config.name}/tokens_per_s", record["tokens"] / seconds, step)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            bar.update(1)
        if step % config.save_every == 0 or step == config.steps:
            _checkpoint(model, optimizer, last, tokenizer_path, step, rank, sharded)
            if config.keep_checkpoints and rank == 0:
                kept = out_dir / f"step_{step:06d}"
                shutil.rmtree(kept, ignore_errors=True)  # a resumed run saves its step again
                shutil.copytree(last, kept, ignore=shutil.ignore_patterns("optimizer.safetensors", "trainer_state.json"))
    bar.close()
    if rank == 0:
        log.close()
        writer.close()
        (out_dir / "stage.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    model.eval()
    return {"stage": config.name, "steps": step, "final_loss_mean20": float(np.mean(losses[-20:])) if losses else None,
            "model": str(last)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, help="stage config JSON (training/configs/)")
    parser.add_argument("--out", required=True, help="run folder (the model goes to OUT/last)")
    parser.add_argument("--init", default="nano", help="preset (nano, small) or a model folder (previous stage)")
    parser.add_argument("--cache", default="cache/worlds", help="clip and canvas cache")
    parser.add_argument("--input", default="codec",
                        help=f"canvases from {', '.join(INPUT_MODES)} (training/data.py), or a mix such as codec+live")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json (default: from --init, else trained)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override the stage's steps")
    parser.add_argument("--trainable", choices=sorted(TRAINABLE), default=None,
                        help="override the stage's trainable parts (merger+llm: the encoder stays as --init has it)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: mixed precision (autocast); 0.63-0.69x the fp32 step time on a CPU with AVX512-BF16")


def run(args) -> int:
    config = StageConfig.load(args.stage)
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps, save_every=min(config.save_every, args.steps))
    if args.trainable is not None:
        config = dataclasses.replace(config, trainable=args.trainable)
    try:
        result = train_stage(config, args.out, args.init, args.cache, args.input, args.tokenizer, args.resume,
                             args.threads, precision=args.precision)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
