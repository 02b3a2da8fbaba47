"""`python -m training.encoder_pretrain --init DIR --out DIR`: teach the vision tower (encoder and
merger) to say, token by token, what lies in its own 2x2 block, before the LLM is asked to point.

Why: OV2 starts from a pretrained OneVision-Encoder whose tokens already describe their patches;
ours starts from random weights and learnt only through the LLM's answers, which rewarded tokens
that say what the whole shot holds (the colour of the lone thing: read) rather than what their
own block holds (where it is: never read). `training.pointing_probe --world` measures the gap:
the same LLM learns to point from made-up tokens in which one block is the thing, not from the
encoder's. This stage is our stand-in for the pretrained encoder, made from the worlds' exact
truth: every content block of a still shot's codec canvases gets a target distribution over
CLASSES (the table, or a colour and kind of thing: cube, cylinder, plate, ball; or the
gripper), the share of the block's area each covers in the source frame it was cut from, and a
linear head reads each merger output token, RMS-normalised as the LLM's first norm reads it, to
predict it (soft cross-entropy, the few blocks on things weighted up). Only the vision tower and
the head train; the head is dropped, the model saved with its LLM untouched.

Place as well (`--place-weight`, default 1): the head also names the tenth of the frame, across
and down, that each block's centre lies in, the first digit of OV2's 0-1000 coordinates. Why:
the LLM reads place from the raster order of the first (whole-frame) canvas only (its RoPE is
1-D), so a token of a salient canvas, packed beside blocks from anywhere, must say its place in
its content for a point to be copied from it. The encoder can learn it: its 3D RoPE gives each
token its true (h, w) relative to the whole frame's tokens in its window.

Where the thing on a block is, too (`--centre-weight`, default 1): for each block things cover
(TOUCH_SHARE), the tenth of the frame, across and down, of the centre of the thing covering most
of it. Why: a block's place is coarse (a 112-pixel frame has four block rows), and timing a
bounce needs the ball's height (docs/training.md: the study oracle's height reader, and the
events probe, which reads takeoffs from truth tokens holding the ball's height band but not from
tokens holding its class and block).

Video clips as well (`--worlds bounce:N,pickplace:N`): a clip's codec canvases (VIDEO_BUDGET:
two groups) hold blocks of many frames, each tagged with its frame, so each block's target is
measured in that frame's truth: the bouncing ball; the plate, the objects (carried ones too) and
the gripper of a pick-and-place frame. Why: the video tasks ask where the ball and the gripper
are at each moment, and stills hold neither a ball nor a moving arm.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ov2_ros.model.checkpoint import load_model, save_model
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.model.ov2 import content_blocks
from ov2_ros.synth.worlds import HELDOUT_COLOURS, TRAIN_COLOURS, TRAINING_SPLITS, gripper_rectangles, training_split
from ov2_ros.tokenizer.geometry import PATCH_PX
from training.data import STILL_BUDGET, STILL_WORLDS, WORLD_DURATIONS_S, ClipCache, ClipSpec, clip_range
from training.evaluate import heldout_clips
from training.train import PRECISIONS, StageConfig, autocast, check_precision, lr_at

THING_KINDS = ("cube", "cylinder", "plate", "ball")
# "table" is the background: the table, walls and distractors no question asks about.
CLASSES = ("table",) + tuple(f"{colour} {kind}" for colour in TRAIN_COLOURS + HELDOUT_COLOURS
                             for kind in THING_KINDS) + ("gripper",)
VIDEO_WORLDS = ("bounce", "pickplace")
PRETRAIN_WORLDS = STILL_WORLDS + VIDEO_WORLDS
# Canvases of a video clip a step sees: two groups (each its first frame whole, then salient
# blocks of its frames), as a stage's smallest video budget shows a clip.
VIDEO_BUDGET = 8
VIDEO_EVAL_CLIPS = 20  # held-out clips per video world at most (a clip holds many shots' blocks)
SAMPLES = 8  # sample points per block side: a block's class shares are measured on 8 x 8 points
THING_SHARE = 0.5  # a block is "on" a thing (for the scores) when the thing covers at least this share
# A block "touches" things when they cover at least this share: the bouncing ball (13 pixels
# across at 160x120) covers at most ~a quarter of any block, so no block is ever "on" it.
TOUCH_SHARE = 0.1
# Loss weight of a block wholly on things, against 1 for a table block (linear in between): on
# still shots ~4% of blocks touch a thing, and those are the ones pointing needs.
THING_WEIGHT = 10.0
PLACE_BINS = 10  # tenths of the frame across and down: the first digit of a 0-1000 coordinate


def thing_covers(thing: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether source pixels (x, y) lie on a thing as the worlds draw it from above: a cube and
    a part of the gripper are their box, a cylinder, a plate and a ball a disc filling it about
    its centre (shadows are table)."""
    x0, y0, x1, y1 = thing["box_xyxy"]
    if thing["label"].endswith(" cube") or thing["label"] == "gripper":
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    cx, cy = thing["centre_xy"]
    return (x - cx) ** 2 + (y - cy) ** 2 <= ((x1 - x0) / 2) ** 2


