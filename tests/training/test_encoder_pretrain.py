"""Encoder pretraining: each block's class shares agree with the pixels (still shots; video
clips' blocks in their own frames), and training moves the vision tower (only) toward them."""
import cv2
import numpy as np
import pytest
import torch

from ov2_ros.model.checkpoint import load_model
from ov2_ros.synth.scene import COLOURS_RGB
from ov2_ros.synth.worlds import CloseUpWorld, PickPlaceWorld, StillsWorld, Variation, WorldConfig
from tests.model.conftest import model_dir, tokenizer  # noqa: F401 (the fixtures)
from training.data import ClipCache, ClipSpec
from training.encoder_pretrain import (CLASSES, ShotSet, block_places, block_targets, parse_worlds, pretrain,
                                       thing_centres, things_in_frame)

PROCESSED_HW = (112, 168)  # a 160x120 still as the tokenizer resizes it: 4 x 6 blocks of 28 pixels


def test_block_shares_say_what_the_pixels_show():
    checked_things = checked_table = 0
    for world_class, seed in [(StillsWorld, seed) for seed in range(4)] + [(CloseUpWorld, seed) for seed in range(4)]:
        world = world_class(WorldConfig(seed=seed, noise_sigma=0.0, variation=Variation("train")))
        image, truth = world.render(0)
        resized = cv2.resize(image, PROCESSED_HW[::-1], interpolation=cv2.INTER_AREA).astype(float)
        blocks = np.array([(2 * r, 2 * c) for r in range(4) for c in range(6)])
        targets = block_targets(truth["objects"], blocks, PROCESSED_HW, (160, 120))
        np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)
        for (row, col), shares in zip(blocks, targets):
            pixels = resized[row * 14:row * 14 + 28, col * 14:col * 14 + 28].reshape(-1, 3)
            owner = int(shares.argmax())
            if owner and shares[owner] > 0.95:  # a block wholly on one thing shows its colour
                label = CLASSES[owner]
                rgb = np.array(COLOURS_RGB[label.split()[0]], float) * (0.85 if label.endswith("plate") else 1.0)
                assert np.abs(np.median(pixels, 0) - rgb).max() < 40, (seed, label, np.median(pixels, 0), rgb)
                checked_things += 1
            elif shares[0] == 1.0:  # a table block shows none of the things' colours in most of it
                for thing in truth["objects"]:
                    rgb = np.array(COLOURS_RGB[thing["label"].split()[0]], float)
                    assert np.mean(np.abs(pixels - rgb).max(-1) < 20) < 0.5, (seed, row, col, thing["label"])
                checked_table += 1
    assert checked_things >= 3 and checked_table >= 50


def _canvas_blocks(shot) -> tuple[np.ndarray, np.ndarray]:
    """A ShotSet shot's content blocks: their pixels (blocks, 28 * 28, 3) and (t, h, w)."""
    canvases = np.concatenate(shot[0]).astype(float)
    _, height, width, _ = canvases.shape
    columns, per_canvas = width // 28, (height // 28) * (width // 28)
    blocks = np.concatenate(shot[1]).reshape(-1, 4, 3)[:, 0]
    content = np.flatnonzero(blocks[:, 0] >= 0)
    pixels = []
    for index in content:
        canvas, within = divmod(int(index), per_canvas)
        row, column = divmod(within, columns)
        pixels.append(canvases[canvas, row * 28:(row + 1) * 28, column * 28:(column + 1) * 28].reshape(-1, 3))
    return np.stack(pixels), blocks[content]


def test_video_blocks_are_measured_in_their_own_frames(tmp_path):
    # Codec canvases hold blocks of many frames; each block's ball share must be that of its own
    # frame: the share of its (decoded) pixels in the ball's colour. The same blocks measured ten
    # frames later (the ball has moved) agree less.
    cache = ClipCache(tmp_path)
    for seed in range(2):
        spec = ClipSpec("bounce", seed, duration_s=4.0)
        shot = ShotSet(cache, [spec], "clips").shots[0]
        _, truth = cache.clip(spec)
        pixels, blocks = _canvas_blocks(shot)
        assert len(np.unique(blocks[:, 0])) > 20  # blocks of many frames
        ball = CLASSES.index(truth["episode"]["object"])
        rgb = np.array(COLOURS_RGB[truth["episode"]["object"].split()[0]], float)
        in_colour = np.mean(np.abs(pixels - rgb).max(-1) < 40, -1)
        shares = shot[2][:, ball]
        assert (shares > 0.05).sum() >= 10
        assert np.corrcoef(in_colour, shares)[0, 1] > 0.95 and np.abs(in_colour - shares).mean() < 0.02
        later = np.array([block_targets(things_in_frame("bounce", truth, min(int(t) + 10, len(truth["frames"]) - 1),
                                                         (160, 120)), np.array([[h, w]]), PROCESSED_HW,
                                        (160, 120))[0, ball] for t, h, w in blocks])
        assert np.corrcoef(in_colour, later)[0, 1] < 0.8
    # Pick-and-place: plate and objects in the blocks' pixels; the gripper where the world draws
    # it in the shaken frame (its greys are too near the table's to count in the canvases).
    spec = ClipSpec("pickplace", 0, duration_s=9.0)
    shot = ShotSet(cache, [spec], "clips").shots[0]
    _, truth = cache.clip(spec)
    pixels, blocks = _canvas_blocks(shot)
    for label in [truth["episode"]["plate"]] + [obj["label"] for obj in truth["frames"][0]["objects"]]:
        rgb = np.array(COLOURS_RGB[label.split()[0]], float) * (0.85 if label.endswith("plate") else 1.0)
        in_colour = np.mean(np.abs(pixels - rgb).max(-1) < 40, -1)
        assert np.corrcoef(in_colour, shot[2][:, CLASSES.index(label)])[0, 1] > 0.8, label
    world = PickPlaceWorld(WorldConfig(seed=0, duration_s=9.0, noise_sigma=0.0, variation=Variation("train")))
    for frame in (0, 100, 200):
        image, record = world.render(frame)
        gripper = [thing for thing in things_in_frame("pickplace", {"episode": truth["episode"], "frames": [None] * frame
                                                                    + [record]}, frame, (160, 120))
                   if thing["label"] == "gripper"]
        assert len(gripper) == 3
        gain = world.light_gain(frame / 30.0)
        for thing, rgb in zip(gripper, [(90, 92, 98), (175, 177, 183), (175, 177, 183)]):
            x0, y0, x1, y1 = np.round(thing["box_xyxy"]).astype(int) + [1, 1, -1, -1]  # inside the edges
            inside = image[max(y0, 0):y1, x0:x1].reshape(-1, 3).astype(float)
            assert len(inside) and np.mean(np.abs(inside - np.array(rgb) * gain).max(-1) < 20) > 0.9, (frame, rgb)


