"""The codec-vs-frames study (issue: codec canvases beat frame sampling at the same budget).

Two models of the same size and training steps, one trained on codec canvases, one on sampled
frames, each evaluated with its own input on the same held-out dense-motion (bounce) clips at
every budget. Each side can run in its own process (two cores), then be combined:

  python -m training.study run --mode codec  --model runs/nano_codec/s4_spatial/last
  python -m training.study run --mode frames --model runs/nano_frames/s4_spatial/last
  python -m training.study combine            # table (JSON) + plot (PNG) in docs/

`oracle` asks what the canvases themselves show of the bounces, with no model, two readers of
the frames whose kept patches cover most of the ball, scored like answers:
- floor/air: the truth says whether the ball is in the air; every takeoff is placed midway
  between a frame seen with the ball on the floor and the next one seen with it in the air.
- height: a flight is a parabola of the world's one gravity, so two frames of it in view, with
  the ball's height in each, fix its takeoff: every flight seen in the air at least twice counts
  as found at its true time; the others as the floor/air reader reads them.
A model that reads the floor/air state can at most reach the first; one that reads the ball's
height at most the second.

  python -m training.study oracle --budgets 4 8 16 32 --clips 12
"""
from __future__ import annotations

import argparse
import bisect
import json
from collections import Counter
from pathlib import Path

import numpy as np

from ov2_ros.tokenizer.geometry import PATCH_PX
from training import metrics
from training.data import WORLD_DURATIONS_S, ClipCache, ClipVision
from training.evaluate import VARIATIONS, Evaluator, heldout_clips

DEFAULT_OUT = Path("docs/study_codec_vs_frames.json")
ORACLE_OUT = Path("docs/study_oracle.json")
BALL_SEEN_SHARE = 0.5  # a frame shows the ball when its kept patches cover this much of the ball's box