def sample_owners(things: list[dict], blocks_hw: np.ndarray, processed_hw: tuple[int, int],
                  source_wh: tuple[int, int], merge: int = 2) -> np.ndarray:
    """(blocks, SAMPLES, SAMPLES) int: which thing (its index in `things`; -1: the table) lies
    at each sample point of each block. blocks_hw (blocks, 2): patch row and column of each
    block's first patch in the processed frame of processed_hw (rows, columns) pixels; things in
    drawing order (later ones cover earlier)."""
    side = merge * PATCH_PX
    offsets = (np.arange(SAMPLES) + 0.5) * side / SAMPLES  # sample points inside a block, processed pixels
    scale_x, scale_y = source_wh[0] / processed_hw[1], source_wh[1] / processed_hw[0]
    px = (blocks_hw[:, 1, None, None] * PATCH_PX + offsets[None, None, :]) * scale_x  # (blocks, 1, S)
    py = (blocks_hw[:, 0, None, None] * PATCH_PX + offsets[None, :, None]) * scale_y  # (blocks, S, 1)
    px, py = np.broadcast_arrays(px, py)  # (blocks, S, S) each
    owner = np.full(px.shape, -1, np.int64)
    for index, thing in enumerate(things):
        owner[thing_covers(thing, px, py)] = index
    return owner


def block_targets(things: list[dict], blocks_hw: np.ndarray, processed_hw: tuple[int, int],
                  source_wh: tuple[int, int], merge: int = 2) -> np.ndarray:
    """(blocks, len(CLASSES)) float: the share of each block's area on each class (sample_owners'
    arguments)."""
    return class_shares(sample_owners(things, blocks_hw, processed_hw, source_wh, merge), things)


def class_shares(owner: np.ndarray, things: list[dict]) -> np.ndarray:
    """sample_owners' map -> (blocks, len(CLASSES)) float shares."""
    class_of = np.array([0] + [CLASSES.index(thing["label"]) for thing in things])  # owner + 1 -> class
    counts = np.stack([(class_of[owner + 1] == c).sum(axis=(1, 2)) for c in range(len(CLASSES))], axis=-1)
    return (counts / SAMPLES ** 2).astype(np.float32)


def thing_centres(things: list[dict], blocks_hw: np.ndarray, processed_hw: tuple[int, int],
                  source_wh: tuple[int, int], merge: int = 2) -> np.ndarray:
    """(blocks, 2) int: the tenth of the frame across and down that the centre of the thing
    covering most of each block lies in; -1 where things cover less than TOUCH_SHARE of it
    (sample_owners' arguments). Where the thing is, finer than its block: the ball's height
    above the floor changes within one of the four block rows of a 112-pixel frame."""
    return owner_centres(sample_owners(things, blocks_hw, processed_hw, source_wh, merge), things, source_wh)


def owner_centres(owner: np.ndarray, things: list[dict], source_wh: tuple[int, int]) -> np.ndarray:
    """sample_owners' map -> (blocks, 2) thing-centre tenths (-1: no thing)."""
    owner = owner.reshape(len(owner), -1)
    centres = np.full((len(owner), 2), -1, np.int64)
    for block, owners in enumerate(owner):
        counts = np.bincount(owners + 1, minlength=len(things) + 1)[1:]  # per thing
        if counts.size and counts.max() >= TOUCH_SHARE * owners.size:
            x, y = things[int(counts.argmax())]["centre_xy"]
            centres[block] = np.clip((np.array([x / source_wh[0], y / source_wh[1]]) * PLACE_BINS).astype(np.int64),
                                     0, PLACE_BINS - 1)
    return centres


def _boxed(label: str, box_xyxy) -> dict:
    x0, y0, x1, y1 = box_xyxy
    return {"label": label, "box_xyxy": [x0, y0, x1, y1], "centre_xy": [(x0 + x1) / 2, (y0 + y1) / 2]}


