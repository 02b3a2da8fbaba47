"""`python -m training.readout`: does the model know where the thing it is asked to point at is,
and what it is?

Two linear read-outs over still shots (world `stills`, `lone`, `mid` or `closeup`), each a ridge
regression fitted on 70% of the shots and scored (R^2) on the rest:
  vision   the LLM's input vision tokens (merger output, positions included) -> each token's
           (row, column) block in the frame: is where a token is written into it?
  answer   the LLM's last hidden state at the place where it writes the point's first x digit
           -> the asked thing's true centre (x, y): has the answer gathered where the thing is?
A model that points well has both near 1; R^2 near 0 for `answer` with `vision` near 1 means
the positions are in the tokens but never reach the answer (training/docs: the attention that
would fetch them has not formed). Why linear: what a single layer (the LM head) can use.

And whether the answer looks at the thing: where the thing's colour word and its point's x
are predicted, the share of the attention on the video that falls on the thing's own tokens,
per layer, against the share uniform attention would give.

And what the thing is: the teacher-forced loss (nats) of the colour and shape words when the
shot's things are listed ("From left to right: a red cube."), shown the shot's own pixels and
the next shot's in their place. Only the pixels tell these words: a model that reads them
scores below the uniform guess (ln 4 colours, ln 2 shapes) with its own pixels and above it
with another's; a blind one scores the guess on both.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
from tqdm import tqdm

from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.parsers import FrameSize
from ov2_ros.model.prompt import TextTokenizer
from ov2_ros.synth.worlds import SHAPES, SPLITS, TRAIN_COLOURS
from ov2_ros.tokenizer.geometry import PATCH_PX
from training import tasks
from training.data import (IGNORE, STILL_BUDGET, STILL_WORLDS, WORLD_DURATIONS_S, ClipCache, answer_tokens_in,
                           encode_example, pack)
from training.evaluate import HELDOUT_SEED, answer_token_nats, heldout_clips, with_pixels_of

TRAIN_SHARE = 0.7


def ridge_r2(features: np.ndarray, targets: np.ndarray, penalty: float) -> list[float]:
    """R^2 per target column on the last (1 - TRAIN_SHARE) of the rows, fitted on the first:
    standardised features, centred targets (the intercept is not penalised)."""
    features, targets = np.asarray(features, np.float64), np.asarray(targets, np.float64)
    fit = np.arange(len(features)) < int(TRAIN_SHARE * len(features))
    mean, scale = features[fit].mean(0), features[fit].std(0) + 1e-6
    x = (features - mean) / scale
    target_mean = targets[fit].mean(0)
    weights = np.linalg.solve(x[fit].T @ x[fit] + penalty * np.eye(x.shape[1]), x[fit].T @ (targets[fit] - target_mean))
    residual = ((x[~fit] @ weights + target_mean - targets[~fit]) ** 2).sum(0)
    spread = ((targets[~fit] - target_mean) ** 2).sum(0)
    return [round(float(v), 3) for v in 1 - residual / spread]


@torch.no_grad()
def readout(model_dir: str, world: str = "lone", clips: int = 300, cache_dir: str = "cache/worlds",
            variation: str = "train", penalty: float = 1e3, progress: bool = True) -> dict:
    model, tokenizer = load_model(model_dir).eval(), TextTokenizer(f"{model_dir}/tokenizer.json")
    cache = ClipCache(cache_dir)
    merge = model.config.encoder.spatial_merge_size
    vision_features, vision_blocks, answer_features, answer_centres = [], [], [], []
    word_nats = {(kind, pixels): [] for kind in ("colour", "shape") for pixels in ("own_video", "other_video")}
    thing_shares, uniform_shares = {"colour_word": [], "x_digit": []}, {"colour_word": [], "x_digit": []}
    specs = heldout_clips(world, clips + 1, WORLD_DURATIONS_S[world], variation)
    for spec, next_spec in tqdm(list(zip(specs, specs[1:])), desc="readout", disable=not progress):
        _, truth = cache.clip(spec)
        thing = truth["episode"]["things"][-1]  # an object (a still's plate comes first)
        qa = tasks.thing_point(thing, FrameSize(spec.width, spec.height), tasks.POINT_WORDINGS[0])
        vision = cache.vision(spec, "codec", STILL_BUDGET)
        listing = tasks.table_listing(truth["episode"]["things"], tasks.TABLE_WORDINGS[0])
        spans = label_word_spans(listing.answer, [t["label"] for t in truth["episode"]["things"]])
        for pixels, shown in (("own_video", vision),
                              ("other_video", with_pixels_of(vision, cache.vision(next_spec, "codec", STILL_BUDGET)))):
            nats = answer_token_nats(model, tokenizer, spec, listing, shown)
            for kind in ("colour", "shape"):
                word_nats[kind, pixels] += [nats[i] for i in answer_tokens_in(tokenizer, listing.answer, spans[kind])]
        # One encoder pass: the listing and the point question show the same canvases.
        point_batch = pack([encode_example(tokenizer, vision, qa, spec)])
        listing_batch = pack([encode_example(tokenizer, vision, listing, spec)])
        tokens = model.vision_tokens(point_batch.vision)  # (blocks, hidden)
        blocks = point_batch.vision.positions_thw.view(-1, merge * merge, 3)[:, 0]
        blocks = blocks[blocks[:, 0] >= 0]  # (tokens, 3): t, h, w of each token's block's first patch
        vision_features.append(tokens.numpy())
        vision_blocks.append((blocks[:, 1:] // merge).numpy())  # row, column
        x_row = predicting_row(tokenizer, point_batch, qa.answer, [tasks.point_answer_spans(qa.answer)[0]])
        x_attention, hidden = attention_rows(model, point_batch.input_ids, tokens, point_batch.segment_ids, [x_row])
        answer_features.append(hidden[0, x_row].numpy())  # predicts x's first digit
        answer_centres.append(np.array(thing["centre_xy"]) / np.array([spec.width, spec.height]))
        # Where the thing's colour word and its point's x are predicted: how much of the attention
        # on the video falls on the thing's own tokens.
        on_thing = blocks_on_thing(blocks, point_batch.vision.grid_thw[0], merge, thing["box_xyxy"],
                                   (spec.width, spec.height))
        if on_thing.any():
            colour_spans = label_word_spans(listing.answer, [thing["label"]])["colour"]
            colour_row = predicting_row(tokenizer, listing_batch, listing.answer, colour_spans)
            colour_attention, _ = attention_rows(model, listing_batch.input_ids, tokens, listing_batch.segment_ids,
                                                 [colour_row])
            for key, attention, batch in (("colour_word", colour_attention, listing_batch),
                                          ("x_digit", x_attention, point_batch)):
                vision_positions = (batch.input_ids[0] == model.config.tokens.image_pad).nonzero()[:, 0]
                on_video = attention[:, :, 0, vision_positions]  # (layers, heads, tokens)
                thing_shares[key].append((on_video[:, :, on_thing].sum(-1) / on_video.sum(-1)).mean(-1).tolist())
                uniform_shares[key].append(float(on_thing.float().mean()))
    return {"model": str(model_dir), "world": world, "variation": variation, "clips": clips,
            "seeds_from": HELDOUT_SEED, "penalty": penalty,
            # ~100 tokens a shot: rows enough to need next to no penalty.
            "vision_tokens_to_block_rc_r2": ridge_r2(np.concatenate(vision_features), np.concatenate(vision_blocks),
                                                     1.0),
            "answer_to_thing_xy_r2": ridge_r2(np.stack(answer_features), np.stack(answer_centres), penalty),
            "label_word_nats": {kind: {pixels: round(float(np.mean(word_nats[kind, pixels])), 3)
                                       for pixels in ("own_video", "other_video")} for kind in ("colour", "shape")},
            "label_word_nats_uniform_guess": {"colour": round(math.log(len(TRAIN_COLOURS)), 3),
                                              "shape": round(math.log(len(SHAPES)), 3)},
            "attention_on_thing": {key: {"per_layer": np.round(np.mean(thing_shares[key], 0), 3).tolist(),
                                         "if_uniform": round(float(np.mean(uniform_shares[key])), 3),
                                         "shots": len(thing_shares[key])} if thing_shares[key] else {"shots": 0}
                                   for key in thing_shares}}


def predicting_row(tokenizer: TextTokenizer, batch, answer: str, spans: list[tuple[int, int]]) -> int:
    """The position of a one-example batch whose logits predict the first answer token in `spans`."""
    answer_positions = (batch.labels[0] != IGNORE).nonzero()[:, 0]
    return int(answer_positions[answer_tokens_in(tokenizer, answer, spans)[0]]) - 1


@torch.no_grad()
def attention_rows(model, input_ids: torch.Tensor, vision_tokens: torch.Tensor, segment_ids: torch.Tensor,
                   rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(layers, heads, len(rows), L): every LLM layer's attention probabilities from the given
    positions of one packed sequence, recomputed from the queries and keys the layer makes; and
    the LLM's last hidden state (1, L, hidden) of the same pass."""
    captured = []

    def capture(attention, args):
        x, rope, _, _, spans, _ = args  # as DecoderLayer calls its self_attn
        length = x.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        if spans is not None:  # packed: each run of the (one) row attends within itself
            run = torch.zeros(length, dtype=torch.long)
            for index, (start, end) in enumerate(spans[0]):
                run[start:end] = index
            mask &= run[:, None] == run[None, :]
        mask = mask[None, None]  # (1, 1, L, L)
        q, k, _ = attention.queries_keys_values(x, rope)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # each query head's KV head
        scores = q[:, :, rows] @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (1, H, rows, L)
        captured.append(scores.masked_fill(~mask[:, :, rows], float("-inf")).softmax(-1)[0])

    hooks = [layer.self_attn.register_forward_pre_hook(capture) for layer in model.language_model.layers]
    try:
        hidden = model.language_model(model.embed(input_ids, vision_tokens), segment_ids=segment_ids)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(captured), hidden