def run_side(mode: str, model, budgets, clips, cache, out: Path, variation: str = "heldout") -> dict:
    """The model's JumpScore-like mAP with its input at each budget, and whether it looks: the
    mAP with each clip shown another clip's pixels (what timestamps and priors alone score), and
    the true event lists' loss (nats a token) shown each clip's own canvases and another clip's
    pixels in their place (Evaluator.video_reliance, 4 clips)."""
    rows = []
    for budget in budgets:
        evaluator = Evaluator(model, cache, mode, budget, variation=variation)
        result = evaluator.jumpscore(clips)
        blind = evaluator.jumpscore(clips, other_pixels=True)
        rows.append({"budget": budget, "mAP": round(result["mAP"], 2), "per_clip": result["per_clip"],
                     "mAP_other_pixels": round(blind["mAP"], 2),
                     "events_nats_own_other": list(evaluator.video_reliance("bounce")["events"].values())})
        print(json.dumps(rows[-1]), flush=True)
    side = {"mode": mode, "model": str(model), "clips": clips, "variation": variation, "rows": rows}
    path = out.with_name(f"{out.stem}_{mode}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(side, indent=1))
    return side


def ball_cover(vision: ClipVision, truth_frames: list[dict]) -> np.ndarray:
    """(patches,): the share of the ball's box (in the patch's own frame) that each patch of the
    canvases covers, 0 for padding. Patches are (t, h, w) on the processed frame's grid; the
    ball's box is in source pixels, scaled onto that grid."""
    source_h, source_w = vision.source_size
    processed_h, processed_w = vision.canvases[0].shape[1:3]
    positions = np.concatenate(vision.positions_thw)  # (patches, 3)
    content = positions[:, 0] >= 0
    boxes = np.array([truth_frames[t]["ball_box_xyxy"] if ok else [0, 0, 1, 1]
                      for t, ok in zip(positions[:, 0], content)], np.float64)
    boxes *= [processed_w / source_w, processed_h / source_h] * 2
    rows, cols = positions[:, 1] * PATCH_PX, positions[:, 2] * PATCH_PX  # each patch's top-left corner
    overlap_w = np.clip(np.minimum(cols + PATCH_PX, boxes[:, 2]) - np.maximum(cols, boxes[:, 0]), 0, None)
    overlap_h = np.clip(np.minimum(rows + PATCH_PX, boxes[:, 3]) - np.maximum(rows, boxes[:, 1]), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.where(content, overlap_w * overlap_h / area, 0.0)


def ball_sightings(vision: ClipVision, truth_frames: list[dict]) -> list[tuple[int, bool]]:
    """(frame, airborne) of every frame whose patches in the canvases cover at least
    BALL_SEEN_SHARE of the ball's box, in time order."""
    frames = np.concatenate(vision.positions_thw)[:, 0]
    cover = ball_cover(vision, truth_frames)
    return [(int(t), bool(truth_frames[int(t)]["airborne"])) for t in np.unique(frames[frames >= 0])
            if cover[frames == t].sum() >= BALL_SEEN_SHARE]


def floor_to_air(sightings: list[tuple[int, bool]]) -> list[tuple[int, int]]:
    """(frame seen on the floor, next frame seen in the air) pairs: a takeoff lies between them."""
    return [(before, after) for (before, was_airborne), (after, airborne) in zip(sightings, sightings[1:])
            if airborne and not was_airborne]


def oracle_takeoffs(sightings: list[tuple[int, bool]], fps: float) -> list[float]:
    """Takeoff times (s) read from sightings: midway between each frame seen on the floor and
    the next frame seen in the air."""
    return [round((before + after) / 2 / fps, 3) for before, after in floor_to_air(sightings)]


def height_reader_takeoffs(sightings: list[tuple[int, bool]], takeoffs_s: list[float], fps: float) -> list[float]:
    """Takeoff times (s): the true one of each flight seen in the air in at least two frames (a
    frame's flight: the last takeoff at or before it), and for the other flights what the
    floor/air reader reads (oracle_takeoffs)."""
    def flight(frame: int) -> int:
        return bisect.bisect_right(takeoffs_s, frame / fps) - 1

    seen = Counter(flight(frame) for frame, airborne in sightings if airborne)
    fixed = {f for f, count in seen.items() if f >= 0 and count >= 2}
    read = [round((before + after) / 2 / fps, 3) for before, after in floor_to_air(sightings)
            if flight(after) not in fixed]
    return sorted([takeoffs_s[f] for f in fixed] + read)


BLIND_PERIODS_S = tuple(round(0.3 + 0.05 * i, 2) for i in range(15))  # 0.3 .. 1.0 s


def best_periodic_list(durations_s: list[float], truths: list[list[float]]) -> dict:
    """The best a reader blind to the ball can do with one rule for every clip: takeoffs listed
    every P seconds, the P (of BLIND_PERIODS_S) that scores highest on these clips. A world
    whose takeoffs such a list fits leaves nothing for an input to show."""
    scores = {period: metrics.jumpscore([list(np.arange(period, duration, period)) for duration in durations_s], truths)
              for period in BLIND_PERIODS_S}
    period = max(scores, key=scores.get)
    return {"mAP": round(scores[period], 1), "period_s": period}


def oracle(modes, budgets, clips: int, cache_dir: str, out: Path) -> dict:
    """Both oracles' JumpScore-like mAP per input mode and budget on the study's held-out clips,
    with the frames per second in which the ball is seen."""
    cache = ClipCache(cache_dir)
    specs = heldout_clips("bounce", clips, WORLD_DURATIONS_S["bounce"])
    rows = []
    for mode in modes:
        for budget in budgets:
            floor_air, height, truths, seen_per_s = [], [], [], []
            for spec in specs:
                _, truth = cache.clip(spec)
                sightings = ball_sightings(cache.vision(spec, mode, budget), truth["frames"])
                truths.append(truth["episode"]["event_times_s"])
                floor_air.append(oracle_takeoffs(sightings, spec.fps))
                height.append(height_reader_takeoffs(sightings, truths[-1], spec.fps))
                seen_per_s.append(len(sightings) / spec.duration_s)
            rows.append({"mode": mode, "budget": budget, "oracle_mAP": round(metrics.jumpscore(floor_air, truths), 1),
                         "height_oracle_mAP": round(metrics.jumpscore(height, truths), 1),
                         "ball_seen_frames_per_s": round(float(np.mean(seen_per_s)), 2)})
            print(json.dumps(rows[-1]), flush=True)
    document = {"study": "what the canvases show of the bounces: JumpScore-like mAP of takeoffs read from the "
                         "frames in which the canvases show the ball; oracle_mAP: from its floor/air state, "
                         "height_oracle_mAP: every flight seen in the air twice found, the others read as floor/air",
                "clips": clips, "ball_seen_share": BALL_SEEN_SHARE,
                "heldout": "bounce worlds, seeds from 100000, unseen colours/backgrounds/speeds", "rows": rows,
                "blind_periodic_list": best_periodic_list([s.duration_s for s in specs],
                                                          [cache.clip(s)[1]["episode"]["event_times_s"] for s in specs])}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    _plot_oracle(rows, document["blind_periodic_list"], out.with_suffix(".png"))
    return document


def _plot_oracle(rows, blind: dict, path: Path) -> None:
    """Both readers' mAP against the budget, one line per input mode and reader, and the best
    blind periodic list's as a level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for mode, marker in (("codec", "o"), ("frames", "s")):
        mode_rows = [r for r in rows if r["mode"] == mode]
        budgets = [r["budget"] for r in mode_rows]
        axis.plot(budgets, [r["height_oracle_mAP"] for r in mode_rows], marker + "-", label=f"{mode}: height reader")
        axis.plot(budgets, [r["oracle_mAP"] for r in mode_rows], marker + ":", label=f"{mode}: floor/air reader")
        axis.set_xscale("log", base=2)
        axis.set_xticks(budgets, [str(b) for b in budgets])
    axis.axhline(blind["mAP"], color="grey", linestyle="--", label=f"no pixels: a takeoff every {blind['period_s']} s")
    axis.set_xlabel("canvases per clip (budget)")
    axis.set_ylabel("JumpScore-like mAP of an ideal reader")
    axis.set_ylim(0, 100)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def combine(out: Path) -> dict:
    codec, frames = (json.loads(out.with_name(f"{out.stem}_{m}.json").read_text()) for m in ("codec", "frames"))
    by_budget = {r["budget"]: r for r in frames["rows"]}
    if codec["variation"] != frames["variation"] or codec["clips"] != frames["clips"]:
        raise ValueError("the two sides were measured on different clips")
    rows = [{"budget": r["budget"], "codec_mAP": r["mAP"], "frames_mAP": by_budget[r["budget"]]["mAP"],
             "codec_minus_frames": round(r["mAP"] - by_budget[r["budget"]]["mAP"], 2),
             "codec_mAP_other_pixels": r["mAP_other_pixels"],
             "frames_mAP_other_pixels": by_budget[r["budget"]]["mAP_other_pixels"],
             "codec_events_nats_own_other": r["events_nats_own_other"],
             "frames_events_nats_own_other": by_budget[r["budget"]]["events_nats_own_other"]}
            for r in codec["rows"] if r["budget"] in by_budget]
    held_out = {"heldout": "unseen colours/backgrounds/speeds", "train": "the training colours/backgrounds/speeds"}
    document = {"study": "JumpScore-like mAP, codec canvases vs frame sampling at matched canvas budgets",
                "codec_model": codec["model"], "frames_model": frames["model"], "clips": codec["clips"],
                "heldout": f"bounce worlds, seeds from 100000, {held_out[codec['variation']]}", "rows": rows}
    out.write_text(json.dumps(document, indent=1))
    _plot(rows, out.with_suffix(".png"))
    return document


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [r["budget"] for r in rows]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(budgets, [r["codec_mAP"] for r in rows], "o-", color="C0", label="codec canvases")
    axis.plot(budgets, [r["frames_mAP"] for r in rows], "s-", color="C1", label="frame sampling")
    axis.plot(budgets, [r["codec_mAP_other_pixels"] for r in rows], "o:", color="C0", alpha=0.6,
              label="codec, another clip's pixels")
    axis.plot(budgets, [r["frames_mAP_other_pixels"] for r in rows], "s:", color="C1", alpha=0.6,
              label="frames, another clip's pixels")
    axis.set_xscale("log", base=2)
    axis.set_xticks(budgets, [str(b) for b in budgets])
    axis.set_xlabel("canvases per clip (budget)")
    axis.set_ylabel("JumpScore-like mAP")
    axis.set_ylim(0, 100)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run")
    run.add_argument("--mode", choices=("codec", "frames"), required=True)
    run.add_argument("--model", required=True)
    run.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16, 32])
    run.add_argument("--clips", type=int, default=20)
    run.add_argument("--cache", default="cache/worlds")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument("--variation", choices=VARIATIONS, default="heldout",
                     help="held-out clips: unseen colours, backgrounds and speeds (heldout), the training ones, or "
                          "one unseen factor (heldout-colours, -background, -speed)")
    joined = actions.add_parser("combine")
    joined.add_argument("--out", type=Path, default=DEFAULT_OUT)
    bound = actions.add_parser("oracle", help="what the canvases show of the bounces (no model)")
    bound.add_argument("--modes", nargs="+", choices=("codec", "frames"), default=["codec", "frames"])
    bound.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16, 32])
    bound.add_argument("--clips", type=int, default=12)
    bound.add_argument("--cache", default="cache/worlds")
    bound.add_argument("--out", type=Path, default=ORACLE_OUT)
    args = parser.parse_args(argv)
    if args.action == "run":
        run_side(args.mode, args.model, args.budgets, args.clips, args.cache, args.out, args.variation)
    elif args.action == "oracle":
        oracle(args.modes, args.budgets, args.clips, args.cache, args.out)
    else:
        print(json.dumps(combine(args.out)["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
