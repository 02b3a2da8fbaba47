"""The codec-vs-frames study (issue: codec canvases beat frame sampling at the same budget).

Two models of the same size and training steps, one trained on codec canvases, one on sampled
frames, each evaluated with its own input on the same held-out dense-motion (bounce) clips at
every budget. Each side can run in its own process (two cores), then be combined:

  python -m training.study run --mode codec  --model runs/nano_codec/s4_spatial/last
  python -m training.study run --mode frames --model runs/nano_frames/s4_spatial/last
  python -m training.study combine            # table (JSON) + plot (PNG) in docs/
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.evaluate import Evaluator

DEFAULT_OUT = Path("docs/study_codec_vs_frames.json")


def run_side(mode: str, model, budgets, clips, cache, out: Path) -> dict:
    rows = []
    for budget in budgets:
        result = Evaluator(model, cache, mode, budget).jumpscore(clips)
        rows.append({"budget": budget, "mAP": round(result["mAP"], 2), "per_clip": result["per_clip"]})
        print(json.dumps(rows[-1]), flush=True)
    side = {"mode": mode, "model": str(model), "clips": clips, "rows": rows}
    path = out.with_name(f"{out.stem}_{mode}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(side, indent=1))
    return side


def combine(out: Path) -> dict:
    codec, frames = (json.loads(out.with_name(f"{out.stem}_{m}.json").read_text()) for m in ("codec", "frames"))
    by_budget = {r["budget"]: r for r in frames["rows"]}
    rows = [{"budget": r["budget"], "codec_mAP": r["mAP"], "frames_mAP": by_budget[r["budget"]]["mAP"],
             "codec_minus_frames": round(r["mAP"] - by_budget[r["budget"]]["mAP"], 2)}
            for r in codec["rows"] if r["budget"] in by_budget]
    document = {"study": "JumpScore-like mAP, codec canvases vs frame sampling at matched canvas budgets",
                "codec_model": codec["model"], "frames_model": frames["model"], "clips": codec["clips"],
                "heldout": "bounce worlds, seeds from 100000, unseen colours/backgrounds/speeds", "rows": rows}
    out.write_text(json.dumps(document, indent=1))
    _plot(rows, out.with_suffix(".png"))
    return document


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [r["budget"] for r in rows]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(budgets, [r["codec_mAP"] for r in rows], "o-", label="codec canvases")
    axis.plot(budgets, [r["frames_mAP"] for r in rows], "s--", label="frame sampling")
    axis.set_xscale("log", base=2)
    axis.set_xticks(budgets, [str(b) for b in budgets])
    axis.set_xlabel("canvases per clip (budget)")
    axis.set_ylabel("JumpScore-like mAP")
    axis.set_ylim(0, 100)
    axis.legend()
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
    joined = actions.add_parser("combine")
    joined.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.action == "run":
        run_side(args.mode, args.model, args.budgets, args.clips, args.cache, args.out)
    else:
        print(json.dumps(combine(args.out)["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
