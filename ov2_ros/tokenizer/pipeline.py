"""The codec-stream tokenizer, live and offline, and the frame-sampling baseline.

    live     StreamingTokenizer.push(frame) for each decoded frame (display order) returns the
             groups it completed; a group is out at most max_group_frames after it starts.
    offline  tokenize_frames(frames, mode="offline") scores everything first and uses OV2's
             whole-video threshold.
    baseline sample_frames_baseline(frames, n): n frames sampled uniformly, one canvas each.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from ov2_ros.codec.ingest import FrameRecord
from ov2_ros.codec.saliency import SCORERS
from ov2_ros.tokenizer.canvas import TokenizedGroup, block_layout, pack_group
from ov2_ros.tokenizer.frames import FrameScorer, ScoredFrame
from ov2_ros.tokenizer.geometry import BLOCK_PX, DEFAULT_MAX_PIXELS, FrameGeometry, yuv420_to_rgb
from ov2_ros.tokenizer.groups import (
    CausalThreshold,
    GroupBoundary,
    GroupBuilder,
    GroupingConfig,
    block_budget,
    group_offline,
)


@dataclass(frozen=True)
class TokenizerConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS  # processed frame area bound (method.md 1.3)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    frame_stride: int = 1  # live subsampling: score every n-th decoded frame
    saliency: str = "motion_residual"  # or "bitcost" (codec/saliency.py, docs/tokenizer.md)

    def __post_init__(self):
        if self.max_pixels < BLOCK_PX * BLOCK_PX:
            raise ValueError(f"max_pixels must hold one {BLOCK_PX}x{BLOCK_PX} block (>= {BLOCK_PX * BLOCK_PX}), "
                             f"got {self.max_pixels}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.saliency not in SCORERS:
            raise ValueError(f"saliency must be one of {SCORERS}, got '{self.saliency}'")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TokenizedVideo:
    """Groups of one video (or of a stretch of a live stream) with their geometry."""

    geometry: FrameGeometry
    groups: list[TokenizedGroup]
    mode: str  # "offline", "stream" or "frames"
    timings_s: dict = field(default_factory=dict)

    @property
    def canvases(self) -> np.ndarray:
        return np.concatenate([g.canvases for g in self.groups]) if self.groups else np.zeros(
            (0, self.geometry.height, self.geometry.width, 3), np.uint8)

    @property
    def positions_thw(self) -> np.ndarray:
        return np.concatenate([g.positions_thw for g in self.groups]) if self.groups else np.zeros((0, 3), np.int32)

    @property
    def canvas_count(self) -> int:
        return sum(g.canvases.shape[0] for g in self.groups)


class StreamingTokenizer:
    """Live tokenizer of one stream: decoded frames in, completed groups out."""

    def __init__(self, config: TokenizerConfig = TokenizerConfig()):
        self.config = config
        self._scorer = FrameScorer(config.max_pixels, config.saliency)
        self._pending: list[ScoredFrame] = []  # frames of the open group (and any left over)
        self._builder: GroupBuilder | None = None
        self._threshold: CausalThreshold | None = None
        self._fed = 0  # pending frames already given to the builder
        self._groups_emitted = 0
        self._frames_seen = 0

    @property
    def geometry(self) -> FrameGeometry | None:
        return self._scorer.geometry

    def push(self, frame: FrameRecord, t: int | None = None, sampled: bool | None = None
             ) -> list[TokenizedGroup]:
        """Add the next decoded frame (display order). t defaults to its display index; a frame
        not sampled (by `frame_stride`, or sampled=False) only serves as a motion reference."""
        t = frame.display_index if t is None else t
        self._frames_seen += 1
        geometry = self._scorer.geometry
        if geometry is not None and (frame.height, frame.width) != (geometry.source_height, geometry.source_width):
            emitted = self.flush()  # a new picture size starts a new geometry and new groups
        else:
            emitted = []
        stride = self.config.frame_stride
        if sampled is None:
            sampled = (self._frames_seen - 1) % stride == 0
        if not sampled:
            if stride == 1 or self._frames_seen % stride == 0:  # the next frame is scored against it
                self._scorer.skip(frame)
            return emitted
        scored = self._scorer.score(frame, t)
        if self._builder is None:
            budget = block_budget(self.config.grouping, self._scorer.geometry.blocks_per_canvas)
            self._builder = GroupBuilder(self.config.grouping, budget)
            self._threshold = CausalThreshold(self.config.grouping, budget)
        self._threshold.add(scored.block_scores, scored.usable)
        self._pending.append(scored)
        return emitted + self._advance()

    def _advance(self) -> list[TokenizedGroup]:
        emitted = []
        while self._fed < len(self._pending):
            frame = self._pending[self._fed]
            self._fed += 1
            decision = self._builder.add(frame.block_scores, frame.usable, self._threshold.value)
            if decision is not None:
                emitted.append(self._emit(decision))
        return emitted

    def _emit(self, decision) -> TokenizedGroup:
        frames, reason, readiness, coverage = decision
        group_frames, self._pending = self._pending[:frames], self._pending[frames:]
        self._fed = 0  # frames left over start the next group
        boundary = GroupBoundary(0, frames, reason, readiness, coverage, self._threshold.value)
        group = pack_group(self._groups_emitted, group_frames, boundary, self._scorer.geometry,
                           self.config.grouping.images_per_group)
        self._groups_emitted += 1
        return group

    def flush(self) -> list[TokenizedGroup]:
        """End of stream (or a new geometry): close the open group with what it has."""
        emitted = []
        if self._builder is not None:
            emitted += self._advance()
            decision = self._builder.close_at_end()
            if decision is not None:
                emitted.append(self._emit(decision))
        self._builder = self._threshold = None
        self._pending, self._fed = [], 0
        self._scorer.reset()
        return emitted

    def reset_motion(self) -> None:
        """A gap in the stream: the next frame has no valid motion reference."""
        self._scorer.reset()


def _one_picture_size(frames: Iterable[FrameRecord]) -> Iterable[FrameRecord]:
    """The frames, refusing a change of picture size: one TokenizedVideo has one geometry (the
    live StreamingTokenizer follows size changes group by group)."""
    size = None
    for frame in frames:
        if size is not None and (frame.height, frame.width) != size:
            raise ValueError(f"the video changes picture size at frame {frame.display_index} "
                             f"({size[1]}x{size[0]} -> {frame.width}x{frame.height}); split it, or "
                             "feed it to a StreamingTokenizer, which starts new groups at the change")
        size = (frame.height, frame.width)
        yield frame


def uniform_indices(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over [0, total) (all of them if count >= total)."""
    if count >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def _score(frames: Iterable[FrameRecord], config: TokenizerConfig, sample_indices: set[int] | None
           ) -> tuple[FrameScorer, list[ScoredFrame]]:
    """Block scores of the sampled frames (all when None); the others still serve as motion
    references."""
    scorer = FrameScorer(config.max_pixels, config.saliency)
    scored: list[ScoredFrame] = []
    for frame in frames:
        if sample_indices is None or frame.display_index in sample_indices:
            scored.append(scorer.score(frame, frame.display_index))
        else:
            scorer.skip(frame)
    if not scored:
        raise ValueError("no decodable frame in the input")
    return scorer, scored


