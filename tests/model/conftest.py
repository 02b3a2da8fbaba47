"""Tiny OV2 configurations and a tokenizer shared by the model tests."""
import pytest
import torch

from ov2_ros.model.checkpoint import save_model
from ov2_ros.model.config import EncoderConfig, LLMConfig, Ov2Config
from ov2_ros.model.ov2 import Ov2Model
from ov2_ros.model.prompt import train_tokenizer

CORPUS = ["The event happens in 3.2 - 5.1 seconds", "[0.28, 0.95, 1.61]", "[12, 40, 300, 999]",
          '<tracks coords="0.5 1 120 300;1.0 1 130 310">red cube</tracks>', "[[100, 200, 0.45], [110, 210, 0.44]]",
          "What happens in the video? When does the gripper grasp the cube?"] * 20


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return train_tokenizer(CORPUS, 400, tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")


def tiny_config(tokenizer, tie=False, use_head=False, merger_positions=0) -> Ov2Config:
    return Ov2Config(
        encoder=EncoderConfig(hidden_size=64, intermediate_size=96, num_layers=2, num_heads=2, out_hidden_size=48,
                              use_head=use_head, merger_position_embeddings=merger_positions),
        llm=LLMConfig(vocab_size=tokenizer.vocab_size, hidden_size=48, intermediate_size=80, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10000.0, tie_word_embeddings=tie),
        tokens=tokenizer.token_ids())


def tiny_model(tokenizer, seed=0, **kwargs) -> Ov2Model:
    torch.manual_seed(seed)
    model = Ov2Model(tiny_config(tokenizer, **kwargs)).eval()
    with torch.no_grad():  # norms away from 1 and biases away from 0, so a wrong mapping shows
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.fixture(scope="session")
def model_dir(tokenizer, tmp_path_factory):
    """A tiny model saved as one of our model folders (config.json, model.safetensors, tokenizer.json)."""
    folder = tmp_path_factory.mktemp("model")
    save_model(tiny_model(tokenizer, seed=2), folder, tokenizer.path)
    return folder
