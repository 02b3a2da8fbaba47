"""H.264 read straight from the bitstream, without decoding: NAL units, parameter sets, the
slice-header fields we need, access units and their bit cost.

Implements the parts of ITU-T H.264 (08/2021) that a live ingest needs:
  7.3.1  NAL unit header               7.3.2.1.1  sequence parameter set (+ E.1.1 VUI timing)
  7.3.2.2 picture parameter set        7.3.3      slice header up to frame_num
  7.4.1.2.3 which NAL units start a new access unit        B.1  Annex-B byte stream format
The bit cost of an access unit (method.md 1.1) is the size of its VCL NAL units (coded slices)
in bits, known before decoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterator

from ov2_ros.errors import CorruptBitstreamError

START_CODE = b"\x00\x00\x01"
# An access-unit delimiter (primary_pic_type 7 = any slice type). PyAV's parser holds one AU back
# until the next one starts; appending this releases it.
ACCESS_UNIT_DELIMITER = b"\x00\x00\x00\x01\x09\xf0"


class NalType(IntEnum):
    SLICE = 1
    SLICE_PARTITION_A = 2
    SLICE_PARTITION_B = 3
    SLICE_PARTITION_C = 4
    IDR = 5
    SEI = 6
    SPS = 7
    PPS = 8
    AUD = 9
    END_OF_SEQUENCE = 10
    END_OF_STREAM = 11
    FILLER = 12
    SPS_EXTENSION = 13
    PREFIX = 14
    SUBSET_SPS = 15


VCL_NAL_TYPES = frozenset({1, 2, 3, 4, 5})
# NAL types that, after a VCL NAL unit, begin the next access unit (7.4.1.2.3).
_AU_OPENING_NAL_TYPES = frozenset({6, 7, 8, 9, 14, 15, 16, 17, 18})
# slice_type % 5 -> picture type letter (7.4.3, Table 7-6); SP/SI count as P/I.
_SLICE_TYPE_LETTER = {0: "P", 1: "B", 2: "I", 3: "P", 4: "I"}
# Profiles whose SPS carries chroma format, bit depth and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


# --- Annex-B framing ----------------------------------------------------------------------


@dataclass(frozen=True)
class NalSpan:
    """Where one NAL unit lies in a buffer: [start_code_begin, payload_begin, payload_end)."""

    start_code_begin: int
    payload_begin: int
    payload_end: int


def is_annexb(data: bytes) -> bool:
    """True if the buffer starts with an Annex-B start code (3 or 4 bytes)."""
    return data[:3] == START_CODE or data[:4] == b"\x00" + START_CODE


def iter_nal_spans(data) -> Iterator[NalSpan]:
    """NAL units of an Annex-B buffer (bytes, memoryview-able or mmap), in order.

    Trailing zero bytes before the next start code are not part of a NAL unit (a NAL unit never
    ends in 0x00); a leading zero byte of a 4-byte start code belongs to the start code.
    """
    size = len(data)
    found = data.find(START_CODE, 0)
    while found != -1:
        payload_begin = found + 3
        start_code_begin = found - 1 if found > 0 and data[found - 1] == 0 else found
        following = data.find(START_CODE, payload_begin)
        payload_end = size if following == -1 else following
        while payload_end > payload_begin and data[payload_end - 1] == 0:
            payload_end -= 1
        if payload_end > payload_begin:
            yield NalSpan(start_code_begin, payload_begin, payload_end)
        found = following


def nal_header(first_byte: int) -> tuple[int, int]:
    """(nal_unit_type, nal_ref_idc) of a NAL unit's first byte; raises on forbidden_zero_bit."""
    if first_byte & 0x80:
        raise CorruptBitstreamError(
            f"NAL header byte 0x{first_byte:02x} has forbidden_zero_bit set; the payload is not "
            "H.264 or is damaged"
        )
    return first_byte & 0x1F, (first_byte >> 5) & 0x3


def rbsp_bytes(nal_payload: bytes) -> bytes:
    """The raw byte sequence payload: the NAL payload without emulation-prevention bytes
    (every 0x03 that follows 0x00 0x00 was inserted by the encoder, 7.4.1)."""
    return nal_payload.replace(b"\x00\x00\x03", b"\x00\x00")


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes | None:
    """Length-prefixed NAL units (MP4/MKV sample layout) as Annex-B, or None if the buffer is
    not an exact sequence of length-prefixed NAL units."""
    pieces, offset = [], 0
    while offset < len(data):
        if offset + length_size > len(data):
            return None
        length = int.from_bytes(data[offset : offset + length_size], "big")
        offset += length_size
        if length == 0 or offset + length > len(data) or data[offset] & 0x80:
            return None
        pieces.append(b"\x00\x00\x00\x01" + data[offset : offset + length])
        offset += length
    return b"".join(pieces) if pieces else None


