"""Block scores from codec data: the bit-cost estimate's rate model and macroblock types."""
import numpy as np

from ov2_ros.codec.decoder import MOTION_VECTOR_DTYPE
from ov2_ros.codec.saliency import bitcost_saliency, waterfill_bits


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
