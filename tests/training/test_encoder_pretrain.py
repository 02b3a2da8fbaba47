"""Encoder pretraining: each block's class shares agree with the pixels, and training moves the
vision tower (only) toward them."""
import cv2
import numpy as np
import torch

from ov2_ros.model.checkpoint import load_model
from ov2_ros.synth.scene import COLOURS_RGB
from ov2_ros.synth.worlds import CloseUpWorld, StillsWorld, Variation, WorldConfig
from tests.model.conftest import model_dir, tokenizer  # noqa: F401 (the fixtures)
from training.data import ClipCache, ClipSpec
from training.encoder_pretrain import CLASSES, block_places, block_targets, pretrain

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