# --- bit reading --------------------------------------------------------------------------


class BitReader:
    """Reads fixed-length and Exp-Golomb codes (9.1) from an RBSP, most significant bit first."""

    def __init__(self, rbsp: bytes):
        self._value = int.from_bytes(rbsp, "big")
        self._bit_count = len(rbsp) * 8
        self.position = 0

    def u(self, bits: int) -> int:
        if bits == 0:
            return 0
        if self.position + bits > self._bit_count:
            raise CorruptBitstreamError(
                f"header truncated: needed {bits} more bits at bit {self.position} of "
                f"{self._bit_count}"
            )
        shift = self._bit_count - self.position - bits
        self.position += bits
        return (self._value >> shift) & ((1 << bits) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        remaining = self._bit_count - self.position
        tail = self._value & ((1 << remaining) - 1)
        if tail == 0:
            raise CorruptBitstreamError(f"Exp-Golomb code runs past the end at bit {self.position}")
        leading_zeros = remaining - tail.bit_length()
        if leading_zeros > 31:
            raise CorruptBitstreamError(f"Exp-Golomb code with {leading_zeros} leading zeros")
        self.position += leading_zeros
        return self.u(leading_zeros + 1) - 1

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


# --- parameter sets -----------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceParameterSet:
    sps_id: int
    profile_idc: int
    level_idc: int
    chroma_format_idc: int
    separate_colour_plane: bool
    bit_depth_luma: int
    log2_max_frame_num: int
    pic_order_cnt_type: int
    max_num_ref_frames: int
    gaps_in_frame_num_allowed: bool
    frame_mbs_only: bool
    width: int  # luma samples after cropping
    height: int
    full_range: bool | None  # None when the VUI does not say
    fps: float | None  # from VUI timing (time_scale / (2 * num_units_in_tick)), when present


@dataclass(frozen=True)
class PictureParameterSet:
    pps_id: int
    sps_id: int
    entropy_coding_cabac: bool


def _skip_scaling_list(reader: BitReader, size: int) -> None:
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last_scale + reader.se() + 256) % 256
        last_scale = next_scale or last_scale


