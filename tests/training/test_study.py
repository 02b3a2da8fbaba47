"""The study: both inputs measured on the same clips, and its oracle: what canvases show of the
bounces, read from the worlds' exact truth."""
import json

import numpy as np
import pytest

from ov2_ros.model.checkpoint import save_model
from tests.model.conftest import tiny_model
from training.data import ClipCache, ClipSpec, ClipVision
from training.study import ball_sightings, combine, height_reader_takeoffs, oracle_takeoffs, run_side
from training.text import build_tokenizer


def _vision(patches_thw):
    """A clip's vision holding the given (t, h, w) patches on 168x112 canvases of a 160x120 clip."""
    positions = np.array(patches_thw, np.int32)
    return ClipVision([np.zeros((1, 112, 168, 3), np.uint8)], [positions], 30.0, (120, 160))


def test_a_frame_shows_the_ball_when_its_patches_cover_most_of_the_ball():
    # The ball's box (source pixels) 32..48 x 28..40 lies on the processed grid at x 33.6..50.4,
    # y 26.1..37.3: patches (h 1..2, w 2..3).
    frames = [{"ball_box_xyxy": [32.0, 28.0, 48.0, 40.0], "airborne": airborne} for airborne in (False, True, True)]
    whole = [(t, h, w) for t in (0, 1) for h in (1, 2) for w in (2, 3)]
    one_corner = [(2, 2, 3)]  # frame 2 shows one patch of four, little of the ball
    assert ball_sightings(_vision(whole + one_corner), frames) == [(0, False), (1, True)]
    assert ball_sightings(_vision([(0, 5, 8), (1, 6, 9)]), frames) == []  # patches elsewhere


def test_takeoffs_lie_midway_between_the_floor_and_the_air():
    sightings = [(0, False), (6, True), (12, True), (20, False), (30, False), (34, True)]
    assert oracle_takeoffs(sightings, 10.0) == [0.3, 3.2]
    assert oracle_takeoffs([(3, True), (9, True)], 10.0) == []  # never seen on the floor: no takeoff read


def test_a_flight_seen_twice_in_the_air_is_found_at_its_takeoff_the_others_as_floor_and_air_show_them():
    takeoffs = [0.5, 1.5, 2.5]
    # frames at 10 fps: flight 0 seen at 0.6 and 0.8 s, flight 1 once (1.7 s), flight 2 at 2.5 and
    # 2.9 s; the floor sighting at 1.2 s counts for no flight
    sightings = [(6, True), (8, True), (12, False), (17, True), (25, True), (29, True)]
    # flights 0 and 2 exactly; flight 1, seen once, as the floor/air reader reads it (1.2 -> 1.7 s)
    assert height_reader_takeoffs(sightings, takeoffs, 10.0) == [0.5, 1.45, 2.5]
    # a floor frame before a flight found exactly adds nothing
    assert height_reader_takeoffs([(4, False), (6, True), (8, True)], takeoffs, 10.0) == [0.5]


def test_codec_canvases_show_the_moving_ball_in_more_frames_than_sampled_frames(tmp_path):
    # The codec tokenizer keeps the blocks where things move; sampling frames uniformly keeps
    # whole frames. At one budget the ball must be in view in the air, where its takeoffs can be
    # read, in at least four times as many frames (here 99 against 12, of 112 and 32 frames
    # showing it at all: the ball resting between bursts is seen in sampled frames, and not
    # moving, is not kept by the codec; before bounce world 2's rests, 173 against 32 frames).
    cache = ClipCache(tmp_path)
    in_the_air = {"codec": 0, "frames": 0}
    for seed in (3, 4):
        spec = ClipSpec("bounce", seed, duration_s=8.0)
        _, truth = cache.clip(spec)
        for mode in in_the_air:
            sightings = ball_sightings(cache.vision(spec, mode, 16), truth["frames"])
            in_the_air[mode] += sum(airborne for _, airborne in sightings)
    assert in_the_air["codec"] >= 4 * in_the_air["frames"] > 0


def test_the_study_compares_both_inputs_on_the_same_clips_and_says_whether_the_models_look(tmp_path):
    tokenizer = build_tokenizer(tmp_path / "tokenizer.json", vocab_size=600)
    save_model(tiny_model(tokenizer, seed=2), tmp_path / "model", tokenizer.path)
    out = tmp_path / "study.json"
    sides = {mode: run_side(mode, tmp_path / "model", [4], 1, tmp_path / "cache", out, variation="train")
             for mode in ("codec", "frames")}
    (row,) = combine(out)["rows"]
    codec_map, frames_map = (sides[mode]["rows"][0]["mAP"] for mode in ("codec", "frames"))
    assert row["codec_mAP"] == codec_map and row["codec_minus_frames"] == pytest.approx(codec_map - frames_map, abs=0.01)
    for mode in ("codec", "frames"):  # the event lists' loss shown the clip's own pixels and another's
        own, other = row[f"{mode}_events_nats_own_other"]
        assert own > 0 and other > 0
    assert out.with_suffix(".png").stat().st_size > 0

    frames_side = out.with_name("study_frames.json")
    side = json.loads(frames_side.read_text())
    frames_side.write_text(json.dumps({**side, "variation": "heldout"}))
    with pytest.raises(ValueError, match="different clips"):
        combine(out)


def test_the_best_periodic_list_is_found_and_scored_as_jumpscore():
    from training import metrics
    from training.study import BLIND_PERIODS_S, best_periodic_list

    truths = [[0.5, 1.0, 1.5, 2.0, 2.5], [0.5, 1.0, 1.5]]
    best = best_periodic_list([3.0, 2.0], truths)
    assert best == {"mAP": 100.0, "period_s": 0.5}
    # Every other period scores less, each as JumpScore scores its list.
    for period in BLIND_PERIODS_S:
        lists = [list(np.arange(period, 3.0, period)), list(np.arange(period, 2.0, period))]
        assert metrics.jumpscore(lists, truths) <= best["mAP"]
