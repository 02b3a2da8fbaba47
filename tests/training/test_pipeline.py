"""The pipeline's stage 0: a seeded random model whose vision tower alone is pretrained, kept
when a resumed pipeline finds it; and the stages it runs after the four (--then)."""
import argparse
import json
from pathlib import Path

import pytest
import torch

from ov2_ros.model.checkpoint import load_model
from training.pipeline import CONFIGS, STAGES, parse_then, pretrained_encoder, stage_plan


def test_stage_zero_pretrains_the_vision_tower_of_a_seeded_random_model_once(tmp_path):
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    folder = pretrained_encoder(out, "nano", cache, steps=3, seed=1, worlds={"mid": 3}, eval_shots=2)
    random_init, pretrained = load_model(out / "s0_random"), load_model(folder)
    assert (out / "s0_random" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    llm = random_init.language_model.state_dict()
    assert all(torch.equal(llm[name], weight) for name, weight in pretrained.language_model.state_dict().items())
    assert not torch.equal(random_init.visual.merger.mlp[2].weight, pretrained.visual.merger.mlp[2].weight)
    # the random model is a function of the seed: a second run's stage 0 starts from the same weights
    again = pretrained_encoder(tmp_path / "again", "nano", cache, steps=3, seed=1, worlds={"mid": 3}, eval_shots=2)
    first, second = random_init.state_dict(), load_model(tmp_path / "again" / "s0_random").state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    # same seed, same data, same steps: the same pretrained tower
    assert torch.equal(pretrained.visual.merger.mlp[2].weight, load_model(again).visual.merger.mlp[2].weight)
    # a resumed pipeline keeps stage 0 as it is
    written = (out / "s0_encoder" / "model.safetensors").stat().st_mtime_ns
    assert pretrained_encoder(out, "nano", cache, steps=3, seed=1, worlds={"mid": 3}, eval_shots=2) == folder
    assert (out / "s0_encoder" / "model.safetensors").stat().st_mtime_ns == written
    # stage 0 on random table tints draws (and caches) other shots, and says so
    tinted = pretrained_encoder(tmp_path / "tinted", "nano", cache, steps=1, seed=1, worlds={"mid": 3}, eval_shots=2,
                                variation="train-tints")
    assert json.loads((Path(tinted) / "encoder_pretrain.json").read_text())["variation"] == "train-tints"
    assert len(list(Path(cache, "clips").glob("mid-train-tints-*"))) == 3
    with pytest.raises(ValueError, match="variation"):
        pretrained_encoder(tmp_path / "held", "nano", cache, steps=1, seed=1, worlds={"mid": 3}, variation="heldout")


def test_stages_after_the_four_run_as_their_configs_say_on_their_own_input(tmp_path):
    """--then: the pipeline's overrides change the four stages only; a later stage keeps its
    config's trainable parts and centring and runs on the input it names (else the pipeline's);
    a missing config or a repeated stage name is refused before any work."""
    rung = CONFIGS / "s10_trace_pickplace_frozen_tower.json"
    plan = stage_plan("codec", steps_scale=0.5, centre_vision=0.0, trainable="all",
                      then=(parse_then(f"{rung}@live"), parse_then(str(CONFIGS / "s10_point_mid_frozen_tower.json"))),
                      variation="train-tints")
    assert [config.name for config, _ in plan] == [*STAGES, "s10_trace_pickplace_frozen_tower", "s10_point_mid_frozen_tower"]
    assert [stage_input for _, stage_input in plan] == ["codec"] * 4 + ["live", "codec"]
    four, trace = [config for config, _ in plan[:4]], plan[4][0]
    assert all(c.trainable == "all" and c.centre_vision_momentum == 0.0 and c.variation == "train-tints" for c in four)
    assert four[0].steps == 75  # s1_align's 150, halved
    written = json.loads(rung.read_text())
    assert (trace.trainable, trace.centre_vision_momentum, trace.steps, trace.variation) == (
        written["trainable"], written["centre_vision_momentum"], written["steps"], "train")
    with pytest.raises(argparse.ArgumentTypeError, match="no stage config"):
        parse_then(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="repeat"):
        stage_plan("codec", then=(parse_then(str(CONFIGS / "s2_mid.json")),))