def tokenize_frames(frames: Iterable[FrameRecord], config: TokenizerConfig = TokenizerConfig(),
                    mode: str = "offline", sample_indices: set[int] | None = None) -> TokenizedVideo:
    """Tokenize decoded frames (display order; t = display index). `sample_indices` restricts
    scoring and selection to those frames (OV2 samples frames uniformly first)."""
    if mode not in ("offline", "stream"):
        raise ValueError(f"mode must be 'offline' or 'stream', got '{mode}'")
    timings = {"score_s": 0.0, "group_s": 0.0, "pack_s": 0.0}
    frames = _one_picture_size(frames)
    if mode == "stream":
        tokenizer = StreamingTokenizer(config)
        groups = []
        started = time.perf_counter()
        for frame in frames:
            sampled = None if sample_indices is None else frame.display_index in sample_indices
            groups += tokenizer.push(frame, sampled=sampled)
        groups += tokenizer.flush()
        timings["tokenize_s"] = time.perf_counter() - started
        if tokenizer.geometry is None:
            raise ValueError("no decodable frame in the input")
        return TokenizedVideo(tokenizer.geometry, groups, mode, timings)

    started = time.perf_counter()
    scorer, scored = _score(frames, config, sample_indices)
    timings["score_s"] = time.perf_counter() - started
    geometry = scorer.geometry
    budget = block_budget(config.grouping, geometry.blocks_per_canvas)
    started = time.perf_counter()
    boundaries = group_offline([f.block_scores for f in scored], [f.usable for f in scored],
                               config.grouping, budget)
    timings["group_s"] = time.perf_counter() - started
    started = time.perf_counter()
    groups = [pack_group(i, scored[b.start:b.end], b, geometry, config.grouping.images_per_group)
              for i, b in enumerate(boundaries)]
    timings["pack_s"] = time.perf_counter() - started
    return TokenizedVideo(geometry, groups, mode, timings)


