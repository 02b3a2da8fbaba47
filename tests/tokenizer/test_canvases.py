"""Canvases and positions from real H.264: every patch is where its (t, h, w) says."""
import av
import numpy as np
import pytest

from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig, encode_mp4
from ov2_ros.synth.scene import SceneConfig, SyntheticScene
from ov2_ros.tokenizer.canvas import block_layout, patch_pixels
from ov2_ros.tokenizer.files import decode_file, tokenize_file
from ov2_ros.tokenizer.geometry import PATCH_PX, FrameGeometry, yuv420_to_rgb
from ov2_ros.tokenizer.groups import GroupingConfig
from ov2_ros.tokenizer.pipeline import StreamingTokenizer, TokenizerConfig, tokenize_frames


def reference_frames_rgb(path, geometry):
    """Display-order frames decoded independently with PyAV's demuxer, after the documented resize."""
    with av.open(str(path)) as container:
        return [yuv420_to_rgb(geometry.resize_yuv420(frame.to_ndarray(format="yuv420p")))
                for frame in container.decode(video=0)]


def assert_positions_true(video, frames_rgb):
    geometry = video.geometry
    per_canvas = geometry.patches_per_canvas
    positions = video.positions_thw
    canvases = video.canvases
    assert positions.shape == (canvases.shape[0] * per_canvas, 3)
    checked = 0
    for row, (t, h, w) in enumerate(positions):
        canvas, row_in_canvas = divmod(row, per_canvas)
        pixels = patch_pixels(canvases[canvas], row_in_canvas, geometry.block_cols)
        if t < 0:
            assert h == w == -1 and not pixels.any()
            continue
        source = frames_rgb[t][h * PATCH_PX:(h + 1) * PATCH_PX, w * PATCH_PX:(w + 1) * PATCH_PX]
        assert np.array_equal(pixels, source), f"patch row {row} (t={t}, h={h}, w={w}) is not its source"
        checked += 1
    for index in range(canvases.shape[0]):  # no canvas is padding only
        assert (positions[index * per_canvas:(index + 1) * per_canvas, 0] >= 0).any()
    return checked


@pytest.mark.parametrize("mode", ["offline", "stream"])
def test_every_patch_equals_its_source_pixels_with_b_frames(b_stream, mode):
    config = TokenizerConfig(grouping=GroupingConfig(min_group_frames=8, max_group_frames=24))
    video, _, _, _ = tokenize_file(b_stream.mp4_path, mode, config)
    assert video.canvas_count >= 4
    checked = assert_positions_true(video, reference_frames_rgb(b_stream.mp4_path, video.geometry))
    assert checked > video.geometry.patches_per_canvas * len(video.groups)  # P-canvases too


def test_raw_annexb_stream_mode_with_stride(p_stream):
    config = TokenizerConfig(frame_stride=2, grouping=GroupingConfig(min_group_frames=4, max_group_frames=12))
    video, _, _, _ = tokenize_file(p_stream.h264_path, "stream", config)
    assert_positions_true(video, reference_frames_rgb(p_stream.mp4_path, video.geometry))
    assert all(t % 2 == 0 for t in video.positions_thw[:, 0] if t >= 0)  # only sampled frames


def test_groups_tile_the_stream_and_canvases_follow_the_layout(b_stream):
    video, _, frames, _ = tokenize_file(b_stream.mp4_path, "offline")
    assert video.groups[0].first_t == 0 and video.groups[-1].last_t == len(frames) - 1
    rows, cols = block_layout(video.geometry.block_rows, video.geometry.block_cols)
    per_canvas = video.geometry.patches_per_canvas
    for previous, group in zip(video.groups, video.groups[1:]):
        assert group.first_t == previous.last_t + 1
    for group in video.groups:
        assert 1 <= group.canvases.shape[0] <= 4
        i_canvas = group.positions_thw[:per_canvas]
        assert np.array_equal(i_canvas[:, 1], rows) and np.array_equal(i_canvas[:, 2], cols)
        assert (i_canvas[:, 0] == group.first_t).all()
        picked = [tuple(block) for block in group.selected_blocks]
        assert len(set(picked)) == len(picked)
        assert all(group.first_t < t <= group.last_t for t, _, _ in picked)
        assert 0 < group.kept_fraction <= 4 / group.frame_count + 1e-9


