"""Live perception: which groups a question shows, and each group encoded once."""
import numpy as np
import pytest
import torch

from ov2_ros.model.generate import GenerationConfig
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.runtime.answer import ask
from ov2_ros.runtime.backend import TorchBackend
from ov2_ros.runtime.perception import Perception, Query
from ov2_ros.tokenizer.files import tokenize_file
from ov2_ros.tokenizer.groups import GroupingConfig
from ov2_ros.tokenizer.pipeline import TokenizerConfig
from tests.model.conftest import tiny_model


@pytest.fixture(scope="module")
def backend(tokenizer):
    return TorchBackend(tiny_model(tokenizer, seed=3), tokenizer)


@pytest.fixture(scope="module")
def groups(p_stream):
    short_groups = TokenizerConfig(max_pixels=40_000, grouping=GroupingConfig(max_group_frames=12))
    video = tokenize_file(p_stream.mp4_path, config=short_groups)[0]
    assert len(video.groups) >= 4
    return video.groups


def _positions_from(group, base_t):
    """The group's positions with t counted from base_t (padding rows stay -1)."""
    positions = group.positions_thw.copy()
    positions[positions[:, 0] >= 0, 0] -= base_t
    return positions


def _encode(backend, group, base_t):
    return backend.vision_tokens(vision_input_from([group.canvases], [_positions_from(group, base_t)]))


def _span_s(first, last):
    return (last.last_stamp_ns - first.first_stamp_ns) / 1e9


def test_over_budget_the_groups_shown_spread_over_the_window_ends_included(backend, groups):
    groups = [g for g in groups if g.stop_reason != "end_of_stream"]  # full groups: 4 canvases each,
    canvases = [g.canvases.shape[0] for g in groups]  # so the budget says how many groups fit
    assert len(set(canvases)) == 1 and len(groups) >= 4
    per_group = canvases[0]
    for fit in range(1, len(groups) + 1):
        chosen = Perception(backend, budget_canvases=fit * per_group).select(groups, 60.0)
        indices = [groups.index(g) for g in chosen]
        assert len(chosen) == fit and indices == sorted(indices) and indices[-1] == len(groups) - 1
        if fit >= 2:  # the whole window, evenly: first group shown, gaps differ by at most one
            gaps = np.diff(indices)
            assert indices[0] == 0 and gaps.max() - gaps.min() <= 1
    # A budget below one group still shows the newest group.
    assert Perception(backend, budget_canvases=1).select(groups, 60.0) == [groups[-1]]


def test_the_time_window_bounds_what_is_shown(backend, groups):
    perception = Perception(backend, budget_canvases=256)
    window_s = _span_s(groups[-3], groups[-1]) + 0.01  # the last three groups, not the fourth last
    assert perception.select(groups, window_s) == groups[-3:]
    assert perception.select(groups, 0.001) == [groups[-1]]
    assert perception.select(groups, 60.0) == groups


def test_groups_are_encoded_again_only_when_the_window_start_moves(backend, groups):
    window_s = _span_s(groups[1], groups[3]) + 0.01  # three groups
    perception = Perception(backend, budget_canvases=8, window_s=window_s, max_new_tokens=4)
    query = Query("What happened in the video?", output_format=None)
    perception.answer(groups[:1], (240, 320), query)
    assert perception.groups_encoded == 1
    perception.answer(groups[:2], (240, 320), query)  # the window grows: one new group
    assert perception.groups_encoded == 2
    perception.answer(groups[:2], (240, 320), Query("Where is the object?"))  # the same window
    assert perception.groups_encoded == 2
    assert perception.select(groups, window_s)[0] is not groups[0]  # the time window slides
    result = perception.answer(groups, (240, 320), query)
    assert groups[0].index not in result.group_indices
    assert perception.groups_encoded == 2 + len(result.group_indices)  # a new window start: all again
    # The kept tokens are exactly what encoding from scratch gives at that window start.
    shown = [g for g in groups if g.index in result.group_indices]
    kept = perception.vision_tokens(shown)
    assert perception.groups_encoded == 2 + len(result.group_indices)
    scratch = torch.cat([_encode(backend, g, shown[0].first_t) for g in shown])
    torch.testing.assert_close(kept, scratch, rtol=0, atol=0)