def sample_frames_baseline(frames: Iterable[FrameRecord], total_frames: int, count: int,
                           max_pixels: int = DEFAULT_MAX_PIXELS, images_per_group: int = 4) -> TokenizedVideo:
    """method.md 1.6: `count` frames sampled uniformly, each one whole canvas with its true
    (t, h, w); consecutive canvases form groups of `images_per_group` (the encoder's windows)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    wanted = set(uniform_indices(total_frames, count))
    geometry = None
    chosen: list[tuple[int, int, np.ndarray]] = []
    for frame in frames:
        if frame.display_index in wanted:
            if geometry is None:
                geometry = FrameGeometry.for_source(frame.height, frame.width, max_pixels)
            chosen.append((frame.display_index, frame.stamp_ns, geometry.resize_yuv420(frame.yuv420)))
    if not chosen:
        raise ValueError("no decodable frame in the input")
    rows, cols = block_layout(geometry.block_rows, geometry.block_cols)
    groups = []
    for index, start in enumerate(range(0, len(chosen), images_per_group)):
        part = chosen[start:start + images_per_group]
        canvases = np.stack([yuv420_to_rgb(yuv) for _, _, yuv in part])
        positions = np.concatenate([np.stack([np.full(rows.size, t), rows, cols], axis=1) for t, _, _ in part])
        groups.append(TokenizedGroup(
            index=index, first_t=part[0][0], last_t=part[-1][0], first_stamp_ns=part[0][1],
            last_stamp_ns=part[-1][1], frame_count=part[-1][0] - part[0][0] + 1,
            stop_reason="frame_sampling", readiness=0.0, coverage=0, threshold=0.0,
            canvases=canvases, positions_thw=positions.astype(np.int32),
            selected_blocks=np.zeros((0, 3), np.int32)))
    return TokenizedVideo(geometry, groups, "frames")


def tokenize_at_budget(frames: list[FrameRecord], budget: int, config: TokenizerConfig = TokenizerConfig()
                       ) -> TokenizedVideo:
    """Codec tokenization held to `budget` canvases over the whole video, for comparisons at a
    matched budget (method.md 1.6 seen from the other side): the clip is cut into budget/4 groups
    of equal length (readiness decides nothing here: the budget fixes the group count), each
    group at most max_group_frames frames (sampled uniformly when the clip is longer), and each
    group packed as usual: its first usable frame whole, then its most salient blocks from all
    its frames. Dense frames, sparsely: that is where codec canvases differ from frame sampling."""
    per_group = config.grouping.images_per_group
    if budget < per_group:
        raise ValueError(f"budget must be >= {per_group} canvases (one group), got {budget}")
    group_count = budget // per_group
    wanted = group_count * config.grouping.max_group_frames
    sample = set(uniform_indices(len(frames), wanted)) if wanted < len(frames) else None
    scorer, scored = _score(_one_picture_size(frames), config, sample)
    edges = np.linspace(0, len(scored), min(group_count, len(scored)) + 1).round().astype(int)
    groups = [pack_group(i, scored[a:b], GroupBoundary(a, b, "budget", 0.0, 0, float("nan")), scorer.geometry,
                         per_group) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    return TokenizedVideo(scorer.geometry, groups, "offline")


def window_groups(groups: list[TokenizedGroup], budget_canvases: int, window_s: float,
                  nominal_fps: float = 30.0) -> list[TokenizedGroup]:
    """What a question on a live stream shows: the groups (oldest first) of the last `window_s`
    seconds, all of them when their canvases fit `budget_canvases`, else the newest, the oldest
    and others evenly spaced between; at least the newest group. An answer then covers the
    window asked about, more sparsely, never only its end (a trace of the last ten seconds starts
    ten seconds ago; tokenize_at_budget likewise spreads a budget over a whole clip). Spacing
    counts groups, not seconds: eventful stretches, cut into more and shorter groups, keep more."""
    newest = groups[-1]
    in_window = [newest]
    for group in reversed(groups[:-1]):
        if _age_s(newest, group, nominal_fps) > window_s:
            break
        in_window.append(group)
    in_window.reverse()
    canvases = [g.canvases.shape[0] for g in in_window]
    for keep in range(len(in_window), 1, -1):  # as many groups as fit, both ends included
        picks = np.unique(np.linspace(0, len(in_window) - 1, keep).round().astype(int))
        if sum(canvases[i] for i in picks) <= budget_canvases:
            return [in_window[i] for i in picks]
    return [newest]


def _age_s(newest: TokenizedGroup, group: TokenizedGroup, nominal_fps: float) -> float:
    """Seconds from the group's first frame to the newest group's last: by header stamps, or by
    frame indices at the nominal rate where stamps are unknown (0)."""
    if group.first_stamp_ns > 0 and newest.last_stamp_ns > 0:
        return (newest.last_stamp_ns - group.first_stamp_ns) / 1e9
    return (newest.last_t - group.first_t) / nominal_fps


def tokenize_live_window(frames: list[FrameRecord], budget: int, config: TokenizerConfig = TokenizerConfig()
                         ) -> list[TokenizedGroup]:
    """A clip as the node shows it at its end: the live tokenizer's adaptive groups, spread over
    the whole clip within `budget` canvases (window_groups). Training on these matches what a
    deployed model is asked about; tokenize_at_budget's equal groups serve the matched-budget study."""
    groups = tokenize_frames(frames, config, "stream").groups
    if not groups:
        raise ValueError("no frame could be tokenized")
    return window_groups(groups, budget, float("inf"))
