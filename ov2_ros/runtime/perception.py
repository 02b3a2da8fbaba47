"""Live perception without ROS: the newest temporal groups of a stream + a question -> an answer
whose times are the stream's own stamps. The node (ros/node.py) and offline replay call this.

Which video the model sees: the groups of the last `window_s` seconds within `budget_canvases`,
spread over the window (tokenizer.pipeline.window_groups). Their frame indices are re-based so
the clip starts at t = 0 (the model reads timestamps t / fps as seconds from the start of what
it is shown); fps comes from the groups' header stamps, so an answer's second s maps back to the
stamp `window_start + s`. Boxes, tracks and traces are already in source pixels (model/parsers.py).

Encoded groups are kept for the next question. A group is its own attention window in the
encoder, so its vision tokens do not depend on the other groups shown, but they do depend on
where the window starts: the released checkpoints' 3D RoPE rotates channel pairs (2i, 2i+1) by
two different angles (model/rope.py), so attention is not a function of t differences alone.
Tokens are therefore kept per (group, window start): a question on the window of the last answer
(a query between two standing answers) and a window that grows without losing its first group
encode only what is new; a window that slides encodes again. Results are exactly those of
encoding from scratch.

Encoding ahead (`encode_ahead`): between a standing answer and the next group, the inference
thread is idle; it then encodes the groups the next window will most likely show, with the start
that window will most likely have, so that the next answer, once its group completes, encodes
only that group. Which groups a window shows depends on the group still to come (its length
moves the window's start, its canvases what the budget keeps), so there are `ahead_guesses`
guesses, one per call (`guess`), each a shape of a recent group, the newest's first
(next_windows). A wrong guess costs idle time and changes no answer (the cache is keyed by group
and window start). With `prefill_ahead` (where the backend can extend a cached prompt: torch,
ONNX Runtime), each guess also prefills the start of its window's prompt up to the guessed
group (system text, the other groups' timestamps and vision tokens; model/generate.py's
PrefixSession holds one per guess): the next answer prefills only its new group and the
question, if its prompt does start with one of those (checked, else a whole prefill).

The last answer to each question is kept too: the next answer to it (a standing query's, one
group later) copies its draft tokens from it (`draft_tokens`, model/generate.py).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ov2_ros.model.generate import GenerationConfig, PrefixSession
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.model.ov2 import content_blocks
from ov2_ros.model.parsers import Box, EventTimes, PointTrack, TemporalSegment, Trace
from ov2_ros.model.prompt import prompt_head, video_text
from ov2_ros.runtime.answer import Answer, ask
from ov2_ros.runtime.backend import Backend
from ov2_ros.tokenizer.canvas import TokenizedGroup, rebase_t
from ov2_ros.tokenizer.pipeline import window_groups

_request_ids = itertools.count(1)
DRAFT_TOKENS = 8  # guessed tokens per decoder pass (ov2 bench drafts measured the choice)
KEPT_ANSWERS = 16  # questions whose last answer is kept as a draft reference
# Guesses of the next window encoded (and prefilled) ahead: on 233 windows of six synthetic
# streams the first guess held for 70 %, one of the first two for 91 %, of three for 96 %.
AHEAD_GUESSES = 2
RECENT_SHAPES = 8  # groups whose (frames, canvases) the guesses try
FPS_TOLERANCE = 0.005  # relative change of the measured frame rate that prompts do not follow (fps)


@dataclass(frozen=True)
class Query:
    prompt: str
    output_format: str | None = "auto"  # "auto": from the prompt's wording; None: free text
    window_s: float = 0.0  # 0: the perception's default
    max_new_tokens: int = 0  # 0: the perception's default
    request_id: str = ""

    def with_id(self) -> "Query":
        return self if self.request_id else dataclasses.replace(self, request_id=f"q{next(_request_ids)}")


@dataclass
class StampedSegment:
    label: str
    start_ns: int
    end_ns: int


@dataclass
class StampedTrackPoint:
    stamp_ns: int
    x: float
    y: float


@dataclass
class StampedTrack:
    track_id: int
    label: str
    points: list[StampedTrackPoint]


@dataclass
class PerceptionResult:
    query: Query
    answer: Answer
    window_start_ns: int  # stamp of the first frame shown to the model
    window_end_ns: int  # stamp of the last frame shown (results describe up to here)
    group_indices: list[int]
    image_size: tuple[int, int]  # source (height, width): pixel coordinates refer to it
    segments: list[StampedSegment] = field(default_factory=list)  # segment and events answers
    boxes: list[Box] = field(default_factory=list)
    tracks: list[StampedTrack] = field(default_factory=list)
    trace: Trace | None = None

    @property
    def parsed(self) -> bool:
        return self.answer.output_format is not None and self.answer.parse_error is None


def _next_group_guess(newest: TokenizedGroup, frames: int, canvases: int) -> TokenizedGroup:
    """A stand-in for the group after `newest`, `frames` long with `canvases` canvases (what
    window_groups reads of it), its stamps at the newest's frame interval."""
    span_ns = newest.last_stamp_ns - newest.first_stamp_ns
    # one frame's interval (0: stamps unknown)
    step_ns = span_ns // max(1, newest.last_t - newest.first_t) if newest.last_stamp_ns > 0 else 0
    shape = newest.canvases.shape
    stand_in = newest.canvases if canvases == shape[0] else np.broadcast_to(newest.canvases[:1], (canvases, *shape[1:]))
    return dataclasses.replace(newest, index=newest.index + 1, first_t=newest.last_t + 1, last_t=newest.last_t + frames,
                               canvases=stand_in,
                               first_stamp_ns=newest.last_stamp_ns + step_ns if step_ns else 0,
                               last_stamp_ns=newest.last_stamp_ns + step_ns * frames if step_ns else 0)


