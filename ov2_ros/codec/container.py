"""H.264 sources on disk (raw Annex-B, MP4, MKV, anything FFmpeg demuxes) as a sequence of
Annex-B access units in decode order, each with its presentation and decode time.

Containers store NAL units length-prefixed with SPS/PPS out of band; FFmpeg's
`h264_mp4toannexb` filter rewrites them as Annex-B with SPS/PPS in front of every IDR, which is
what a camera sends and what a late-joining decoder needs. Raw Annex-B files carry no timestamps:
frame times come from the SPS timing info (or a given frame rate), and display order from one
decoding pass when the stream has B-frames.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.bitstream

from ov2_ros.codec.bitstream import (
    ParameterSets,
    describe_access_unit,
    is_annexb,
    iter_access_units,
)
from ov2_ros.errors import CorruptBitstreamError, MissingInputError, UnsupportedStreamError

DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class EncodedAccessUnit:
    """One coded picture as it would travel in one message."""

    decode_index: int
    data: bytes  # Annex-B; SPS/PPS in-band before every IDR
    pts_seconds: float  # presentation time from the stream start
    dts_seconds: float  # decode time from the stream start
    key_frame: bool


@dataclass(frozen=True)
class StreamInfo:
    path: str
    container: str  # "h264" for raw Annex-B, else FFmpeg's demuxer name
    width: int
    height: int
    fps: float
    frame_count: int
    has_b_frames: bool

    @property
    def duration_seconds(self) -> float:
        return self.frame_count / self.fps


class H264File:
    """An H.264 file read as access units. Iterating again reads the file again.

    >>> source = H264File("episode.mp4")
    >>> source.info.fps, [au.key_frame for au in source][:3]
    """

    def __init__(self, path: str | Path, fps_if_unknown: float = DEFAULT_FPS):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(f"no such H.264 file: {self.path}")
        with open(self.path, "rb") as handle:
            head = handle.read(4)
        self._raw = is_annexb(head)
        self._fps_if_unknown = fps_if_unknown
        self._raw_pts: list[float] | None = None
        self._raw_keys: list[bool] = []  # IDR flag per access unit, from the probe
        self.info = self._probe_raw() if self._raw else self._probe_container()

    def __iter__(self) -> Iterator[EncodedAccessUnit]:
        return self._iter_raw() if self._raw else self._iter_container()

    def __len__(self) -> int:
        return self.info.frame_count

    # --- raw Annex-B ----------------------------------------------------------------------

    def _raw_access_units(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield from iter_access_units(data)

    def _probe_raw(self) -> StreamInfo:
        params, count, has_b, sps = ParameterSets(), 0, False, None
        for au in self._raw_access_units():
            info = describe_access_unit(au, params)
            count += 1
            self._raw_keys.append(info.is_idr)
            has_b = has_b or info.picture_type == "B"
            if sps is None:
                sps = params.sps_for_pps(info.pps_id)
        if sps is None:
            raise CorruptBitstreamError(f"{self.path}: no SPS/PPS before the first picture")
        fps = sps.fps or self._fps_if_unknown
        if has_b:
            self._raw_pts = self._display_times(fps, count)
        return StreamInfo(str(self.path), "h264", sps.width, sps.height, fps, count, has_b)

    def _display_times(self, fps: float, count: int) -> list[float]:
        """Presentation time of each access unit, from the order a decoder outputs them."""
        decoder = av.CodecContext.create("h264", "r")
        output_order: list[int] = []
        for index, au in enumerate(self._raw_access_units()):
            packet = av.Packet(au)
            packet.pts = index
            output_order += [frame.pts for frame in decoder.decode(packet)]
        output_order += [frame.pts for frame in decoder.decode(None)]
        display_rank = {decode_index: rank for rank, decode_index in enumerate(output_order)}
        # An access unit the decoder did not output keeps its decode position.
        return [display_rank.get(i, i) / fps for i in range(count)]

    def _iter_raw(self) -> Iterator[EncodedAccessUnit]:
        fps = self.info.fps
        for index, au in enumerate(self._raw_access_units()):
            pts = self._raw_pts[index] if self._raw_pts else index / fps
            yield EncodedAccessUnit(index, au, pts, index / fps, self._raw_keys[index])

    # --- containers -----------------------------------------------------------------------

    def _open_container(self):
        try:
            container = av.open(str(self.path))
        except av.FFmpegError as error:
            raise UnsupportedStreamError(f"{self.path}: FFmpeg cannot read it ({error})") from error
        if not container.streams.video:
            container.close()
            raise UnsupportedStreamError(f"{self.path}: no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name != "h264":
            container.close()
            raise UnsupportedStreamError(
                f"{self.path}: video codec is {stream.codec_context.name}, expected h264; "
                "re-encode it, e.g. `ov2 synth-stream` writes H.264"
            )
        return container, stream

    def _probe_container(self) -> StreamInfo:
        container, stream = self._open_container()
        with container:
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else self._fps_if_unknown
            count, has_b = stream.frames, False
            # The frame count when the container gives none, and whether any packet is shown
            # in a different order than decoded (the codec's has_b_frames flag only says "may").
            if not count or stream.codec_context.has_b_frames:
                count = 0
                for packet in container.demux(stream):
                    if packet.size:
                        count += 1
                        has_b = has_b or (packet.pts is not None and packet.dts is not None
                                          and packet.pts != packet.dts)
            return StreamInfo(
                str(self.path), container.format.name, stream.codec_context.width,
                stream.codec_context.height, fps, count, has_b,
            )

    def _iter_container(self) -> Iterator[EncodedAccessUnit]:
        container, stream = self._open_container()
        with container:
            to_annexb = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
            time_base = stream.time_base or Fraction(1, 90000)
            origin = None
            index = 0
            packets = container.demux(stream)
            for packet in _with_flush(packets):
                for filtered in to_annexb.filter(packet):
                    data = bytes(filtered)
                    if not data:
                        continue
                    pts = filtered.pts if filtered.pts is not None else filtered.dts
                    dts = filtered.dts if filtered.dts is not None else pts
                    if origin is None:  # display time 0 = the first picture shown
                        origin = pts if pts is not None else 0
                    yield EncodedAccessUnit(
                        index, data, float((pts - origin) * time_base),
                        float((dts - origin) * time_base), bool(filtered.is_keyframe),
                    )
                    index += 1


def _with_flush(packets):
    """The demuxed packets (skipping empty flush packets), then None to flush the filter."""
    for packet in packets:
        if packet.size:
            yield packet
    yield None
