"""Adaptive temporal groups by readiness (method.md 1.4), the rule of OV2's reference tokenizer.

A group starts at frame s; its first frame becomes the I-canvas; candidates are the 2x2 blocks of
the following frames; the budget K is (images_per_group - 1) canvases' worth of blocks.
  readiness(n) = sum of the top-K candidate block scores of a group of n frames
  coverage(n)  = how many of `coverage_bins` equal time bins over frames 1..n-1 hold a top-K block
From n = min_group_frames to max_group_frames the group is "ready" when readiness >= tau and
coverage reaches min(coverage_bins, images_per_group - 1); once ready, it closes as soon as one
more frame raised readiness by less than `low_gain_ratio`. Never ready: it closes at the maximum.

tau is the mean readiness of fixed `threshold_window_frames` windows: over the whole video
offline (OV2), over the windows completed so far in a live stream (causal; until the first
window completes no group can be ready, so the first group of a stream spans max_group_frames).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class GroupingConfig:
    images_per_group: int = 4  # 1 I-canvas + 3 P-canvases: one attention window of the encoder
    min_group_frames: int = 8
    max_group_frames: int = 64  # a live group is emitted at most this many frames after it starts
    coverage_bins: int = 3
    low_gain_ratio: float = 0.05
    threshold_window_frames: int = 32

    def __post_init__(self):
        if self.images_per_group < 2:
            raise ValueError(f"images_per_group must be >= 2, got {self.images_per_group}")
        if not 2 <= self.min_group_frames <= self.max_group_frames:
            raise ValueError("need 2 <= min_group_frames <= max_group_frames, got "
                             f"{self.min_group_frames}, {self.max_group_frames}")
        if self.coverage_bins < 1:
            raise ValueError(f"coverage_bins must be >= 1, got {self.coverage_bins}")
        if not 0.0 <= self.low_gain_ratio < 1.0:
            raise ValueError(f"low_gain_ratio must be in [0, 1), got {self.low_gain_ratio}")
        if self.threshold_window_frames < 4:
            raise ValueError(f"threshold_window_frames must be >= 4, got {self.threshold_window_frames}")

    @property
    def coverage_needed(self) -> int:
        return min(self.coverage_bins, self.images_per_group - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def block_budget(config: GroupingConfig, blocks_per_canvas: int) -> int:
    return (config.images_per_group - 1) * blocks_per_canvas


class TopBlocks:
    """The K best candidate blocks of a growing group, one frame at a time.

    Frames are numbered from 0 within the group; frame 0 (the I-canvas) adds no candidates.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.scores = np.zeros(0, np.float32)
        self.frames = np.zeros(0, np.int32)  # frame number within the group
        self.blocks = np.zeros(0, np.int32)  # flat block index (row * block_cols + col)
        self.frame_count = 0

    def add(self, block_scores: np.ndarray, usable: bool = True) -> None:
        number = self.frame_count
        self.frame_count += 1
        if number == 0 or not usable or self.budget == 0:
            return
        flat = block_scores.ravel()
        scores = np.concatenate([self.scores, flat])
        frames = np.concatenate([self.frames, np.full(flat.size, number, np.int32)])
        blocks = np.concatenate([self.blocks, np.arange(flat.size, dtype=np.int32)])
        if scores.size > self.budget:
            keep = np.argpartition(-scores, self.budget - 1)[: self.budget]
            scores, frames, blocks = scores[keep], frames[keep], blocks[keep]
        self.scores, self.frames, self.blocks = scores, frames, blocks

    @property
    def readiness(self) -> float:
        return float(self.scores.sum(dtype=np.float64))

    def coverage(self, bins: int) -> int:
        """Time bins over frames 1..n-1 holding at least one selected block."""
        if self.frames.size == 0:
            return 0
        edges = np.linspace(1, max(2, self.frame_count), bins + 1).astype(np.int32)
        used = np.unique(self.frames)
        bin_of = np.searchsorted(edges, used, side="right") - 1
        return int(np.unique(bin_of[(bin_of >= 0) & (bin_of < bins)]).size)


def window_readiness(block_scores: list[np.ndarray], usable: list[bool], budget: int) -> float:
    top = TopBlocks(budget)
    for scores, ok in zip(block_scores, usable):
        top.add(scores, ok)
    return top.readiness


