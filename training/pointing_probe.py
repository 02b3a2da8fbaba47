"""`python -m training.pointing_probe --model DIR`: can the model's LLM learn to point when the
vision tokens make it easy?

The encoder is left out. A shot is one canvas of ROWS x COLS 2x2 blocks, written into the prompt
exactly as the tokenizer's would be (one timestamp run, OV2's chat template, "Point to the red
cube."); its vision tokens are made here: every block holds the table's content but one, which
holds the thing's, and each block adds a fixed random code for its place, at `position_share` of
the content's norm; every token is scaled to the trained models' vision token norm. The answer
is OV2's one-point track (training/tasks.thing_point) at the thing's block centre, so the first
x digit names its column (1, 3, 5, 7, 9 of 0-1000: chance 1/5). Only the LLM (and its
embeddings) trains, on fresh shots every step.

Why: the curriculum's models learnt to read a lone thing's colour but not where it is (readout:
the answer's hidden state holds nothing of the thing's centre, the x digit's attention stays
uniform). If this LLM learns to point from such tokens within a few hundred steps, pointing is
limited by the tokens the encoder gives it (a thing smaller than a block shares its token with
the table), not by what the LLM can learn; if it does not, by the LLM or its optimisation.

`--world mid|lone|closeup|stills` asks the same of the model's own vision tokens: real still
shots (cached training seeds; held-out seeds to score), their canvases through the model's frozen
encoder and merger once, their real prompts, OV2's point question about one of their things. If
the LLM learns to point from those as fast as from made-up ones, the tokens are good enough and
the full runs lack steps; if not, the encoder does not yet give the thing tokens of its own.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.parsers import FrameSize
from ov2_ros.model.prompt import IM_END, TextTokenizer, chat_prompt, video_text
from ov2_ros.tokenizer.geometry import PATCH_PX
from training import tasks
from training.data import (IGNORE, STILL_BUDGET, STILL_WORLDS, WORLD_DURATIONS_S, ClipCache, ClipVision,
                           answer_tokens_in, clip_range, encode_example, pack)
from training.evaluate import heldout_clips

ROWS, COLS = 4, 5
BLOCK_PX = 2 * PATCH_PX  # one 2x2 block of patches, one vision token
TOKEN_NORM = 450.0  # the curriculum models' vision tokens (training/docs: 330-1,000 on still shots)
CONTENT_NOISE = 0.3  # each block's own variation, of its content's norm
QUESTION = "Point to the {thing}."
THING = {"label": "red cube"}


class ProbeShots:
    """Shots of one fixed table / thing / position-code draw (`seed`); where the thing is in
    each shot is drawn from `shots_seed` (default: `seed`), so a held-out set shows the same
    table and thing in other places."""

    def __init__(self, tokenizer: TextTokenizer, hidden: int, position_share: float, seed: int,
                 shots_seed: int | None = None):
        self.tokenizer, self.position_share = tokenizer, position_share
        self.rng = np.random.default_rng(seed if shots_seed is None else shots_seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.table, self.thing = self._unit(hidden), self._unit(hidden)
        self.codes = self._unit(ROWS * COLS, hidden)  # (blocks, hidden): one per place
        self.frame = FrameSize(COLS * BLOCK_PX, ROWS * BLOCK_PX)
        # (blocks * 4, 3): t, h, w of every patch, in 2x2 block order, as the tokenizer writes them
        positions = np.array([[0, 2 * (b // COLS) + dh, 2 * (b % COLS) + dw]
                              for b in range(ROWS * COLS) for dh in (0, 1) for dw in (0, 1)])
        self.prompt_ids = tokenizer.encode(chat_prompt(QUESTION.format(thing=THING["label"]),
                                                       video_text(positions, fps=30.0)))

    def _unit(self, *shape) -> torch.Tensor:
        return F.normalize(torch.randn(*shape, generator=self.generator), dim=-1)

    def shot(self) -> tuple[torch.Tensor, list[int], int]:
        """(vision tokens (blocks, hidden), input ids, index of the answer's first x digit)."""
        block = int(self.rng.integers(ROWS * COLS))
        content = self.table.expand(ROWS * COLS, -1) + CONTENT_NOISE * self._unit(ROWS * COLS, self.table.shape[0])
        content[block] = self.thing + CONTENT_NOISE * self._unit(self.thing.shape[0])
        tokens = TOKEN_NORM * F.normalize(F.normalize(content, dim=-1) + self.position_share * self.codes, dim=-1)
        centre = ((block % COLS + 0.5) * BLOCK_PX, (block // COLS + 0.5) * BLOCK_PX)
        answer = tasks.thing_point({**THING, "centre_xy": centre}, self.frame, QUESTION).answer
        x_span = tasks.point_answer_spans(answer)[0]
        first_x = answer_tokens_in(self.tokenizer, answer, [(x_span[0], x_span[0] + 1)])[0]
        return tokens, self.prompt_ids + self.tokenizer.encode(answer + IM_END), len(self.prompt_ids) + first_x

    def batch(self, size: int, filler: int):
        return batch_of([(*self.shot(), len(self.prompt_ids)) for _ in range(size)], filler)


def batch_of(shots: list[tuple[torch.Tensor, list[int], int, int]], filler: int):
    """Shots (vision tokens, input ids, first-x-digit index, answer start) -> (input ids (B, L),
    labels (B, L): the answers, vision tokens per shot, first-x-digit index per shot). Shorter
    sequences are followed by `filler` ids with IGNORE labels (causal attention: what follows a
    sequence cannot change it)."""
    length = max(len(shot[1]) for shot in shots)
    input_ids = torch.full((len(shots), length), filler, dtype=torch.long)
    labels = torch.full((len(shots), length), IGNORE, dtype=torch.long)
    for row, (_, ids, _, answer_start) in enumerate(shots):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, answer_start:len(ids)] = torch.tensor(ids[answer_start:])
    return input_ids, labels, [shot[0] for shot in shots], [shot[2] for shot in shots]


class RealShots:
    """Still shots of a world from the clip cache, their vision tokens made once by the model's
    own (frozen) encoder and merger from codec canvases, each asked OV2's point question about
    one of its objects (the last thing of its truth: a still's plate comes first)."""

    def __init__(self, model, tokenizer: TextTokenizer, cache: ClipCache, specs, seed: int, desc: str,
                 canvases: int = STILL_BUDGET):
        self.rng = np.random.default_rng(seed)
        self.shots = []  # (vision tokens (blocks, hidden), input ids, first-x-digit index, answer start)
        self.first_digits = []
        for spec in tqdm(specs, desc=desc):
            _, truth = cache.clip(spec)
            qa = tasks.thing_point(truth["episode"]["things"][-1], FrameSize(spec.width, spec.height), QUESTION)
            vision = first_canvases(cache.vision(spec, "codec", STILL_BUDGET), canvases)
            tokens, ids, answer_start = real_example(model, tokenizer, spec, vision, qa)
            x_span = tasks.point_answer_spans(qa.answer)[0]
            first_x = answer_start + answer_tokens_in(tokenizer, qa.answer, [(x_span[0], x_span[0] + 1)])[0]
            self.shots.append((tokens, ids, first_x, answer_start))
            self.first_digits.append(qa.answer[x_span[0]])

    def batch(self, size: int, filler: int):
        return batch_of([self.shots[int(i)] for i in self.rng.integers(len(self.shots), size=size)], filler)

    def all(self, filler: int):
        return batch_of(self.shots, filler)

    def mean_token(self) -> torch.Tensor:
        return torch.cat([shot[0] for shot in self.shots]).mean(0)

    def shift(self, offset: torch.Tensor) -> None:
        """Every vision token plus `offset` (minus the mean token: centred, as training centres them)."""
        self.shots = [(tokens + offset, *rest) for tokens, *rest in self.shots]

    def majority_share(self) -> float:
        """Accuracy of always naming the most frequent first x digit (the prior alone)."""
        _, counts = np.unique(self.first_digits, return_counts=True)
        return float(counts.max() / counts.sum())


@torch.no_grad()
def real_example(model, tokenizer: TextTokenizer, spec, vision: ClipVision, qa: tasks.QA
                 ) -> tuple[torch.Tensor, list[int], int]:
    """(vision tokens (blocks, hidden) from the model's own encoder and merger, input ids of the
    prompt and answer as training writes them, index of the answer's first token)."""
    batch = pack([encode_example(tokenizer, vision, qa, spec)])
    answer_start = int((batch.labels[0] != IGNORE).nonzero()[0, 0])
    return model.vision_tokens(batch.vision), batch.input_ids[0].tolist(), answer_start


def first_canvases(vision: ClipVision, count: int) -> ClipVision:
    """A still shot's vision (one group) cut to its first `count` canvases."""
    per_canvas = len(vision.positions_thw[0]) // vision.canvases[0].shape[0]
    return ClipVision([vision.canvases[0][:count]], [vision.positions_thw[0][:count * per_canvas]], vision.fps,
                      vision.source_size)


def llm_logits(model, input_ids: torch.Tensor, vision_tokens: list[torch.Tensor]) -> torch.Tensor:
    """The LLM alone on input ids (B, L) with the given vision tokens at their <|image_pad|> ids."""
    embeds = model.language_model.embed_tokens(input_ids)  # (B, L, hidden)
    pads = input_ids == model.config.tokens.image_pad
    embeds = embeds.masked_scatter(pads[..., None], torch.cat(vision_tokens).to(embeds.dtype))
    return model.lm_head(model.language_model(embeds))  # (B, L, vocab)


def answer_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, vision_tokens: list[torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the labelled (answer) tokens, each predicted from those before it."""
    logits = llm_logits(model, input_ids, vision_tokens)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


def train_llm(model, next_batch, score, steps: int, lr: float, every: int, desc: str) -> list[dict]:
    """The probes' loop: the LLM and its embeddings (not the vision tower) trained `steps` steps
    with AdamW on next_batch() -> (input ids, labels, vision tokens); the curve of score() (a
    dict) at step 0, every `every` steps and at the last, with the step's loss."""
    parameters = [p for name, p in model.named_parameters() if not name.startswith("visual.")]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    curve = [{"step": 0, **score()}]
    model.train()
    for step in tqdm(range(1, steps + 1), desc=desc):
        loss = answer_loss(model, *next_batch())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": round(loss.item(), 4), **score()})
            tqdm.write(json.dumps(curve[-1]), file=sys.stderr)  # stdout: the result alone
    return curve


def probe(model_dir: str, position_share: float, steps: int = 300, batch: int = 16, lr: float = 5e-4,
          eval_shots: int = 200, every: int = 100, seed: int = 0, world: str | None = None,
          train_shots: int = 2000, cache_dir: str = "cache/worlds", canvases: int = STILL_BUDGET,
          centred: bool = False) -> dict:
    """world None: made-up tokens (ProbeShots); else real shots of that world (RealShots), their
    first `canvases` canvases, their tokens `centred` (the training shots' mean token subtracted)
    or not."""
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_dir), TextTokenizer(f"{model_dir}/tokenizer.json")
    filler = model.config.tokens.end_of_text
    if world is None:
        shots = ProbeShots(tokenizer, model.config.llm.hidden_size, position_share, seed)
        held_out = ProbeShots(tokenizer, model.config.llm.hidden_size, position_share, seed, shots_seed=seed + 1)
        evaluation, chance = held_out.batch(eval_shots, filler), 1 / COLS
        setting = {"position_share": position_share, "rows": ROWS, "cols": COLS}
    else:
        cache = ClipCache(cache_dir)
        model.eval()
        shots = RealShots(model, tokenizer, cache, clip_range(world, 0, train_shots, WORLD_DURATIONS_S[world]), seed,
                          "training shots", canvases)
        held_out = RealShots(model, tokenizer, cache, heldout_clips(world, eval_shots, WORLD_DURATIONS_S[world],
                                                                    "train"), seed, "held-out shots", canvases)
        if centred:
            mean = shots.mean_token()
            shots.shift(-mean)
            held_out.shift(-mean)
        evaluation, chance = held_out.all(filler), held_out.majority_share()
        setting = {"world": world, "train_shots": train_shots, "eval_shots": eval_shots, "canvases": canvases,
                   "centred": centred}
    @torch.no_grad()
    def first_x_digit() -> dict:
        model.eval()
        input_ids, _, tokens, first_x = evaluation
        logits = llm_logits(model, input_ids, tokens)
        rows = torch.arange(len(first_x))
        predicted = logits[rows, torch.tensor(first_x) - 1]  # (shots, vocab) at the digit's position
        truth = input_ids[rows, torch.tensor(first_x)]
        model.train()
        return {"accuracy": round(float((predicted.argmax(-1) == truth).float().mean()), 3),
                "nats": round(float(F.cross_entropy(predicted.float(), truth)), 3)}

    curve = train_llm(model, lambda: shots.batch(batch, filler)[:3], first_x_digit, steps, lr, every, "probe steps")
    return {"model": str(model_dir), **setting, "batch": batch, "lr": lr, "seed": seed,
            "chance_accuracy": round(chance, 3), "first_x_digit": curve}


def describe(result: dict) -> str:
    """A probe run in a few words, for a plot's legend."""
    if "world" not in result:
        return f"made-up tokens, place codes {result['position_share']}"
    parts = Path(result["model"]).parts
    parts = parts[parts.index("runs") + 1:] if "runs" in parts else parts[-1:]
    run = "/".join(parts[:-1] if parts[-1] == "last" and len(parts) > 1 else parts)  # runs/A/B/last -> A/B
    canvases = f"{result['canvases']} canvas" + ("es" if result["canvases"] > 1 else "")
    return f"{run}, {result['world']}, {canvases}" + (", centred" if result["centred"] else "")


def plot_curves(results: list[dict], path: Path) -> None:
    """First-x-digit accuracy against training shots, one line per probe run, chance dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for result in results:
        curve = result["first_x_digit"]
        line, = axis.plot([point["step"] * result["batch"] for point in curve], [point["accuracy"] for point in curve],
                          marker="o", label=describe(result))
        axis.axhline(result["chance_accuracy"], color=line.get_color(), linestyle=":", linewidth=1)
    axis.set_xlabel("training shots (LLM only; dotted: the prior's accuracy)")
    axis.set_ylabel("first x digit accuracy (held-out shots)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pointing_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (its LLM is trained; nothing is saved)")
    parser.add_argument("--plot", nargs="+", metavar="JSON",
                        help="instead of a run: plot these runs' printed results (one run or a list of runs "
                             "per file, as docs/pointing_probe_real.json) into --out")
    parser.add_argument("--out", default="pointing_probe.png", help="with --plot: the PNG written")
    parser.add_argument("--position-share", type=float, default=0.3,
                        help="each place code's norm, of the content's (0: no place in the tokens)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--world", choices=STILL_WORLDS,
                        help="real shots of this world through the model's own encoder (default: made-up tokens)")
    parser.add_argument("--train-shots", type=int, default=2000, help="with --world: training seeds 0..N-1")
    parser.add_argument("--eval-shots", type=int, default=200, help="held-out shots scored")
    parser.add_argument("--every", type=int, default=100, help="score every N steps")
    parser.add_argument("--canvases", type=int, default=STILL_BUDGET, choices=range(1, STILL_BUDGET + 1),
                        help="with --world: the shot's first N canvases (1: the whole first frame alone)")
    parser.add_argument("--centred", action="store_true", help="with --world: subtract the mean vision token")
    parser.add_argument("--cache", default="cache/worlds")
    args = parser.parse_args(argv)
    if args.plot:
        loaded = [json.loads(Path(path).read_text()) for path in args.plot]
        plot_curves([run for item in loaded for run in (item if isinstance(item, list) else [item])], Path(args.out))
        return 0
    if not args.model:
        parser.error("--model is required (or --plot)")
    torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.model, args.position_share, args.steps, args.batch, args.lr, args.eval_shots,
                           args.every, args.seed, args.world, args.train_shots, args.cache, args.canvases,
                           args.centred)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