class Perception:
    """Not thread-safe: one per inference thread (it keeps encoded groups)."""

    def __init__(self, backend: Backend, budget_canvases: int = 16, window_s: float = 10.0,
                 max_new_tokens: int = 64, nominal_fps: float = 30.0, draft_tokens: int = DRAFT_TOKENS,
                 prefill_ahead: bool = True, ahead_guesses: int = AHEAD_GUESSES):
        if budget_canvases < 1 or window_s <= 0 or draft_tokens < 0 or ahead_guesses < 1:
            raise ValueError("budget_canvases must be >= 1, window_s > 0, draft_tokens >= 0 and ahead_guesses >= 1")
        self.ahead_guesses = ahead_guesses
        self.backend, self.budget_canvases, self.window_s = backend, budget_canvases, window_s
        self.max_new_tokens, self.nominal_fps, self.draft_tokens = max_new_tokens, nominal_fps, draft_tokens
        # The last answer's tokens per (question, format), newest last; a few questions' worth.
        self._last_answers: collections.OrderedDict[tuple, list[int]] = collections.OrderedDict()
        # (canvases, vision tokens) per (id of the group's canvases, window start t), most recently
        # shown last: this window's, the last one's and the next one's guesses (encode_ahead).
        # Holding the canvases keeps their id unique meanwhile.
        self._encoded: collections.OrderedDict[tuple, tuple[np.ndarray, torch.Tensor]] = collections.OrderedDict()
        self._ahead: set[tuple] = set()  # keys encoded ahead and not yet shown
        # For diagnostics: groups run through the encoder (ahead included), encoded ahead, and
        # encoded ahead then shown by an answer.
        self.groups_encoded = self.groups_encoded_ahead = self.groups_ahead_used = 0
        # The session answers run on: one that can hold the next prompt's start (prefill_ahead),
        # where the backend can extend a cached prompt; None: a new session per answer.
        can_hold = prefill_ahead and getattr(backend.session(), "can_extend", False)
        self._session = PrefixSession(backend.session, ahead_guesses) if can_hold else None
        self.prompts_prefilled_ahead = 0  # prompt starts prefilled while idle (prefill_ahead)
        self._fps: float | None = None  # the frame rate the last prompt used (fps)

    def vision_tokens(self, groups: list[TokenizedGroup]) -> torch.Tensor:
        """(tokens, LLM hidden) of the groups in order, t counted from the first group's first
        frame; encodes only the groups not encoded before for this window start."""
        keys, _ = self._encode(groups)
        used = self._ahead.intersection(keys)
        self.groups_ahead_used += len(used)
        self._ahead -= used
        return torch.cat([self._encoded[key][1] for key in keys])

    def next_windows(self, groups: list[TokenizedGroup], window_s: float | None = None
                     ) -> list[tuple[list[TokenizedGroup], TokenizedGroup]]:
        """Up to `ahead_guesses` distinct guesses of what the next answer (one group later) will
        show of the groups so far, most likely first: (those groups, the guessed next group).
        What it shows depends on the next group's length (how far the window's start moves) and
        canvases (which groups the budget keeps): the next group is first guessed as long as the
        newest with as many canvases, then in each shape of the last few groups, the most
        frequent first."""
        if not groups:
            return []
        newest = groups[-1]
        recent = collections.Counter((g.last_t - g.first_t + 1, g.canvases.shape[0]) for g in groups[-RECENT_SHAPES:])
        own = (newest.last_t - newest.first_t + 1, newest.canvases.shape[0])
        windows, seen = [], set()
        for frames, canvases in [own, *(shape for shape, _ in recent.most_common() if shape != own)]:
            guess = _next_group_guess(newest, frames, canvases)
            shown = [g for g in self.select([*groups, guess], window_s or self.window_s) if g is not guess]
            key = tuple(map(id, shown))
            if shown and key not in seen:
                seen.add(key)
                windows.append((shown, guess))
            if len(windows) == self.ahead_guesses:
                break
        return windows

    def encode_ahead(self, groups: list[TokenizedGroup], window_s: float | None = None, guess: int = 0,
                     stop: Callable[[], bool] | None = None) -> int:
        """Encode the groups of the `guess`-th guess of the next window (next_windows) for the
        start it would have, and with prefill_ahead hold its prompt's start, unless `stop()` says
        by then that an answer is due (a live node: the prefill, the longer half, would make it
        wait). Returns how many groups this encoded (0: all were encoded already, or there is no
        such guess)."""
        windows = self.next_windows(groups, window_s)
        if guess >= len(windows):
            return 0
        shown, next_group = windows[guess]
        keys, new = self._encode(shown)
        self.groups_encoded_ahead += len(new)
        self._ahead.update(new)
        if self._session is not None and not (stop is not None and stop()):
            self._prefill_ahead(shown, keys, self.fps([*shown, next_group]))
        return len(new)

    def _prefill_ahead(self, shown: list[TokenizedGroup], keys: list[tuple], fps: float) -> None:
        """Hold the prompt's start up to the last group shown before the guessed one: its last
        <|vision_end|> (a special token, so the ids cannot merge with what follows)."""
        positions = np.concatenate([rebase_t(g.positions_thw, shown[0].first_t) for g in shown])
        ids = self.backend.tokenizer.encode(prompt_head(video_text(positions, fps)))
        vision_end = self.backend.config.tokens.vision_end
        if vision_end not in ids:
            return  # no content block shown yet
        end = len(ids) - ids[::-1].index(vision_end)
        if self._session.hold(ids[:end], torch.cat([self._encoded[key][1] for key in keys])):
            self.prompts_prefilled_ahead += 1

    @property
    def prompts_ahead_used(self) -> int:
        """Answers whose prompt started from the prefix prefilled ahead."""
        return self._session.reused if self._session is not None else 0

    def _encode(self, groups: list[TokenizedGroup]) -> tuple[list[tuple], list[tuple]]:
        """The cache keys of the groups (window start: the first group's first frame) and those
        of the groups it encoded (the ones not cached, in one call); the least recently shown
        keys are evicted."""
        base_t = groups[0].first_t
        keys = [(id(g.canvases), base_t) for g in groups]
        new = [(key, g) for key, g in zip(keys, groups) if key not in self._encoded]
        if new:
            positions = [rebase_t(g.positions_thw, base_t) for _, g in new]
            tokens = self.backend.vision_tokens(vision_input_from([g.canvases for _, g in new], positions))
            counts = [int(content_blocks(torch.from_numpy(p)).sum()) for p in positions]
            for (key, group), part in zip(new, torch.split(tokens, counts), strict=True):
                self._encoded[key] = (group.canvases, part)
            self.groups_encoded += len(new)
        for key in keys:
            self._encoded.move_to_end(key)
        # a question shows <= budget groups: this window, the last one and the guesses encoded ahead
        while len(self._encoded) > (2 + self.ahead_guesses) * (self.budget_canvases + 1):
            evicted, _ = self._encoded.popitem(last=False)
            self._ahead.discard(evicted)
        return keys, [key for key, _ in new]

    def select(self, groups: list[TokenizedGroup], window_s: float) -> list[TokenizedGroup]:
        return window_groups(groups, self.budget_canvases, window_s, self.nominal_fps)

    def fps(self, groups: list[TokenizedGroup]) -> float:
        """The frame rate a prompt's timestamps use for these groups: measured from their header
        stamps, but the last rate used while the measurement stays within FPS_TOLERANCE of it.
        Why: stamps jitter (a publisher's clock, the transport), and a rate that moved by 0.1 %
        changes some of a window's ~100 one-decimal timestamps, so the prompt no longer starts
        with the one prefilled ahead; what that costs is at most FPS_TOLERANCE of the window in
        where an answer's seconds land (50 ms in 10 s)."""
        frames = groups[-1].last_t - groups[0].first_t
        span_ns = groups[-1].last_stamp_ns - groups[0].first_stamp_ns
        if not (frames > 0 and span_ns > 0 and groups[0].first_stamp_ns > 0):
            return self.nominal_fps  # stamps unknown (0) or a single frame
        measured = frames / (span_ns / 1e9)
        if self._fps is None or abs(measured / self._fps - 1.0) > FPS_TOLERANCE:
            self._fps = measured
        return self._fps

    def answer(self, groups: list[TokenizedGroup], image_size: tuple[int, int], query: Query) -> PerceptionResult:
        """groups: the stream's completed groups, oldest first; image_size: source (h, w)."""
        if not groups:
            raise ValueError("no temporal group has been completed yet: no video to answer about")
        query = query.with_id()
        chosen = self.select(groups, query.window_s or self.window_s)
        base_t, base_ns = chosen[0].first_t, chosen[0].first_stamp_ns
        started = time.perf_counter()
        tokens = self.vision_tokens(chosen)
        encode_s = time.perf_counter() - started
        generation = GenerationConfig(max_new_tokens=query.max_new_tokens or self.max_new_tokens,
                                      draft_tokens=self.draft_tokens)
        asked = (query.prompt, query.output_format)
        answer = ask(self.backend, [g.canvases for g in chosen], [rebase_t(g.positions_thw, base_t) for g in chosen],
                     self.fps(chosen), image_size, query.prompt, query.output_format, generation, tokens,
                     self._last_answers.get(asked, ()), self._session)
        self._last_answers[asked] = answer.token_ids
        self._last_answers.move_to_end(asked)
        while len(self._last_answers) > KEPT_ANSWERS:
            self._last_answers.popitem(last=False)
        answer.timings_s["vision_s"] = encode_s  # the groups new to this question
        result = PerceptionResult(query, answer, base_ns, chosen[-1].last_stamp_ns, [g.index for g in chosen],
                                  image_size)
        stamp = lambda seconds: base_ns + int(round(seconds * 1e9))
        parsed = answer.parsed
        if isinstance(parsed, TemporalSegment):
            result.segments = [StampedSegment(query.prompt, stamp(parsed.start_s), stamp(parsed.end_s))]
        elif isinstance(parsed, EventTimes):
            result.segments = [StampedSegment(query.prompt, stamp(t), stamp(t)) for t in parsed.times_s]
        elif isinstance(parsed, Box):
            result.boxes = [parsed]
        elif isinstance(parsed, list) and all(isinstance(track, PointTrack) for track in parsed):
            result.tracks = [StampedTrack(track.track_id, track.label,
                                          [StampedTrackPoint(stamp(p.t_s), p.x, p.y) for p in track.points])
                             for track in parsed]
        elif isinstance(parsed, Trace):
            result.trace = parsed
        return result

