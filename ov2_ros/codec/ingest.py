"""Ingest of a live H.264 stream, one access unit per message: validation, loss detection,
decoding, and per-frame records for the tokenizer. No ROS here: the node calls `push()`.

Every access unit pushed ends in exactly one counter, so a stream can be audited:
    frames_received = frames_decoded + frames_pending_in_decoder + decode_errors
                    + frames_dropped_waiting_for_idr + frames_discarded_by_decoder
                    + frames_rejected_format + frames_rejected_empty + frames_rejected_malformed

Loss handling (a lost reference picture corrupts every picture until the next IDR):
- A decoder starts, and restarts after any loss, by waiting for an IDR whose SPS/PPS it has
  (in the same access unit, or remembered from earlier in the stream).
- Loss is detected from the bitstream (a gap in frame_num between reference pictures, H.264
  7.4.3), from message stamps (a jump or regression beyond `max_stamp_gap_ns`), from decoder
  errors, or reported by the caller (`mark_discontinuity`, e.g. a full queue).
- A new picture size at an IDR restarts the decoder at that IDR (nothing is dropped).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import av
import numpy as np

from ov2_ros.codec.bitstream import (
    AccessUnitInfo,
    ParameterSets,
    avcc_to_annexb,
    describe_access_unit,
    is_annexb,
)
from ov2_ros.codec.decoder import DecodedPicture, H264Decoder, I420Image
from ov2_ros.errors import CorruptBitstreamError

ACCEPTED_FORMATS = frozenset({"h264", "h.264", "avc"})
# More pictures than a decoder can hold for reordering (H.264 DPB: 16 frames).
_MAX_PENDING = 32


@dataclass(frozen=True, repr=False)
class FrameRecord(I420Image):
    """One decoded frame with what the tokenizer needs from the codec."""

    decode_index: int  # position of its access unit among those pushed (decode order)
    display_index: int  # position among decoded frames (display order)
    stamp_ns: int  # acquisition stamp from the message header; 0 when unknown
    receive_ns: int  # wall clock when the access unit arrived
    decoded_ns: int  # wall clock when the picture left the decoder
    bit_cost_bits: int  # size of its coded slices, bits (method.md 1.1)
    picture_type: str  # "I", "P" or "B"
    key_frame: bool  # an IDR picture
    yuv420: np.ndarray  # (H * 3 / 2, W) uint8, planar I420
    full_range: bool
    motion_vectors: np.ndarray  # FFmpeg AVMotionVector records; empty for I pictures
    qp_map: np.ndarray | None = None  # (rows, cols) per-macroblock quantiser, if exported
    mb_types: np.ndarray | None = None  # (rows, cols) macroblock type letters, if exported

    def __repr__(self) -> str:
        return (f"FrameRecord(decode_index={self.decode_index}, display_index={self.display_index}, "
                f"type={self.picture_type}, {self.width}x{self.height}, bits={self.bit_cost_bits}, "
                f"motion_vectors={len(self.motion_vectors)}, stamp_ns={self.stamp_ns})")


@dataclass
class IngestCounters:
    frames_received: int = 0
    frames_decoded: int = 0
    frames_pending_in_decoder: int = 0  # accepted, not yet output (B-frame reordering)
    decode_errors: int = 0
    frames_dropped_waiting_for_idr: int = 0
    frames_discarded_by_decoder: int = 0  # accepted but never output by the decoder
    frames_rejected_format: int = 0  # message format is not H.264
    frames_rejected_empty: int = 0
    frames_rejected_malformed: int = 0  # not an H.264 access unit
    decoder_resets: int = 0
    frame_num_gaps: int = 0
    stamp_discontinuities: int = 0
    reported_discontinuities: int = 0
    resolution_changes: int = 0

    def accounted(self) -> int:
        """Access units whose fate is known; equals frames_received at all times."""
        return (self.frames_decoded + self.frames_pending_in_decoder + self.decode_errors
                + self.frames_dropped_waiting_for_idr + self.frames_discarded_by_decoder
                + self.frames_rejected_format + self.frames_rejected_empty
                + self.frames_rejected_malformed)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PushResult:
    outcome: str  # "accepted", "dropped_waiting_for_idr", "decode_error", "rejected_format", ...
    frames: list[FrameRecord] = field(default_factory=list)  # pictures completed by this push
    detail: str = ""  # why, for anything but "accepted"
    decode_ms: float = 0.0  # decoder time of this push, including frame conversion

    @property
    def problem(self) -> bool:
        return self.outcome != "accepted"


@dataclass(frozen=True)
class _Pending:
    """What we know of an access unit while the decoder holds it."""

    decode_index: int
    stamp_ns: int
    receive_ns: int
    info: AccessUnitInfo


class StreamIngest:
    """Stateful ingest of one camera stream. Not thread-safe: one thread pushes."""

    def __init__(self, max_stamp_gap_ns: int = 500_000_000, export_motion_vectors: bool = True,
                 decoder_threads: int = 1, export_macroblocks: bool = False):
        self.counters = IngestCounters()
        self.max_stamp_gap_ns = max_stamp_gap_ns
        self.frame_size: tuple[int, int] | None = None  # (width, height) being decoded
        self._decoder = H264Decoder(export_motion_vectors, decoder_threads, export_macroblocks)
        self._params = ParameterSets()
        self._awaiting_idr = True
        self._prev_ref_frame_num: int | None = None
        self._newest_stamp_ns: int | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_decode_index = 0
        self._next_display_index = 0

    @property
    def awaiting_idr(self) -> bool:
        return self._awaiting_idr

    def reject_format(self, detail: str) -> PushResult:
        """Count a message that never became an access unit (a raw image that could not be
        encoded) like one of the wrong format, so every message still lands in one counter."""
        self.counters.frames_received += 1
        self._next_decode_index += 1
        self.counters.frames_rejected_format += 1
        return PushResult("rejected_format", detail=detail)

    def mark_discontinuity(self) -> list[FrameRecord]:
        """The caller lost access units (e.g. its queue overflowed): wait for the next IDR."""
        self.counters.reported_discontinuities += 1
        return self._restart()

    def finish(self) -> list[FrameRecord]:
        """End of stream: the pictures the decoder still holds."""
        return self._restart()

    def push(self, payload: bytes, stamp_ns: int = 0, fmt: str = "h264",
             receive_ns: int | None = None) -> PushResult:
        counters = self.counters
        counters.frames_received += 1
        decode_index = self._next_decode_index
        self._next_decode_index += 1
        receive_ns = time.time_ns() if receive_ns is None else receive_ns

        if fmt.strip().lower() not in ACCEPTED_FORMATS:
            counters.frames_rejected_format += 1
            return PushResult("rejected_format", detail=f"format '{fmt}' is not H.264; expected 'h264'")
        if not payload:
            counters.frames_rejected_empty += 1
            return PushResult("rejected_empty", detail="empty payload")
        data = bytes(payload)
        if not is_annexb(data):
            converted = avcc_to_annexb(data)  # some publishers send MP4-style length prefixes
            if converted is None:
                counters.frames_rejected_malformed += 1
                return PushResult("rejected_malformed",
                                  detail=f"{len(data)} bytes are neither Annex-B nor length-prefixed H.264")
            data = converted
        try:
            info = describe_access_unit(data, self._params)
        except CorruptBitstreamError as error:
            counters.frames_rejected_malformed += 1
            return PushResult("rejected_malformed", detail=str(error))

        frames = self._check_continuity(info, stamp_ns)
        if self._awaiting_idr:
            if not info.is_idr:
                counters.frames_dropped_waiting_for_idr += 1
                return PushResult("dropped_waiting_for_idr", frames, "waiting for an IDR access unit")
            if not (info.has_sps and info.has_pps):
                parameter_sets = self._params.annexb_for_pps(info.pps_id)
                if parameter_sets is None:
                    counters.frames_dropped_waiting_for_idr += 1
                    return PushResult("dropped_waiting_for_idr", frames,
                                      "IDR without SPS/PPS and none seen before; the publisher must "
                                      "send SPS/PPS with every IDR")
                data = parameter_sets + data
            self._awaiting_idr = False
        sps = self._params.sps_for_pps(info.pps_id)
        if info.is_idr and sps is not None:
            size = (sps.width, sps.height)
            if self.frame_size is not None and size != self.frame_size:
                counters.resolution_changes += 1
                frames += self._drain_and_reset()
            self.frame_size = size

        self._pending[decode_index] = _Pending(decode_index, stamp_ns, receive_ns, info)
        counters.frames_pending_in_decoder += 1
        started = time.perf_counter()
        try:
            pictures = self._decoder.decode(data, decode_index)
        except av.FFmpegError as error:
            del self._pending[decode_index]
            counters.frames_pending_in_decoder -= 1
            counters.decode_errors += 1
            frames += self._restart()
            return PushResult("decode_error", frames, f"decoder rejected the access unit: {error}",
                              (time.perf_counter() - started) * 1e3)
        frames += self._collect(pictures)
        decode_ms = (time.perf_counter() - started) * 1e3
        if info.is_idr:
            self._prev_ref_frame_num = info.frame_num
        elif info.is_reference and info.frame_num is not None:
            self._prev_ref_frame_num = info.frame_num
        return PushResult("accepted", frames, decode_ms=decode_ms)

    # --- internals ------------------------------------------------------------------------

    def _check_continuity(self, info: AccessUnitInfo, stamp_ns: int) -> list[FrameRecord]:
        """Restart (and return the pictures that flushes out) if this access unit follows a loss."""
        frames: list[FrameRecord] = []
        newest = self._newest_stamp_ns
        if stamp_ns and newest is not None and abs(stamp_ns - newest) > self.max_stamp_gap_ns:
            self.counters.stamp_discontinuities += 1
            frames = self._restart()
            newest = None  # a new timeline starts here
        elif not self._awaiting_idr and not info.is_idr and not self._frame_num_continues(info):
            self.counters.frame_num_gaps += 1
            frames = self._restart()
        if stamp_ns:  # B-frames arrive with earlier stamps than the newest: keep the newest
            self._newest_stamp_ns = stamp_ns if newest is None else max(newest, stamp_ns)
        return frames

    def _frame_num_continues(self, info: AccessUnitInfo) -> bool:
        sps = self._params.sps_for_pps(info.pps_id)
        if sps is None or info.frame_num is None or self._prev_ref_frame_num is None:
            return True
        if sps.gaps_in_frame_num_allowed:
            return True
        expected = (self._prev_ref_frame_num + 1) % (1 << sps.log2_max_frame_num)
        return info.frame_num in (expected, self._prev_ref_frame_num)

    def _restart(self) -> list[FrameRecord]:
        frames = self._drain_and_reset()
        self._awaiting_idr = True
        self._prev_ref_frame_num = None
        return frames

    def _drain_and_reset(self) -> list[FrameRecord]:
        frames = self._collect(self._decoder.drain())
        self.counters.frames_discarded_by_decoder += len(self._pending)
        self.counters.frames_pending_in_decoder -= len(self._pending)
        self._pending.clear()
        self._decoder.reset()
        self.counters.decoder_resets += 1
        return frames

    def _collect(self, pictures: list[DecodedPicture]) -> list[FrameRecord]:
        decoded_ns = time.time_ns()
        frames = []
        for picture in pictures:
            pending = self._pending.pop(picture.tag, None)
            if pending is None:
                continue
            self.counters.frames_pending_in_decoder -= 1
            self.counters.frames_decoded += 1
            frames.append(FrameRecord(
                decode_index=pending.decode_index, display_index=self._next_display_index,
                stamp_ns=pending.stamp_ns, receive_ns=pending.receive_ns, decoded_ns=decoded_ns,
                bit_cost_bits=pending.info.bit_cost_bits, picture_type=pending.info.picture_type,
                key_frame=pending.info.is_idr, yuv420=picture.yuv420, full_range=picture.full_range,
                motion_vectors=picture.motion_vectors, qp_map=picture.qp_map, mb_types=picture.mb_types,
            ))
            self._next_display_index += 1
        # A decoder that swallowed pictures (concealment, skipped frames) would hold them forever.
        while len(self._pending) > _MAX_PENDING:
            del self._pending[min(self._pending)]
            self.counters.frames_pending_in_decoder -= 1
            self.counters.frames_discarded_by_decoder += 1
        return frames
