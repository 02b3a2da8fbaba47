"""OneVision-Encoder: 3D RoPE exactly per method.md 2.1, windows of 4 canvases, positions from (t, h, w)."""
import math

import numpy as np
import pytest
import torch

from ov2_ros.model.config import EncoderConfig
from ov2_ros.model.encoder import OneVisionEncoder, window_lengths
from ov2_ros.model.inputs import CLIP_MEAN, CLIP_STD, canvas_patch_rows, vision_input
from ov2_ros.model.rope import angles_thw, apply_rope_3d
from ov2_ros.tokenizer.canvas import patch_pixels
from ov2_ros.tokenizer.files import tokenize_file

CONFIG = EncoderConfig(hidden_size=64, intermediate_size=96, num_layers=2, num_heads=2, out_hidden_size=64)


def plain_rope(vector, t, h, w, theta=10000.0):
    """method.md 2.1 written out one channel at a time, with Python floats."""
    dim = len(vector)
    half = dim // 2
    sizes = (half // 16 * 4, half // 16 * 6, half // 16 * 6)
    angles = []
    for position, n in zip((t, h, w), sizes):
        angles += [position * theta ** (-i / n) for i in range(n)]
    out = []
    for j in range(dim):
        angle = angles[j % half]
        partner = -vector[j + 1] if j % 2 == 0 else vector[j - 1]  # (x0, x1) -> (-x1, x0)
        out.append(vector[j] * math.cos(angle) + partner * math.sin(angle))
    return out


def test_3d_rope_matches_the_formula_channel_by_channel():
    rng = np.random.default_rng(0)
    positions = torch.tensor([[0, 0, 0], [3, 7, 11], [63, 19, 35], [250, 1, 2]])
    x = torch.from_numpy(rng.standard_normal((4, 64))).float()
    angles = angles_thw(positions, 64, 10000.0)
    rotated = apply_rope_3d(x, angles.cos(), angles.sin())
    for row, (t, h, w) in enumerate(positions.tolist()):
        expected = plain_rope(x[row].double().tolist(), t, h, w)
        np.testing.assert_allclose(rotated[row].numpy(), expected, rtol=1e-5, atol=1e-5)
    # Pairing is interleaved, not split-half: a vector with only channel 1 set moves into channel 0.
    only_one = torch.zeros(1, 64)
    only_one[0, 1] = 1.0
    angles = angles_thw(torch.tensor([[5, 0, 0]]), 64, 10000.0)
    moved = apply_rope_3d(only_one, angles.cos(), angles.sin())
    assert moved[0, 0] != 0 and moved[0, 32] == 0


def test_windows_come_from_grid_thw_in_chunks_of_four_canvases():
    assert window_lengths([[4, 2, 4], [2, 2, 4]], 4) == [32, 16]
    assert window_lengths([[10, 4, 6]], 4) == [96, 96, 48]  # one row for a whole video, as released


def _inputs(canvases, rows=4, cols=6, seed=0):
    rng = np.random.default_rng(seed)
    n = canvases * rows * cols
    pixels = torch.from_numpy(rng.standard_normal((n, CONFIG.patch_dim))).float()
    positions = torch.from_numpy(np.stack([rng.integers(0, 300, n), rng.integers(0, rows, n),
                                           rng.integers(0, cols, n)], axis=1)).long()
    return pixels, positions


def test_windowed_attention_equals_each_window_alone():
    torch.manual_seed(0)
    encoder = OneVisionEncoder(CONFIG).eval()
    pixels, positions = _inputs(canvases=7)
    lengths = window_lengths([[4, 4, 6], [3, 4, 6]], 4)
    with torch.no_grad():
        together = encoder(pixels, positions, lengths)
        first = encoder(pixels[:96], positions[:96], [96])
        second = encoder(pixels[96:], positions[96:], [72])
        whole = encoder(pixels, positions, [168])  # no windows: must differ
    torch.testing.assert_close(together, torch.cat([first, second]), rtol=1e-5, atol=1e-5)
    assert (together[:96] - whole[:96]).abs().max() > 1e-3


def test_a_short_window_padded_and_masked_equals_it_unpadded():
    # The exported encoder batches windows padded to one length; masked keys must change nothing.
    torch.manual_seed(2)
    encoder = OneVisionEncoder(CONFIG).eval()
    pixels, positions = _inputs(canvases=7)
    angles = angles_thw(positions, CONFIG.head_dim, CONFIG.rope_theta)
    padded = lambda t: torch.cat([t, torch.zeros(24, *t.shape[1:], dtype=t.dtype)]).view(2, 96, *t.shape[1:])
    key_mask = torch.arange(96)[None] < torch.tensor([[96], [72]])
    with torch.no_grad():
        batched = encoder.encode_windows(padded(pixels), padded(angles.cos()), padded(angles.sin()), key_mask)
        flat = encoder(pixels, positions, [96, 72])
    torch.testing.assert_close(batched.flatten(0, 1)[:168], flat, rtol=1e-5, atol=1e-5)


def test_a_patch_depends_on_its_position_not_its_canvas_slot():
    torch.manual_seed(1)
    encoder = OneVisionEncoder(CONFIG).eval()
    pixels, positions = _inputs(canvases=4)
    order = torch.randperm(pixels.shape[0])
    with torch.no_grad():
        base = encoder(pixels, positions, [96])
        shuffled = encoder(pixels[order], positions[order], [96])
        moved = positions.clone()
        moved[5, 0] += 1  # the same patch, one frame later
        changed = encoder(pixels, moved, [96])
    torch.testing.assert_close(shuffled, base[order], rtol=1e-5, atol=1e-5)
    assert (changed[5] - base[5]).abs().max() > 1e-4


def test_model_inputs_are_the_canvas_patches_normalised_in_block_order(p_stream):
    video, _, _, _ = tokenize_file(p_stream.mp4_path, "offline")
    vision = vision_input(video.groups)
    group = video.groups[0]
    rows = canvas_patch_rows(group.canvases)
    geometry = video.geometry
    patches_per_canvas = geometry.height * geometry.width // 14 // 14
    for row in (0, 5, patches_per_canvas + 3, rows.shape[0] - 1):
        canvas, row_in_canvas = divmod(row, patches_per_canvas)
        pixels = patch_pixels(group.canvases[canvas], row_in_canvas, geometry.block_cols).astype(np.float32)
        expected = ((pixels / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1).ravel()  # channel-major
        np.testing.assert_allclose(rows[row], expected, rtol=1e-6, atol=1e-6)
    assert vision.grid_thw.tolist()[0] == [group.canvases.shape[0], geometry.height // 14, geometry.width // 14]
    assert vision.pixel_values.shape[0] == vision.positions_thw.shape[0] == int(vision.grid_thw.prod(-1).sum())


def test_mismatched_inputs_are_refused():
    encoder = OneVisionEncoder(CONFIG).eval()
    pixels, positions = _inputs(canvases=1)
    with pytest.raises(ValueError, match="do not agree"):
        encoder(pixels, positions[:-1], [24])
    with pytest.raises(ValueError, match="do not agree"):
        encoder(pixels, positions, [20])