def things_in_frame(world: str, truth: dict, frame: int, source_wh: tuple[int, int]) -> list[dict]:
    """The things frame `frame` of a clip of `world` shows, in drawing order (later ones cover
    earlier), as thing_covers reads them: a still's things (the same in every frame); the
    bouncing ball; a pick-and-place frame's plate (moved by the camera's shake), objects and
    gripper (arm and fingers)."""
    episode = truth["episode"]
    if world in STILL_WORLDS:
        return episode["things"]
    record = truth["frames"][frame]
    if record["frame"] != frame:
        raise ValueError(f"truth frame {record['frame']} stored at index {frame}")
    if world == "bounce":
        return [_boxed(episode["object"], record["ball_box_xyxy"])]
    dx, dy = record["camera_offset_xy"]
    x0, y0, x1, y1 = episode["plate_box_xyxy"]
    gripper = record["gripper"]
    return ([_boxed(episode["plate"], (x0 + dx, y0 + dy, x1 + dx, y1 + dy))]
            + [_boxed(obj["label"], obj["box_xyxy"]) for obj in record["objects"]]
            + [_boxed("gripper", rectangle) for rectangle in
               gripper_rectangles(gripper["x"], gripper["y"], gripper["opening"], gripper["height"], min(source_wh))])


def block_places(blocks_hw: np.ndarray, processed_hw: tuple[int, int], merge: int = 2) -> np.ndarray:
    """(blocks, 2) int: the tenth of the frame across (column) and down (row) that each block's
    centre lies in; the processed frame is the source scaled, so its fractions are the source's."""
    centre = blocks_hw * PATCH_PX + merge * PATCH_PX / 2  # (blocks, 2) processed pixels, (row, column)
    fraction = centre / np.asarray(processed_hw, float)
    return np.minimum((fraction * PLACE_BINS).astype(np.int64), PLACE_BINS - 1)[:, ::-1].copy()


class ShotSet:
    """Shots' vision inputs (codec canvases, cached: a still's one group, a clip's VIDEO_BUDGET
    canvases), their blocks' class shares (each in its own frame's truth), places and the places of
    the things on them."""

    def __init__(self, cache: ClipCache, specs: list[ClipSpec], desc: str):
        # (canvases, positions_thw, shares (content blocks, classes), places (content blocks, 2),
        #  thing centres (content blocks, 2; -1: no thing))
        self.shots = []
        for spec in tqdm(specs, desc=desc):
            _, truth = cache.clip(spec)
            vision = cache.vision(spec, "codec", STILL_BUDGET if spec.world in STILL_WORLDS else VIDEO_BUDGET)
            positions = np.concatenate(vision.positions_thw)
            blocks = positions.reshape(-1, 4, 3)[:, 0]
            blocks = blocks[blocks[:, 0] >= 0]  # content blocks (t, h, w), in the order the merger emits them
            _, height, width, _ = vision.canvases[0].shape
            targets = np.zeros((len(blocks), len(CLASSES)), np.float32)
            centres = np.zeros((len(blocks), 2), np.int64)
            for frame in np.unique(blocks[:, 0]):
                rows = blocks[:, 0] == frame
                things = things_in_frame(spec.world, truth, int(frame), (spec.width, spec.height))
                # one sampling of the frame's things serves both targets
                owner = sample_owners(things, blocks[rows, 1:], (height, width), (spec.width, spec.height))
                targets[rows] = class_shares(owner, things)
                centres[rows] = owner_centres(owner, things, (spec.width, spec.height))
            places = block_places(blocks[:, 1:], (height, width))
            self.shots.append((vision.canvases, vision.positions_thw, targets, places, centres))

    def batch(self, indices) -> tuple:
        chosen = [self.shots[int(i)] for i in indices]
        vision = vision_input_from([c for shot in chosen for c in shot[0]], [p for shot in chosen for p in shot[1]])
        return (vision, *(torch.from_numpy(np.concatenate([shot[k] for shot in chosen])) for k in (2, 3, 4)))


