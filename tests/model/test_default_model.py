"""The embedded default model ships with the package, fits its size limit, and answers."""
import json

import torch

from ov2_ros.cli import main
from ov2_ros.model.checkpoint import load_any, read_safetensors
from ov2_ros.model.default import DEFAULT_MODEL_DIR, default_model_dir


def test_default_model_is_embedded_small_and_fp16():
    folder = default_model_dir()
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 40 * 1024 * 1024
    weights = read_safetensors(folder / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    card = json.loads((folder / "MODEL_CARD.json").read_text())
    assert "command" in card and "evaluation" in card
    model, tokenizer = load_any(folder)
    assert model.config.llm.vocab_size == tokenizer.vocab_size


def test_generate_uses_the_default_model_when_none_is_given(p_stream, capsys):
    assert main(["generate", str(p_stream.mp4_path), "--prompt", "When does the gripper grasp the cube?",
                 "--budget", "4"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["format"] == "segment" and answer["parse_error"] is None
    assert 0.0 <= answer["parsed"]["start_s"] <= answer["parsed"]["end_s"]
    assert DEFAULT_MODEL_DIR.is_dir()
