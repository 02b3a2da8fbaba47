"""Text generation with a KV cache: greedy or sampled, stop tokens, a token budget, and
constrained decoding that guarantees the answer parses in a requested format.

Constrained decoding keeps the generated text a prefix of the format's strict pattern
(parsers.OUTPUT_PATTERNS, checked with the `regex` module's partial matching): at each step the
most likely token (greedy) or a sampled token whose text keeps the prefix valid is taken; the
stop token is allowed only once the whole pattern matches, and every pattern ends in a literal,
so a complete answer stops there. Patterns are bounded and every allowed token adds at least one
character, so the answer completes within parsers.OUTPUT_MAX_CHARS tokens: the budget is raised
to that when a format is requested. Times stay within the video (`max_time_s`): event lists
increase strictly, a segment ends at or after its start; a list can always close with "]" and a
segment's end can always equal its start, so this never leaves the model without a valid token.
Boxes likewise: x2 >= x1 and y2 >= y1 (a far corner can always equal the near one).

Draft tokens (greedy decoding, `draft_tokens` > 0, a session that can `extend`): instead of
one decoder step per token, the loop guesses the next few tokens and has the model check them
all in one pass; it keeps the guesses up to the first the model would not have picked itself,
and that pick (prompt lookup decoding). Guesses are copied from a reference, the last answer to
the same question (a standing query re-asks it on every new group, and answers change little)
or the answer so far (traces repeat their punctuation): where the last few tokens written occur
in it, what followed them there. On a CPU a pass over 9 tokens costs little more than over one,
so every token guessed right is a decoder step saved. The answer is the one step-by-step greedy
decoding gives, up to the rounding of a batched pass (a near tie between two digits may fall the
other way; ONNX Runtime's int8 precision checks drafts in fp32, runtime/onnxruntime_backend.py).

The loop is written once, against `DecodingSession` (prefill a prompt, then one token at a
time, or several); every runtime backend (PyTorch, ONNX Runtime, TensorRT) only provides sessions.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import regex
import torch

from ov2_ros.model.config import TokenIds
from ov2_ros.model.ov2 import Ov2Model
from ov2_ros.model.parsers import OUTPUT_MAX_CHARS, OUTPUT_PATTERNS
from ov2_ros.model.prompt import TextTokenizer


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: whole vocabulary
    seed: int | None = None
    output_format: str | None = None  # a key of parsers.OUTPUT_PATTERNS, or None for free text
    max_time_s: float | None = None  # constrained times (events, segments) stay below this: the video's end
    draft_tokens: int = 0  # >0: guess up to this many tokens per decoder pass (greedy only; module doc)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    stop_reason: str  # "stop_token", "format_complete" or "max_tokens"
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    timings: dict = field(default_factory=dict)
    decoder_passes: int = 0  # after the prefill: one per step, or per checked draft
    draft_proposed: int = 0  # tokens guessed
    draft_accepted: int = 0  # of them, the ones the model confirmed

    @property
    def decode_tokens_per_s(self) -> float:
        return (len(self.token_ids) - 1) / self.decode_s if len(self.token_ids) > 1 and self.decode_s > 0 else 0.0


@dataclass(frozen=True)
class _TimeRule:
    """How the times of one format are written and ordered."""

    finished: regex.Pattern  # a number that is complete (what follows it is not part of it)
    decimals: int
    strictly_increasing: bool  # events: each after the last; a segment: end >= start


_TIME_RULES = {
    "events": _TimeRule(regex.compile(r"(\d+\.\d{2})(?=,|\])"), 2, True),
    "segment": _TimeRule(regex.compile(r"(\d+\.\d)(?= )"), 1, False),
}
_PARTIAL_NUMBER = regex.compile(r"(\d+\.?\d*)$")


def _completion_ranges(partial: str, decimals: int) -> list[tuple[float, float]]:
    """Intervals of the times (at most 4 integer digits, `decimals` decimals) a started number
    can still become: "1" with 2 decimals -> 1.00-1.99, 10.00-19.99, 100.00-199.99, 1000.00-1999.99."""
    whole, dot, digits = partial.partition(".")
    if dot:
        low = float(f"{whole}.{digits.ljust(decimals, '0')}")
        return [(low, float(f"{whole}.{digits.ljust(decimals, '9')}"))]
    top = 1.0 - 10.0 ** -decimals
    return [(float(whole + "0" * extra), float(whole + "9" * extra) + top) for extra in range(0, 5 - len(whole))]


def _times_allowed(text: str, max_time_s: float | None, rule: _TimeRule) -> bool:
    """Times stay at or below max_time_s and in order (strictly for events), and whatever has
    been started can still be finished that way (so the answer can always go on or close)."""
    done = [float(v) for v in rule.finished.findall(text)]
    out_of_order = (lambda a, b: a >= b) if rule.strictly_increasing else (lambda a, b: a > b)
    if any(out_of_order(a, b) for a, b in zip(done, done[1:])):
        return False
    ceiling = float("inf") if max_time_s is None else max_time_s
    if done and done[-1] > ceiling:
        return False
    floor = done[-1] if done else -1.0
    partial = _PARTIAL_NUMBER.search(text)
    if partial:
        reachable = (lambda high: high > floor) if rule.strictly_increasing else (lambda high: high >= floor)
        return any(reachable(high) and low <= ceiling for low, high in _completion_ranges(partial.group(1), rule.decimals))
    if rule.strictly_increasing and text.rstrip().endswith(","):  # committed to one more, later, number
        return round(floor + 10.0 ** -rule.decimals, rule.decimals) <= ceiling
    return True


_BOX_NUMBER = regex.compile(r"\d+")


def _box_allowed(text: str) -> bool:
    """"[x1, y1, x2, y2": x2 >= x1 and y2 >= y1, or, for a number still being written (at most 3
    digits), still reachable."""
    values = _BOX_NUMBER.findall(text)
    for far, near in ((2, 0), (3, 1)):
        if len(values) > far:
            writing = far == len(values) - 1 and text[-1].isdigit()
            highest = int(values[far].ljust(3, "9")) if writing else int(values[far])
            if highest < int(values[near]):
                return False
    return True


class FormatConstraint:
    """Which next tokens keep the text a prefix of one output format."""

    def __init__(self, output_format: str, tokenizer: TextTokenizer, max_time_s: float | None = None):
        if output_format not in OUTPUT_PATTERNS:
            raise ValueError(f"unknown output format {output_format!r}; known: {sorted(OUTPUT_PATTERNS)}")
        self.output_format = output_format
        self.pattern = regex.compile(OUTPUT_PATTERNS[output_format])
        self.texts = tokenizer.token_texts()
        self.max_tokens = OUTPUT_MAX_CHARS[output_format]
        self.max_time_s = max_time_s

    def allows(self, prefix: str, token: int) -> bool:
        piece = self.texts[token] if token < len(self.texts) else ""
        if not piece or self.pattern.fullmatch(prefix + piece, partial=True) is None:
            return False
        rule = _TIME_RULES.get(self.output_format)
        if rule is not None:
            return _times_allowed(prefix + piece, self.max_time_s, rule)
        if self.output_format == "box":
            return _box_allowed(prefix + piece)
        return True

    def complete(self, text: str) -> bool:
        return self.pattern.fullmatch(text) is not None


def _pick(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None,
          allowed=None) -> int:
    """Next token from (vocab,) logits; `allowed(token) -> bool` filters when given."""
    if config.temperature <= 0:
        best = int(logits.argmax())
        if allowed is None or allowed(best):  # most steps: no need to sort the vocabulary
            return best
        for token in torch.argsort(logits, descending=True).tolist():
            if allowed(token):
                return token
        raise RuntimeError("no token in the vocabulary continues the required format")
    scores = logits.float() / config.temperature
    if config.top_k:
        threshold = torch.topk(scores, min(config.top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    while True:
        if float(probabilities.sum()) <= 0:
            if allowed is None:
                raise RuntimeError("sampling found no token with probability > 0")
            # Every sampled candidate was refused: fall back to the best allowed token.
            return _pick(logits, GenerationConfig(temperature=0.0), None, allowed)
        token = int(torch.multinomial(probabilities, 1, generator=generator))
        if allowed is None or allowed(token):
            return token
        probabilities[token] = 0.0


class DecodingSession(Protocol):
    """One sequence being generated. `tokens`: the model's special ids."""

    tokens: TokenIds

    def prefill(self, input_ids: list[int], vision_tokens: torch.Tensor | None) -> torch.Tensor:
        """Run the prompt (vision tokens at its <|image_pad|> ids) -> next-token logits (vocab,)."""

    def step(self, token: int) -> torch.Tensor:
        """Append one token -> next-token logits (vocab,)."""


