"""`ov2 eval` / `python -m training.evaluate`: a model on held-out worlds (unseen seeds, colours,
backgrounds and speeds), with exact truth. `--variation train` keeps the unseen seeds but draws
the worlds from the training variations (seen colours, backgrounds, speeds): the gap between the
two says how much of a score is generalisation to what was never seen (a model trained from
scratch has never read the word "orange", for instance).

Suites:
  jumpscore  bounce clips; OV2's JumpScore wording; mAP per method.md 3 (x 100).
  grounding  pick-and-place clips; every phase's segment (R@0.3/0.5/0.7, mIoU) and the boxes of
             the plate and the objects at the start (accuracy at IoU 0.5).
  trace      pick-and-place clips; the observed gripper trace and the predicted one (from the
             clip before the arm moves, with the instruction): ADE and FDE as fractions of the
             image diagonal.
  stills     still shots of a tabletop; every thing's box (accuracy at IoU 0.5) and a point on
             it (accuracy: the point inside the thing's box); teacher-forced, what the true
             answers cost (nats per coordinate digit, 2.30 = a uniform guess, also after a
             question about another thing; per label token).
Every run also reports `video_reliance` per world and task: the true answers' loss with their
own clip's pixels and with another clip's pixels in their place (equal: the model is blind).
Answers are decoded greedily, constrained to their format unless --unconstrained (then the
parse-failure rate says how often free text missed the format). Results: JSON and a PNG.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ov2_ros.model.checkpoint import load_any
from ov2_ros.model.generate import GenerationConfig
from ov2_ros.model.parsers import FrameSize, OutputParseError, parse_output
from ov2_ros.runtime.answer import ask
from ov2_ros.runtime.backend import TorchBackend
from ov2_ros.synth.worlds import SPLITS
from training import metrics, tasks
from training.centre_vision import mean_vision_token
from training.data import (IGNORE, INPUT_MODES, STILL_WORLDS, WORLD_DURATIONS_S, ClipCache, ClipSpec, ClipVision,
                           answer_tokens_in, clip_budget, clip_range, encode_example, examples_for_clip, pack)

SUITES = ("jumpscore", "grounding", "trace", "stills")
SUITE_WORLDS = {"jumpscore": "bounce", "grounding": "pickplace", "trace": "pickplace", "stills": "stills"}
HELDOUT_SEED = 100_000  # held-out seeds start here; training seeds stay far below
JUMPSCORE_QUESTION = tasks.EVENT_WORDINGS[0]


VARIATIONS = SPLITS  # "heldout" (the goals), "train", or one unseen factor at a time


def heldout_clips(world: str, count: int, durations_s: tuple[float, float], variation: str = "heldout") -> list[ClipSpec]:
    """Clips of unseen seeds; variation "heldout": unseen colours, backgrounds and speeds too,
    "heldout-colours" (-background, -speed): that one unseen, the rest as training's."""
    if variation not in VARIATIONS:
        raise ValueError(f"variation must be one of {VARIATIONS}, got {variation!r}")
    return clip_range(world, HELDOUT_SEED, count, durations_s, split=variation)


@torch.no_grad()
def answer_token_nats(model, tokenizer, spec: ClipSpec, qa: tasks.QA, vision: ClipVision) -> list[float]:
    """Teacher-forced loss of each of qa.answer's tokens (and <|im_end|>'s, last), shown `vision`."""
    batch = pack([encode_example(tokenizer, vision, qa, spec)])
    logits = model(batch.input_ids, batch.vision, batch.segment_ids)[0, :-1].float()
    nats = F.cross_entropy(logits, batch.labels[0, 1:], ignore_index=IGNORE, reduction="none")
    return nats[batch.labels[0, 1:] != IGNORE].tolist()


def with_pixels_of(vision: ClipVision, other: ClipVision) -> ClipVision:
    """`vision` with `other`'s canvases in place of its own (repeated if it has fewer, split as
    vision's groups): the same blocks, positions and prompt, only what the pixels show differs."""
    other_pixels = np.concatenate(other.canvases)
    if other_pixels.shape[1:] != vision.canvases[0].shape[1:]:
        raise ValueError(f"canvases of different sizes: {other_pixels.shape[1:]} and {vision.canvases[0].shape[1:]}")
    sizes = [c.shape[0] for c in vision.canvases]
    pixels = other_pixels[np.arange(sum(sizes)) % len(other_pixels)]
    return dataclasses.replace(vision, canvases=np.split(pixels, np.cumsum(sizes)[:-1]))


