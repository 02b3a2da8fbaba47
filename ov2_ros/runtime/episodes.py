"""The held-out episode the offline benchmarks answer questions about: a pick-and-place world
(ov2_ros/synth/worlds.py) at a camera's size, encoded as a camera would and tokenized as the
node tokenizes a stream."""
from __future__ import annotations

import tempfile


def held_out_episode(max_pixels: int, duration_s: float = 12.0, seed: int = 100_000, width: int = 640,
                     height: int = 480):
    """(temporal groups oldest first, source (h, w)) of a held-out pick-and-place episode,
    tokenized at the model's max_pixels."""
    from ov2_ros.codec.encoder import H264EncoderConfig
    from ov2_ros.synth.stream import write_world_stream
    from ov2_ros.synth.worlds import PickPlaceWorld, Variation, WorldConfig
    from ov2_ros.tokenizer.files import tokenize_file
    from ov2_ros.tokenizer.pipeline import TokenizerConfig

    world = PickPlaceWorld(WorldConfig(width=width, height=height, duration_s=duration_s, seed=seed,
                                       variation=Variation("heldout")))
    with tempfile.TemporaryDirectory(prefix="ov2_bench_episode_") as scratch:
        stream = write_world_stream(world, H264EncoderConfig(width=width, height=height), scratch, "episode",
                                    progress=False)
        video, _, _, _ = tokenize_file(stream.mp4_path, "stream", TokenizerConfig(max_pixels=max_pixels))
    return video.groups, (video.geometry.source_height, video.geometry.source_width)
