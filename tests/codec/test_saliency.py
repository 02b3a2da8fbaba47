"""Block scores from codec data: the bit-cost estimate's rate model and macroblock types."""
import numpy as np

from ov2_ros.codec.decoder import MOTION_VECTOR_DTYPE
from ov2_ros.codec.saliency import (block_scores, bitcost_saliency, changed_patches, exp_golomb_bits, fused_saliency,
                                    motion_compensated_residual, motion_field, motion_vector_bits, waterfill_bits)


def test_waterfill_spends_exactly_the_bits_on_the_busiest_macroblocks():
    rng = np.random.default_rng(0)
    energy = rng.exponential(100.0, size=(9, 12)).astype(np.float32)
    for total in (10.0, 500.0, 20_000.0):
        bits = waterfill_bits(energy, total)
        assert abs(bits.sum() - total) < 1e-3 * total
        order = np.argsort(energy.ravel())
        assert np.all(np.diff(bits.ravel()[order]) >= -1e-4)  # more energy never gets fewer bits
    assert not waterfill_bits(energy, 0).any()


def test_skipped_macroblocks_cost_nothing_and_coded_ones_rank_by_residual():
    height, width = 64, 96  # 4 x 6 macroblocks, scored at full resolution
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
    luma = reference.copy()
    luma[0:16, 0:16] = 255 - luma[0:16, 0:16]  # macroblock (0, 0) changed a lot, (2, 3) a little
    luma[32:48, 48:64] = np.clip(luma[32:48, 48:64].astype(int) + 12, 0, 255).astype(np.uint8)
    types = np.full((4, 6), "S")
    types[0, 0] = types[2, 3] = ">"
    score = bitcost_saliency(luma, reference, np.empty(0, MOTION_VECTOR_DTYPE), False, 400,
                             width, height, mb_types=types)
    per_mb = score.reshape(4, 16, 6, 16).max(axis=(1, 3))
    assert per_mb[types == "S"].max() == 0.0
    assert per_mb[0, 0] > per_mb[2, 3] > 0.0
    # The decoder's skip flag wins over a residual the estimate would otherwise pay for.
    types[0, 0] = "S"
    masked = bitcost_saliency(luma, reference, np.empty(0, MOTION_VECTOR_DTYPE), False, 400,
                              width, height, mb_types=types)
    assert masked[:16, :16].max() == 0.0 and masked[32:48, 48:64].min() > 0.0


def _vectors(partitions):
    """Motion-vector records for (x, y, w, h, motion_x, motion_y) partitions (quarter pixels,
    past reference), as FFmpeg exports them (dst = partition centre)."""
    records = np.zeros(len(partitions), MOTION_VECTOR_DTYPE)
    for record, (x, y, w, h, mx, my) in zip(records, partitions):
        record["source"], record["w"], record["h"] = -1, w, h
        record["dst_x"], record["dst_y"] = x + w // 2, y + h // 2
        record["motion_x"], record["motion_y"], record["motion_scale"] = mx, my, 4
    return records


def test_motion_vector_bits_follow_the_median_prediction():
    width, height = 64, 48  # 4 x 3 macroblocks of 16x16 partitions, all moving by (8, -4)
    uniform = [(x, y, 16, 16, 8, -4) for y in range(0, height, 16) for x in range(0, width, 16)]
    bits = motion_vector_bits(_vectors(uniform), width, height)
    # se(0) is 1 bit per component: wherever the neighbours' median is the vector itself.
    assert bits[1:, 1:].max() == 2.0
    # The top-left macroblock predicts from nothing (zero): it pays for the whole vector.
    assert bits[0, 0] == exp_golomb_bits(np.array([8, -4])).sum() > 2.0
    # One macroblock moving against the field pays for its difference; its right-hand and
    # lower neighbours still predict the field's vector from their other neighbours.
    outlier = [p if (p[0], p[1]) != (16, 16) else (16, 16, 16, 16, -40, 24) for p in uniform]
    bits_outlier = motion_vector_bits(_vectors(outlier), width, height)
    assert bits_outlier[1, 1] == exp_golomb_bits(np.array([-48, 28])).sum()
    assert bits_outlier[1, 2] == bits_outlier[2, 1] == bits_outlier[2, 2] == 2.0
    # Four 8x8 partitions cost four vectors.
    split = [p for p in uniform if (p[0], p[1]) != (16, 16)] + [
        (16 + dx, 16 + dy, 8, 8, 8, -4) for dy in (0, 8) for dx in (0, 8)]
    assert motion_vector_bits(_vectors(split), width, height)[1, 1] == 8.0


