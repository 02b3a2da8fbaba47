"""Weights: our format round-trips; the released layouts load with their exact names, strictly."""
import json

import pytest
import torch

from ov2_ros.errors import MissingInputError
from ov2_ros.model.checkpoint import (CheckpointError, load_model, load_released, load_released_encoder,
                                      read_safetensors, save_model, write_safetensors)
from ov2_ros.model.ov2 import VisionInput
from tests.model.conftest import tiny_config, tiny_model


def _vision(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 2 * 4 * 6  # two canvases of 4x6 patches, one window
    positions = torch.stack([torch.randint(0, 50, (n,), generator=g), torch.randint(0, 4, (n,), generator=g),
                             torch.randint(0, 6, (n,), generator=g)], 1)
    return VisionInput(torch.randn(n, 588, generator=g), positions, torch.tensor([[2, 4, 6]]))


def _outputs(model, vision, ids):
    with torch.no_grad():
        hidden, merged = model.visual(vision)
        tokens = model.vision_tokens(vision)
        slots = torch.full((1, tokens.shape[0]), model.config.tokens.image_pad)
        logits = model.logits(model.embed(torch.cat([ids, slots, ids], 1), tokens))
    return hidden, merged, logits


def _hf_config(config):
    e, l, t = config.encoder, config.llm, config.tokens
    return {"architectures": ["LlavaOnevision2ForConditionalGeneration"], "model_type": "llava_onevision2",
            "image_token_id": t.image_pad, "video_token_id": t.video_pad, "vision_start_token_id": t.vision_start,
            "vision_end_token_id": t.vision_end,
            "vision_config": {"hidden_size": e.hidden_size, "intermediate_size": e.intermediate_size,
                              "num_hidden_layers": e.num_layers, "num_attention_heads": e.num_heads,
                              "patch_size": e.patch_size, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
                              "rope_theta": 10000.0, "spatial_merge_size": 2, "out_hidden_size": l.hidden_size,
                              "frame_windows_size": 4, "use_head": False, "layer_norm_type": "layer_norm"},
            "text_config": {"model_type": "qwen3", "vocab_size": l.vocab_size, "hidden_size": l.hidden_size,
                            "intermediate_size": l.intermediate_size, "num_hidden_layers": l.num_layers,
                            "num_attention_heads": l.num_heads, "num_key_value_heads": l.num_kv_heads,
                            "head_dim": l.head_dim, "rms_norm_eps": 1e-6, "rope_theta": l.rope_theta,
                            "tie_word_embeddings": l.tie_word_embeddings, "max_position_embeddings": 4096}}


def write_released(model, folder, legacy=False, shards=2, drop=None, extra=None):
    """The model's weights in the release's layout: names of modeling_llava_onevision2.py, sharded."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(_hf_config(model.config)))
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("visual."):
            name = name if legacy else "model." + name
        elif name.startswith("language_model."):
            name = ("model." if legacy else "model.language_model.") + name[len("language_model."):]
        elif model.config.llm.tie_word_embeddings:
            continue
        state[name] = tensor.to(torch.bfloat16)
    if drop:
        state.pop(drop)
    state.update(extra or {})
    names = sorted(state)
    weight_map = {}
    for shard in range(shards):
        file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[shard::shards]}
        write_safetensors(part, folder / file)
        weight_map.update({n: file for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_our_format_round_trips_exactly(tokenizer, tmp_path):
    model = tiny_model(tokenizer, tie=True)
    save_model(model, tmp_path / "m", tokenizer.path)
    loaded = load_model(tmp_path / "m")
    assert (tmp_path / "m" / "tokenizer.json").read_bytes() == tokenizer.path.read_bytes()
    ids = torch.tensor([[1, 9, 12]])
    for a, b in zip(_outputs(model, _vision(), ids), _outputs(loaded, _vision(), ids)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loaded.lm_head.weight.data_ptr() == loaded.language_model.embed_tokens.weight.data_ptr()
    assert not any((tmp_path / "m").glob("*.bin")) and not any((tmp_path / "m").glob("*.pt"))


@pytest.mark.parametrize("legacy", [False, True])
def test_released_layout_loads_with_its_exact_names(tokenizer, tmp_path, legacy):
    model = tiny_model(tokenizer).to(torch.bfloat16).float()  # bf16-representable weights
    write_released(model, tmp_path / "ov2", legacy=legacy)
    ids = torch.tensor([[1, 9, 12]])
    expected = _outputs(model, _vision(), ids)
    loaded = load_released(tmp_path / "ov2", dtype=torch.float32)
    for a, b in zip(expected, _outputs(loaded, _vision(), ids)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for dtype in (torch.bfloat16, torch.float16):
        reduced = load_released(tmp_path / "ov2", dtype=dtype)
        assert reduced.lm_head.weight.dtype == dtype
        vision = _vision()
        vision = VisionInput(vision.pixel_values.to(dtype), vision.positions_thw, vision.grid_thw)
        logits = _outputs(reduced, vision, ids)[2].float()
        torch.testing.assert_close(logits, expected[2], rtol=0.1, atol=0.1)


def test_released_layout_with_missing_or_unexpected_keys_is_refused(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    write_released(model, tmp_path / "missing", drop="model.language_model.layers.1.self_attn.k_norm.weight")
    with pytest.raises(CheckpointError, match=r"1 missing keys \['language_model.layers.1.self_attn.k_norm.weight'\]"):
        load_released(tmp_path / "missing")
    write_released(model, tmp_path / "extra", extra={"model.visual.head.probe": torch.zeros(1, 1, 64)})
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_released(tmp_path / "extra")
    write_released(model, tmp_path / "shape", extra={"lm_head.weight": torch.zeros(7, 48)})
    with pytest.raises(CheckpointError, match="lm_head.weight has shape"):
        load_released(tmp_path / "shape")
    with pytest.raises(MissingInputError):
        load_released(tmp_path / "nowhere")


def test_standalone_encoder_release_fuses_qkv(tokenizer, tmp_path):
    model = tiny_model(tokenizer, use_head=True)
    encoder_state = {}
    for name, tensor in model.state_dict().items():
        if not name.startswith("visual.") or name.startswith("visual.merger."):
            continue
        name = name[len("visual."):]
        if ".self_attn.qkv." in name:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                encoder_state[name.replace("qkv", part)] = chunk
        else:
            encoder_state[name.replace(".self_attn.proj.", ".self_attn.out_proj.")] = tensor
    folder = tmp_path / "encoder"
    folder.mkdir()
    write_safetensors(encoder_state, folder / "model.safetensors")
    e = model.config.encoder
    (folder / "config.json").write_text(json.dumps({
        "model_type": "onevision_encoder", "hidden_size": e.hidden_size, "intermediate_size": e.intermediate_size,
        "num_hidden_layers": e.num_layers, "num_attention_heads": e.num_heads, "patch_size": 14,
        "hidden_act": "gelu", "layer_norm_eps": 1e-6, "rope_theta": 10000.0, "use_head": True}))
    encoder = load_released_encoder(folder)
    vision = _vision()
    with torch.no_grad():
        ours = encoder(vision.pixel_values, vision.positions_thw, [48])
        expected = model.visual.hidden(vision)
        torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
        assert encoder.pooled(ours).shape == (64,)


def test_corrupt_weight_files_get_clear_errors(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short"):
        read_safetensors(tmp_path / "short.safetensors")
    write_safetensors({"w": torch.ones(100)}, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-40])
    with pytest.raises(CheckpointError, match="does not fit its byte range"):
        read_safetensors(tmp_path / "cut.safetensors")
    assert read_safetensors(tmp_path / "w.safetensors")["w"].sum() == 100


def test_config_mismatch_between_encoder_and_llm_is_refused(tokenizer):
    import dataclasses

    from ov2_ros.model.config import ConfigError, Ov2Config
    config = tiny_config(tokenizer)
    with pytest.raises(ConfigError, match="merger projects to 32"):
        Ov2Config(dataclasses.replace(config.encoder, out_hidden_size=32), config.llm, config.tokens)
    with pytest.raises(ConfigError, match="unknown llm config keys"):
        Ov2Config.from_dict({**config.to_dict(), "llm": {**config.to_dict()["llm"], "n_layer": 3}})


def test_the_frame_area_a_model_was_trained_at_travels_with_it(tokenizer, tmp_path):
    import dataclasses

    from ov2_ros.model.config import ConfigError, Ov2Config
    model = tiny_model(tokenizer)
    model.config = dataclasses.replace(model.config, max_pixels=18_816)
    save_model(model, tmp_path / "m", tokenizer.path)
    assert load_model(tmp_path / "m").config.max_pixels == 18_816
    older = {k: v for k, v in model.config.to_dict().items() if k != "max_pixels"}  # configs written before it
    assert Ov2Config.from_dict(older).max_pixels == 150_000  # OV2's processor default
    with pytest.raises(ConfigError, match="below one 28x28 block"):
        dataclasses.replace(model.config, max_pixels=700)
