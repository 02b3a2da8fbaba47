import numpy as np
import pytest

from ov2_ros.codec.container import H264File
from ov2_ros.codec.decoder import MB_INTRA, MB_SKIPPED
from ov2_ros.codec.ingest import StreamIngest
from tests.conftest import media_file

PERIOD_NS = 33_333_333


def _feed(ingest, units, stamps=None):
    frames, outcomes = [], []
    for index, au in enumerate(units):
        stamp = stamps[index] if stamps is not None else 10**9 + int(au.pts_seconds * 1e9)
        result = ingest.push(au.data, stamp)
        frames += result.frames
        outcomes.append(result.outcome)
    return frames, outcomes


def _assert_accounted(ingest):
    counters = ingest.counters
    assert counters.accounted() == counters.frames_received


def test_whole_stream_decodes_every_frame_with_codec_data(p_stream):
    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    frames, outcomes = _feed(ingest, units)
    frames += ingest.finish()
    assert set(outcomes) == {"accepted"}
    assert len(frames) == ingest.counters.frames_decoded == 60
    assert [f.display_index for f in frames] == list(range(60))
    assert [f.key_frame for f in frames].count(True) == 4
    for frame in frames:
        assert frame.yuv420.shape == (360, 320) and frame.rgb().shape == (240, 320, 3)
        assert frame.bit_cost_bits > 0
        # intra pictures carry no motion vectors, predicted ones do
        assert (len(frame.motion_vectors) == 0) == (frame.picture_type == "I")
    # I pictures cost more bits than P pictures of the same stream
    assert min(f.bit_cost_bits for f in frames if f.key_frame) > np.median(
        [f.bit_cost_bits for f in frames if not f.key_frame])
    _assert_accounted(ingest)


def test_decoded_frames_hold_no_pyav_frame(p_stream):
    """Ingest hands on copies: once the cyclic collector has run (ros/node.py runs it every
    HEAP_COLLECT_PERIOD_S), no PyAV frame, nor its picture buffer, outlives its access unit,
    however long the FrameRecords are kept. A motion-vector array viewing PyAV's side data would
    keep every frame alive."""
    import gc

    import av

    def pyav_frames():
        gc.collect()
        # type(), not isinstance: isinstance reads __class__, which some of torch's deprecated
        # module attributes answer with a FutureWarning
        return sum(type(o) is av.VideoFrame for o in gc.get_objects())

    before = pyav_frames()
    ingest = StreamIngest()
    frames, _ = _feed(ingest, list(H264File(p_stream.h264_path)))
    assert len(frames) >= 59 and sum(len(f.motion_vectors) for f in frames) > 0
    assert pyav_frames() - before <= 1  # the decoder keeps one frame object ready for its next picture


def test_decoded_image_matches_the_rendered_scene(p_stream):
    from ov2_ros.synth.scene import SceneConfig, SyntheticScene

    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    frames, _ = _feed(ingest, units[:10])
    rendered, _ = SyntheticScene(SceneConfig(width=320, height=240, duration_s=2.0, seed=1)).render(5)
    error = np.abs(frames[5].rgb().astype(float) - rendered.astype(float)).mean()
    assert error < 8.0  # lossy coding, not another picture


def test_b_frames_come_out_in_display_order_with_their_stamps(b_stream):
    units = list(H264File(b_stream.mp4_path))
    ingest = StreamIngest()
    frames, _ = _feed(ingest, units)
    assert ingest.counters.frames_pending_in_decoder > 0  # reordering holds pictures back
    frames += ingest.finish()
    assert len(frames) == 60 and ingest.counters.frames_pending_in_decoder == 0
    stamps = [f.stamp_ns for f in frames]
    assert stamps == sorted(stamps)
    assert {f.picture_type for f in frames} == {"I", "P", "B"}
    _assert_accounted(ingest)