def blocks_on_thing(blocks: torch.Tensor, grid_thw: torch.Tensor, merge: int, box_xyxy,
                    source_wh: tuple[int, int]) -> torch.Tensor:
    """(tokens,) bool: the vision tokens whose block centre lies inside the thing's box (source
    pixels). blocks (tokens, 3): t, h, w of each block's first patch; grid_thw: (canvases, patch
    rows, patch columns) of the processed frame."""
    _, patch_rows, patch_cols = grid_thw.tolist()
    scale_x, scale_y = source_wh[0] / (patch_cols * PATCH_PX), source_wh[1] / (patch_rows * PATCH_PX)
    centre_x = (blocks[:, 2] + merge / 2) * PATCH_PX * scale_x
    centre_y = (blocks[:, 1] + merge / 2) * PATCH_PX * scale_y
    x0, y0, x1, y1 = box_xyxy
    return (centre_x > x0) & (centre_x < x1) & (centre_y > y0) & (centre_y < y1)


def label_word_spans(text: str, labels: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Character spans of each object's colour word and shape word in `text` (plates left out),
    each with the space before it (the tokenizer writes the space into the word's token)."""
    spans = {"colour": [], "shape": []}
    for label in labels:
        colour, shape = label.split(" ")
        if shape in SHAPES:
            start = text.index(f" {label}")  # a still's things have distinct labels
            spans["colour"].append((start, start + 1 + len(colour)))
            spans["shape"].append((start + 1 + len(colour), start + 1 + len(label)))
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.readout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--world", choices=STILL_WORLDS, default="lone")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--variation", choices=SPLITS, default="train")
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--penalty", type=float, default=1e3,
                        help="ridge penalty of the answer read-out (one row a shot; standardised features)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(readout(args.model, args.world, args.clips, args.cache, args.variation, args.penalty)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
