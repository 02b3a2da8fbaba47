"""Frame geometry for the vision encoder (method.md 1.3): frames are resized so that height and
width are multiples of 28 (patch 14 x merge 2) with H x W <= max_pixels, then padded bottom/right
to whole 2x2 blocks. The target size follows OV2's reference tokenizer (its `smart_resize`
rule, always a multiple of 28, so no padding is needed); the pixels are resized per YUV plane
(see FrameGeometry.resize_yuv420) and converted to RGB with BT.601."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

PATCH_PX = 14
MERGE = 2  # 2x2 patches make one block = one LLM token
BLOCK_PX = PATCH_PX * MERGE
DEFAULT_MAX_PIXELS = 150_000
MIN_PIXELS = 56 * 56


def smart_resize(height: int, width: int, factor: int = BLOCK_PX, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_pixels: int = MIN_PIXELS) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`: to the nearest multiple when the area is
    within [min_pixels, max_pixels], else scaled (aspect kept) and floored/ceiled to fit."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is beyond 200:1")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    area = height * width
    if area > max_pixels:
        beta = math.sqrt(area / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif area < min_pixels:
        beta = math.sqrt(min_pixels / area)
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return max(factor, h_bar), max(factor, w_bar)


@dataclass(frozen=True)
class FrameGeometry:
    """How a source frame maps onto the encoder's patch grid."""

    source_height: int
    source_width: int
    height: int  # after resize (multiple of 28)
    width: int
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def for_source(cls, source_height: int, source_width: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> "FrameGeometry":
        if max_pixels < BLOCK_PX * BLOCK_PX:
            raise ValueError(f"max_pixels must be >= {BLOCK_PX * BLOCK_PX}, got {max_pixels}")
        height, width = smart_resize(source_height, source_width, max_pixels=max_pixels)
        return cls(source_height, source_width, height, width, max_pixels)

    @property
    def patch_rows(self) -> int:
        return self.height // PATCH_PX

    @property
    def patch_cols(self) -> int:
        return self.width // PATCH_PX

    @property
    def block_rows(self) -> int:
        return self.height // BLOCK_PX

    @property
    def block_cols(self) -> int:
        return self.width // BLOCK_PX

    @property
    def patches_per_canvas(self) -> int:
        return self.patch_rows * self.patch_cols

    @property
    def blocks_per_canvas(self) -> int:
        return self.block_rows * self.block_cols

    def source_box_of_block(self, block_row: int, block_col: int) -> tuple[float, float, float, float]:
        """[x_min, y_min, x_max, y_max] in source pixels of one 2x2 block."""
        sx, sy = self.source_width / self.width, self.source_height / self.height
        return (block_col * BLOCK_PX * sx, block_row * BLOCK_PX * sy,
                (block_col + 1) * BLOCK_PX * sx, (block_row + 1) * BLOCK_PX * sy)

    def resize_yuv420(self, yuv420: np.ndarray) -> np.ndarray:
        """Source I420 (H*3/2, W) -> I420 at (height, width): THE resize of this project, used
        for canvases and saliency alike. Each plane is halved with a Gaussian pyramid while it
        is at least twice the target, then resampled bilinearly (anti-aliased like area
        averaging, ten times cheaper at 720p)."""
        h, w = self.source_height, self.source_width
        if yuv420.shape != (h * 3 // 2, w):
            raise ValueError(f"expected I420 of a {w}x{h} frame, got array {yuv420.shape}")
        if (h, w) == (self.height, self.width):
            return yuv420
        out = np.empty((self.height * 3 // 2, self.width), np.uint8)
        out[: self.height] = resize_plane(yuv420[:h], self.width, self.height)
        chroma = yuv420[h:].reshape(2, h // 2, w // 2)  # U plane then V plane
        out[self.height:] = np.stack(
            [resize_plane(plane, self.width // 2, self.height // 2) for plane in chroma]
        ).reshape(self.height // 2, self.width)
        return out

    def resize_luma(self, yuv420: np.ndarray) -> np.ndarray:
        """The Y plane of resize_yuv420, alone (what saliency needs)."""
        return resize_plane(yuv420[: self.source_height], self.width, self.height)

    def to_dict(self) -> dict:
        return {**asdict(self), "patch_px": PATCH_PX, "merge": MERGE, "patch_rows": self.patch_rows,
                "patch_cols": self.patch_cols}


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """One 8-bit plane to (height, width): Gaussian 2x reductions while the plane is at least
    twice the target in both directions, then bilinear."""
    while plane.shape[0] >= 2 * height and plane.shape[1] >= 2 * width:
        plane = cv2.pyrDown(plane)
    if plane.shape != (height, width):
        plane = cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
    return plane


def yuv420_to_rgb(yuv420: np.ndarray) -> np.ndarray:
    """(H*3/2, W) I420 -> (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(yuv420, cv2.COLOR_YUV2RGB_I420)
