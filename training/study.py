"""The codec-vs-frames study (issue: codec canvases beat frame sampling at the same budget):
`python -m training.study --codec-model A --frames-model B [--budgets 4 8 16 32] [--clips N]`.
Both models have the same size and training steps, one trained on codec canvases, one on
sampled frames; each is evaluated on the same held-out dense-motion (bounce) clips with its own
input at every budget. Writes a JSON table and a PNG plot."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.evaluate import Evaluator


def run_study(codec_model, frames_model, budgets, clips, cache, out: Path) -> dict:
    rows = []
    for budget in budgets:
        row = {"budget": budget}
        for mode, model in (("codec", codec_model), ("frames", frames_model)):
            result = Evaluator(model, cache, mode, budget).jumpscore(clips)
            row[f"{mode}_mAP"] = round(result["mAP"], 2)
        row["codec_minus_frames"] = round(row["codec_mAP"] - row["frames_mAP"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    document = {"study": "JumpScore-like mAP, codec canvases vs frame sampling at matched canvas budgets",
                "codec_model": str(codec_model), "frames_model": str(frames_model), "clips": clips,
                "heldout": "bounce worlds, seeds from 100000, unseen colours/backgrounds/speeds", "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
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
    parser = argparse.ArgumentParser(prog="python -m training.study", description=__doc__)
    parser.add_argument("--codec-model", required=True)
    parser.add_argument("--frames-model", required=True)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--out", default="docs/study_codec_vs_frames.json")
    args = parser.parse_args(argv)
    run_study(args.codec_model, args.frames_model, args.budgets, args.clips, args.cache, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