def test_late_join_waits_for_the_next_idr(p_stream):
    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    frames, outcomes = _feed(ingest, units[5:])
    assert outcomes[:10] == ["dropped_waiting_for_idr"] * 10  # frames 5..14, IDR at 15
    assert ingest.counters.frames_dropped_waiting_for_idr == 10
    assert frames[0].key_frame and ingest.counters.frames_decoded == 45
    _assert_accounted(ingest)


def test_lost_reference_picture_is_detected_from_frame_num(p_stream):
    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    kept = units[:20] + units[21:]  # lose P picture 20 of the GOP starting at 15
    _, outcomes = _feed(ingest, kept)
    assert ingest.counters.frame_num_gaps == 1
    # pictures 21..29 reference the lost one: dropped until the IDR at 30
    assert ingest.counters.frames_dropped_waiting_for_idr == 9
    assert ingest.counters.frames_decoded == 20 + 30
    _assert_accounted(ingest)


def test_lost_non_reference_b_picture_costs_nothing(b_stream):
    from ov2_ros.codec.bitstream import ParameterSets, describe_access_unit

    units = list(H264File(b_stream.h264_path))
    params = ParameterSets()
    infos = [describe_access_unit(au.data, params) for au in units]
    lost = next(i for i, info in enumerate(infos) if info.picture_type == "B" and not info.is_reference)
    ingest = StreamIngest()
    frames, _ = _feed(ingest, units[:lost] + units[lost + 1:])
    frames += ingest.finish()
    assert ingest.counters.frame_num_gaps == 0 and len(frames) == 59


def test_stamp_jump_restarts_at_next_idr(p_stream):
    units = list(H264File(p_stream.h264_path))
    stamps = [10**9 + i * PERIOD_NS + (5 * 10**9 if i >= 8 else 0) for i in range(60)]
    ingest = StreamIngest(max_stamp_gap_ns=500_000_000)
    _feed(ingest, units, stamps)
    assert ingest.counters.stamp_discontinuities == 1
    assert ingest.counters.frames_dropped_waiting_for_idr == 7  # 8..14
    _assert_accounted(ingest)


def test_bad_payloads_are_counted_and_decoding_goes_on(p_stream):
    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    _feed(ingest, units[:3])
    assert ingest.push(units[3].data, 1, fmt="jpeg").outcome == "rejected_format"
    assert ingest.push(b"", 1).outcome == "rejected_empty"
    assert ingest.push(b"\x89PNG\r\n\x1a\n garbage", 1).outcome == "rejected_malformed"
    assert ingest.push(b"\x00\x00\x00\x01\x09\xf0", 1).outcome == "rejected_malformed"
    # the real picture 3 still decodes: junk on the topic is not a lost picture
    frames, outcomes = _feed(ingest, units[3:15])
    assert set(outcomes) == {"accepted"} and len(frames) == 12
    counters = ingest.counters
    assert (counters.frames_rejected_format, counters.frames_rejected_empty,
            counters.frames_rejected_malformed) == (1, 1, 2)
    _assert_accounted(ingest)