def test_cached_groups_give_the_answer_computed_from_scratch(backend, groups):
    perception = Perception(backend, budget_canvases=8, window_s=60.0, max_new_tokens=12)
    query = Query("What happened in the video?", output_format=None)
    for newest in range(1, len(groups) + 1):  # a live stream, one group after another
        result = perception.answer(groups[:newest], (240, 320), query)
    shown = [g for g in groups if g.index in result.group_indices]
    positions = [_positions_from(g, shown[0].first_t) for g in shown]
    scratch = ask(backend, [g.canvases for g in shown], positions, perception.fps(shown), (240, 320),
                  query.prompt, None, GenerationConfig(max_new_tokens=12))
    assert result.answer.text == scratch.text
    assert result.answer.vision_tokens == scratch.vision_tokens and result.answer.prompt_tokens == scratch.prompt_tokens


def test_a_new_stream_with_the_same_group_numbers_is_encoded_anew(backend, groups, large_stream):
    perception = Perception(backend, budget_canvases=4)
    first = perception.vision_tokens(groups[:1])
    other = tokenize_file(large_stream.mp4_path, config=TokenizerConfig(max_pixels=40_000))[0].groups[0]
    assert (other.index, other.first_t) == (groups[0].index, groups[0].first_t)  # numbering restarts
    tokens = perception.vision_tokens([other])
    torch.testing.assert_close(tokens, _encode(backend, other, other.first_t), rtol=0, atol=0)
    assert tokens.shape != first.shape or not torch.equal(tokens, first)


def test_the_encoded_groups_kept_are_bounded_by_the_budget(backend, groups):
    perception = Perception(backend, budget_canvases=2)
    for newest in range(1, len(groups) + 1):
        perception.vision_tokens(perception.select(groups[:newest], 60.0))
    assert len(perception._encoded) <= 3 * (2 + 1)  # this window's, the last one's, the one ahead


def test_a_standing_question_drafts_from_its_last_answer_and_answers_as_without_drafts(backend, groups):
    drafting = Perception(backend, budget_canvases=8, window_s=60.0, max_new_tokens=24, draft_tokens=8)
    stepwise = Perception(backend, budget_canvases=8, window_s=60.0, max_new_tokens=24, draft_tokens=0)
    trace, caption = Query("Trace where the gripper moved."), Query("What happened in the video?", output_format=None)
    saved_passes = []
    for newest in range(1, len(groups) + 1):
        for query in (trace, caption):
            drafted = drafting.answer(groups[:newest], (240, 320), query).answer
            plain = stepwise.answer(groups[:newest], (240, 320), query).answer
            assert drafted.text == plain.text and plain.draft_proposed == 0
            assert drafted.decoder_passes + drafted.draft_accepted >= drafted.generated_tokens - 1
            # each question's last answer is its own reference: the trace's tokens, not the caption's
            assert drafting._last_answers[query.prompt, query.output_format] == drafted.token_ids
            if query is trace and newest > 1:
                saved_passes.append(plain.decoder_passes - drafted.decoder_passes)
    assert drafting._last_answers.keys() == {(trace.prompt, trace.output_format), (caption.prompt, None)}
    # from the second group on, the trace is drafted from the previous one: fewer passes each time
    assert min(saved_passes) > 0
    with pytest.raises(ValueError, match="draft_tokens >= 0"):
        Perception(backend, draft_tokens=-1)


def test_encoding_ahead_leaves_each_answer_its_new_group_and_changes_no_answer(backend, groups):
    # A window of three groups slides at every group, so without encoding ahead each answer
    # encodes every group it shows again. Encoded ahead (the idle node's guess of the next
    # window), an answer whose guess held encodes only its new group, and its prompt starts from
    # the prefix prefilled ahead (prefill_ahead); answers are unchanged.
    window_s = _span_s(groups[1], groups[3]) + 0.01
    ahead = Perception(backend, budget_canvases=12, window_s=window_s, max_new_tokens=6)
    plain = Perception(backend, budget_canvases=12, window_s=window_s, max_new_tokens=6, prefill_ahead=False)
    query = Query("What happened in the video?", output_format=None)
    encoded_at_answer, plain_encoded = [], []
    for newest in range(1, len(groups) + 1):
        before, plain_before = ahead.groups_encoded, plain.groups_encoded
        got = ahead.answer(groups[:newest], (240, 320), query)
        expected = plain.answer(groups[:newest], (240, 320), query)
        encoded_at_answer.append(ahead.groups_encoded - before)
        plain_encoded.append(plain.groups_encoded - plain_before)
        assert got.group_indices == expected.group_indices and got.answer.text == expected.answer.text
        for guess in range(ahead.ahead_guesses):
            ahead.encode_ahead(groups[:newest], guess=guess)
    sliding = [i for i in range(3, len(groups)) if plain_encoded[i] > 1]  # answers whose window slid
    assert len(sliding) >= 2
    assert sum(encoded_at_answer[i] == 1 for i in sliding) >= len(sliding) - 1  # the guess held
    assert ahead.groups_ahead_used > 0 and ahead.groups_ahead_used <= ahead.groups_encoded_ahead
    # nearly every answer after the first started from a prompt start held ahead (6 groups: 4)
    assert ahead.prompts_ahead_used >= len(groups) - 2 and ahead.prompts_prefilled_ahead >= ahead.prompts_ahead_used
    assert plain.prompts_ahead_used == plain.prompts_prefilled_ahead == 0
    # The tokens encoded ahead are those of encoding from scratch at that window start.
    shown = ahead.select(groups, window_s)
    torch.testing.assert_close(ahead.vision_tokens(shown),
                               torch.cat([_encode(backend, g, shown[0].first_t) for g in shown]), rtol=0, atol=0)
    assert ahead.encode_ahead([]) == 0
    # An answer due meanwhile (stop) skips the prompt's prefill, not the encoding.
    stopped = Perception(backend, budget_canvases=12, window_s=window_s, max_new_tokens=6)
    assert stopped.encode_ahead(groups[:4], stop=lambda: True) > 0 and stopped.prompts_prefilled_ahead == 0
    stopped.encode_ahead(groups[:4], stop=lambda: False)
    assert stopped.prompts_prefilled_ahead == 1


