"""Qwen3 with a KV cache, generation, draft tokens, constrained decoding, prompts."""
import dataclasses

import numpy as np
import pytest
import torch

from ov2_ros.model.generate import GenerationConfig, PrefixSession, TorchSession, draft_from, generate
from ov2_ros.model.ov2 import PlaceholderMismatchError
from ov2_ros.model.parsers import OUTPUT_PATTERNS, FrameSize, parse_output
from ov2_ros.model.prompt import encode_prompt, prompt_head, timestamp_runs, video_text
from tests.model.conftest import tiny_model


def test_cached_logits_equal_full_recomputation(tokenizer):
    model = tiny_model(tokenizer)
    ids = torch.randint(10, tokenizer.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model.logits(model.embed(ids, None))
        cache = model.new_cache()
        first = model.logits(model.embed(ids[:, :7], None), cache)
        steps = [model.logits(model.embed(ids[:, i:i + 1], None), cache) for i in range(7, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], 1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == 12


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_kv_cache_generation_equals_full_recomputation(tokenizer, temperature):
    model = tiny_model(tokenizer, seed=3)
    prompt = encode_prompt(tokenizer, "What happens in the video?", None, 30.0).input_ids
    config = GenerationConfig(max_new_tokens=24, temperature=temperature, top_k=40, seed=5)
    cached = generate(TorchSession(model), tokenizer, prompt, None, config)
    full = generate(TorchSession(model, use_cache=False), tokenizer, prompt, None, config)
    assert cached.token_ids == full.token_ids and len(cached.token_ids) > 0
    assert cached.text == tokenizer.decode(cached.token_ids)


def test_generation_stops_at_the_stop_token(tokenizer):
    model = tiny_model(tokenizer, seed=4)
    assert model.config.tokens.end_of_text == 0
    with torch.no_grad():  # all logits equal: greedy takes the first id, <|endoftext|>
        model.lm_head.weight.zero_()
    result = generate(TorchSession(model), tokenizer, [1, 9, 12], None, GenerationConfig(max_new_tokens=10))
    assert result.stop_reason == "stop_token" and result.token_ids == []
    free = generate(TorchSession(tiny_model(tokenizer, seed=4)), tokenizer, [1, 9, 12], None, GenerationConfig(max_new_tokens=7))
    assert len(free.token_ids) <= 7


FRAME = FrameSize(640, 480)


@pytest.mark.parametrize("output_format", sorted(OUTPUT_PATTERNS))
@pytest.mark.parametrize("seed", [0, 1])
def test_constrained_decoding_always_parses(tokenizer, output_format, seed):
    model = tiny_model(tokenizer, seed=seed)  # random weights: unconstrained it babbles
    prompt = encode_prompt(tokenizer, "When does the gripper grasp the cube?", None, 30.0).input_ids
    config = GenerationConfig(max_new_tokens=4, temperature=0.0 if seed == 0 else 1.0, seed=seed,
                              output_format=output_format)
    result = generate(TorchSession(model), tokenizer, prompt, None, config)
    assert result.stop_reason == "format_complete", result.text
    parse_output(result.text, output_format, FRAME)  # raises if it does not parse


def test_prompt_has_one_timestamped_block_per_run_and_skips_padding(tokenizer):
    positions = np.array([[0, 0, 0]] * 4 + [[0, 0, 2]] * 4 + [[-1, -1, -1]] * 4 + [[15, 2, 2]] * 4
                         + [[30, 0, 0]] * 4, dtype=np.int32)
    assert timestamp_runs(positions) == [(0, 2), (15, 1), (30, 1)]
    text = video_text(positions, fps=30.0)
    assert text == ("<0.0 seconds><|vision_start|><|image_pad|><|image_pad|><|vision_end|>\n"
                    "<0.5 seconds><|vision_start|><|image_pad|><|vision_end|>\n"
                    "<1.0 seconds><|vision_start|><|image_pad|><|vision_end|>\n")
    prompt = encode_prompt(tokenizer, "What happens?", positions, 30.0)
    assert prompt.vision_tokens == 4 == prompt.input_ids.count(tokenizer.token_ids().image_pad)
    assert prompt.text.endswith("What happens?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(PlaceholderMismatchError):
        encode_prompt(tokenizer, "Look: <|image_pad|>", positions, 30.0)


def test_vision_tokens_fill_the_placeholders_in_order_and_counts_must_match(tokenizer):
    model = tiny_model(tokenizer)
    pad = tokenizer.token_ids().image_pad
    ids = torch.tensor([[1, pad, pad, 9]])
    tokens = torch.randn(2, 48)
    embeds = model.embed(ids, tokens)
    torch.testing.assert_close(embeds[0, 1:3], tokens)
    with pytest.raises(PlaceholderMismatchError, match="2 <|image_pad|> placeholders but the video gave 3"):
        model.embed(ids, torch.randn(3, 48))


def test_packed_sequences_equal_each_sequence_alone(tokenizer):
    model = tiny_model(tokenizer, seed=6)
    g = torch.Generator().manual_seed(2)
    first, second = torch.randint(10, 300, (1, 9), generator=g), torch.randint(10, 300, (1, 14), generator=g)
    segments = torch.tensor([[0] * 9 + [1] * 14])
    with torch.no_grad():
        packed = model.logits(model.embed(torch.cat([first, second], 1), None), segment_ids=segments)
        alone = torch.cat([model.logits(model.embed(first, None)), model.logits(model.embed(second, None))], 1)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    # Rows packed differently (each row's runs attend apart): the second row one sequence, then padding.
    two_rows = torch.cat([torch.cat([first, second], 1), torch.cat([second, torch.zeros(1, 9, dtype=torch.long)], 1)])
    with torch.no_grad():
        both = model.logits(model.embed(two_rows, None), segment_ids=torch.tensor([[0] * 9 + [1] * 14, [0] * 14 + [-1] * 9]))
    torch.testing.assert_close(both[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1, :14], alone[0, 9:], rtol=1e-5, atol=1e-5)
    # Side by side, one sequence a row padded to the longest (causal attention, no mask): the
    # sequences' logits are still each one's alone, and the answers' logits_at picks them out.
    filler = torch.zeros(1, 5, dtype=torch.long)
    rows = torch.cat([torch.cat([first, filler], 1), second])
    side = torch.tensor([[0] * 9 + [-1] * 5, [1] * 14])
    at = torch.zeros(2, 14, dtype=torch.bool)
    at[0, 3], at[1, 10] = True, True
    with torch.no_grad():
        side_by_side = model(rows, None, side)
        picked = model(rows, None, side, logits_at=at)
    torch.testing.assert_close(side_by_side[0, :9], alone[0, :9], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(side_by_side[1], alone[0, 9:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(picked, torch.stack([alone[0, 3], alone[0, 9 + 10]]), rtol=1e-5, atol=1e-5)


def test_constrained_event_lists_strictly_increase(tokenizer):
    from ov2_ros.model.generate import FormatConstraint
    constraint = FormatConstraint("events", tokenizer)
    texts = tokenizer.token_texts()
    comma = next(i for i, t in enumerate(texts) if t == ",")
    close = next(i for i, t in enumerate(texts) if t == "]")
    assert constraint.allows("[1.50, 2.25", comma) and constraint.allows("[1.50, 2.25", close)
    assert not constraint.allows("[1.50, 1.25", comma) and not constraint.allows("[1.50, 1.50", close)
    # A started number that can no longer exceed the previous one is refused too (no dead end).
    one = next(i for i, t in enumerate(texts) if t == "1")
    assert constraint.allows("[12.50, ", one) and not constraint.allows("[12.50, 1.2", one)
    bounded = FormatConstraint("events", tokenizer, max_time_s=12.0)
    three = next(i for i, t in enumerate(texts) if t == "3")
    assert bounded.allows("[10.50, 1", one) and not bounded.allows("[10.50, 1", three)  # 11.xx fits, 13.xx does not
    comma_space = "[12.50, 12.99"
    tight = FormatConstraint("events", tokenizer, max_time_s=12.99)
    assert tight.allows(comma_space, close) and not tight.allows(comma_space, comma)  # nothing fits after 12.99


def _random_walk(constraint, texts: list[str], candidates: list[int], rng) -> str:
    """Allowed tokens picked at random until the format is complete; fails on a dead end."""
    text = ""
    while not constraint.complete(text):
        allowed = [i for i in candidates if constraint.allows(text, i)]
        assert allowed, text
        text += texts[int(rng.choice(allowed))]
    return text


def test_constrained_events_never_reach_a_dead_end(tokenizer):
    """Random walks through the allowed tokens always find a way on, and end in a parseable list."""
    from ov2_ros.model.generate import FormatConstraint
    rng = np.random.default_rng(0)
    texts = tokenizer.token_texts()
    useful = [i for i, t in enumerate(texts) if t and set(t) <= set("0123456789., []")]
    for walk in range(15):
        constraint = FormatConstraint("events", tokenizer, max_time_s=float(rng.uniform(0.5, 6.0)))
        text = _random_walk(constraint, texts, useful, rng)
        times = parse_output(text, "events", FRAME).times_s
        assert list(times) == sorted(set(times)) and all(t <= constraint.max_time_s for t in times)


def test_constrained_segments_end_after_they_start_within_the_video(tokenizer):
    """Random walks: a segment's times never pass max_time_s, its end is never before its start,
    and a walk never finds itself without an allowed token."""
    from ov2_ros.model.generate import FormatConstraint
    rng = np.random.default_rng(1)
    texts = tokenizer.token_texts()
    useful = [i for i, t in enumerate(texts) if t]
    for walk in range(15):
        constraint = FormatConstraint("segment", tokenizer, max_time_s=float(rng.uniform(0.3, 4.0)))
        text = _random_walk(constraint, texts, useful, rng)
        segment = parse_output(text, "segment", FRAME)
        assert 0 <= segment.start_s <= segment.end_s <= constraint.max_time_s, text
    bounded = FormatConstraint("segment", tokenizer, max_time_s=2.5)
    three = next(i for i, t in enumerate(texts) if t == "3")
    one = next(i for i, t in enumerate(texts) if t == "1")
    assert not bounded.allows("The event happens in ", three) and bounded.allows("The event happens in ", one)
    assert not bounded.allows("The event happens in 2.0 - ", one)  # an end before the start


def test_constrained_boxes_never_have_a_far_corner_before_the_near_one(tokenizer):
    """Random walks: x2 >= x1 and y2 >= y1 always, and never a dead end (even from 999)."""
    from ov2_ros.model.generate import FormatConstraint
    rng = np.random.default_rng(2)
    texts = tokenizer.token_texts()
    useful = [i for i, t in enumerate(texts) if t and set(t) <= set("0123456789, []")]
    constraint = FormatConstraint("box", tokenizer)
    for walk in range(30):
        text = _random_walk(constraint, texts, useful, rng)
        x1, y1, x2, y2 = (int(v) for v in text.strip("[]").split(", "))
        assert x2 >= x1 and y2 >= y1, text
    for near in ("[999, 0, ", "[642, 484, "):
        assert _random_walk(constraint, texts, useful, rng) and any(
            constraint.allows(near, i) for i in useful)
    digit = {t: i for i, t in enumerate(texts) if len(t) == 1 and t.isdigit()}
    assert constraint.allows("[642, 484, ", digit["6"]) and constraint.allows("[642, 484, 6", digit["4"])
    assert not constraint.allows("[642, 484, ", digit["5"]) and not constraint.allows("[642, 484, 6", digit["3"])
    assert constraint.allows("[642, 484, 642, ", digit["4"]) and not constraint.allows("[642, 484, 642, 48", digit["3"])


def test_draft_tokens_come_from_the_nearest_match_of_the_longest_tail():
    reference = [5, 6, 7, 8, 9, 5, 6, 10, 11, 12]
    # tail (.., 5, 6): found twice; the occurrence ending nearest to where the writing ends wins
    assert draft_from([1, 5, 6], reference, 3) == [7, 8, 9]
    assert draft_from([1, 2, 3, 4, 9, 9, 5, 6], reference, 3) == [10, 11, 12]
    # the longest tail found decides: (7, 5, 6) nowhere, (5, 6) twice, so not the lone 6's
    assert draft_from([7, 5, 6], [6, 13, 5, 6, 14], 2) == [14]
    # not in the reference: the answer's own earlier tokens, latest occurrence first
    assert draft_from([40, 41, 42, 40, 43, 40], reference, 2) == [43, 40]
    assert draft_from([40, 41], reference, 4) == []
    assert draft_from([5], reference, 0) == []


@pytest.mark.parametrize("output_format", [None, "trace2d", "events"])
def test_drafted_generation_equals_step_by_step_greedy_and_saves_passes(tokenizer, output_format):
    model = tiny_model(tokenizer, seed=6)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", None, 30.0).input_ids
    plain = GenerationConfig(max_new_tokens=40, output_format=output_format, max_time_s=20.0)
    stepwise = generate(TorchSession(model), tokenizer, prompt, None, plain)
    drafted = dataclasses.replace(plain, draft_tokens=6)
    assert stepwise.decoder_passes == len(stepwise.token_ids) - (stepwise.stop_reason != "stop_token")
    other_prompt = encode_prompt(tokenizer, "When does the gripper grasp the cube?", None, 30.0).input_ids
    other = generate(TorchSession(model), tokenizer, other_prompt, None, plain).token_ids
    noise = torch.randint(10, tokenizer.vocab_size, (60,), generator=torch.Generator().manual_seed(1)).tolist()
    for reference in (stepwise.token_ids, other, noise, []):
        result = generate(TorchSession(model), tokenizer, prompt, None, drafted, reference)
        assert result.token_ids == stepwise.token_ids and result.stop_reason == stepwise.stop_reason
        assert result.draft_accepted <= result.draft_proposed
        # every pass writes one token of its own plus the guesses it confirmed
        assert result.decoder_passes + result.draft_accepted >= len(result.token_ids) - 1
    # the answer itself as the reference: all but the first token confirmed, a pass or two in all
    again = generate(TorchSession(model), tokenizer, prompt, None, drafted, stepwise.token_ids)
    assert again.draft_accepted == len(stepwise.token_ids) - 1 - (again.decoder_passes - 1)
    assert again.decoder_passes <= -(-(len(stepwise.token_ids) - 1) // 7) + 1 < stepwise.decoder_passes
    # sampling never drafts
    sampled = generate(TorchSession(model), tokenizer, prompt, None,
                       dataclasses.replace(drafted, temperature=0.8, seed=2), stepwise.token_ids)
    assert sampled.draft_proposed == 0


def test_a_truncated_cache_continues_as_if_the_dropped_tokens_were_never_seen(tokenizer):
    model = tiny_model(tokenizer, seed=7)
    ids = torch.randint(10, tokenizer.vocab_size, (9,), generator=torch.Generator().manual_seed(3)).tolist()
    session = TorchSession(model)
    session.prefill(ids[:5], None)
    session.extend([ids[5], 77, 78, 79])
    session.truncate(6)
    assert session.length == 6
    continued = session.extend(ids[6:])
    straight = TorchSession(model)
    straight.prefill(ids[:6], None)
    torch.testing.assert_close(continued, straight.extend(ids[6:]), rtol=1e-5, atol=1e-5)


def test_a_held_prompt_start_gives_a_whole_prefills_logits_and_only_for_the_same_start(tokenizer):
    # A live node prefills the start of its next prompt while idle: the system text and the
    # vision tokens of every group but the newest. The prompt that follows must give the logits
    # of a whole prefill, and a prompt that starts otherwise must not use the held cache.
    model = tiny_model(tokenizer, seed=8)
    pad, vision_end = tokenizer.token_ids().image_pad, tokenizer.token_ids().vision_end
    positions = np.array([[0, 0, 0]] * 8 + [[15, 0, 2]] * 4 + [[30, 2, 0]] * 8, dtype=np.int32)
    tokens = torch.randn(5, 48, generator=torch.Generator().manual_seed(1))
    prompt = encode_prompt(tokenizer, "What happens?", positions, 30.0).input_ids
    head = tokenizer.encode(prompt_head(video_text(positions[:12], 30.0)))
    start = head[:len(head) - head[::-1].index(vision_end)]  # up to the second group's last block
    assert prompt[:len(start)] == start and start.count(pad) == 3

    def whole(ids, vision):
        return TorchSession(model).prefill(ids, vision)

    session = PrefixSession(lambda: TorchSession(model))
    session.hold(start, tokens[:3])
    torch.testing.assert_close(session.prefill(prompt, tokens), whole(prompt, tokens), rtol=1e-5, atol=1e-5)
    assert session.reused == 1 and session.length == len(prompt)
    # an answer is appended, then the next question on the same start reuses it again
    generate(session, tokenizer, prompt, tokens, GenerationConfig(max_new_tokens=5))
    other = encode_prompt(tokenizer, "Where is the cube?", positions, 30.0).input_ids
    torch.testing.assert_close(session.prefill(other, tokens), whole(other, tokens), rtol=1e-5, atol=1e-5)
    assert session.reused == 3
    # other vision tokens in the held part, or other ids: a whole prefill on a new session
    changed = tokens.clone()
    changed[1] += 1.0
    torch.testing.assert_close(session.prefill(prompt, changed), whole(prompt, changed), rtol=1e-5, atol=1e-5)
    shifted = encode_prompt(tokenizer, "What happens?", positions, 25.0).input_ids  # other timestamps
    torch.testing.assert_close(session.prefill(shifted, tokens), whole(shifted, tokens), rtol=1e-5, atol=1e-5)
    assert session.reused == 3
    # the held start survived those: the first prompt still starts from it
    torch.testing.assert_close(session.prefill(prompt, tokens), whole(prompt, tokens), rtol=1e-5, atol=1e-5)
    assert session.reused == 4



def test_several_held_starts_each_serve_their_prompts_the_longest_first_and_the_least_recent_go(tokenizer):
    # A node holds one prompt start per guess of its next window: whichever the next prompt
    # begins with serves it (the longest of those that do), and holding more than the capacity
    # drops the start held or used least recently.
    model = tiny_model(tokenizer, seed=8)
    vision_end = tokenizer.token_ids().vision_end
    positions = np.array([[0, 0, 0]] * 8 + [[15, 0, 2]] * 4 + [[30, 2, 0]] * 8, dtype=np.int32)
    tokens = torch.randn(5, 48, generator=torch.Generator().manual_seed(2))

    def start(fps, groups):  # up to the last <|vision_end|> of the first `groups` groups
        head = tokenizer.encode(prompt_head(video_text(positions[:[8, 12][groups - 1]], fps)))
        return head[:len(head) - head[::-1].index(vision_end)]

    prompts = {fps: encode_prompt(tokenizer, "What happens?", positions, fps).input_ids for fps in (30.0, 25.0, 20.0)}
    starts = {fps: start(fps, 2) for fps in prompts}  # the second group's timestamp differs
    assert len({tuple(ids) for ids in starts.values()}) == 3
    assert all(prompts[fps][:len(starts[fps])] == starts[fps] for fps in prompts)
    first_group = start(30.0, 1)  # "0.0s", the same at any rate

    def whole(ids, vision=tokens):
        return TorchSession(model).prefill(ids, vision)

    session = PrefixSession(lambda: TorchSession(model), capacity=2)
    assert session.hold(starts[30.0], tokens[:3]) and session.hold(starts[25.0], tokens[:3])
    assert not session.hold(starts[30.0], tokens[:3])  # held already: now the most recent
    for fps in (25.0, 30.0):
        torch.testing.assert_close(session.prefill(prompts[fps], tokens), whole(prompts[fps]), rtol=1e-5, atol=1e-5)
    assert session.reused == 2
    # a shorter start that all three prompts begin with: the 25 fps start (least recent) goes
    assert session.hold(first_group, tokens[:2])
    assert [held.ids for held in session.held] == [starts[30.0], first_group]
    # the 30 fps prompt begins with both: the longer serves it
    torch.testing.assert_close(session.prefill(prompts[30.0], tokens), whole(prompts[30.0]), rtol=1e-5, atol=1e-5)
    assert session.reused == 3 and session.active is session.held[-1].session and session.held[-1].ids == starts[30.0]
    # the others, whose own starts are not held, start from the shorter one
    for fps in (25.0, 20.0):
        torch.testing.assert_close(session.prefill(prompts[fps], tokens), whole(prompts[fps]), rtol=1e-5, atol=1e-5)
    assert session.reused == 5
    # other vision tokens in the first group: no held start fits, a whole prefill
    changed = tokens.clone()
    changed[0] += 1.0
    torch.testing.assert_close(session.prefill(prompts[30.0], changed), whole(prompts[30.0], changed),
                               rtol=1e-5, atol=1e-5)
    assert session.reused == 5
    with pytest.raises(ValueError, match="at least one"):
        PrefixSession(lambda: TorchSession(model), capacity=0)

def test_greedy_constrained_pick_is_the_most_likely_allowed_token():
    """Where the most likely token is allowed it is taken without sorting; where it is not, the
    next most likely allowed one, and only a vocabulary with no allowed token is an error."""
    from ov2_ros.model.generate import _pick
    logits = torch.tensor([0.1, 3.0, -1.0, 2.5, 0.7])
    greedy = GenerationConfig()
    asked = []

    def only(tokens):
        def allowed(token):
            asked.append(token)
            return token in tokens
        return allowed

    assert _pick(logits, greedy, None, only({1, 3})) == 1 and asked == [1]
    assert _pick(logits, greedy, None, only({0, 3})) == 3
    assert _pick(logits, greedy, None, only({0, 4})) == 4
    assert _pick(logits, greedy, None, None) == 1
    with pytest.raises(RuntimeError, match="no token"):
        _pick(logits, greedy, None, only(set()))
