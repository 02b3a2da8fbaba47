"""Our Qwen3 against Hugging Face transformers' Qwen3ForCausalLM (an independent implementation):
same weights, same logits, with and without the KV cache."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from ov2_ros.model.checkpoint import released_name  # noqa: E402
from ov2_ros.model.config import llm_from_hf  # noqa: E402
from ov2_ros.model.llm import KVCache, Qwen3Model  # noqa: E402


@pytest.mark.parametrize("tie", [False, True])
def test_logits_match_transformers_qwen3(tie):
    hf_config = transformers.Qwen3Config(
        vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, rope_theta=8_000_000.0,
        max_position_embeddings=512, tie_word_embeddings=tie)
    torch.manual_seed(0)
    reference = transformers.Qwen3ForCausalLM(hf_config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))  # norms away from 1
    ours_config = llm_from_hf(hf_config.to_dict())
    assert ours_config.rope_theta == 8_000_000.0 and ours_config.tie_word_embeddings == tie
    ours = Qwen3Model(ours_config).eval()
    state = {released_name(k): v for k, v in reference.state_dict().items()}  # model.* -> language_model.*
    head = state.pop("lm_head.weight")
    ours.load_state_dict({k[len("language_model."):]: v for k, v in state.items()}, strict=True)
    ids = torch.randint(0, 320, (1, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        got = ours(ours.embed_tokens(ids)) @ head.T
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        cache = KVCache.empty(3)
        stepped = torch.cat([ours(ours.embed_tokens(ids[:, :30]), cache)] +
                            [ours(ours.embed_tokens(ids[:, i:i + 1]), cache) for i in range(30, 40)], 1) @ head.T
        torch.testing.assert_close(stepped, expected, rtol=1e-5, atol=1e-5)