def test_header_bits_are_paid_before_the_residual_shares_the_rest():
    """With a picture's bits all spent on motion vectors, only the macroblock whose vector
    differs from its neighbours' scores; the residual gets nothing."""
    width, height = 64, 48
    field = [(x, y, 16, 16, 0, 0) for y in range(0, height, 16) for x in range(0, width, 16)]
    field = [p if (p[0], p[1]) != (32, 16) else (32, 16, 16, 16, 64, 64) for p in field]
    vectors = _vectors(field)
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
    luma = reference.copy()
    luma[0:16, 0:16] = 255 - luma[0:16, 0:16]  # a residual in macroblock (0, 0)
    header = motion_vector_bits(vectors, width, height)
    types = np.full((3, 4), ">")
    score = bitcost_saliency(luma, reference, vectors, False, int(header.sum()), width, height, mb_types=types)
    per_mb = score.reshape(3, 16, 4, 16).max(axis=(1, 3))
    assert per_mb[1, 2] == per_mb.max()
    assert per_mb[0, 0] < per_mb[1, 2]
    # Given more bits, the residual of macroblock (0, 0) is paid for too.
    richer = bitcost_saliency(luma, reference, vectors, False, int(header.sum()) + 2000, width, height,
                              mb_types=types)
    assert richer.reshape(3, 16, 4, 16).max(axis=(1, 3))[0, 0] > per_mb[0, 0]


def _noisy(picture, rng):
    return np.clip(picture + rng.normal(0.0, 2.0, picture.shape), 0, 255).astype(np.uint8)


def test_vectors_count_only_where_the_picture_changed():
    # A still, noisy scene where the encoder fitted vectors of up to 4 pixels to the noise in
    # every macroblock (x264 does at a high bitrate), and a 14-pixel square that moved 6 pixels
    # right: the square's block must outscore every other, and the noise vectors must not count.
    rng = np.random.default_rng(0)
    height, width = 112, 168
    before, after = np.full((height, width), 120.0), np.full((height, width), 120.0)
    before[56:70, 50:64] = 230.0
    after[56:70, 56:70] = 230.0
    previous, current = _noisy(before, rng), _noisy(after, rng)
    noise = [(x, y, 16, 16, *rng.integers(-16, 17, size=2)) for y in range(0, height, 16) for x in range(0, width, 16)]
    moved = [(x, y, 16, 16, -24, 0) if 48 <= x < 80 and 48 <= y < 80 else partition for partition in noise
             for x, y in [partition[:2]]]
    vectors = _vectors(moved)
    scores = block_scores(fused_saliency(current, previous, vectors, False, width, height), 28)
    assert np.unravel_index(scores.argmax(), scores.shape) == (2, 2)  # the block at (56..84, 56..84)
    dx, dy, _ = motion_field(vectors, width, height)
    gate = changed_patches(current, previous, motion_compensated_residual(current, previous, dx, dy, width, height))
    assert gate[56:70, 56:70].min() == 1.0  # where the square arrived
    assert gate.mean() < 0.05  # the noise vectors elsewhere score nothing


def test_a_pan_keeps_every_vector_and_an_unchanged_picture_none():
    rng = np.random.default_rng(1)
    texture = np.kron(rng.uniform(40, 220, size=(8, 12)), np.ones((14, 14)))  # (112, 168) blocks of grey
    previous, panned = _noisy(texture, rng), _noisy(np.roll(texture, 5, axis=1), rng)
    pan = _vectors([(x, y, 16, 16, -20, 0) for y in range(0, 112, 16) for x in range(0, 168, 16)])
    dx, dy, _ = motion_field(pan, 168, 112)
    residual = motion_compensated_residual(panned, previous, dx, dy, 168, 112)
    # The shift moves an edge of the texture into every patch: all of them changed, so every
    # vector counts (and the motion term's median removes the pan itself).
    assert changed_patches(panned, previous, residual).mean() > 0.9
    assert changed_patches(previous, previous, np.zeros_like(previous)).max() == 0.0