@dataclass(frozen=True)
class GroupBoundary:
    start: int  # index of the group's first frame in the scored-frame sequence
    end: int  # one past its last frame
    stop_reason: str  # "low_gain", "ready", "max_frames" or "end_of_stream"
    readiness: float
    coverage: int
    threshold: float


class GroupBuilder:
    """Decides where the current group ends, one frame at a time (offline and live alike)."""

    def __init__(self, config: GroupingConfig, budget: int):
        self.config = config
        self.budget = budget
        self._restart()

    def _restart(self) -> None:
        self._top = TopBlocks(self.budget)
        self._previous_readiness: float | None = None
        self._ready_at: tuple[int, float, int] | None = None  # (frames, readiness, coverage)

    @property
    def frame_count(self) -> int:
        return self._top.frame_count

    def add(self, block_scores: np.ndarray, usable: bool, threshold: float
            ) -> tuple[int, str, float, int] | None:
        """Add the group's next frame. Returns (frames in the group, stop reason, readiness,
        coverage) when the group closes, else None. When it closes at fewer frames than were
        added, the caller starts the next group with the frames left over."""
        config = self.config
        self._top.add(block_scores, usable)
        n = self._top.frame_count
        if n < config.min_group_frames:
            return None
        readiness = self._top.readiness
        coverage = self._top.coverage(config.coverage_bins)
        if readiness >= threshold and coverage >= config.coverage_needed:
            self._ready_at = (n, readiness, coverage)
            previous = self._previous_readiness
            if previous is not None and (readiness - previous) / max(abs(previous), 1e-6) < config.low_gain_ratio:
                return self._close(n, "low_gain", readiness, coverage)
        self._previous_readiness = readiness
        if n >= config.max_group_frames:
            if self._ready_at is not None:
                ready_frames, ready_readiness, ready_coverage = self._ready_at
                return self._close(ready_frames, "ready", ready_readiness, ready_coverage)
            return self._close(n, "max_frames", readiness, coverage)
        return None

    def close_at_end(self) -> tuple[int, str, float, int] | None:
        n = self._top.frame_count
        if n == 0:
            return None
        return self._close(n, "end_of_stream", self._top.readiness, self._top.coverage(self.config.coverage_bins))

    def _close(self, frames: int, reason: str, readiness: float, coverage: int):
        self._restart()
        return frames, reason, readiness, coverage


def offline_threshold(block_scores: list[np.ndarray], usable: list[bool], config: GroupingConfig,
                      budget: int) -> float:
    """OV2's tau: mean readiness of consecutive fixed windows over the whole video."""
    window = config.threshold_window_frames
    values = [window_readiness(block_scores[start:start + window], usable[start:start + window], budget)
              for start in range(0, len(block_scores), window)
              if min(window, len(block_scores) - start) >= max(4, config.coverage_bins + 1)]
    return float(np.mean(values)) if values else 0.0


def group_offline(block_scores: list[np.ndarray], usable: list[bool], config: GroupingConfig,
                  budget: int, threshold: float | None = None) -> list[GroupBoundary]:
    """Groups of a whole sequence of scored frames, with the whole-video threshold."""
    tau = offline_threshold(block_scores, usable, config, budget) if threshold is None else threshold
    boundaries: list[GroupBoundary] = []
    builder = GroupBuilder(config, budget)
    start = index = 0
    while index < len(block_scores):
        decision = builder.add(block_scores[index], usable[index], tau)
        index += 1
        if decision is not None:
            frames, reason, readiness, coverage = decision
            boundaries.append(GroupBoundary(start, start + frames, reason, readiness, coverage, tau))
            start = index = start + frames
    decision = builder.close_at_end()
    if decision is not None:
        frames, reason, readiness, coverage = decision
        boundaries.append(GroupBoundary(start, start + frames, reason, readiness, coverage, tau))
    return boundaries


class CausalThreshold:
    """tau for a live stream: the mean readiness of the fixed windows completed so far."""

    def __init__(self, config: GroupingConfig, budget: int):
        self.config = config
        self.budget = budget
        self._window = TopBlocks(budget)
        self._values: list[float] = []

    def add(self, block_scores: np.ndarray, usable: bool) -> None:
        self._window.add(block_scores, usable)
        if self._window.frame_count == self.config.threshold_window_frames:
            self._values.append(self._window.readiness)
            self._window = TopBlocks(self.budget)

    @property
    def value(self) -> float:
        return float(np.mean(self._values)) if self._values else float("inf")

    @property
    def windows(self) -> int:
        return len(self._values)
