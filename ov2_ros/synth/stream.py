"""`ov2 synth-stream`: render a synthetic scene, encode it with libx264 to MP4 and Annex-B
H.264, and write the per-frame ground truth as JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ov2_ros import __version__
from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig, encode_mp4
from ov2_ros.synth.scene import SceneConfig, SyntheticScene


@dataclass(frozen=True)
class SyntheticStream:
    h264_path: Path  # Annex-B, SPS/PPS before every IDR, one access unit after another
    mp4_path: Path
    truth_path: Path
    frame_count: int


def write_synthetic_stream(scene_config: SceneConfig, encoder_config: H264EncoderConfig,
                           out_dir: str | Path, name: str = "scene", progress: bool = True) -> SyntheticStream:
    return write_world_stream(SyntheticScene(scene_config), encoder_config, out_dir, name, progress)


def write_world_stream(world, encoder_config: H264EncoderConfig, out_dir: str | Path, name: str = "scene",
                       progress: bool = True) -> SyntheticStream:
    """Any scene or world (ov2_ros/synth/worlds.py): `config` (width, height, fps, frame_count,
    to_dict()), `frames()` -> (image, truth), and optionally `episode_truth()`."""
    scene_config = world.config
    if (scene_config.width, scene_config.height) != (encoder_config.width, encoder_config.height):
        raise ValueError("scene and encoder sizes differ: "
                         f"{scene_config.width}x{scene_config.height} vs {encoder_config.width}x{encoder_config.height}")
    if scene_config.fps != encoder_config.fps:
        raise ValueError(f"scene fps {scene_config.fps} differs from encoder fps {encoder_config.fps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mp4_path, h264_path, truth_path = (out_dir / f"{name}{ext}" for ext in (".mp4", ".h264", ".json"))

    scene = world
    truths = []

    def images():
        for image, truth in tqdm(scene.frames(), total=scene_config.frame_count, disable=not progress,
                                 desc=f"rendering + encoding {name}", unit="frame", mininterval=1.0):
            truths.append(truth)
            yield image

    count = encode_mp4(images(), mp4_path, encoder_config)
    # The Annex-B file is the MP4's samples through h264_mp4toannexb: the same bytes a
    # camera-like publisher sends (SPS/PPS in front of every IDR).
    with open(h264_path, "wb") as handle:
        for access_unit in H264File(mp4_path):
            handle.write(access_unit.data)

    document = {
        "generator": f"ov2_ros {__version__} synth-stream",
        "scene": scene_config.to_dict(),
        "encoder": encoder_config.to_dict(),
        "files": {"h264": h264_path.name, "mp4": mp4_path.name},
        "conventions": "pixels, x right, y down; boxes [x_min, y_min, x_max, y_max]; "
                       "frame = display-order index; time_s = frame / fps",
        "frames": truths,
    }
    if hasattr(world, "episode_truth"):
        document["episode"] = world.episode_truth()
    truth_path.write_text(json.dumps(document, indent=1))
    return SyntheticStream(h264_path, mp4_path, truth_path, count)
