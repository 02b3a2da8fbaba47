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
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.parsers import FrameSize
from ov2_ros.model.prompt import IM_END, TextTokenizer, chat_prompt, video_text
from ov2_ros.tokenizer.geometry import PATCH_PX
from training import tasks
from training.data import IGNORE, answer_tokens_in

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
        """(input ids (B, L), labels (B, L), vision tokens per shot, first-x-digit index per shot);
        shorter answers are followed by `filler` ids with IGNORE labels (causal attention: what
        follows a sequence cannot change it)."""
        shots = [self.shot() for _ in range(size)]
        length = max(len(ids) for _, ids, _ in shots)
        input_ids = torch.full((size, length), filler, dtype=torch.long)
        labels = torch.full((size, length), IGNORE, dtype=torch.long)
        for row, (_, ids, _) in enumerate(shots):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            labels[row, len(self.prompt_ids):len(ids)] = torch.tensor(ids[len(self.prompt_ids):])
        return input_ids, labels, [tokens for tokens, _, _ in shots], [first_x for _, _, first_x in shots]


def _logits(model, input_ids: torch.Tensor, vision_tokens: list[torch.Tensor]) -> torch.Tensor:
    embeds = model.language_model.embed_tokens(input_ids)  # (B, L, hidden)
    pads = input_ids == model.config.tokens.image_pad
    embeds = embeds.masked_scatter(pads[..., None], torch.cat(vision_tokens).to(embeds.dtype))
    return model.lm_head(model.language_model(embeds))  # (B, L, vocab)


def probe(model_dir: str, position_share: float, steps: int = 300, batch: int = 16, lr: float = 5e-4,
          eval_shots: int = 200, every: int = 100, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_dir), TextTokenizer(f"{model_dir}/tokenizer.json")
    filler = model.config.tokens.end_of_text
    shots = ProbeShots(tokenizer, model.config.llm.hidden_size, position_share, seed)
    held_out = ProbeShots(tokenizer, model.config.llm.hidden_size, position_share, seed, shots_seed=seed + 1)
    evaluation = held_out.batch(eval_shots, filler)
    parameters = [p for name, p in model.named_parameters() if not name.startswith("visual.")]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)

    @torch.no_grad()
    def first_x_digit() -> dict:
        model.eval()
        input_ids, _, tokens, first_x = evaluation
        logits = _logits(model, input_ids, tokens)
        rows = torch.arange(len(first_x))
        predicted = logits[rows, torch.tensor(first_x) - 1]  # (shots, vocab) at the digit's position
        truth = input_ids[rows, torch.tensor(first_x)]
        model.train()
        return {"accuracy": round(float((predicted.argmax(-1) == truth).float().mean()), 3),
                "nats": round(float(F.cross_entropy(predicted.float(), truth)), 3)}

    curve = [{"step": 0, **first_x_digit()}]
    model.train()
    for step in range(1, steps + 1):
        input_ids, labels, tokens, _ = shots.batch(batch, filler)
        logits = _logits(model, input_ids, tokens)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": round(loss.item(), 4), **first_x_digit()})
    return {"model": str(model_dir), "position_share": position_share, "rows": ROWS, "cols": COLS, "batch": batch,
            "lr": lr, "seed": seed, "chance_accuracy": 1 / COLS, "first_x_digit": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pointing_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (its LLM is trained; nothing is saved)")
    parser.add_argument("--position-share", type=float, default=0.3,
                        help="each place code's norm, of the content's (0: no place in the tokens)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.model, args.position_share, args.steps, args.batch, args.lr, seed=args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