class ExtendingSession(DecodingSession, Protocol):
    """A session that can also append several tokens in one pass and forget the newest ones
    (what draft tokens need, and a prompt whose start is already in the cache: PrefixSession)."""

    can_extend: bool  # False where the backend lacks the graph for it: one token at a time
    length: int  # positions in the KV cache

    def extend(self, tokens: list[int], vision_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Append tokens -> (len(tokens), vocab) logits: after each of them, what comes next.
        With vision_tokens, they replace the embeddings at the tokens' <|image_pad|> ids (one
        each: a prompt's rest); without, every id is embedded as it is (generated tokens)."""

    def truncate(self, length: int) -> None:
        """Keep the first `length` positions of the cache."""


class TorchSession:
    """A DecodingSession on the PyTorch model, with its KV cache (or, use_cache=False, recomputing
    the whole sequence every step: the reference the cache is checked against)."""

    can_extend = True

    def __init__(self, model: Ov2Model, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.tokens = model.config.tokens
        self.cache = model.new_cache() if use_cache else None
        self.embeds: torch.Tensor | None = None  # (1, L, hidden), kept only without a cache
        self.device = model.lm_head.weight.device

    @torch.inference_mode()
    def prefill(self, input_ids, vision_tokens):
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
        embeds = self.model.embed(ids, None if vision_tokens is None else vision_tokens.to(self.device))  # (1, L, hidden)
        self.embeds = None if self.use_cache else embeds
        return self.model.logits(embeds, self.cache)[0, -1].cpu()  # the loop picks tokens on the CPU

    @property
    def length(self) -> int:
        return self.cache.length if self.use_cache else self.embeds.shape[1]

    def step(self, token):
        return self.extend([token])[-1]

    @torch.inference_mode()
    def extend(self, tokens, vision_tokens=None):
        ids = torch.tensor([tokens], device=self.device)
        if vision_tokens is None:  # generated tokens are embedded as they are, placeholders too
            embeds = self.model.language_model.embed_tokens(ids)  # (1, n, hidden)
        else:
            embeds = self.model.embed(ids, vision_tokens.to(self.device))
        if self.use_cache:
            return self.model.logits(embeds, self.cache)[0].cpu()  # (n, vocab)
        self.embeds = torch.cat([self.embeds, embeds], dim=1)
        return self.model.logits(self.embeds)[0, -len(tokens):].cpu()

    def truncate(self, length):
        if self.use_cache:
            self.cache.truncate(length)
        else:
            self.embeds = self.embeds[:, :length]


@dataclass
class _HeldStart:
    session: ExtendingSession
    ids: list[int]
    vision_tokens: torch.Tensor | None  # those at the ids' <|image_pad|> ids

    @property
    def vision_count(self) -> int:
        return 0 if self.vision_tokens is None else int(self.vision_tokens.shape[0])

    def vision_starts(self, vision_tokens: torch.Tensor | None) -> bool:
        """The held vision tokens are the first of these (always, where none are held)."""
        if not self.vision_count:
            return True
        return (vision_tokens is not None and vision_tokens.shape[0] >= self.vision_count
                and torch.equal(vision_tokens[:self.vision_count], self.vision_tokens))

    def is_start_of(self, input_ids: list[int], vision_tokens: torch.Tensor | None) -> bool:
        size = len(self.ids)
        return len(input_ids) > size and input_ids[:size] == self.ids and self.vision_starts(vision_tokens)


class PrefixSession:
    """An ExtendingSession whose prompt may start from a prefix prefilled earlier (`hold`, e.g.
    while a live node waits for its next group, one prefix per guess of what comes): a prefill
    whose ids and vision tokens begin with held ones (the longest, where several do) runs only
    the rest, through `extend`, on the session that holds them (which keeps them for the next
    prompt: what an answer appended is truncated away). Any other prompt is prefilled whole on a
    new session, and the held prefixes stay. At most `capacity` prefixes are held, the least
    recently held or used dropped first. The logits are those of a whole prefill, up to the
    rounding of splitting one pass in two (and of int8 activation scales, which are per pass,
    where the backend quantises)."""

    can_extend = True

    def __init__(self, new_session: Callable[[], ExtendingSession], capacity: int = 1):
        if capacity < 1:
            raise ValueError("a PrefixSession holds at least one prefix")
        self.new_session, self.capacity = new_session, capacity
        self.active = new_session()  # the session of the prompt being generated
        if not self.active.can_extend:
            raise ValueError("holding a prompt's start needs a session that can extend")
        self.tokens = self.active.tokens
        self.held: list[_HeldStart] = []  # least recently held or used first
        self.reused = 0  # prefills that started from a held prefix

    def hold(self, input_ids: list[int], vision_tokens: torch.Tensor | None) -> bool:
        """Prefill the start of a prompt to come: ids (vision tokens at its <|image_pad|> ids).
        False: that start is held already (it becomes the most recent), nothing to do."""
        for held in self.held:
            # the same ids have as many <|image_pad|> ids, so the same count of vision tokens
            if held.ids == input_ids and held.vision_starts(vision_tokens):
                self.held.remove(held)
                self.held.append(held)
                return False
        session = self.new_session()
        session.prefill(input_ids, vision_tokens)
        self.held.append(_HeldStart(session, list(input_ids), vision_tokens))
        del self.held[:-self.capacity]
        return True

    def _start_of(self, input_ids, vision_tokens) -> _HeldStart | None:
        starts = [held for held in self.held if held.is_start_of(input_ids, vision_tokens)]
        return max(starts, key=lambda held: len(held.ids), default=None)

    def prefill(self, input_ids, vision_tokens):
        held = self._start_of(input_ids, vision_tokens)
        if held is None:
            self.active = self.new_session()
            return self.active.prefill(input_ids, vision_tokens)
        self.held.remove(held)
        self.held.append(held)
        self.active = held.session
        self.active.truncate(len(held.ids))
        self.reused += 1
        rest = None if vision_tokens is None else vision_tokens[held.vision_count:]  # (maybe 0, hidden)
        return self.active.extend(input_ids[len(held.ids):], rest)[-1]

    @property
    def length(self) -> int:
        return self.active.length

    def step(self, token):
        return self.active.step(token)

    def extend(self, tokens, vision_tokens=None):
        return self.active.extend(tokens, vision_tokens)

    def truncate(self, length):
        self.active.truncate(length)


LOOKUP_NGRAM = 3  # the longest run of last tokens looked up in the reference


def draft_from(written: Sequence[int], reference: Sequence[int], count: int) -> list[int]:
    """Up to `count` tokens guessed to follow `written`: the tokens after its last n tokens
    (n = 3, then 2, then 1) where they occur in `reference`, at the occurrence nearest to where
    `written` ends (the reference is an answer of the same shape), else where they occurred
    earlier in `written` itself, at the latest occurrence."""
    for n in range(min(LOOKUP_NGRAM, len(written)), 0, -1):
        tail = list(written[-n:])
        ends = [i + n for i in range(len(reference) - n) if list(reference[i:i + n]) == tail]
        if ends:
            end = min(ends, key=lambda e: abs(e - len(written)))
            return list(reference[end:end + count])
        for i in range(len(written) - n - 1, -1, -1):
            if list(written[i:i + n]) == tail:
                return list(written[i + n:i + n + count])
    return []


def generate(session: DecodingSession, tokenizer: TextTokenizer, input_ids: list[int],
             vision_tokens: torch.Tensor | None, config: GenerationConfig = GenerationConfig(),
             reference: Sequence[int] = ()) -> GenerationResult:
    """config.draft_tokens > 0 drafts where the session is an ExtendingSession that can_extend
    (greedy only); reference: token ids to copy draft tokens from, such as the last answer to
    the same question."""
    stop_ids = {session.tokens.im_end, session.tokens.end_of_text}
    drafting = (config.draft_tokens > 0 and config.temperature <= 0 and getattr(session, "can_extend", False))
    reference = [token for token in reference if token not in stop_ids]
    constraint = (FormatConstraint(config.output_format, tokenizer, config.max_time_s)
                  if config.output_format else None)
    budget = max(config.max_new_tokens, constraint.max_tokens if constraint else 0)
    generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None

    started = time.perf_counter()
    logits = session.prefill(input_ids, vision_tokens)
    prefill_s = time.perf_counter() - started

    started = time.perf_counter()
    generated: list[int] = []
    text = ""
    stop_reason = None if budget > 0 else "max_tokens"
    passes = proposed = accepted = 0

    def pick(logits: torch.Tensor) -> int:
        allowed = (lambda token: constraint.allows(text, token)) if constraint is not None else None
        return _pick(logits, config, generator, allowed)

    def write(token: int) -> None:
        """Append a picked token; stop_reason says when the answer has ended."""
        nonlocal text, stop_reason
        if token in stop_ids:
            stop_reason = "stop_token"
            return
        generated.append(token)
        if constraint is not None:  # the constraint reads the text so far; ASCII patterns, so pieces add up
            text += constraint.texts[token]
            if constraint.complete(text):  # nothing can follow: stop without another decoder step
                stop_reason = "format_complete"
        if stop_reason is None and len(generated) >= budget:
            stop_reason = "max_tokens"

    token = pick(logits) if stop_reason is None else None
    while stop_reason is None:
        write(token)
        if stop_reason is not None:
            break
        passes += 1
        draft = draft_from(generated, reference, min(config.draft_tokens, budget - len(generated))) if drafting else []
        if not draft:
            token = pick(session.step(token))
            continue
        kept = session.length + 1  # the cache up to `token`
        rows = session.extend([token, *draft])  # (1 + len(draft), vocab): what follows each
        proposed += len(draft)
        token = None
        for row, guess in zip(rows, draft):
            choice = pick(row)
            if choice != guess:  # the model's own pick is the next token
                token = choice
                break
            write(guess)
            accepted += 1
            kept += 1
            if stop_reason is not None:
                break
        if stop_reason is None:
            session.truncate(kept)
            if token is None:  # every guess confirmed: what follows the whole draft
                token = pick(rows[-1])
    return GenerationResult(text=tokenizer.decode(generated), token_ids=generated,
                            stop_reason=stop_reason, prompt_tokens=len(input_ids),
                            prefill_s=prefill_s, decode_s=time.perf_counter() - started, decoder_passes=passes,
                            draft_proposed=proposed, draft_accepted=accepted)