def block_nats(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(blocks,): each block's soft cross-entropy against its class shares."""
    return -(targets * logits.log_softmax(-1)).sum(-1)


def weighted_nats(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy per block, blocks on things weighted up to THING_WEIGHT."""
    weights = 1.0 + (THING_WEIGHT - 1.0) * (1.0 - targets[:, 0])
    return (weights * block_nats(logits, targets)).sum() / weights.sum()


def place_nats(place_logits: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the column and the row tenth, per block and axis (-1: not scored)."""
    if not (places >= 0).any():
        return place_logits.sum() * 0.0
    return F.cross_entropy(place_logits.reshape(-1, PLACE_BINS), places.reshape(-1), ignore_index=-1)


def block_logits(model, head: torch.nn.Linear, vision) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head on each content block's merger output token as the LLM's first RMSNorm sees it
    (unit RMS), so the token's scale, free for the LLM, is free here too: class logits (blocks,
    classes), place logits and thing-centre logits (each (blocks, 2 (column, row), PLACE_BINS))."""
    _, merged = model.visual(vision)
    tokens = merged[content_blocks(vision.positions_thw, model.config.encoder.spatial_merge_size)]
    logits = head(F.rms_norm(tokens, (tokens.shape[-1],)))
    places = logits[:, len(CLASSES):].reshape(-1, 2, 2, PLACE_BINS)
    return logits[:, :len(CLASSES)], places[:, 0], places[:, 1]


@torch.no_grad()
def scores(model, head, shots: ShotSet, batch: int = 16) -> dict:
    """Soft cross-entropy (nats per block); on the blocks a thing covers at least THING_SHARE
    of: how often the head names that thing (colour and kind) and its place (column and row
    tenth both right); touched_blocks_auc: the chance that a block things touch (TOUCH_SHARE)
    gets a larger predicted share of things than a block of table only (0.5: chance); how often
    the head calls a table block a thing; places right on every block."""
    model.eval()
    nats, on_thing, named, on_table, false_thing = [], 0, 0, 0, 0
    placed, placed_on_thing, touched_shares, table_shares = 0, 0, [], []
    centred_right, touched_things = 0, 0
    for start in range(0, len(shots.shots), batch):
        vision, targets, places, centres = shots.batch(range(start, min(start + batch, len(shots.shots))))
        logits, place_logits, centre_logits = block_logits(model, head, vision)
        touched_thing = centres[:, 0] >= 0
        centred_right += int((centre_logits.argmax(-1) == centres).all(-1)[touched_thing].sum())
        touched_things += int(touched_thing.sum())
        nats.append(float(block_nats(logits, targets).sum()))
        place_right = (place_logits.argmax(-1) == places).all(-1)
        predicted, share = logits.argmax(-1), targets[:, 1:].max(-1)
        truth = targets[:, 1:].argmax(-1) + 1
        thing_blocks = share.values >= THING_SHARE
        on_thing += int(thing_blocks.sum())
        named += int((predicted[thing_blocks] == truth[thing_blocks]).sum())
        placed += int(place_right.sum())
        placed_on_thing += int(place_right[thing_blocks].sum())
        table_blocks = targets[:, 0] == 1.0
        predicted_thing_share = 1.0 - logits.softmax(-1)[:, 0]
        touched_shares.append(predicted_thing_share[1.0 - targets[:, 0] >= TOUCH_SHARE])
        table_shares.append(predicted_thing_share[table_blocks])
        on_table += int(table_blocks.sum())
        false_thing += int((predicted[table_blocks] != 0).sum())
    model.train()
    blocks = sum(len(shot[2]) for shot in shots.shots)
    touched, table = torch.cat(touched_shares), torch.cat(table_shares)
    above = (touched[:, None] > table[None, :]).float() + 0.5 * (touched[:, None] == table[None, :]).float()
    return {"nats_per_block": round(sum(nats) / blocks, 4), "thing_blocks": on_thing,
            "thing_blocks_named": round(named / max(1, on_thing), 3),
            "thing_blocks_placed": round(placed_on_thing / max(1, on_thing), 3), "touched_blocks": len(touched),
            "touched_blocks_auc": round(float(above.mean()), 3) if above.numel() else None, "table_blocks": on_table,
            "table_blocks_called_things": round(false_thing / max(1, on_table), 4),
            "blocks_placed": round(placed / max(1, blocks), 3),
            "thing_centres_placed": round(centred_right / max(1, touched_things), 3)}


def pretrain(init: str, out: str, worlds: dict[str, int], steps: int, batch: int = 16, lr: float = 1e-3,
             eval_shots: int = 60, every: int = 100, seed: int = 0, cache_dir: str = "cache/worlds",
             place_weight: float = 1.0, centre_weight: float = 1.0, precision: str = "fp32",
             variation: str = "train") -> dict:
    """Train the vision tower of the model folder `init` on `worlds` ({world: training shots or
    clips, seeds 0..N-1}, drawn with the training split `variation`); score on held-out seeds of
    each world (the "train" variation) every `every` steps; save to `out`. precision:
    training.train.autocast's."""
    check_precision(precision)
    training_split(variation)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = load_model(init)
    cache = ClipCache(cache_dir)
    training = ShotSet(cache, [spec for world, count in worlds.items()
                               for spec in clip_range(world, 0, count, WORLD_DURATIONS_S[world], split=variation)],
                       "training shots")
    held_out = {world: ShotSet(cache, heldout_clips(world, eval_shots if world in STILL_WORLDS else
                                                    min(eval_shots, VIDEO_EVAL_CLIPS), WORLD_DURATIONS_S[world], "train"),
                               f"held-out {world}") for world in worlds}
    head = torch.nn.Linear(model.config.llm.hidden_size, len(CLASSES) + 4 * PLACE_BINS)
    parameters = list(model.visual.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
    curve = [{"step": 0, **{world: scores(model, head, shots) for world, shots in held_out.items()}}]
    model.train()
    started = time.monotonic()
    losses = []
    schedule = StageConfig("encoder_pretrain", steps=steps, lr=lr, lr_min=lr / 10, warmup_steps=20)
    for step in tqdm(range(1, steps + 1), desc="encoder pretraining"):
        for group in optimizer.param_groups:  # the stages' schedule: warm-up, cosine to a tenth
            group["lr"] = lr_at(step - 1, schedule)
        vision, targets, places, centres = training.batch(rng.integers(len(training.shots), size=batch))
        with autocast(precision):
            logits, place_logits, centre_logits = block_logits(model, head, vision)
        logits, place_logits, centre_logits = logits.float(), place_logits.float(), centre_logits.float()
        loss = (weighted_nats(logits, targets) + place_weight * place_nats(place_logits, places)
                + centre_weight * place_nats(centre_logits, centres))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": round(float(np.mean(losses[-every:])), 4),
                          **{world: scores(model, head, shots) for world, shots in held_out.items()}})
            tqdm.write(json.dumps(curve[-1]), file=sys.stderr)  # stdout: the result alone
    save_model(model, out, f"{init}/tokenizer.json")
    result = {"init": init, "worlds": worlds, "variation": variation, "steps": steps, "batch": batch, "lr": lr,
              "place_weight": place_weight, "centre_weight": centre_weight, "seed": seed, "classes": CLASSES, "wall_s": round(time.monotonic() - started, 1), "curve": curve}
    Path(out, "encoder_pretrain.json").write_text(json.dumps(result, indent=1))
    return result


