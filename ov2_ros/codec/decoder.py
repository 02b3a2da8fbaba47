"""Live H.264 decoding with PyAV: one Annex-B access unit in, the pictures it completes out.

Each access unit goes straight to the decoder (no parser, which holds one access unit back),
with slice threading only (frame threading delays output by 2-3 frames). Motion vectors come
from FFmpeg's `+export_mvs` side data. B-frame streams output in display order, a few access
units late; `drain()` returns what the decoder still holds.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import av
import av.logging
import cv2
import numpy as np

# FFmpeg's AVMotionVector as PyAV exposes it (source -1: from the past, +1: from the future).
MOTION_VECTOR_DTYPE = np.dtype(
    [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"),
     ("dst_x", "<i2"), ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"),
     ("motion_y", "<i4"), ("motion_scale", "<u2")],
    align=True,
)
_PICTURE_TYPE_LETTER = {1: "I", 2: "P", 3: "B", 4: "I", 5: "P", 6: "B"}  # AV_PICTURE_TYPE_*

# Macroblock types as FFmpeg's `debug=mb_type` map prints them (libavcodec/mpegutils.c): one
# letter per macroblock. Skipped macroblocks carry no residual and no motion data.
MB_SKIPPED = frozenset("Sdg")  # P/B skip, B direct-skip, GMC skip
MB_INTRA = frozenset("PAiI")  # PCM, AC-predicted, intra 4x4, intra 16x16
_MB_MAP_HEADER = "New frame, type:"
_MB_ROW = re.compile(r" *\d+ ")
_DIGIT = re.compile(r"\d")


def _mb_type_maps(log_lines: list[str]) -> list[np.ndarray]:
    """Per output picture, in output order: (rows, cols) array of type letters (dtype '<U1')
    from the lines of FFmpeg's macroblock-type map. A row line is the row's pixel y, right-
    aligned (3 columns at 360p, 4 at 720p), a space, then 3 characters per macroblock, the
    first being its type; the ruler line above the rows holds column numbers (digits)."""
    maps: list[list[list[str]]] = []
    for line in log_lines:
        if line.startswith(_MB_MAP_HEADER):
            maps.append([])
        elif maps and (row := _MB_ROW.match(line)):
            body = line.rstrip("\n")[row.end():]
            if body and not _DIGIT.search(body):
                maps[-1].append(list(body[::3]))
    return [np.array(rows, dtype="<U1") for rows in maps if rows and len({len(r) for r in rows}) == 1]


class I420Image:
    """Shared accessors of frames stored as planar I420: `yuv420` is (H * 3 / 2, W) uint8, the
    Y plane then the quarter-size U and V planes."""

    yuv420: np.ndarray

    @property
    def width(self) -> int:
        return self.yuv420.shape[1]

    @property
    def height(self) -> int:
        return self.yuv420.shape[0] * 2 // 3

    @property
    def luma(self) -> np.ndarray:
        """(H, W) uint8 view of the Y plane."""
        return self.yuv420[: self.height]

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB (BT.601)."""
        return cv2.cvtColor(self.yuv420, cv2.COLOR_YUV2RGB_I420)


@dataclass(frozen=True, repr=False)
class DecodedPicture(I420Image):
    tag: int  # the tag given with the access unit that carried this picture
    picture_type: str  # "I", "P" or "B", as the decoder saw it
    yuv420: np.ndarray  # (H * 3 / 2, W) uint8: planar I420, Y then U then V
    full_range: bool  # JPEG (0-255) rather than video (16-235) levels
    motion_vectors: np.ndarray  # (N,) MOTION_VECTOR_DTYPE; empty for intra pictures
    qp_map: np.ndarray | None = None  # (rows, cols) quantiser per 16x16 macroblock, when exported
    mb_types: np.ndarray | None = None  # (rows, cols) type letter per macroblock, when exported

    def __repr__(self) -> str:
        return (f"DecodedPicture(tag={self.tag}, type={self.picture_type}, {self.width}x{self.height}, "
                f"motion_vectors={len(self.motion_vectors)})")