def parse_sps(nal_payload: bytes) -> SequenceParameterSet:
    """Parse a sequence parameter set NAL unit (header byte included)."""
    reader = BitReader(rbsp_bytes(nal_payload[1:]))
    profile_idc = reader.u(8)
    reader.u(8)  # constraint_set flags and reserved bits
    level_idc = reader.u(8)
    sps_id = reader.ue()
    if sps_id > 31:
        raise CorruptBitstreamError(f"seq_parameter_set_id {sps_id} out of range 0..31")
    chroma_format_idc, separate_colour_plane, bit_depth_luma = 1, False, 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = reader.flag()
        bit_depth_luma = reader.ue() + 8
        reader.ue()  # bit_depth_chroma_minus8
        reader.flag()  # qpprime_y_zero_transform_bypass_flag
        if reader.flag():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if reader.flag():
                    _skip_scaling_list(reader, 16 if index < 6 else 64)
    log2_max_frame_num = reader.ue() + 4
    pic_order_cnt_type = reader.ue()
    if pic_order_cnt_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        reader.flag()  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        for _ in range(reader.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            reader.se()
    max_num_ref_frames = reader.ue()
    gaps_in_frame_num_allowed = reader.flag()
    width_mbs = reader.ue() + 1
    height_map_units = reader.ue() + 1
    frame_mbs_only = reader.flag()
    if not frame_mbs_only:
        reader.flag()  # mb_adaptive_frame_field_flag
    reader.flag()  # direct_8x8_inference_flag
    crop_left = crop_right = crop_top = crop_bottom = 0
    if reader.flag():  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = (reader.ue() for _ in range(4))
    # Crop units (7-19 .. 7-22): chroma subsampling of the format, doubled vertically for fields.
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    sub_width = 2 if chroma_array_type in (1, 2) else 1
    sub_height = 2 if chroma_array_type == 1 else 1
    crop_unit_x = 1 if chroma_array_type == 0 else sub_width
    crop_unit_y = (1 if chroma_array_type == 0 else sub_height) * (2 - int(frame_mbs_only))
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = (2 - int(frame_mbs_only)) * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise CorruptBitstreamError(f"SPS gives a non-positive picture size {width}x{height}")
    full_range, fps = _parse_vui(reader) if reader.flag() else (None, None)
    return SequenceParameterSet(
        sps_id, profile_idc, level_idc, chroma_format_idc, separate_colour_plane, bit_depth_luma,
        log2_max_frame_num, pic_order_cnt_type, max_num_ref_frames, gaps_in_frame_num_allowed,
        frame_mbs_only, width, height, full_range, fps,
    )


def _parse_vui(reader: BitReader) -> tuple[bool | None, float | None]:
    """(full_range, fps) from the start of vui_parameters() (E.1.1)."""
    if reader.flag():  # aspect_ratio_info_present_flag
        if reader.u(8) == 255:  # Extended_SAR
            reader.u(16)
            reader.u(16)
    if reader.flag():  # overscan_info_present_flag
        reader.flag()
    full_range = None
    if reader.flag():  # video_signal_type_present_flag
        reader.u(3)  # video_format
        full_range = reader.flag()
        if reader.flag():  # colour_description_present_flag
            reader.u(24)
    if reader.flag():  # chroma_loc_info_present_flag
        reader.ue()
        reader.ue()
    fps = None
    if reader.flag():  # timing_info_present_flag
        num_units_in_tick, time_scale = reader.u(32), reader.u(32)
        if num_units_in_tick > 0 and time_scale > 0:
            fps = time_scale / (2.0 * num_units_in_tick)
    return full_range, fps


def parse_pps(nal_payload: bytes) -> PictureParameterSet:
    """Parse the leading fields of a picture parameter set NAL unit (header byte included)."""
    reader = BitReader(rbsp_bytes(nal_payload[1:]))
    pps_id, sps_id = reader.ue(), reader.ue()
    if pps_id > 255 or sps_id > 31:
        raise CorruptBitstreamError(f"PPS ids out of range: pps {pps_id}, sps {sps_id}")
    return PictureParameterSet(pps_id, sps_id, reader.flag())


@dataclass
class ParameterSets:
    """The SPS/PPS seen so far on a stream, parsed and raw (to re-feed a fresh decoder)."""

    sps: dict[int, SequenceParameterSet] = field(default_factory=dict)
    pps: dict[int, PictureParameterSet] = field(default_factory=dict)
    raw_sps: dict[int, bytes] = field(default_factory=dict)
    raw_pps: dict[int, bytes] = field(default_factory=dict)

    def add(self, nal_type: int, nal_payload: bytes) -> None:
        if nal_type == NalType.SPS:
            sps = parse_sps(nal_payload)
            self.sps[sps.sps_id], self.raw_sps[sps.sps_id] = sps, nal_payload
        elif nal_type == NalType.PPS:
            pps = parse_pps(nal_payload)
            self.pps[pps.pps_id], self.raw_pps[pps.pps_id] = pps, nal_payload

    def sps_for_pps(self, pps_id: int) -> SequenceParameterSet | None:
        pps = self.pps.get(pps_id)
        return None if pps is None else self.sps.get(pps.sps_id)

    def annexb_for_pps(self, pps_id: int) -> bytes | None:
        """SPS and PPS NAL units (Annex-B) that a decoder needs for slices using `pps_id`."""
        pps = self.pps.get(pps_id)
        if pps is None or pps.sps_id not in self.raw_sps:
            return None
        return b"".join(
            b"\x00\x00\x00\x01" + raw for raw in (self.raw_sps[pps.sps_id], self.raw_pps[pps_id])
        )


# --- slices and access units --------------------------------------------------------------


@dataclass(frozen=True)
class SliceHeader:
    first_mb_in_slice: int
    picture_type: str  # "I", "P" or "B"
    pps_id: int
    frame_num: int | None  # None when the slice's SPS has not been seen


def parse_slice_header(nal_payload: bytes, params: ParameterSets | None = None) -> SliceHeader:
    """The slice header up to frame_num (7.3.3). 48 payload bytes always cover these fields."""
    reader = BitReader(rbsp_bytes(nal_payload[1:48]))
    first_mb = reader.ue()
    slice_type = reader.ue()
    if slice_type > 9:
        raise CorruptBitstreamError(f"slice_type {slice_type} out of range 0..9")
    pps_id = reader.ue()
    frame_num = None
    sps = params.sps_for_pps(pps_id) if params is not None else None
    if sps is not None:
        if sps.separate_colour_plane:
            reader.u(2)  # colour_plane_id
        frame_num = reader.u(sps.log2_max_frame_num)
    return SliceHeader(first_mb, _SLICE_TYPE_LETTER[slice_type % 5], pps_id, frame_num)


@dataclass(frozen=True)
class AccessUnitInfo:
    """What the bitstream says about one access unit (one coded picture), before decoding."""

    size_bytes: int
    bit_cost_bits: int  # VCL NAL units (coded slices) x 8, method.md 1.1
    picture_type: str  # "I", "P", "B" (the most predictive slice type present)
    is_idr: bool
    is_reference: bool  # nal_ref_idc != 0: later pictures may predict from this one
    has_sps: bool
    has_pps: bool
    pps_id: int
    frame_num: int | None
    nal_types: tuple[int, ...]


def describe_access_unit(data: bytes, params: ParameterSets) -> AccessUnitInfo:
    """Parse one Annex-B access unit; in-band SPS/PPS are added to `params` first.

    Raises CorruptBitstreamError if the buffer has no start code, a damaged NAL header, or no
    coded slice.
    """
    if not is_annexb(data):
        raise CorruptBitstreamError(
            f"access unit does not start with an Annex-B start code (got {bytes(data[:4]).hex()}); "
            "send one Annex-B access unit per message"
        )
    nal_types, vcl_bytes, slices, reference = [], 0, [], False
    is_idr = False
    for span in iter_nal_spans(data):
        payload = data[span.payload_begin : span.payload_end]
        nal_type, nal_ref_idc = nal_header(payload[0])
        nal_types.append(nal_type)
        if nal_type in (NalType.SPS, NalType.PPS):
            params.add(nal_type, payload)
        elif nal_type in VCL_NAL_TYPES:
            vcl_bytes += len(payload)
            reference = reference or nal_ref_idc != 0
            is_idr = is_idr or nal_type == NalType.IDR
            if nal_type in (NalType.SLICE, NalType.IDR, NalType.SLICE_PARTITION_A):
                slices.append(parse_slice_header(payload, params))
    if not slices:
        raise CorruptBitstreamError(
            f"access unit of {len(data)} bytes holds no coded slice (NAL types {nal_types})"
        )
    letters = {s.picture_type for s in slices}
    picture_type = "B" if "B" in letters else "P" if "P" in letters else "I"
    return AccessUnitInfo(
        size_bytes=len(data),
        bit_cost_bits=vcl_bytes * 8,
        picture_type=picture_type,
        is_idr=is_idr,
        is_reference=reference,
        has_sps=NalType.SPS in nal_types,
        has_pps=NalType.PPS in nal_types,
        pps_id=slices[0].pps_id,
        frame_num=slices[0].frame_num,
        nal_types=tuple(nal_types),
    )


def iter_access_units(data) -> Iterator[bytes]:
    """Split an Annex-B byte stream (a raw .h264 file) into access units (7.4.1.2.3).

    A new access unit starts at an AUD/SEI/SPS/PPS/prefix NAL that follows a coded slice, or at
    a coded slice with first_mb_in_slice == 0 (a new picture; arbitrary slice order is not
    supported). The yielded buffers, concatenated, reproduce the input from its first start code.
    """
    au_begin, au_has_slice = None, False
    for span in iter_nal_spans(data):
        nal_type, _ = nal_header(data[span.payload_begin])
        starts_new = False
        if au_has_slice and nal_type in _AU_OPENING_NAL_TYPES:
            starts_new = True
        elif nal_type in (NalType.SLICE, NalType.IDR, NalType.SLICE_PARTITION_A):
            if au_has_slice:
                first_mb = BitReader(rbsp_bytes(bytes(data[span.payload_begin + 1 : span.payload_begin + 8]))).ue()
                starts_new = first_mb == 0
        if au_begin is None:
            au_begin = span.start_code_begin
        elif starts_new:
            yield bytes(data[au_begin : span.start_code_begin])
            au_begin, au_has_slice = span.start_code_begin, False
        if nal_type in VCL_NAL_TYPES:
            au_has_slice = True
    if au_begin is not None:
        yield bytes(data[au_begin:])