def test_corrupted_slice_data_never_crashes_and_is_accounted(p_stream):
    units = list(H264File(p_stream.h264_path))
    rng = np.random.default_rng(0)
    ingest = StreamIngest()
    for index, au in enumerate(units * 3):
        data = bytearray(au.data)
        if index % 7 == 3:  # flip bytes inside the slice data
            for position in rng.integers(len(data) // 2, len(data), 8):
                data[position] = int(rng.integers(256))
        if index % 11 == 5:
            data = data[: len(data) // 3]  # truncated access unit
        ingest.push(bytes(data), 10**9 + index * PERIOD_NS)
    ingest.finish()
    _assert_accounted(ingest)
    assert ingest.counters.frames_decoded > 0


def test_length_prefixed_payloads_are_accepted(p_stream):
    units = list(H264File(p_stream.h264_path))
    from ov2_ros.codec.bitstream import iter_nal_spans

    def to_avcc(data):
        return b"".join(len(data[s.payload_begin:s.payload_end]).to_bytes(4, "big")
                        + data[s.payload_begin:s.payload_end] for s in iter_nal_spans(data))

    ingest = StreamIngest()
    frames = []
    for au in units[:15]:
        frames += ingest.push(to_avcc(au.data), 0).frames
    assert len(frames) == 15


def test_resolution_change_at_an_idr_is_followed(p_stream, large_stream):
    small, large = list(H264File(p_stream.h264_path)), list(H264File(large_stream.h264_path))
    ingest = StreamIngest()
    stamps = [10**9 + i * PERIOD_NS for i in range(90)]
    frames, outcomes = _feed(ingest, small[:30] + large[:60], stamps)
    frames += ingest.finish()
    assert ingest.counters.resolution_changes == 1
    assert set(outcomes) == {"accepted"}
    assert [(f.width, f.height) for f in frames] == [(320, 240)] * 30 + [(640, 480)] * 60
    _assert_accounted(ingest)


def test_idr_without_parameter_sets_uses_the_remembered_ones(p_stream):
    from ov2_ros.codec.bitstream import NalType, iter_nal_spans, nal_header

    def strip_parameter_sets(data):
        return b"".join(data[s.start_code_begin:s.payload_end] for s in iter_nal_spans(data)
                        if nal_header(data[s.payload_begin])[0] not in (NalType.SPS, NalType.PPS))

    units = list(H264File(p_stream.h264_path))
    ingest = StreamIngest()
    # a joiner that never saw SPS/PPS cannot start
    assert ingest.push(strip_parameter_sets(units[15].data), 1).outcome == "dropped_waiting_for_idr"
    # one that saw them earlier restarts after a loss at an IDR stripped of them
    _feed(ingest, units[:10])
    ingest.mark_discontinuity()
    assert ingest.push(strip_parameter_sets(units[15].data), 2).outcome == "accepted"


@pytest.mark.parametrize("name", ["sam2_03_blocks.mp4", "gopro_karma.mp4"])
def test_real_footage_decodes_completely(name):
    source = H264File(media_file(name))
    ingest = StreamIngest()
    frames, _ = _feed(ingest, list(source))
    frames += ingest.finish()
    assert len(frames) == source.info.frame_count
    assert ingest.counters.decode_errors == ingest.counters.frame_num_gaps == 0


def test_macroblock_types_come_with_the_picture_they_describe(b_stream):
    ingest = StreamIngest(export_macroblocks=True)
    frames = _feed(ingest, list(H264File(b_stream.mp4_path)))[0] + ingest.finish()
    assert len(frames) == 60
    for frame in frames:
        assert frame.mb_types.shape == (240 // 16, 320 // 16) == frame.qp_map.shape
        letters = set(frame.mb_types.ravel())
        if frame.picture_type == "I":
            assert letters <= MB_INTRA
        if letters & set("d<X"):  # direct-skip, backward and bi-predicted exist only in B pictures
            assert frame.picture_type == "B"
    # The table is static: inter pictures skip most of it.
    inter = [f for f in frames if f.picture_type != "I"]
    skipped = np.mean([np.isin(f.mb_types, list(MB_SKIPPED)).mean() for f in inter])
    assert skipped > 0.3


def test_macroblock_types_at_720p_where_ffmpeg_prints_wider_rows():
    """FFmpeg right-aligns each map row's pixel y in a column that widens with the picture
    (4 characters at 720p): every picture must still get its full map."""
    source = H264File(media_file("sam2_03_blocks.mp4"))
    ingest = StreamIngest(export_macroblocks=True)
    frames = _feed(ingest, list(source)[:12])[0] + ingest.finish()
    assert len(frames) == 12
    for frame in frames:
        assert frame.mb_types is not None and frame.mb_types.shape == (720 // 16, 1280 // 16)
    assert {f.picture_type for f in frames} >= {"I", "B"}
    b_letters = set(np.concatenate([f.mb_types.ravel() for f in frames if f.picture_type == "B"]))
    assert b_letters & set("d<X")
