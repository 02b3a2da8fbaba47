"""From decoded frames to scored frames: the motion-residual saliency of each frame reduced to
2x2-block scores at the encoder geometry, and a flag for frames unfit to show the model (black,
flat or decoder-concealment green). A frame is resized once, as it is scored (its Y plane is what
saliency reads), and keeps those pixels for canvases: a closing group packs its canvases without
resizing its frames then, which was most of the live tokenizer's time at a group's last frame
(720p: ~9 of 12 ms), and the Y plane is no longer resized twice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ov2_ros.codec.ingest import FrameRecord
from ov2_ros.codec.saliency import SCORERS, bitcost_saliency, block_scores, fused_saliency
from ov2_ros.tokenizer.geometry import BLOCK_PX, FrameGeometry, yuv420_to_rgb


@dataclass(frozen=True, repr=False)
class ScoredFrame:
    t: int  # frame index in the stream, display order
    stamp_ns: int
    picture_type: str
    bit_cost_bits: int
    yuv420: np.ndarray  # (height * 3/2, width) uint8 I420: the frame at the encoder geometry
    geometry: FrameGeometry
    block_scores: np.ndarray  # (block_rows, block_cols) float32, sum of fused saliency per block
    usable: bool  # False for black, flat or green (corrupt) frames: never selected

    def rgb(self) -> np.ndarray:
        """(height, width, 3) uint8: the frame after the documented resize (geometry.py)."""
        return yuv420_to_rgb(self.yuv420)

    def __repr__(self) -> str:
        return (f"ScoredFrame(t={self.t}, type={self.picture_type}, bits={self.bit_cost_bits}, "
                f"blocks={self.block_scores.shape}, usable={self.usable})")


def frame_is_usable(yuv420: np.ndarray, height: int) -> bool:
    """False for frames that carry no picture: black, flat (one colour) or mostly the green a
    decoder shows for missing data (Y low, U and V near 0)."""
    luma = yuv420[:height:16, ::16]  # every 16th pixel is plenty for these statistics
    mean, spread = float(luma.mean()), float(luma.std())
    if (mean <= 8.0 and spread <= 6.0) or spread <= 2.0:
        return False
    width = yuv420.shape[1]
    u, v = yuv420[height:].reshape(2, height // 2, width // 2)[:, ::4, ::4]
    green = (u < 40) & (v < 40)
    return float(green.mean()) < 0.35


class FrameScorer:
    """Scores consecutive decoded frames (display order) of one stream. The geometry follows the
    first frame, and a new one after a resolution change (which restarts motion history).

    Motion compensation needs the picture a frame was predicted from: for P pictures the last
    I/P picture shown (in B-frame streams that is a few frames back), for the others the
    previous picture shown."""

    def __init__(self, max_pixels: int, saliency: str = "motion_residual"):
        if saliency not in SCORERS:
            raise ValueError(f"saliency must be one of {SCORERS}, got '{saliency}'")
        self.max_pixels = max_pixels
        self.saliency = saliency
        self.geometry: FrameGeometry | None = None
        self._previous_luma: np.ndarray | None = None
        self._reference_luma: np.ndarray | None = None  # last I or P picture

    def reset(self) -> None:
        """Forget earlier frames (after a gap in the stream)."""
        self._previous_luma = self._reference_luma = None

    def _geometry_for(self, frame: FrameRecord) -> FrameGeometry:
        geometry = self.geometry
        if geometry is None or (geometry.source_height, geometry.source_width) != (frame.height, frame.width):
            self.geometry = geometry = FrameGeometry.for_source(frame.height, frame.width, self.max_pixels)
            self.reset()
        return geometry

    def _remember(self, frame: FrameRecord, luma: np.ndarray) -> None:
        self._previous_luma = luma
        if frame.picture_type != "B":
            self._reference_luma = luma

    def score(self, frame: FrameRecord, t: int) -> ScoredFrame:
        geometry = self._geometry_for(frame)
        resized = geometry.resize_yuv420(frame.yuv420)
        luma = resized[:geometry.height]  # = geometry.resize_luma(frame.yuv420)
        intra = frame.picture_type == "I"
        if self.saliency == "bitcost":
            reference = self._reference_luma if frame.picture_type == "P" else self._previous_luma
            saliency = bitcost_saliency(luma, reference if reference is not None else self._previous_luma,
                                        frame.motion_vectors, intra, frame.bit_cost_bits, frame.width,
                                        frame.height, frame.qp_map, frame.mb_types)
        else:
            saliency = fused_saliency(luma, self._previous_luma, frame.motion_vectors, intra,
                                      frame.width, frame.height)
        self._remember(frame, luma)
        return ScoredFrame(t, frame.stamp_ns, frame.picture_type, frame.bit_cost_bits, resized, geometry,
                           block_scores(saliency, BLOCK_PX).astype(np.float32),
                           frame_is_usable(frame.yuv420, frame.height))

    def skip(self, frame: FrameRecord) -> None:
        """A frame that is not sampled still serves as a motion reference."""
        self._remember(frame, self._geometry_for(frame).resize_luma(frame.yuv420))