def test_eventful_stretches_get_shorter_groups_than_static_ones(tmp_path):
    scene = SyntheticScene(SceneConfig(width=320, height=240, duration_s=20, seed=3, num_objects=4))
    still, _ = scene.render(0)
    rng = np.random.default_rng(0)

    def images():
        for index in range(300):
            if index < 150:  # a still camera: sensor noise only
                noise = rng.normal(0, 1.0, still.shape).round().astype(np.int16)
                yield np.clip(still.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            else:  # objects and the gripper moving at twice the speed
                yield scene.render(index * 2)[0]

    path = tmp_path / "static_then_busy.mp4"
    encode_mp4(images(), path, H264EncoderConfig(width=320, height=240, gop_frames=30))
    for mode in ("offline", "stream"):
        video, _, _, _ = tokenize_file(path, mode)
        static = [g.frame_count for g in video.groups if g.last_t < 150]
        busy = [g.frame_count for g in video.groups if g.first_t >= 160 and g.stop_reason != "end_of_stream"]
        assert static and busy
        assert np.mean(busy) < 0.6 * np.mean(static), (mode, static, busy)


def test_stream_and_offline_agree_when_groups_do_not_depend_on_the_threshold(p_stream):
    _, frames, _ = decode_file(p_stream.h264_path)
    fixed = TokenizerConfig(grouping=GroupingConfig(min_group_frames=10, max_group_frames=10))
    offline, stream = tokenize_frames(frames, fixed, "offline"), tokenize_frames(frames, fixed, "stream")
    assert [(g.first_t, g.last_t) for g in offline.groups] == [(g.first_t, g.last_t) for g in stream.groups]
    assert np.array_equal(offline.positions_thw, stream.positions_thw)
    assert np.array_equal(offline.canvases, stream.canvases)


def test_live_groups_come_out_within_the_maximum(p_stream):
    _, frames, _ = decode_file(p_stream.h264_path)
    tokenizer = StreamingTokenizer(TokenizerConfig(grouping=GroupingConfig(min_group_frames=4, max_group_frames=12)))
    for frame in frames:
        for group in tokenizer.push(frame):
            assert frame.display_index - group.first_t < 12 and group.last_t <= frame.display_index
    assert tokenizer.flush()  # the tail comes out at the end


def test_frame_sampling_baseline_matches_a_codec_run(p_stream):
    codec, _, _, _ = tokenize_file(p_stream.mp4_path, "offline")
    baseline, _, frames, _ = tokenize_file(p_stream.mp4_path, "offline", frames_baseline=0)
    assert baseline.canvas_count == codec.canvas_count  # matched budget
    times = sorted({int(t) for t in baseline.positions_thw[:, 0]})
    assert len(times) == baseline.canvas_count and times[0] == 0 and times[-1] == len(frames) - 1
    assert_positions_true(baseline, reference_frames_rgb(p_stream.mp4_path, baseline.geometry))


def test_geometry_follows_the_reference_resize_rule():
    assert (FrameGeometry.for_source(720, 1280).height, FrameGeometry.for_source(720, 1280).width) == (280, 504)
    geometry = FrameGeometry.for_source(480, 640)
    assert geometry.height % 28 == geometry.width % 28 == 0 and geometry.height * geometry.width <= 150_000
    small = FrameGeometry.for_source(100, 150)
    assert (small.height, small.width) == (112, 140)  # rounded to the nearest multiple of 28


# --- bad input --------------------------------------------------------------------------


def _positions_match_decoded(video, frames):
    by_t = {f.display_index: yuv420_to_rgb(video.geometry.resize_yuv420(f.yuv420)) for f in frames}
    assert_positions_true(video, by_t)


def test_truncated_file_tokenizes_what_was_decoded(p_stream, tmp_path):
    data = p_stream.h264_path.read_bytes()
    truncated = tmp_path / "truncated.h264"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    video, _, frames, stats = tokenize_file(truncated, "offline")
    assert 0 < len(frames) < 60
    _positions_match_decoded(video, frames)


def test_corrupt_nal_units_never_produce_a_wrong_position(p_stream, tmp_path):
    units = [au.data for au in H264File(p_stream.h264_path)]
    rng = np.random.default_rng(1)
    damaged = []
    for index, unit in enumerate(units):
        unit = bytearray(unit)
        if index in (7, 22, 40):
            for position in rng.integers(len(unit) // 2, len(unit), 12):
                unit[position] ^= 0xFF
        damaged.append(bytes(unit))
    path = tmp_path / "corrupt.h264"
    path.write_bytes(b"".join(damaged))
    video, _, frames, stats = tokenize_file(path, "stream")
    assert frames and video.groups
    _positions_match_decoded(video, frames)


def test_stream_starting_mid_gop_begins_at_the_first_idr(p_stream, tmp_path):
    units = [au.data for au in H264File(p_stream.h264_path)]
    path = tmp_path / "late.h264"
    path.write_bytes(b"".join(units[5:]))
    video, _, frames, stats = tokenize_file(path, "offline")
    assert stats["ingest"]["frames_dropped_waiting_for_idr"] == 10 and len(frames) == 45
    _positions_match_decoded(video, frames)


def test_resolution_change_is_refused_offline_and_followed_live(p_stream, large_stream, tmp_path):
    path = tmp_path / "two_sizes.h264"
    path.write_bytes(p_stream.h264_path.read_bytes()[:] + large_stream.h264_path.read_bytes())
    with pytest.raises(ValueError, match="picture size"):
        tokenize_file(path, "offline")
    _, frames, _ = decode_file(path)
    tokenizer = StreamingTokenizer(TokenizerConfig(grouping=GroupingConfig(min_group_frames=4, max_group_frames=16)))
    groups = [g for frame in frames for g in tokenizer.push(frame)] + tokenizer.flush()
    sizes = {g.canvases.shape[1:3] for g in groups}
    assert sizes == {(252, 308), (308, 420)}
    for group in groups:  # no group mixes the two sizes
        ts = group.positions_thw[group.positions_thw[:, 0] >= 0, 0]
        assert ts.max() < 60 or ts.min() >= 60
