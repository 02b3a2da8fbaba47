"""All four stages in a row, each starting from the previous stage's model:
`python -m training.pipeline --out runs/nano_codec --input codec [--preset nano] [--seed-scale 1.0]`.
The command and its arguments are written to OUT/command.json, so a model says how it was made."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from training.train import StageConfig, train_stage

STAGES = ("s1_align", "s2_mid", "s3_long", "s4_spatial")
CONFIGS = Path(__file__).resolve().parent / "configs"


def run_pipeline(out: str | Path, input_mode: str, preset: str, cache: str, threads: int | None,
                 steps_scale: float = 1.0) -> list[dict]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    init, results = preset, []
    for name in STAGES:
        config = StageConfig.load(CONFIGS / f"{name}.json")
        if steps_scale != 1.0:
            import dataclasses
            steps = max(1, int(round(config.steps * steps_scale)))
            config = dataclasses.replace(config, steps=steps, warmup_steps=min(config.warmup_steps, steps),
                                         save_every=steps)
        started = time.time()
        result = train_stage(config, out / name, init, cache, input_mode, threads=threads,
                             resume=(out / name / "last" / "trainer_state.json").is_file())
        result["wall_s"] = round(time.time() - started, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
        init = str(out / name / "last")
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
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "command.json").write_text(json.dumps({"argv": sys.argv, "args": vars(args)}, indent=1))
    run_pipeline(args.out, args.input, args.preset, args.cache, args.threads, args.steps_scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
