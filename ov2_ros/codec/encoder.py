"""H.264 encoding with libx264 (through PyAV), configured like a robot camera: fixed GOP, no
scene-cut keyframes, optional B-frames, deterministic output for a given input."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


@dataclass(frozen=True)
class H264EncoderConfig:
    """libx264 settings. Defaults match a low-latency robot camera (no B-frames, 1 s GOP)."""

    width: int = 640
    height: int = 480
    fps: float = 30.0
    gop_frames: int = 30  # distance between IDR frames; a late joiner waits at most this long
    bitrate_bps: int = 2_000_000
    b_frames: int = 0  # consecutive B-frames; 0 sends every frame as soon as it is encoded
    preset: str = "veryfast"
    # One encoder thread keeps the bitstream identical on every machine (x264 slices by thread).
    threads: int = 1

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError(f"width/height must be positive and even (4:2:0), got {self.width}x{self.height}")
        if not 1.0 <= self.fps <= 240.0:
            raise ValueError(f"fps must be in [1, 240], got {self.fps}")
        if self.gop_frames < 1:
            raise ValueError(f"gop_frames must be >= 1, got {self.gop_frames}")
        if self.bitrate_bps < 10_000:
            raise ValueError(f"bitrate_bps must be >= 10000, got {self.bitrate_bps}")
        if not 0 <= self.b_frames <= 16:
            raise ValueError(f"b_frames must be in [0, 16], got {self.b_frames}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps).limit_denominator(1001)

    def x264_params(self) -> str:
        params = {
            "keyint": self.gop_frames,
            "min-keyint": self.gop_frames,
            "scenecut": 0,
            "bframes": self.b_frames,
            "threads": self.threads,
        }
        if self.b_frames == 0:
            # What tune=zerolatency does for latency, without its thread-dependent slicing.
            params.update({"rc-lookahead": 0, "sync-lookahead": 0})
        return ":".join(f"{key}={value}" for key, value in params.items())

    def to_dict(self) -> dict:
        return asdict(self)


def encode_mp4(frames_rgb: Iterable[np.ndarray], path: str | Path, config: H264EncoderConfig) -> int:
    """Encode RGB frames (H, W, 3 uint8) to an MP4 file; returns the number of frames written."""
    count = 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=config.frame_rate)
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        stream.bit_rate = config.bitrate_bps
        stream.codec_context.options = {"preset": config.preset, "x264-params": config.x264_params()}
        for image in frames_rgb:
            if image.shape != (config.height, config.width, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"frame {count}: expected ({config.height}, {config.width}, 3) uint8, "
                    f"got {image.shape} {image.dtype}"
                )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = count, 1 / config.frame_rate
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return count


class LiveEncoder:
    """Frames in, one Annex-B access unit out per frame, immediately: what a camera with a
    hardware encoder would send. Used by the node for cameras that publish raw images.

    No B-frames and no lookahead (config.b_frames must be 0), so every frame leaves the encoder
    as it goes in; SPS/PPS are repeated in front of every IDR (a late start or a loss recovers at
    the next IDR, as with a real camera)."""

    def __init__(self, config: H264EncoderConfig):
        if config.b_frames:
            raise ValueError("a live encoder sends every frame at once: b_frames must be 0")
        self.config = config
        self._context = av.CodecContext.create("libx264", "w")
        self._context.width, self._context.height = config.width, config.height
        self._context.pix_fmt = "yuv420p"
        self._context.time_base = 1 / config.frame_rate
        self._context.framerate = config.frame_rate
        self._context.bit_rate = config.bitrate_bps
        self._context.options = {"preset": config.preset, "tune": "zerolatency",
                                 "x264-params": config.x264_params() + ":repeat-headers=1:annexb=1"}
        self._index = 0

    def encode(self, rgb: np.ndarray) -> bytes:
        """rgb (H, W, 3) uint8 of the configured size -> its access unit (Annex-B)."""
        if rgb.shape != (self.config.height, self.config.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a {self.config.height}x{self.config.width} RGB uint8 image, got "
                             f"{rgb.shape} {rgb.dtype}")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = self._index
        self._index += 1
        return b"".join(bytes(packet) for packet in self._context.encode(frame))