def test_worlds_parse_and_refuse_unknown_ones():
    assert parse_worlds("mid:20,bounce:3,pickplace:4") == {"mid": 20, "bounce": 3, "pickplace": 4}
    for bad in ("ocean:3", "mid", "mid:x"):
        with pytest.raises(ValueError, match=bad):
            parse_worlds(bad)


def test_pretraining_moves_the_vision_tower_toward_the_shares_and_leaves_the_llm(model_dir, tmp_path):
    cache = ClipCache(tmp_path / "cache")
    for seed in list(range(6)) + list(range(100_000, 100_004)):  # training seeds, held-out seeds
        cache.clip(ClipSpec("mid", seed, duration_s=1.0))
    before = load_model(model_dir)
    result = pretrain(str(model_dir), str(tmp_path / "out"), {"mid": 6}, steps=30, batch=4, lr=3e-3,
                      eval_shots=4, every=30, cache_dir=str(tmp_path / "cache"))
    first, last = result["curve"][0]["mid"], result["curve"][-1]["mid"]
    assert last["nats_per_block"] < first["nats_per_block"] - 0.3
    assert last["blocks_placed"] > first["blocks_placed"]
    assert last["touched_blocks"] == first["touched_blocks"] > 0
    assert last["touched_blocks_auc"] > max(0.6, first["touched_blocks_auc"])
    after = load_model(tmp_path / "out")
    llm_before, llm_after = before.language_model.state_dict(), after.language_model.state_dict()
    assert all(torch.equal(llm_before[name], llm_after[name]) for name in llm_before)
    assert not torch.equal(before.visual.merger.mlp[2].weight, after.visual.merger.mlp[2].weight)


def test_block_places_are_the_tenths_of_the_frame_their_centres_lie_in():
    # 112 x 168 processed pixels: 4 x 6 blocks of 28; patch (row, column) of each block's first patch
    blocks = np.array([(0, 0), (0, 10), (6, 0), (6, 10), (2, 4)])
    places = block_places(blocks, PROCESSED_HW)
    # block centres in pixels (row, column): (14, 14), (14, 154), (98, 14), (98, 154), (42, 70);
    # the tenth across and down, floored, as (column, row)
    expected = [(int(14 / 168 * 10), int(14 / 112 * 10)), (int(154 / 168 * 10), int(14 / 112 * 10)),
                (int(14 / 168 * 10), int(98 / 112 * 10)), (int(154 / 168 * 10), int(98 / 112 * 10)),
                (int(70 / 168 * 10), int(42 / 112 * 10))]
    assert places.tolist() == [list(e) for e in expected] == [[0, 1], [9, 1], [0, 8], [9, 8], [4, 3]]
    # a block whose centre sits on the far edge still gets the last tenth
    assert block_places(np.array([(0, 0)]), (28, 28)).tolist() == [[5, 5]]
    assert block_places(np.array([(1, 1)]), (28, 28)).tolist() == [[9, 9]]


def test_thing_centres_are_the_tenths_of_the_frame_of_the_thing_covering_each_block():
    # source 160 x 120 on 168 x 112 processed pixels; a ball 16 pixels wide centred at (70, 30)
    # and a cube over (100..140, 60..110), drawn later
    ball = {"label": "red ball", "box_xyxy": [62, 22, 78, 38], "centre_xy": [70, 30]}
    cube = {"label": "blue cube", "box_xyxy": [100, 60, 140, 110], "centre_xy": [120, 85]}
    # block (patch row, column): on the ball (processed x 56..84, y 0..28 holds its top half);
    # on the cube; on nothing
    blocks = np.array([(0, 4), (4, 8), (6, 0)])
    centres = thing_centres([ball, cube], blocks, PROCESSED_HW, (160, 120))
    assert centres.tolist() == [[int(70 / 160 * 10), int(30 / 120 * 10)], [int(120 / 160 * 10), int(85 / 120 * 10)],
                                [-1, -1]] == [[4, 2], [7, 7], [-1, -1]]