class Evaluator:
    def __init__(self, model_dir: str | Path, cache_dir: str | Path, input_mode: str = "codec", budget: int = 16,
                 constrained: bool = True, progress: bool = True, variation: str = "heldout",
                 stills_world: str = "stills"):
        model, tokenizer = load_any(model_dir)
        self.backend = TorchBackend(model, tokenizer)
        self.cache = ClipCache(cache_dir)
        self.input_mode, self.budget, self.constrained, self.progress = input_mode, budget, constrained, progress
        self.parse_attempts = self.parse_failures = 0
        self.variation = variation
        if stills_world not in STILL_WORLDS:
            raise ValueError(f"stills world must be one of {STILL_WORLDS}, got {stills_world!r}")
        self.stills_world = stills_world  # the shots the stills suite asks about

    def answer(self, spec: ClipSpec, question: str, output_format: str, cut_s: float | None = None,
               vision: ClipVision | None = None):
        """Parsed answer (None when it does not parse) and the raw text; shown `vision`, by
        default the clip's own canvases."""
        if vision is None:
            vision = self.cache.vision(spec, self.input_mode, clip_budget(spec, self.budget, cut_s), cut_s)
        result = ask(self.backend, vision.canvases, vision.positions_thw, vision.fps, vision.source_size, question,
                     output_format if self.constrained else None, GenerationConfig(max_new_tokens=400))
        self.parse_attempts += 1
        try:
            return parse_output(result.text, output_format, FrameSize(spec.width, spec.height)), result.text
        except OutputParseError:
            self.parse_failures += 1
            return None, result.text

    def answer_nats(self, spec: ClipSpec, qa: tasks.QA, spans: list[tuple[int, int]]) -> list[float]:
        """Teacher-forced: the loss (nats) of each answer token whose characters lie in one of
        `spans` of qa.answer, the true answer given. Greedy answers only show what wins; this
        shows what the model has learnt of, say, the coordinates before it wins (ln 10 = 2.30
        nats a digit is a uniform guess)."""
        answer_nats = self.answer_token_nats(spec, qa, self.cache.vision(spec, self.input_mode,
                                                                          clip_budget(spec, self.budget)))
        return [answer_nats[i] for i in answer_tokens_in(self.backend.tokenizer, qa.answer, spans)]

    def answer_token_nats(self, spec: ClipSpec, qa: tasks.QA, vision: ClipVision) -> list[float]:
        return answer_token_nats(self.backend.model, self.backend.tokenizer, spec, qa, vision)

    def video_reliance(self, world: str, clips: int = 4) -> dict:
        """Does the model look at the video? Per task, the true answers' mean loss (nats a token,
        teacher-forced) shown their own clip's canvases and shown the next clip's pixels in
        their place (same blocks, positions and prompt: only what the pixels show differs). A
        model whose answers come from the question, the timestamps and priors alone scores the
        same on both."""
        specs = heldout_clips(world, clips + 1, WORLD_DURATIONS_S[world], self.variation)
        own, swapped = {}, {}
        for spec, other in zip(specs, specs[1:]):
            other_vision = self.cache.vision(other, self.input_mode, clip_budget(other, self.budget))
            for example in examples_for_clip(self.cache, self.backend.tokenizer, spec, self.input_mode, self.budget,
                                             np.random.default_rng(spec.seed)):
                own.setdefault(example.qa.task, []).extend(self.answer_token_nats(spec, example.qa, example.vision))
                swapped.setdefault(example.qa.task, []).extend(
                    self.answer_token_nats(spec, example.qa, with_pixels_of(example.vision, other_vision)))
        return {task: {"own_video": round(float(np.mean(own[task])), 3),
                       "other_video": round(float(np.mean(swapped[task])), 3)} for task in own}

    def jumpscore(self, clips: int, other_pixels: bool = False) -> dict:
        """other_pixels: each clip shown the next clip's pixels in place of its own (the last the
        first's; same blocks, positions and prompt), so the score is what the model gets from
        the timestamps, the question and its priors: the part of the mAP that is not looking."""
        predictions, truths, samples = [], [], []
        specs = heldout_clips("bounce", clips, WORLD_DURATIONS_S["bounce"], self.variation)
        for index, spec in enumerate(tqdm(specs, desc="jumpscore", disable=not self.progress)):
            _, truth = self.cache.clip(spec)
            episode = truth["episode"]
            vision, pixels_of = None, spec
            if other_pixels:
                pixels_of = specs[(index + 1) % len(specs)]
                vision = with_pixels_of(self.cache.vision(spec, self.input_mode, self.budget),
                                        self.cache.vision(pixels_of, self.input_mode, self.budget))
            parsed, text = self.answer(spec, JUMPSCORE_QUESTION.format(obj=episode["object"]), "events", vision=vision)
            predicted = metrics.jumpscore_parse(text)
            predictions.append(predicted)
            truths.append(episode["event_times_s"])
            samples.append({"clip": spec.key, "pixels_of": pixels_of.key, "truth": episode["event_times_s"],
                            "predicted": predicted})
        return {"mAP": metrics.jumpscore(predictions, truths), "clips": clips,
                "per_clip": [round(100 * metrics.jumpscore_video(p, t), 2) for p, t in zip(predictions, truths)],
                "samples": samples[:3]}

    def grounding(self, clips: int) -> dict:
        predicted_segments, true_segments, predicted_boxes, true_boxes = [], [], [], []
        specs = heldout_clips("pickplace", clips, WORLD_DURATIONS_S["pickplace"], self.variation)
        for spec in tqdm(specs, desc="grounding", disable=not self.progress):
            _, truth = self.cache.clip(spec)
            episode = truth["episode"]
            words = {"target": episode["target"], "plate": episode["plate"]}
            for segment in episode["segments"]:
                if segment["phase"] not in tasks.SEGMENT_WORDINGS:
                    continue
                parsed, _ = self.answer(spec, tasks.SEGMENT_WORDINGS[segment["phase"]][0].format(**words), "segment")
                predicted_segments.append(None if parsed is None else (parsed.start_s, parsed.end_s))
                true_segments.append((segment["start_s"], segment["end_s"]))
            things = [(episode["plate"], episode["plate_box_xyxy"])] + [
                (o["label"], o["box_xyxy"]) for o in truth["frames"][0]["objects"]]
            for thing, box in things:
                parsed, _ = self.answer(spec, tasks.BOX_WORDINGS[0].format(thing=thing), "box")
                predicted_boxes.append(None if parsed is None else [parsed.x1, parsed.y1, parsed.x2, parsed.y2])
                true_boxes.append(box)
        return {**metrics.grounding_scores(predicted_segments, true_segments),
                "box_accuracy@0.5": metrics.box_accuracy(predicted_boxes, true_boxes), "clips": clips,
                "segments": len(true_segments), "boxes": len(true_boxes)}

    def trace(self, clips: int) -> dict:
        """The observed trace is also asked with the next clip's pixels in place of each clip's
        own (the last the first's; same blocks, positions and prompt), as jumpscore's
        other_pixels: `observed_*_other_pixels` is what the question, the timestamps and priors
        give, so a trace read from the video scores better with its own pixels."""
        observed, blind, predicted, per_clip = [], [], [], []
        specs = heldout_clips("pickplace", clips, WORLD_DURATIONS_S["pickplace"], self.variation)

        def errors(parsed, episode, diagonal):
            return (1.0, 1.0) if parsed is None else metrics.trace_errors(
                [[w.x, w.y] for w in parsed.waypoints], episode["gripper_path"], diagonal)

        for index, spec in enumerate(tqdm(specs, desc="trace", disable=not self.progress)):
            _, truth = self.cache.clip(spec)
            episode = truth["episode"]
            diagonal = float(np.hypot(spec.width, spec.height))
            vision = self.cache.vision(spec, self.input_mode, clip_budget(spec, self.budget))
            other = specs[(index + 1) % len(specs)]
            other_vision = with_pixels_of(vision, self.cache.vision(other, self.input_mode, clip_budget(other, self.budget)))
            observed.append(errors(self.answer(spec, tasks.TRACE_WORDINGS[0], "trace2d", vision=vision)[0],
                                   episode, diagonal))
            blind.append(errors(self.answer(spec, tasks.TRACE_WORDINGS[0], "trace2d", vision=other_vision)[0],
                                episode, diagonal))
            per_clip.append({"clip": spec.key, "pixels_of": other.key, "observed_ADE": round(float(observed[-1][0]), 4),
                             "observed_ADE_other_pixels": round(float(blind[-1][0]), 4)})
            instruction = episode["instruction"]
            question = tasks.PREDICT_WORDINGS[0].format(instruction=instruction[0].upper() + instruction[1:])
            parsed, _ = self.answer(spec, question, "trace2d", cut_s=episode["segments"][0]["start_s"])
            predicted.append(errors(parsed, episode, diagonal))
        observed, blind, predicted = np.array(observed), np.array(blind), np.array(predicted)
        return {"observed_ADE": float(observed[:, 0].mean()), "observed_FDE": float(observed[:, 1].mean()),
                "observed_ADE_other_pixels": float(blind[:, 0].mean()),
                "observed_FDE_other_pixels": float(blind[:, 1].mean()),
                "per_clip": per_clip,
                "predicted_ADE": float(predicted[:, 0].mean()), "predicted_FDE": float(predicted[:, 1].mean()),
                "clips": clips}

    def stills(self, clips: int) -> dict:
        predicted_boxes, predicted_points, true_boxes = [], [], []
        distinct = []  # per still: did the boxes differ between the things asked about?
        # Teacher-forced, per token; "..._asked_other": the same true answer after a question about
        # another thing in the still: as costly as the right question when the model ignores it.
        nats = {"box_digits": [], "point_digits": [], "point_digits_asked_other": [], "point_label": []}
        specs = heldout_clips(self.stills_world, clips, WORLD_DURATIONS_S[self.stills_world], self.variation)
        for spec in tqdm(specs, desc="stills", disable=not self.progress):
            _, truth = self.cache.clip(spec)
            texts = set()
            frame = FrameSize(spec.width, spec.height)
            things = truth["episode"]["things"]
            for number, thing in enumerate(things):
                box_qa = tasks.thing_box(thing, frame, tasks.BOX_WORDINGS[0])
                point_qa = tasks.thing_point(thing, frame, tasks.POINT_WORDINGS[0])
                nats["box_digits"] += self.answer_nats(spec, box_qa, [m.span() for m in re.finditer(r"\d+", box_qa.answer)])
                x_span, y_span, label_span = tasks.point_answer_spans(point_qa.answer)
                nats["point_digits"] += self.answer_nats(spec, point_qa, [x_span, y_span])
                nats["point_label"] += self.answer_nats(spec, point_qa, [label_span])
                other = things[(number + 1) % len(things)]["label"]
                nats["point_digits_asked_other"] += self.answer_nats(
                    spec, dataclasses.replace(point_qa, question=tasks.POINT_WORDINGS[0].format(thing=other)),
                    [x_span, y_span])
                parsed, text = self.answer(spec, box_qa.question, "box")
                texts.add(text)
                predicted_boxes.append(None if parsed is None else [parsed.x1, parsed.y1, parsed.x2, parsed.y2])
                parsed, _ = self.answer(spec, point_qa.question, "tracks")
                points = [] if parsed is None else [p for track in parsed for p in track.points]
                predicted_points.append((points[0].x, points[0].y) if points else None)
                true_boxes.append(thing["box_xyxy"])
            distinct.append(len(texts) > 1)
        # A model that ignores which thing is asked about gives one box per still: 0 here.
        return {"box_accuracy@0.5": metrics.box_accuracy(predicted_boxes, true_boxes),
                "point_accuracy": metrics.point_accuracy(predicted_points, true_boxes), "clips": clips,
                "things": len(true_boxes), "stills_with_distinct_boxes": float(np.mean(distinct)),
                "teacher_forced_nats": {key: round(float(np.mean(values)), 3) for key, values in nats.items()}}


