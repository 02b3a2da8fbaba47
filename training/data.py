"""Datasets: synthetic clips encoded to H.264, tokenized by the real tokenizer (codec canvases) or
the frame-sampling baseline at a canvas budget, cached on disk; examples from their exact truth;
and packing: whole examples in one sequence (their attention kept apart by segment ids, their
vision groups in their own encoder windows).

Cache layout (all files plain: MP4, JSON, .npz without pickles):
  CACHE/clips/<key>/clip.mp4, clip.json           rendered + encoded world, per-frame truth
  CACHE/clips/<key>/vision_<mode>_<budget>[_cut].npz canvases, group sizes, positions, fps, size
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.model.ov2 import VisionInput
from ov2_ros.model.parsers import FrameSize
from ov2_ros.model.prompt import IM_END, TextTokenizer, chat_prompt, video_text
from ov2_ros.synth.stream import write_world_stream
from ov2_ros.synth.worlds import WORLDS, Variation, WorldConfig
from ov2_ros.tokenizer.canvas import rebase_t
from ov2_ros.tokenizer.files import decode_file
from ov2_ros.tokenizer.pipeline import (TokenizerConfig, sample_frames_baseline, tokenize_at_budget,
                                        tokenize_live_window)
from training.tasks import QA, bounce_tasks, pickplace_tasks, predicted_trace_task, stills_tasks

# How a clip becomes canvases: codec = tokenize_at_budget (equal groups over the clip, the
# matched-budget study's input), live = the node's view (adaptive live groups spread over the
# clip, tokenizer.pipeline.tokenize_live_window), frames = the frame-sampling baseline.
INPUT_MODES = ("codec", "live", "frames")
IGNORE = -100  # label of tokens that are not predicted (prompt, vision)
# Part of cached canvases' file names: bump it when the tokenizer changes what it makes (r3: the
# saliency's change gate, 2026-11-25).
CANVAS_RECIPE = "r3"
# Part of cached clips' names: bump a world's when what it renders changes (pickplace 2: camera
# shake, a change of light, a distractor; bounce 2: bursts of bounces separated by rests).
WORLD_VERSIONS = {"pickplace": 2, "bounce": 2}


@dataclass(frozen=True)
class ClipSpec:
    world: str  # a key of ov2_ros.synth.worlds.WORLDS: "bounce", "pickplace", "stills", "lone", "mid", "closeup"
    seed: int
    split: str = "train"  # a Variation split: "train", "heldout" (unseen colours, backgrounds, speeds), ...
    duration_s: float = 12.0
    width: int = 160
    height: int = 120
    fps: float = 30.0
    bitrate_bps: int = 400_000

    @property
    def key(self) -> str:
        version = WORLD_VERSIONS.get(self.world, 1)
        return (f"{self.world}-{self.split}-{self.seed}-{self.duration_s:g}s-{self.width}x{self.height}"
                + (f"-v{version}" if version > 1 else ""))

    def world_object(self):
        config = WorldConfig(width=self.width, height=self.height, fps=self.fps, duration_s=self.duration_s,
                             seed=self.seed, variation=Variation(self.split))
        return WORLDS[self.world](config)


# Clip lengths of each world, seconds (low, high), as evaluation and the last stages (s3, s4) use them.
WORLD_DURATIONS_S = {"bounce": (10.0, 30.0), "pickplace": (9.0, 12.0), "stills": (1.0, 1.0), "lone": (1.0, 1.0),
                     "mid": (1.0, 1.0), "closeup": (1.0, 1.0)}
STILL_WORLDS = ("stills", "lone", "mid", "closeup")  # still shots: one group, box and point questions


def clip_range(world: str, first_seed: int, count: int, durations_s, split: str = "train") -> list[ClipSpec]:
    """`count` clips of one world from `first_seed` on, each duration drawn from its seed."""
    low, high = durations_s
    return [ClipSpec(world, seed, split, round(float(np.random.default_rng([seed, 7]).uniform(low, high)), 1))
            for seed in range(first_seed, first_seed + count)]


# Canvases of the clip cut before the arm moves (the predicted-trace question): a still scene.
PREDICTED_TRACE_BUDGET = 4
# Canvases of a still shot: one group (its first frame whole); more would repeat it.
STILL_BUDGET = 4


def clip_budget(spec: "ClipSpec", budget: int, cut_s: float | None = None) -> int:
    """Canvases a question about the clip is shown: the budget, less for a still shot or a
    clip cut before the arm moves."""
    if spec.world in STILL_WORLDS:
        return min(budget, STILL_BUDGET)
    return budget if cut_s is None else min(budget, PREDICTED_TRACE_BUDGET)


@dataclass
class ClipVision:
    canvases: list[np.ndarray]  # per group (C, H, W, 3) uint8
    positions_thw: list[np.ndarray]
    fps: float
    source_size: tuple[int, int]  # (h, w)

    def as_input(self) -> VisionInput:
        return vision_input_from(self.canvases, self.positions_thw)

    @property
    def canvas_count(self) -> int:
        return sum(c.shape[0] for c in self.canvases)


class ClipCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def clip(self, spec: ClipSpec) -> tuple[Path, dict]:
        """(MP4 path, truth document), rendering and encoding the clip on first use."""
        folder = self.root / "clips" / spec.key
        truth_path = folder / "clip.json"
        if not truth_path.is_file():
            # Written aside and renamed into place: runs sharing a cache never see half a clip.
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=folder.parent))
            encoder = H264EncoderConfig(width=spec.width, height=spec.height, fps=spec.fps, gop_frames=30,
                                        bitrate_bps=spec.bitrate_bps)
            stream = write_world_stream(spec.world_object(), encoder, staging, "clip", progress=False)
            stream.h264_path.unlink()  # the MP4 holds the same access units
            try:
                staging.rename(folder)
            except OSError:  # another run got there first
                shutil.rmtree(staging, ignore_errors=True)
        return folder / "clip.mp4", json.loads(truth_path.read_text())

    def vision(self, spec: ClipSpec, input_mode: str, budget: int, cut_s: float | None = None) -> ClipVision:
        """Canvases of the clip (or of its first cut_s seconds) at a budget, cached."""
        mp4, truth = self.clip(spec)
        suffix = "" if cut_s is None else f"_cut{cut_s:.2f}"
        path = mp4.parent / f"vision_{input_mode}_{budget}{suffix}_{CANVAS_RECIPE}.npz"
        if not path.is_file():
            _, frames, _ = decode_file(mp4, export_macroblocks=False)
            if cut_s is not None:
                frames = [f for f in frames if f.display_index < max(1, int(round(cut_s * spec.fps)))]
            if input_mode == "codec":
                groups = tokenize_at_budget(frames, budget, TokenizerConfig()).groups
            elif input_mode == "live":  # t from the window's first frame, as the node shows it
                groups = tokenize_live_window(frames, budget, TokenizerConfig())
                groups = [dataclasses.replace(g, positions_thw=rebase_t(g.positions_thw, groups[0].first_t))
                          for g in groups]
            elif input_mode == "frames":
                groups = sample_frames_baseline(frames, len(frames), budget).groups
            else:
                raise ValueError(f"input mode {input_mode!r} is not one of {INPUT_MODES}")
            staging = path.with_name(f".{path.stem}-{os.getpid()}.npz")
            np.savez(staging, canvases=np.concatenate([g.canvases for g in groups]),
                     group_sizes=np.array([g.canvases.shape[0] for g in groups]),
                     positions=np.concatenate([g.positions_thw for g in groups]),
                     fps=spec.fps, source_size=np.array([spec.height, spec.width]))
            os.replace(staging, path)
        with np.load(path, allow_pickle=False) as data:
            sizes = data["group_sizes"].tolist()
            canvases = np.split(data["canvases"], np.cumsum(sizes)[:-1])
            per_canvas = data["positions"].shape[0] // max(1, sum(sizes))
            positions = np.split(data["positions"], np.cumsum(sizes)[:-1] * per_canvas)
            return ClipVision(canvases, positions, float(data["fps"]), tuple(int(v) for v in data["source_size"]))


def clip_questions(spec: ClipSpec, truth: dict, rng) -> list[QA]:
    episode = truth["episode"]
    if spec.world == "bounce":
        return bounce_tasks(episode, rng)
    if spec.world in STILL_WORLDS:
        return stills_tasks(episode, FrameSize(spec.width, spec.height), rng)
    return pickplace_tasks(episode, truth["frames"], FrameSize(spec.width, spec.height), rng)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    vision: ClipVision
    qa: QA
    spec: ClipSpec


def encode_example(tokenizer: TextTokenizer, vision: ClipVision, qa: QA, spec: ClipSpec) -> Example:
    """Prompt (system, timestamped vision blocks, question) unlabelled; the answer and <|im_end|>
    labelled."""
    positions = np.concatenate(vision.positions_thw)
    prompt = tokenizer.encode(chat_prompt(qa.question, video_text(positions, vision.fps)))
    answer = tokenizer.encode(qa.answer + IM_END)
    return Example(prompt + answer, [IGNORE] * len(prompt) + answer, vision, qa, spec)


def examples_for_clip(cache: ClipCache, tokenizer: TextTokenizer, spec: ClipSpec, input_mode: str, budget: int,
                      rng, tasks: tuple[str, ...] | None = None) -> list[Example]:
    """One example per task of the clip (a random wording each); pick-and-place clips add the
    predicted trace on the clip cut before the arm moves."""
    _, truth = cache.clip(spec)
    vision = cache.vision(spec, input_mode, clip_budget(spec, budget))
    examples = [encode_example(tokenizer, vision, qa, spec) for qa in clip_questions(spec, truth, rng)
                if tasks is None or qa.task in tasks]
    if spec.world == "pickplace" and (tasks is None or "predicted_trace" in tasks):
        cut = truth["episode"]["segments"][0]["start_s"]
        qa = predicted_trace_task(truth["episode"], FrameSize(spec.width, spec.height), rng)
        vision = cache.vision(spec, input_mode, clip_budget(spec, budget, cut), cut_s=cut)
        examples.append(encode_example(tokenizer, vision, qa, spec))
    return examples


def answer_tokens_in(tokenizer: TextTokenizer, answer: str, spans: list[tuple[int, int]]) -> list[int]:
    """Indices, among an example's labelled answer tokens, of those whose characters lie in one
    of `spans` of the answer text (e.g. a point's x digits)."""
    offsets = tokenizer.backend.encode(answer, add_special_tokens=False).offsets
    return [i for i, (start, end) in enumerate(offsets) if any(low <= start and end <= high for low, high in spans)]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (rows, L)
    labels: torch.Tensor  # (rows, L)
    segment_ids: torch.Tensor  # (rows, L): each example its own segment; padding -1
    vision: VisionInput  # every example's groups, row by row, in order
    examples: int
    answer_tokens: int


def pack(examples: list[Example]) -> Batch:
    """The examples end to end in one sequence (one row)."""
    return pack_rows([examples], filler=0)


def pack_rows(rows: list[list[Example]], filler: int) -> Batch:
    """Each row's examples end to end; shorter rows padded with `filler` ids (IGNORE labels,
    segment -1, attending only to padding) to the longest."""
    length = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), length), filler, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    segments = torch.full((len(rows), length), -1, dtype=torch.long)
    number = 0
    for row_index, row in enumerate(rows):
        at = 0
        for example in row:
            end = at + len(example.input_ids)
            ids[row_index, at:end] = torch.tensor(example.input_ids)
            labels[row_index, at:end] = torch.tensor(example.labels)
            segments[row_index, at:end] = number
            at, number = end, number + 1
    examples = [e for row in rows for e in row]
    canvases = [c for e in examples for c in e.vision.canvases]
    positions = [p for e in examples for p in e.vision.positions_thw]
    return Batch(ids, labels, segments, vision_input_from(canvases, positions), len(examples),
                 int((labels != IGNORE).sum()))
