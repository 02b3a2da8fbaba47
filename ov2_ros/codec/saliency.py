"""Saliency of a decoded picture, computed at the encoder's processed resolution so that it
costs about a millisecond per frame. Two scorers:

"motion_residual" (default): method.md 1.2 as written (see below).

"bitcost": an estimate of the bits each 16x16 macroblock cost, which is what OV2's
reference tokenizer scores with a patched decoder. The picture's true size in bits (known from
the bitstream) is shared among its macroblocks by reverse water-filling over their prediction
error energy, the rate-distortion allocation an encoder approximates:
    bits_mb = header_mb + (N / 2) * max(0, log2(energy_mb / D)),
    D chosen so that the bits add up to the access unit's
header = the coded motion-vector differences (each partition's vector minus the median of its
neighbours', as signed Exp-Golomb codes) plus the prediction modes of intra macroblocks, where
the decoder's macroblock types are known; energy = squared motion-compensated residual for inter pictures (intra-coded macroblocks use
the larger of that and the picture's local texture energy), local texture energy for intra
pictures, divided by the squared quantiser step of the macroblock when the decoder exports its
QP (a coarser quantiser spends fewer bits on the same error). Like the reference, scores are
log1p(bits) divided by the picture's 99th percentile.

motion_residual, per picture:

  motion    per 16x16 macroblock: the exported motion vectors minus the frame's median vector
            (camera motion), magnitude, divided by its 95th percentile, clipped to [0, 1];
            cells no vector covers (intra blocks) score 1.
  residual  |Y_t - MC(Y_prev, MV)|: the previous picture warped by the exported vectors (a proxy
            for the decoder's true residual), divided by its 95th percentile (floor 1), clipped.
  fused     mean of the two; block score = sum over a 28x28 pixel block (2x2 patches).

Deliberate deviation: vectors count only where the picture changed. A motion term taken as
written scores the vectors an encoder fits to sensor noise in still, flat regions: noise
vectors of a few pixels are common there, and the 95th-percentile normalisation lifts them to
the scores of real motion. On the bounce world's clips (a 13-pixel ball, sensor noise, 400
kbit/s at 160x120) the block holding the ball ranked 12th of 24 by the motion term and 9th by the
fused map, against 1st by the residual alone. So the motion term is kept only in patches whose
zero-motion change |Y_t - Y_prev| (mean over the 14x14 patch) exceeds CHANGE_GATE times the
picture's typical motion-compensated residual (the median patch's: what prediction leaves of a
still or panned background, sensor noise). A pan changes every patch, so its vectors all count
(and the median vector removes it); a moving object changes its own.

Deliberate deviation: an intra picture (periodic IDR) has no vectors, and treating all of it as
"intra = expensive" would make every refresh look like an event; its motion term is taken equal
to its zero-motion residual instead.
"""
from __future__ import annotations

import cv2
import numpy as np

from ov2_ros.codec.decoder import MB_INTRA, MB_SKIPPED

CELL_PX = 16  # an H.264 macroblock: the grid OV2's reference scores H.264 on
MOTION_PERCENTILE = 95.0
RESIDUAL_PERCENTILE = 95.0
BITCOST_PERCENTILE = 99.0
# Coefficients per macroblock in the water-filling rate model. Chosen by the fidelity study
# (docs/tokenizer.md): 16 matched the reference's selections best of 8..1536.
WATERFILL_COEFFICIENTS = 16
# Header bits of intra macroblocks in inter pictures: 16 4x4 prediction modes at ~1-4 bits
# each, or one 16x16 mode.
INTRA_4X4_HEADER_BITS = 20.0
INTRA_16X16_HEADER_BITS = 6.0
MV_GRID_PX = 4  # H.264 partitions are multiples of 4x4 pixels
# A patch's motion counts where its zero-motion change is this many times the picture's median
# motion-compensated residual per patch (floored at CHANGE_FLOOR grey levels, for noise-free
# pictures). On the bounce world 2 kept the ball in view in the most frames (1.5: 4.2, 2: 4.5, 3: 4.3
# frames a second at 16 canvases; docs/tokenizer.md).
CHANGE_GATE = 2.0
CHANGE_FLOOR = 0.1
GATE_CELL_PX = 14  # a patch of the processed frame, whose sides are multiples of 28
SCORERS = ("motion_residual", "bitcost")