def evaluate(model_dir, suites, cache_dir, input_mode="codec", budget=16, clips=20, constrained=True,
             out: str | Path | None = None, progress: bool = True, variation: str = "heldout",
             stills_world: str = "stills") -> dict:
    evaluator = Evaluator(model_dir, cache_dir, input_mode, budget, constrained, progress, variation, stills_world)
    started = time.time()
    results = {"model": str(model_dir), "input": input_mode, "budget": budget, "constrained": constrained,
               "variation": variation, **({"stills_world": stills_world} if "stills" in suites else {})}
    for suite in suites:
        results[suite] = getattr(evaluator, suite)(clips)
    # How much of the vision tokens the LLM can tell apart (training/centre_vision.py): a
    # shared component far larger than the spread drowns what the video says. Training clips of
    # the suites' worlds.
    worlds = {stills_world if suite == "stills" else SUITE_WORLDS[suite] for suite in suites}
    _, stats = mean_vision_token(evaluator.backend.model, evaluator.cache, 4, budget,
                                 {world: WORLD_DURATIONS_S[world] for world in sorted(worlds)})
    results["vision_tokens"] = {key: round(value, 3) for key, value in stats.items()}
    results["video_reliance"] = {world: evaluator.video_reliance(world) for world in sorted(worlds)}
    results["parse_failure_rate"] = evaluator.parse_failures / max(1, evaluator.parse_attempts)
    results["wall_s"] = round(time.time() - started, 1)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        plot_results(results, out.with_suffix(".png"))
    return results