def parse_worlds(text: str) -> dict[str, int]:
    """"mid:2000,bounce:200" -> {"mid": 2000, "bounce": 200}."""
    worlds = {}
    for item in text.split(","):
        world, _, count = item.partition(":")
        if world not in PRETRAIN_WORLDS or not count.isdigit():
            raise ValueError(f"{item!r} is not WORLD:COUNT with WORLD one of {PRETRAIN_WORLDS}")
        worlds[world] = int(count)
    return worlds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.encoder_pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="model folder whose vision tower is trained")
    parser.add_argument("--out", required=True, help="folder for the model (its LLM unchanged)")
    parser.add_argument("--worlds", default="mid:3000,lone:3000,closeup:2000,stills:2000",
                        help=f"worlds and training shots (clips) each, WORLD:COUNT,... WORLD one of {PRETRAIN_WORLDS}")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16, help="shots a step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-shots", type=int, default=60, help="held-out shots per world")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--place-weight", type=float, default=1.0,
                        help="weight of the place targets (column and row tenth) against the classes; 0: none")
    parser.add_argument("--centre-weight", type=float, default=1.0,
                        help="weight of the thing-centre targets (the column and row tenth of the centre of the "
                             "thing on a block); 0: none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="bf16: mixed precision (autocast)")
    parser.add_argument("--variation", choices=TRAINING_SPLITS, default="train",
                        help="the training shots' split: train, or train-tints (random table tints away from the "
                             "held-out one)")
    args = parser.parse_args(argv)
    try:
        worlds = parse_worlds(args.worlds)
    except ValueError as error:
        parser.error(f"--worlds: {error}")
    torch.set_num_threads(args.threads)
    result = pretrain(args.init, args.out, worlds, args.steps, args.batch, args.lr, args.eval_shots, args.every,
                      args.seed, args.cache, args.place_weight, args.centre_weight, args.precision, args.variation)
    print(json.dumps(result["curve"][-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