def _macroblock_index(motion_vectors: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Raster index of the macroblock holding each vector's partition (by its centre)."""
    mv = motion_vectors
    return (np.clip(mv["dst_y"] // CELL_PX, 0, rows - 1).astype(np.int64) * cols
            + np.clip(mv["dst_x"] // CELL_PX, 0, cols - 1))


def motion_field(motion_vectors: np.ndarray, source_width: int, source_height: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dy, covered) per 16x16 macroblock of the source picture.

    dx, dy: the area-weighted mean displacement from this picture to its reference (src - dst,
    source pixels) of the macroblock's partitions, from past-reference vectors where it has
    them, else from future-reference ones. covered: macroblocks with at least one vector
    (inter-coded); the others are intra-coded.
    """
    rows, cols = -(-source_height // CELL_PX), -(-source_width // CELL_PX)
    cells = rows * cols
    dx = np.zeros(cells, np.float32)
    dy = np.zeros(cells, np.float32)
    covered = np.zeros(cells, bool)
    if len(motion_vectors):
        mv = motion_vectors
        cell = _macroblock_index(mv, rows, cols)
        # Past- and future-reference sums in one pass: bin 2 * cell + (1 if past).
        bins = 2 * cell + (mv["source"] < 0)
        area = mv["w"].astype(np.float32) * mv["h"]
        weight_over_scale = area / np.maximum(mv["motion_scale"], 1)
        weight = np.bincount(bins, area, 2 * cells).reshape(cells, 2)
        sum_x = np.bincount(bins, weight_over_scale * mv["motion_x"], 2 * cells).reshape(cells, 2)
        sum_y = np.bincount(bins, weight_over_scale * mv["motion_y"], 2 * cells).reshape(cells, 2)
        past = weight[:, 1] > 0  # past-reference vectors win where a macroblock has them
        use = np.where(past, 1, 0)
        chosen = weight[np.arange(cells), use]
        covered = chosen > 0
        dx[covered] = sum_x[covered, use[covered]] / chosen[covered]
        dy[covered] = sum_y[covered, use[covered]] / chosen[covered]
    return dx.reshape(rows, cols), dy.reshape(rows, cols), covered.reshape(rows, cols)


def _percentile_of_counts(counts: np.ndarray, percentile: float) -> int:
    """Nearest-rank percentile (the smallest value v with at least `percentile`% of the samples
    <= v) from a histogram of non-negative integers: 10x faster than a partition."""
    cumulative = np.cumsum(counts)
    return int(np.searchsorted(cumulative, percentile / 100.0 * cumulative[-1]))


def motion_saliency(dx: np.ndarray, dy: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """[0, 1] per cell: magnitude of the vector after removing the median (camera) motion.

    Vectors are in quarter pixels, so medians and percentiles are exact on a quarter-pixel
    histogram."""
    if not covered.any():
        return np.ones(covered.shape, np.float32)
    median = []
    for component in (dx[covered], dy[covered]):
        quarters = np.rint(component * 4).astype(np.int64)
        low = quarters.min()
        median.append((low + _percentile_of_counts(np.bincount(quarters - low), 50.0)) / 4.0)
    magnitude = np.hypot(dx - median[0], dy - median[1]).astype(np.float32)
    quarters = np.minimum(np.rint(magnitude * 4), 1 << 16).astype(np.int64)
    scale = max(_percentile_of_counts(np.bincount(quarters.ravel()), MOTION_PERCENTILE) / 4.0, 1e-6)
    score = np.minimum(magnitude * (1.0 / scale), 1.0)
    score[~covered] = 1.0  # intra-coded cells: no prediction worked
    return score


def motion_compensated_residual(luma: np.ndarray, previous_luma: np.ndarray, dx: np.ndarray,
                                dy: np.ndarray, source_width: int, source_height: int) -> np.ndarray:
    """|Y_t - MC(Y_prev)| (uint8 grey levels) at the resolution of `luma`. The per-cell
    displacements are scaled from source pixels to this resolution."""
    height, width = luma.shape
    sx, sy = width / source_width, height / source_height
    flow_x = cv2.resize(dx * sx, (width, height), interpolation=cv2.INTER_NEAREST)
    flow_y = cv2.resize(dy * sy, (width, height), interpolation=cv2.INTER_NEAREST)
    grid_x, grid_y = _pixel_grid(height, width)
    predicted = cv2.remap(previous_luma, cv2.add(grid_x, flow_x), cv2.add(grid_y, flow_y),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.absdiff(luma, predicted)


def residual_saliency(residual: np.ndarray) -> np.ndarray:
    """[0, 1]: the residual divided by its 95th percentile (floor 1 grey level)."""
    histogram = cv2.calcHist([residual], [0], None, [256], [0, 256]).ravel()
    scale = max(_percentile_of_counts(histogram, RESIDUAL_PERCENTILE), 1)
    return cv2.min(residual, scale).astype(np.float32) * np.float32(1.0 / scale)


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    if (height, width) not in _GRIDS:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        _GRIDS[(height, width)] = (xs, ys)
    return _GRIDS[(height, width)]


def changed_patches(luma: np.ndarray, previous_luma: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """(H, W) 0/1 float map: pixels of patches whose mean zero-motion change |Y_t - Y_prev|
    exceeds CHANGE_GATE times the median patch's mean motion-compensated `residual` (floor
    CHANGE_FLOOR): where something changed beyond what prediction leaves of a still scene."""
    height, width = luma.shape
    cells = (max(1, width // GATE_CELL_PX), max(1, height // GATE_CELL_PX))
    change = cv2.resize(cv2.absdiff(luma, previous_luma).astype(np.float32), cells, interpolation=cv2.INTER_AREA)
    typical = max(float(np.median(cv2.resize(residual.astype(np.float32), cells, interpolation=cv2.INTER_AREA))),
                  CHANGE_FLOOR)
    gate = (change > CHANGE_GATE * typical).astype(np.float32)
    return cv2.resize(gate, (width, height), interpolation=cv2.INTER_NEAREST)


def fused_saliency(luma: np.ndarray, previous_luma: np.ndarray | None, motion_vectors: np.ndarray,
                   intra: bool, source_width: int, source_height: int) -> np.ndarray:
    """The fused [0, 1] map at the resolution of `luma` (the processed frame).

    previous_luma: the previous decoded picture at the same resolution (None for the first
    picture of a stream, which then scores uniformly 1: nothing is known about it yet).
    """
    height, width = luma.shape
    if previous_luma is None:
        return np.ones((height, width), np.float32)
    dx, dy, covered = motion_field(motion_vectors, source_width, source_height)
    compensated = motion_compensated_residual(luma, previous_luma, dx, dy, source_width, source_height)
    residual = residual_saliency(compensated)
    if intra or not covered.any():
        return residual
    motion = cv2.resize(motion_saliency(dx, dy, covered), (width, height), interpolation=cv2.INTER_NEAREST)
    return 0.5 * (motion * changed_patches(luma, previous_luma, compensated) + residual)


def block_scores(score_map: np.ndarray, block_px: int) -> np.ndarray:
    """(H, W) map -> (H / block_px, W / block_px) sums; H and W must be multiples of block_px."""
    height, width = score_map.shape
    if height % block_px or width % block_px:
        raise ValueError(f"map {width}x{height} is not a whole number of {block_px}-pixel blocks")
    return score_map.reshape(height // block_px, block_px, width // block_px, block_px).sum(axis=(1, 3))


def exp_golomb_bits(values: np.ndarray) -> np.ndarray:
    """Length in bits of the signed Exp-Golomb code se(v) of each integer."""
    code_number = np.where(values > 0, 2 * values - 1, -2 * values)
    return 2.0 * np.floor(np.log2(code_number + 1.0)) + 1.0


def motion_vector_bits(motion_vectors: np.ndarray, source_width: int, source_height: int) -> np.ndarray:
    """(rows, cols) estimated bits of the motion-vector differences each macroblock codes.

    H.264 codes a partition's vector (quarter pixels) as its difference from the component-wise
    median of the vectors left of, above and above-right of (else above-left of) its top-left
    corner, in the same reference list, unavailable neighbours counting as zero; each component
    is a signed Exp-Golomb code (CAVLC; CABAC's binarisation grows alike). Reference indices and
    the special cases of 16x8/8x16 partitions are left out."""
    rows, cols = -(-source_height // CELL_PX), -(-source_width // CELL_PX)
    bits = np.zeros(rows * cols, np.float64)
    grid_rows, grid_cols = rows * CELL_PX // MV_GRID_PX, cols * CELL_PX // MV_GRID_PX
    for source in (-1, 1):  # past and future reference lists
        mv = motion_vectors[motion_vectors["source"] == source]
        if not len(mv):
            continue
        scale = 4.0 / np.maximum(mv["motion_scale"], 1)
        vectors = np.stack([np.rint(mv["motion_x"] * scale), np.rint(mv["motion_y"] * scale)], 1).astype(np.int64)
        size_x = np.maximum(mv["w"].astype(np.int64) // MV_GRID_PX, 1)
        size_y = np.maximum(mv["h"].astype(np.int64) // MV_GRID_PX, 1)
        # Top-left 4x4 cell of each partition, +1: row 0 and column 0 of the padded grid are
        # "outside the picture".
        top = np.clip((mv["dst_y"].astype(np.int64) - mv["h"] // 2) // MV_GRID_PX, 0, grid_rows - 1) + 1
        left = np.clip((mv["dst_x"].astype(np.int64) - mv["w"] // 2) // MV_GRID_PX, 0, grid_cols - 1) + 1
        field = np.zeros((grid_rows + 1, grid_cols + 2, 2), np.int64)
        available = np.zeros((grid_rows + 1, grid_cols + 2), bool)
        # Every 4x4 cell of every partition, vectorised: partition p covers size_y x size_x cells.
        cells = size_x * size_y
        owner = np.repeat(np.arange(len(mv)), cells)
        offset = np.arange(cells.sum()) - np.repeat(np.cumsum(cells) - cells, cells)
        cell_y = np.minimum(top[owner] + offset // size_x[owner], grid_rows)
        cell_x = np.minimum(left[owner] + offset % size_x[owner], grid_cols)
        field[cell_y, cell_x] = vectors[owner]
        available[cell_y, cell_x] = True
        right = np.minimum(left + size_x, grid_cols + 1)
        corner = np.where(available[top - 1, right], right, left - 1)
        neighbours = np.stack([field[top, left - 1], field[top - 1, left], field[top - 1, corner]])
        # Median of three = sum - max - min (np.median is 5x slower here).
        predicted = neighbours.sum(axis=0) - neighbours.max(axis=0) - neighbours.min(axis=0)
        difference = vectors - predicted
        partition_bits = exp_golomb_bits(difference).sum(axis=1)
        cell = _macroblock_index(mv, rows, cols)
        bits += np.bincount(cell, partition_bits, rows * cols)
    return bits.reshape(rows, cols).astype(np.float32)


def texture_energy(luma: np.ndarray) -> np.ndarray:
    """Squared difference from the 5x5 local mean: what intra prediction leaves to code."""
    detail = cv2.absdiff(luma, cv2.blur(luma, (5, 5))).astype(np.float32)
    return detail * detail


def waterfill_bits(energy: np.ndarray, total_bits: float, coefficients: int = WATERFILL_COEFFICIENTS) -> np.ndarray:
    """Reverse water-filling: bits_i = (N / 2) * max(0, log2(e_i / D)) with D such that the
    bits add up to total_bits (solved exactly: the active set is the k largest energies)."""
    if total_bits <= 0:
        return np.zeros(energy.shape, np.float32)
    log_energy = np.log2(np.maximum(energy.astype(np.float64), 1e-12)).ravel()
    descending = np.sort(log_energy)[::-1]
    k = np.arange(1, descending.size + 1)
    # log2 D if the k largest are active; valid where it lies between the k-th and (k+1)-th.
    log_d = (np.cumsum(descending) - 2.0 * total_bits / coefficients) / k
    below_next = np.append(descending[1:], -np.inf)
    valid = (log_d < descending) & (log_d >= below_next)
    chosen = log_d[np.argmax(valid)] if valid.any() else log_d[-1]
    bits = (coefficients / 2.0) * np.maximum(0.0, log_energy - chosen)
    return bits.reshape(energy.shape).astype(np.float32)


def bitcost_saliency(luma: np.ndarray, reference_luma: np.ndarray | None, motion_vectors: np.ndarray,
                     intra: bool, bit_cost_bits: int, source_width: int, source_height: int,
                     qp_map: np.ndarray | None = None, mb_types: np.ndarray | None = None) -> np.ndarray:
    """[0, 1] map at the resolution of `luma`: estimated macroblock bit cost, log1p, divided by
    its 99th percentile. reference_luma: the picture it was predicted from (same resolution);
    qp_map: per-macroblock quantiser parameters (H.264 QP, 0..51) when known; mb_types: the
    decoder's macroblock type letters (decoder.MB_SKIPPED, MB_INTRA) when known."""
    height, width = luma.shape
    rows, cols = -(-source_height // CELL_PX), -(-source_width // CELL_PX)
    texture = cv2.resize(texture_energy(luma), (cols, rows), interpolation=cv2.INTER_AREA)
    header = np.zeros((rows, cols), np.float32)
    if intra or reference_luma is None:
        energy = texture
    else:
        dx, dy, covered = motion_field(motion_vectors, source_width, source_height)
        residual = motion_compensated_residual(luma, reference_luma, dx, dy, source_width,
                                               source_height).astype(np.float32)
        energy = cv2.resize(residual * residual, (cols, rows), interpolation=cv2.INTER_AREA)
        energy[~covered] = np.maximum(energy[~covered], texture[~covered])
        header = motion_vector_bits(motion_vectors, source_width, source_height)
    if qp_map is not None and qp_map.shape[0] >= rows and qp_map.shape[1] >= cols:
        step = 0.625 * np.exp2(qp_map[:rows, :cols] / 6.0)  # H.264 quantiser step size
        energy = energy / (step * step)
    if mb_types is not None and mb_types.shape[0] >= rows and mb_types.shape[1] >= cols and not intra:
        types = mb_types[:rows, :cols]
        # Intra macroblocks in inter pictures code their texture and prediction modes; skipped
        # ones cost no bits (their vector is the prediction, nothing is coded).
        energy = np.where(np.isin(types, list(MB_INTRA)), np.maximum(energy, texture), energy)
        header = np.where(types == "i", INTRA_4X4_HEADER_BITS, header)
        header = np.where(np.isin(types, list(MB_INTRA - {"i"})), INTRA_16X16_HEADER_BITS, header)
        skipped = np.isin(types, list(MB_SKIPPED))
        energy = np.where(skipped, 0.0, energy)
        header = np.where(skipped, 0.0, header)
    residual_bits = max(0.0, bit_cost_bits - float(header.sum()))
    score = np.log1p(header + waterfill_bits(energy, residual_bits))
    scale = max(float(np.percentile(score, BITCOST_PERCENTILE)), 1e-6)
    score = np.minimum(score * (1.0 / scale), 1.0)
    return cv2.resize(score, (width, height), interpolation=cv2.INTER_NEAREST)
