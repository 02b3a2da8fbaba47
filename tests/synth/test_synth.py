import hashlib
import json

import numpy as np
import pytest

from ov2_ros.codec.bitstream import ParameterSets, describe_access_unit
from ov2_ros.codec.container import H264File
from ov2_ros.synth.scene import SceneConfig, SyntheticScene
from tests.conftest import make_stream


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    first = make_stream(tmp_path / "a", "s", duration_s=0.5, seed=4)
    again = make_stream(tmp_path / "b", "s", duration_s=0.5, seed=4)
    other = make_stream(tmp_path / "c", "s", duration_s=0.5, seed=5)
    assert _digest(first.h264_path) == _digest(again.h264_path)
    assert first.truth_path.read_text() == again.truth_path.read_text()
    assert _digest(first.h264_path) != _digest(other.h264_path)


def test_ground_truth_boxes_and_gripper_are_where_the_pixels_are():
    scene = SyntheticScene(SceneConfig(width=320, height=240, seed=2, noise_sigma=0.0))
    image, truth = scene.render(40)
    for obj in truth["objects"]:
        x0, y0, x1, y1 = obj["box_xyxy"]
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
    # the gripper's fingertips are grey metal at the reported position
    gx, gy = int(truth["gripper"]["x"]), int(truth["gripper"]["y"])
    half = int(truth["gripper"]["opening_px"] / 2)
    finger = image[gy - 4, gx + half + 2]
    assert np.all(np.abs(finger.astype(int) - [170, 172, 178]) < 25)
    # a cube's centre has its colour
    cube = next((o for o in truth["objects"] if o["shape"] == "cube"), None)
    if cube is not None:
        x0, y0, x1, y1 = cube["box_xyxy"]
        centre = image[int((y0 + y1) / 2), int((x0 + x1) / 2)].astype(int)
        assert np.argmax(centre) == np.argmax({"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1],
                                               "yellow": [1, 1, 0], "orange": [1, 0.5, 0],
                                               "purple": [0.6, 0.2, 0.8]}[cube["colour"]])


def test_objects_and_gripper_move_and_the_light_dims():
    config = SceneConfig(width=320, height=240, duration_s=10.0, seed=3, lighting_change_s=5.0)
    scene = SyntheticScene(config)
    early, truth_early = scene.render(0)
    late, truth_late = scene.render(299)
    assert truth_early["gripper"]["x"] != truth_late["gripper"]["x"]
    assert truth_late["lighting_gain"] == pytest.approx(0.7) and truth_early["lighting_gain"] == 1.0
    assert late[:20].mean() < 0.8 * early[:20].mean()  # the wall strip, never occluded


def test_encoder_options_show_in_the_bitstream(tmp_path):
    stream = make_stream(tmp_path, "opts", width=256, height=192, duration_s=2.0, gop=10, b_frames=2)
    params = ParameterSets()
    infos = [describe_access_unit(au.data, params) for au in H264File(stream.h264_path)]
    assert [i for i, info in enumerate(infos) if info.is_idr] == [0, 10, 20, 30, 40, 50]
    assert "B" in {info.picture_type for info in infos}
    assert (params.sps[0].width, params.sps[0].height) == (256, 192)
    truth = json.loads(stream.truth_path.read_text())
    assert truth["encoder"]["gop_frames"] == 10 and len(truth["frames"]) == 60


def test_invalid_configs_name_the_field():
    with pytest.raises(ValueError, match="num_objects"):
        SceneConfig(num_objects=0)
    from ov2_ros.codec.encoder import H264EncoderConfig

    with pytest.raises(ValueError, match="even"):
        H264EncoderConfig(width=321)