class H264Decoder:
    """Decodes Annex-B access units; `reset()` starts over as if newly created."""

    def __init__(self, export_motion_vectors: bool = True, threads: int = 1,
                 export_macroblocks: bool = False):
        """export_macroblocks: per-macroblock quantisers (side data) and types (FFmpeg's debug
        map, captured from its log at debug level, which halves decoding speed: 465 -> 245 fps
        at 720p on one core), for the bitcost scorer."""
        self._export_motion_vectors = export_motion_vectors
        self._export_macroblocks = export_macroblocks
        self._threads = threads
        self._context = self._create()

    def _create(self) -> av.CodecContext:
        context = av.CodecContext.create("h264", "r")
        context.thread_type = "SLICE"
        context.thread_count = self._threads
        options = {}
        if self._export_motion_vectors:
            options["flags2"] = "+export_mvs"
        if self._export_macroblocks:  # quantisers (AV_FRAME_DATA_VIDEO_ENC_PARAMS), type map
            options["export_side_data"] = "venc_params"
            options["debug"] = "mb_type"
        context.options = options
        return context

    def decode(self, access_unit: bytes, tag: int) -> list[DecodedPicture]:
        """Decode one access unit. Raises av.FFmpegError on data the decoder rejects."""
        packet = av.Packet(access_unit)
        packet.pts = tag
        return self._decode(packet)

    def drain(self) -> list[DecodedPicture]:
        """Pictures still held for reordering; the decoder must be reset afterwards."""
        try:
            return self._decode(None)
        except av.FFmpegError:
            return []

    def _decode(self, packet: av.Packet | None) -> list[DecodedPicture]:
        if not self._export_macroblocks:
            return [self._convert(frame) for frame in self._context.decode(packet)]
        # The type map reaches us only through FFmpeg's log at debug level: capture this
        # thread's messages for this call, then give the log level back.
        level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
        av.logging.set_level(av.logging.DEBUG)
        av.logging.set_skip_repeated(False)
        try:
            with av.logging.Capture(local=True) as log:
                frames = self._context.decode(packet)
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skip_repeated)
        type_maps = _mb_type_maps([message for _, name, message in log if name == "h264"])
        if len(type_maps) != len(frames):  # a picture without its map (corrupt data): none
            type_maps = [None] * len(frames)
        return [self._convert(frame, types) for frame, types in zip(frames, type_maps)]

    def reset(self) -> None:
        self._context = self._create()

    def _convert(self, frame: av.VideoFrame, mb_types: np.ndarray | None = None) -> DecodedPicture:
        name = frame.format.name
        if name not in ("yuv420p", "yuvj420p"):  # 4:2:2, 4:4:4 or high bit depth
            frame = frame.reformat(format="yuv420p")
        yuv420 = frame.to_ndarray()
        vectors = np.empty(0, MOTION_VECTOR_DTYPE)
        if self._export_motion_vectors:
            # frame.side_data ties the frame to its side data in a reference cycle (PyAV): the
            # frame, picture buffer included, then waits for Python's cyclic collector
            # (long-running processes collect it: ros/node.py, HEAP_COLLECT_PERIOD_S).
            side_data = frame.side_data.get("MOTION_VECTORS")
            if side_data is not None:
                vectors = side_data.to_ndarray().astype(MOTION_VECTOR_DTYPE, copy=True)
        qp_map = None
        if self._export_macroblocks:
            params = frame.side_data.get("VIDEO_ENC_PARAMS")
            if params is not None:
                qp_map = np.asarray(params.qp_map(), dtype=np.float32)
        return DecodedPicture(
            tag=int(frame.pts),
            picture_type=_PICTURE_TYPE_LETTER.get(int(frame.pict_type), "?"),
            yuv420=yuv420,
            full_range=name == "yuvj420p" or int(frame.color_range) == 2,
            motion_vectors=vectors,
            qp_map=qp_map,
            mb_types=mb_types,
        )


def bare_decode_fps(access_units: list[bytes], export_motion_vectors: bool = False) -> float:
    """Frames/s of plain PyAV decoding (one slice thread, no conversion): the baseline the
    benchmarks compare against, measured in the same run. With export_motion_vectors, FFmpeg
    also exports the vectors, which PyAV reads out: the floor of any motion-based tokenizer."""
    context = av.CodecContext.create("h264", "r")
    context.thread_type, context.thread_count = "SLICE", 1
    if export_motion_vectors:
        context.options = {"flags2": "+export_mvs"}
    started = time.perf_counter()
    for au in access_units:
        for frame in context.decode(av.Packet(au)):
            if export_motion_vectors and (vectors := frame.side_data.get("MOTION_VECTORS")) is not None:
                vectors.to_ndarray()
    return len(access_units) / (time.perf_counter() - started)