def plot_results(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = {}
    if "jumpscore" in results:
        bars["JumpScore mAP / 100"] = results["jumpscore"]["mAP"] / 100
    if "grounding" in results:
        bars.update({"grounding R@0.5": results["grounding"]["R@0.5"], "grounding mIoU": results["grounding"]["mIoU"],
                     "box acc@0.5": results["grounding"]["box_accuracy@0.5"]})
    if "trace" in results:
        trace = results["trace"]
        bars.update({"observed ADE": trace["observed_ADE"], "observed ADE, other clip's pixels":
                     trace["observed_ADE_other_pixels"], "observed FDE": trace["observed_FDE"],
                     "observed FDE, other clip's pixels": trace["observed_FDE_other_pixels"],
                     "predicted ADE": trace["predicted_ADE"]})
    if "stills" in results:
        bars.update({"stills box acc@0.5": results["stills"]["box_accuracy@0.5"],
                     "stills point acc": results["stills"]["point_accuracy"]})
    bars["parse failures"] = results["parse_failure_rate"]
    figure, axis = plt.subplots(figsize=(8, 3.5))
    axis.bar(range(len(bars)), list(bars.values()), color="tab:blue")
    axis.set_xticks(range(len(bars)), list(bars), rotation=20, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_title(f"{Path(results['model']).name}: {results['input']} input, budget {results['budget']} canvases, "
                   f"{results['variation']} worlds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    parser.add_argument("--input", choices=INPUT_MODES, default="codec",
                        help="codec: equal groups over the clip (the study); live: the node's view; frames: sampling")
    parser.add_argument("--budget", type=int, default=16, help="canvases per clip")
    parser.add_argument("--clips", type=int, default=20, help="held-out clips per suite")
    parser.add_argument("--variation", choices=VARIATIONS, default="heldout",
                        help="heldout: unseen colours, backgrounds and speeds (the goals); train: seen ones, unseen "
                             "seeds; heldout-colours, -background, -speed: one of them unseen (which one a model fails on)")
    parser.add_argument("--stills-world", choices=STILL_WORLDS, default="stills",
                        help="the shots of the stills suite: stills (the goal), lone, mid or closeup (a "
                             "curriculum's rungs)")
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--unconstrained", action="store_true", help="free decoding (measures parse failures)")
    parser.add_argument("--out", default="out/eval.json", help="JSON results (and a PNG beside it)")


def run(args) -> int:
    model = args.model
    if model is None:
        from ov2_ros.model.default import default_model_dir
        model = default_model_dir()
    suites = SUITES if args.suite == "all" else (args.suite,)
    results = evaluate(model, suites, args.cache, args.input, args.budget, args.clips, not args.unconstrained, args.out,
                       variation=args.variation, stills_world=args.stills_world)
    print(json.dumps(results, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
