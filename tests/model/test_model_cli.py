"""`ov2 forward` and `ov2 generate` end to end, on files."""
import json

import numpy as np
import pytest
import torch

from ov2_ros.cli import main
from ov2_ros.model.inputs import vision_input
from ov2_ros.tokenizer.files import tokenize_file
from ov2_ros.tokenizer.geometry import FrameGeometry
from tests.model.conftest import tiny_model


def _raster(rows_block, grid):
    """Inverse of the block reordering, written independently: block order -> raster per canvas."""
    t, h, w = grid
    out = np.empty_like(rows_block)
    index = 0
    for canvas in range(t):
        for block_row in range(h // 2):
            for block_col in range(w // 2):
                for sub_row in range(2):
                    for sub_col in range(2):
                        r, c = block_row * 2 + sub_row, block_col * 2 + sub_col
                        out[canvas * h * w + r * w + c] = rows_block[index]
                        index += 1
    return out


def test_forward_writes_hidden_merged_and_logits(model_dir, tokenizer, tmp_path, p_stream, capsys):
    video, _, _, _ = tokenize_file(p_stream.mp4_path, "offline")
    vision = vision_input(video.groups[:2])
    model = tiny_model(tokenizer, seed=2)
    with torch.no_grad():
        hidden, merged = model.visual(vision)
        tokens = model.vision_tokens(vision)
    pad = tokenizer.token_ids().image_pad
    ids = np.array([[1, 9] + [pad] * tokens.shape[0] + [12, 2]])
    np.savez(tmp_path / "in.npz", pixel_values=vision.pixel_values.numpy(), patch_positions=vision.positions_thw.numpy(),
             image_grid_thw=vision.grid_thw.numpy(), input_ids=ids)
    assert main(["forward", "--model", str(model_dir), "--inputs", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "out.npz")]) == 0
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["vision_hidden"], hidden.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["vision_merged"], merged.numpy(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        logits = model.logits(model.embed(torch.from_numpy(ids), tokens))
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-4, atol=1e-4)
    assert json.loads(capsys.readouterr().out)["shapes"]["logits"] == list(logits.shape)

    # The released model receives positions canvas by canvas in raster order: same result.
    grids = vision.grid_thw.numpy()
    starts = np.cumsum([0] + [int(np.prod(g)) for g in grids])
    raster = np.concatenate([_raster(vision.positions_thw.numpy()[a:b], g) for a, b, g in zip(starts, starts[1:], grids)])
    np.savez(tmp_path / "raster.npz", pixel_values=vision.pixel_values.numpy(), patch_positions=raster,
             image_grid_thw=grids)
    assert main(["forward", "--model", str(model_dir), "--inputs", str(tmp_path / "raster.npz"),
                 "--out", str(tmp_path / "raster_out.npz"), "--positions-order", "raster"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "raster_out.npz")["vision_hidden"], out["vision_hidden"],
                               rtol=1e-6, atol=1e-6)


def test_forward_refuses_incomplete_inputs(model_dir, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", pixel_values=np.zeros((4, 588), np.float32))
    assert main(["forward", "--model", str(model_dir), "--inputs", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / "o.npz")]) == 2
    assert "lacks ['patch_positions', 'image_grid_thw']" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["video", "canvases"])
def test_generate_answers_in_the_requested_format(model_dir, p_stream, tmp_path, capsys, source):
    path = p_stream.mp4_path
    if source == "canvases":
        assert main(["canvases", str(path), "--out", str(tmp_path / "c")]) == 0
        path = tmp_path / "c"
        capsys.readouterr()
    assert main(["generate", str(path), "--model", str(model_dir), "--prompt",
                 "Where is the red cube? Give its bounding box.", "--budget", "4"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["format"] == "box" and answer["parse_error"] is None and answer["stop_reason"] == "format_complete"
    box = answer["parsed"]
    assert 0 <= box["x1"] <= box["x2"] <= 320 and 0 <= box["y1"] <= box["y2"] <= 240  # source pixels
    assert answer["vision_tokens"] > 0


def test_generate_with_frames_baseline_and_budget(model_dir, p_stream, capsys):
    assert main(["generate", str(p_stream.mp4_path), "--model", str(model_dir), "--prompt", "Describe it.",
                 "--input", "frames", "--budget", "3", "--max-new-tokens", "5"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["format"] is None and answer["generated_tokens"] <= 5
    geometry = FrameGeometry.for_source(240, 320, 150_000)
    assert answer["vision_tokens"] == 3 * geometry.block_rows * geometry.block_cols  # 3 whole frames


def test_generate_with_a_missing_model_folder_says_so(p_stream, tmp_path, capsys):
    assert main(["generate", str(p_stream.mp4_path), "--prompt", "x", "--model", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