def test_the_guesses_of_the_next_window_cover_a_next_group_of_another_recent_length(backend, groups):
    # Groups end where the motion says, so their lengths vary. Which groups the next window
    # shows (where it starts) depends on the length of the group still to come: the first guess
    # takes the newest group's length, the second another recent one, so that a next group of
    # either length finds its window encoded ahead.
    import dataclasses
    lengths = [12, 20, 12, 20, 20, 12, 20, 12, 12, 20]
    restamped, t = [], 0
    frame_ns = 33_333_333
    for index, frames in enumerate(lengths):
        source = groups[index % len(groups)]
        restamped.append(dataclasses.replace(source, index=index, first_t=t, last_t=t + frames - 1,
                                             first_stamp_ns=(t + 1) * frame_ns, last_stamp_ns=(t + frames) * frame_ns))
        t += frames
    one = Perception(backend, budget_canvases=64, window_s=50 / 30, ahead_guesses=1)
    two = Perception(backend, budget_canvases=64, window_s=50 / 30, ahead_guesses=2)
    first_only = both = 0
    for end in range(3, len(restamped)):
        past, real = restamped[:end], restamped[end]
        shown = [g.index for g in two.select([*past, real], two.window_s) if g is not real]
        guesses = [[g.index for g in window] for window, _ in two.next_windows(past)]
        assert len(guesses) <= 2 and [[g.index for g in w] for w, _ in one.next_windows(past)] == guesses[:1]
        assert all(guess[-1] == past[-1].index for guess in guesses)  # each ends at the newest group
        first_only += shown == guesses[0]
        both += shown in guesses
    assert both == len(restamped) - 3 and first_only < both  # the second guess was needed and held
    with pytest.raises(ValueError, match="ahead_guesses >= 1"):
        Perception(backend, ahead_guesses=0)


def test_prompts_keep_their_frame_rate_through_stamp_jitter_and_follow_a_real_change(backend, groups):
    # A window's timestamps are t / fps with one decimal: if a few milliseconds of stamp jitter
    # moved the rate, the next prompt would not start with the one prefilled ahead.
    import dataclasses
    from ov2_ros.runtime.perception import FPS_TOLERANCE
    perception = Perception(backend)
    frame_ns = 1e9 / 30

    def stamped(rate_scale, jitter_ns):
        return [dataclasses.replace(g, first_stamp_ns=int(1e9 + g.first_t * frame_ns * rate_scale),
                                    last_stamp_ns=int(1e9 + g.last_t * frame_ns * rate_scale + jitter_ns))
                for g in groups]

    first = perception.fps(stamped(1.0, 0))
    assert first == pytest.approx(30.0, rel=1e-6)
    span_s = (groups[-1].last_t - groups[0].first_t) / 30
    small = 0.5 * FPS_TOLERANCE * span_s * 1e9  # the last stamp late by half the tolerance
    assert perception.fps(stamped(1.0, small)) == first and perception.fps(stamped(1.0, -small)) == first
    slower = perception.fps(stamped(1.02, 0))  # 2 % slower: followed
    assert slower == pytest.approx(30.0 / 1.02, rel=1e-6)
    assert perception.fps(stamped(1.02, small)) == slower
    # stamps unknown: the nominal rate, and the rate kept stays as it was
    unstamped = [dataclasses.replace(g, first_stamp_ns=0, last_stamp_ns=0) for g in groups]
    assert perception.fps(unstamped) == 30.0 and perception.fps(stamped(1.02, 0)) == slower
