"""The readiness rule (method.md 1.4) on constructed block-score sequences."""
import numpy as np
import pytest

from ov2_ros.tokenizer.groups import (
    CausalThreshold,
    GroupBuilder,
    GroupingConfig,
    TopBlocks,
    group_offline,
    offline_threshold,
)

BLOCKS = 4  # blocks per canvas in these constructions
CONFIG = GroupingConfig()  # images_per_group 4 -> budget 12 blocks; min 8, max 64
BUDGET = 3 * BLOCKS


def frames(values):
    """One block per frame carries the value, the other three score 0: the K-best set then
    spreads over all frames (no ties decide coverage)."""
    out = []
    for value in values:
        block_scores = np.zeros((2, 2), np.float32)
        block_scores[0, 0] = value
        out.append(block_scores)
    return out


def run(scores, threshold, config=CONFIG):
    builder = GroupBuilder(config, BUDGET)
    for index, block_scores in enumerate(scores):
        decision = builder.add(block_scores, True, threshold)
        if decision is not None:
            return decision, index + 1
    return None, len(scores)


def test_top_blocks_keep_the_budget_best_and_skip_the_i_canvas():
    top = TopBlocks(budget=3)
    top.add(np.array([[100.0, 100.0]]))  # frame 0: the I-canvas, never a candidate
    top.add(np.array([[1.0, 5.0]]))
    top.add(np.array([[4.0, 2.0]]))
    assert top.readiness == 5.0 + 4.0 + 2.0
    assert sorted(zip(top.frames.tolist(), top.blocks.tolist())) == [(1, 1), (2, 0), (2, 1)]


def test_group_stays_open_while_frames_add_readiness_and_closes_on_low_gain():
    # readiness(n) = n - 1 while the 12-block budget fills: gains 1/7, 1/8, ... > 5%; frame 13
    # fills it, frame 14 adds nothing (gain 0 < 5%) -> the group closes at 14 frames
    (frames_in_group, reason, readiness, coverage), consumed = run(frames([1.0] * 100), threshold=0.0)
    assert (frames_in_group, reason) == (14, "low_gain") and consumed == 14
    assert readiness == BUDGET * 1.0 and coverage == 3


def test_low_gain_ratio_sets_where_growth_is_too_little():
    # same frames, stop below 10% gain: 1/10 is not below, 1/11 is -> closes at 13 frames
    config = GroupingConfig(low_gain_ratio=0.10)
    (frames_in_group, reason, _, _), _ = run(frames([1.0] * 100), threshold=0.0, config=config)
    assert (frames_in_group, reason) == (13, "low_gain")


def test_minimum_holds_even_when_ready_at_once():
    config = GroupingConfig(min_group_frames=20)
    # odd frames score 2, even ones 1: the best blocks spread over the group (coverage 3)
    values = [2.0 if k % 2 else 1.0 for k in range(100)]
    (frames_in_group, reason, _, _), _ = run(frames(values), threshold=0.0, config=config)
    # ready long before 20 frames; the first chance to close is the minimum + 1 (no gain)
    assert (frames_in_group, reason) == (21, "low_gain")


def test_never_ready_closes_at_the_maximum():
    (frames_in_group, reason, _, _), _ = run(frames([1.0] * 100), threshold=1e9)
    assert (frames_in_group, reason) == (64, "max_frames")


def test_coverage_gate_needs_blocks_in_every_time_bin():
    # frames 1-2 score 10 on every block, later frames less and less: the best 12 blocks are
    # frames 1, 2 and 3, which never cover all 3 time bins (2 at 8 frames, 1 at 64) -> never ready
    scores = [np.full((2, 2), 10.0 if k in (1, 2) else -float(k), np.float32) for k in range(100)]
    (frames_in_group, reason, _, coverage), _ = run(scores, threshold=-1e9)
    assert (frames_in_group, reason) == (64, "max_frames") and coverage == 1


def test_threshold_gives_busy_stretches_short_groups_and_quiet_ones_long_groups():
    values = [5.0] * 40 + [1.0] * 80
    scores = frames(values)
    tau = offline_threshold(scores, [True] * 120, CONFIG, BUDGET)
    assert tau == pytest.approx((60 + 40 + 12 + 12) / 4)  # mean of the 32-frame windows
    boundaries = group_offline(scores, [True] * 120, CONFIG, BUDGET, tau)
    assert [(b.start, b.end, b.stop_reason) for b in boundaries] == [
        (0, 14, "low_gain"), (14, 28, "low_gain"), (28, 41, "low_gain"),
        (41, 105, "max_frames"), (105, 120, "end_of_stream")]


def test_unusable_frames_are_never_candidates():
    top = TopBlocks(budget=2)
    top.add(np.ones((1, 2)))
    top.add(np.full((1, 2), 99.0), usable=False)
    top.add(np.full((1, 2), 3.0))
    assert top.readiness == 6.0 and set(top.frames.tolist()) == {2}


def test_causal_threshold_is_the_mean_of_completed_windows():
    config = GroupingConfig(threshold_window_frames=4)
    causal = CausalThreshold(config, budget=2)
    assert causal.value == float("inf")
    for value in [1, 1, 1, 1, 3, 3, 3, 3, 5]:
        causal.add(np.full((1, 2), float(value)), True)
    # windows: frames 1..3 of each (first is the I-canvas): top-2 = 2 and 6
    assert causal.windows == 2 and causal.value == pytest.approx(4.0)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="min_group_frames"):
        GroupingConfig(min_group_frames=10, max_group_frames=5)
    with pytest.raises(ValueError, match="images_per_group"):
        GroupingConfig(images_per_group=1)
