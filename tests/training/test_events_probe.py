"""The events probe: episodes whose answer lists the takeoffs their tokens show, and an LLM that learns them."""
import numpy as np
import torch

from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.parsers import parse_events
from tests.model.conftest import model_dir, tokenizer  # noqa: F401 (the fixtures)
from training.data import IGNORE, ClipCache, ClipSpec
from training.events_probe import (BALL_BLOCK_SHARE, FPS, FRAMES, Episodes, RealEpisodes, TruthCodes,
                                   bounce_frames, probe)
from training.study import ball_cover


def test_bounces_take_off_after_the_floor_and_the_answer_lists_each_first_frame_in_the_air(tokenizer):
    rng = np.random.default_rng(0)
    for _ in range(20):
        in_air, takeoffs = bounce_frames(rng)
        assert in_air.any() and not in_air.all() and takeoffs
        firsts = [f for f in range(FRAMES) if in_air[f] and (f == 0 or not in_air[f - 1])]
        assert takeoffs == [round(f / FPS, 2) for f in firsts]
    episodes = Episodes(tokenizer, hidden=48, token_norm=100.0, seed=0)
    image_pad = tokenizer.token_ids().image_pad
    for _ in range(10):
        tokens, ids, _, answer_start, takeoffs = episodes.episode()
        assert tokens.shape == (FRAMES, 48) and ids.count(image_pad) == FRAMES
        torch.testing.assert_close(tokens.norm(dim=-1), torch.full((FRAMES,), 100.0))
        # A frame in the air is the one whose token is nearer the AIR code: the answer lists the
        # first frame of each run of those.
        in_air = ((tokens @ episodes.air) > (tokens @ episodes.floor)).numpy()
        firsts = [f for f in range(FRAMES) if in_air[f] and (f == 0 or not in_air[f - 1])]
        answer = tokenizer.decode(ids[answer_start:])
        assert list(parse_events(answer).times_s) == takeoffs == [round(f / FPS, 2) for f in firsts]
        # the prompt writes each frame's timestamp before its token, as the tokenizer's prompt does
        assert tokenizer.decode(ids[:answer_start]).count(" seconds>") == FRAMES


def test_the_probe_trains_the_llm_on_its_episodes(model_dir):
    result = probe(str(model_dir), steps=30, batch=4, eval_episodes=4, every=15, token_norm=10.0)
    curve = result["curve"]
    assert [point["step"] for point in curve] == [0, 15, 30]
    assert curve[-1]["nats_own_frames"] < curve[0]["nats_own_frames"] - 0.5
    assert all(0.0 <= point["jumpscore"] <= 100.0 for point in curve)


def test_real_episodes_show_the_clip_in_its_own_prompt_and_answer_its_takeoffs(model_dir, tokenizer, tmp_path):
    cache = ClipCache(tmp_path / "cache")
    specs = [ClipSpec("bounce", seed, duration_s=3.0) for seed in range(2)]
    model = load_model(model_dir)
    episodes = RealEpisodes(model, tokenizer, cache, specs, "codec", 8, seed=0, desc="clips")
    input_ids, labels, tokens, truths = episodes.all(filler=model.config.tokens.end_of_text)
    for row, spec in enumerate(specs):
        _, truth = cache.clip(spec)
        ids = input_ids[row].tolist()
        assert ids.count(tokenizer.token_ids().image_pad) == tokens[row].shape[0] > 0
        labelled = (labels[row] != IGNORE).nonzero()[:, 0]
        answer = tokenizer.decode(input_ids[row, labelled].tolist())
        assert truths[row] == truth["episode"]["event_times_s"]  # scored against the exact times
        assert list(parse_events(answer).times_s) == [round(t, 2) for t in truths[row]]  # written as OV2 writes them
        prompt = tokenizer.decode(ids[:labelled[0]])
        assert truth["episode"]["object"] in prompt and "leaves the floor" in prompt
    mean = episodes.mean_token()
    episodes.centre(mean)
    torch.testing.assert_close(torch.cat([e[0] for e in episodes.episodes]).mean(0), torch.zeros_like(mean),
                               atol=1e-4, rtol=0)


def test_truth_tokens_give_blocks_showing_the_ball_its_height_band_and_the_others_the_table(tmp_path):
    cache = ClipCache(tmp_path / "cache")
    spec = ClipSpec("bounce", 1, duration_s=4.0)
    _, truth = cache.clip(spec)
    vision = cache.vision(spec, "codec", 8)
    codes = TruthCodes(hidden=64, token_norm=50.0, seed=0)
    tokens = codes.tokens(vision, truth["frames"], spec.height)
    positions = np.concatenate(vision.positions_thw)[::4]  # each block's first patch
    content = positions[:, 0] >= 0
    assert tokens.shape == (content.sum(), 64)
    torch.testing.assert_close(tokens.norm(dim=-1), torch.full((len(tokens),), 50.0))
    nearest = (tokens @ torch.cat([codes.table[None], codes.heights]).T).argmax(1).numpy()  # 0: table, 1 + band
    shows_ball = (ball_cover(vision, truth["frames"]).reshape(-1, 4).sum(1) >= BALL_BLOCK_SHARE)[content]
    airborne = np.array([truth["frames"][t]["airborne"] for t in positions[content, 0]])
    assert (nearest[~shows_ball] == 0).all()
    assert (nearest[shows_ball & ~airborne] == 1).all() and (nearest[shows_ball & airborne] >= 2).all()
    assert (shows_ball & airborne).any() and (~shows_ball).any()
    # higher in the frame, a higher band: the bands of blocks in the air follow the ball's lift
    tops = np.array([truth["frames"][t]["ball_box_xyxy"][1] for t in positions[content, 0]])[shows_ball & airborne]
    bands = nearest[shows_ball & airborne]
    assert np.corrcoef(-tops, bands)[0, 1] > 0.9
