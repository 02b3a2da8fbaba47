import av
import pytest

from ov2_ros.codec.bitstream import (
    BitReader,
    NalType,
    ParameterSets,
    avcc_to_annexb,
    describe_access_unit,
    iter_access_units,
    iter_nal_spans,
    parse_sps,
    rbsp_bytes,
)
from ov2_ros.codec.container import H264File
from ov2_ros.errors import CorruptBitstreamError


def test_nal_spans_handle_3_and_4_byte_start_codes_and_trailing_zeros():
    data = b"\x00\x00\x00\x01\x67\xaa\x00\x00" + b"\x00\x00\x01\x68\xbb" + b"\x00\x00\x01\x65\xcc\xdd"
    spans = list(iter_nal_spans(data))
    assert [data[s.payload_begin:s.payload_end] for s in spans] == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc\xdd"]
    # trailing zeros before a start code are not payload; a 4-byte start code owns its zero
    assert spans[0].start_code_begin == 0 and spans[1].start_code_begin == 7


def test_emulation_prevention_bytes_are_removed():
    assert rbsp_bytes(b"\x00\x00\x03\x01\x00\x00\x03\x00\x00\x03") == b"\x00\x00\x01\x00\x00\x00\x00"


def test_exp_golomb_codes():
    # bits: 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, se(4) = -2
    reader = BitReader(int("1010011001000010100000000"[:24], 2).to_bytes(3, "big"))
    assert [reader.ue(), reader.ue(), reader.ue(), reader.ue(), reader.se()] == [0, 1, 2, 3, -2]
    with pytest.raises(CorruptBitstreamError):
        BitReader(b"\x00\x00").ue()


def test_sps_of_x264_streams_gives_size_fps_and_frame_num_bits(p_stream, b_stream):
    for stream, profile in ((p_stream, 100), (b_stream, 100)):
        params = ParameterSets()
        first = next(iter(H264File(stream.h264_path)))
        info = describe_access_unit(first.data, params)
        sps = params.sps_for_pps(info.pps_id)
        assert (sps.width, sps.height) == (320, 240)
        assert sps.fps == pytest.approx(30.0)
        assert sps.profile_idc == profile and sps.frame_mbs_only
        assert info.is_idr and info.has_sps and info.has_pps and info.frame_num == 0


def test_sps_cropping_gives_the_display_size(tmp_path):
    # 200x150 is coded as 208x160 macroblocks with cropping in the SPS.
    from tests.conftest import make_stream

    stream = make_stream(tmp_path, "odd", width=200, height=150, duration_s=0.2, gop=3)
    params = ParameterSets()
    info = describe_access_unit(next(iter(H264File(stream.h264_path))).data, params)
    sps = params.sps_for_pps(info.pps_id)
    assert (sps.width, sps.height) == (200, 150)


def test_access_units_split_a_raw_file_exactly_as_pyav_decodes_it(b_stream):
    data = b_stream.h264_path.read_bytes()
    units = list(iter_access_units(data))
    assert b"".join(units) == data
    decoder = av.CodecContext.create("h264", "r")
    params, types, frames = ParameterSets(), {}, {}
    for index, unit in enumerate(units):
        info = describe_access_unit(unit, params)
        types[index] = info.picture_type
        packet = av.Packet(unit)
        packet.pts = index
        frames.update({f.pts: f.pict_type for f in decoder.decode(packet)})
    frames.update({f.pts: f.pict_type for f in decoder.decode(None)})
    letter = {1: "I", 2: "P", 3: "B"}
    assert len(frames) == len(units) == 60
    assert {i: letter[int(t)] for i, t in frames.items()} == types
    assert "B" in types.values()


def test_bit_cost_counts_only_coded_slices(p_stream):
    params = ParameterSets()
    for au in list(H264File(p_stream.h264_path))[:20]:
        info = describe_access_unit(au.data, params)
        slice_bytes = sum(s.payload_end - s.payload_begin for s in iter_nal_spans(au.data)
                          if au.data[s.payload_begin] & 0x1F in (NalType.SLICE, NalType.IDR))
        assert info.bit_cost_bits == slice_bytes * 8 < len(au.data) * 8
        assert (info.picture_type == "I") == info.is_idr  # x264 camera config: I only at IDRs


def test_frame_num_counts_reference_pictures(p_stream):
    params = ParameterSets()
    units = list(H264File(p_stream.h264_path))
    nums = [describe_access_unit(au.data, params).frame_num for au in units[:15]]
    max_frame_num = 1 << params.sps[0].log2_max_frame_num
    assert nums == [i % max_frame_num for i in range(15)]


def test_length_prefixed_payload_converts_and_garbage_does_not():
    annexb = avcc_to_annexb(b"\x00\x00\x00\x02\x67\xaa\x00\x00\x00\x01\x68")
    assert annexb == b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68"
    assert avcc_to_annexb(b"\x00\x00\x00\x09\x67") is None
    assert avcc_to_annexb(b"hello world") is None


def test_damaged_access_units_raise_clear_errors():
    params = ParameterSets()
    with pytest.raises(CorruptBitstreamError, match="start code"):
        describe_access_unit(b"\xff\xd8\xff\xe0 jpeg", params)
    with pytest.raises(CorruptBitstreamError, match="forbidden_zero_bit"):
        describe_access_unit(b"\x00\x00\x00\x01\xe5\x00", params)
    with pytest.raises(CorruptBitstreamError, match="no coded slice"):
        describe_access_unit(b"\x00\x00\x00\x01\x09\xf0", params)
    with pytest.raises(CorruptBitstreamError):
        parse_sps(b"\x67\x64")
