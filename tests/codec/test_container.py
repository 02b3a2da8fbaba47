import av
import numpy as np
import pytest

from ov2_ros.codec.bitstream import NalType, iter_nal_spans, nal_header
from ov2_ros.codec.container import H264File
from ov2_ros.errors import MissingInputError, UnsupportedStreamError
from tests.conftest import media_file


def _nal_types(data):
    return [nal_header(data[s.payload_begin])[0] for s in iter_nal_spans(data)]


def test_mp4_and_raw_give_the_same_access_units(p_stream):
    raw, mp4 = list(H264File(p_stream.h264_path)), list(H264File(p_stream.mp4_path))
    assert [a.data for a in raw] == [a.data for a in mp4]
    assert [a.key_frame for a in raw] == [a.key_frame for a in mp4]
    assert np.allclose([a.pts_seconds for a in raw], [a.pts_seconds for a in mp4])


def test_every_idr_carries_sps_and_pps_in_band(b_stream):
    units = list(H264File(b_stream.mp4_path))
    keys = [au for au in units if NalType.IDR in _nal_types(au.data)]
    assert len(keys) == 4  # 60 frames, GOP 15
    for au in keys:
        types = _nal_types(au.data)
        assert types.index(NalType.SPS) < types.index(NalType.IDR)
        assert types.index(NalType.PPS) < types.index(NalType.IDR)


def test_b_frame_streams_have_display_times_out_of_decode_order(b_stream):
    for path in (b_stream.mp4_path, b_stream.h264_path):
        source = H264File(path)
        assert source.info.has_b_frames
        pts = [round(au.pts_seconds * 30) for au in source]
        assert pts != sorted(pts)
        assert sorted(pts) == list(range(60))  # every display slot exactly once


def test_mkv_is_read_like_mp4(p_stream, tmp_path):
    mkv = tmp_path / "p.mkv"
    with av.open(str(p_stream.mp4_path)) as source, av.open(str(mkv), "w") as sink:
        stream_in = source.streams.video[0]
        stream_out = sink.add_stream_from_template(stream_in)
        for packet in source.demux(stream_in):
            if packet.size:
                packet.stream = stream_out
                sink.mux(packet)
    assert [a.data for a in H264File(mkv)] == [a.data for a in H264File(p_stream.mp4_path)]


def test_missing_and_non_h264_files_fail_clearly(tmp_path):
    with pytest.raises(MissingInputError, match="no such H.264 file"):
        H264File(tmp_path / "absent.mp4")
    mpeg4 = tmp_path / "mpeg4.mp4"
    with av.open(str(mpeg4), "w") as sink:
        stream = sink.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode(None))
    with pytest.raises(UnsupportedStreamError, match="expected h264"):
        H264File(mpeg4)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(UnsupportedStreamError):
        H264File(text)


@pytest.mark.parametrize("name", ["sam2_03_blocks.mp4", "gopro_karma.mp4", "intel_bottle-detection.mp4"])
def test_real_footage_reads_as_annexb_with_sps_before_every_idr(name):
    source = H264File(media_file(name))
    units = list(source)
    assert len(units) == source.info.frame_count > 200
    for au in units:
        types = _nal_types(au.data)
        if NalType.IDR in types:
            assert NalType.SPS in types and NalType.PPS in types
