"""`ov2 replay FILE --prompt TEXT`: the node's pipeline offline on a recording.

Recordings: H.264 files (MP4, MKV, raw Annex-B) and rosbag2 recordings (sqlite3 or MCAP,
read with the pure-Python `rosbags` library) of a `sensor_msgs/CompressedImage` H.264 topic, as
the node would have received it (header stamps kept). The access units go through the same
stages as on the robot (ingest and decoding,
the streaming tokenizer, runtime.perception): the question is answered on the newest video each
time a temporal group completes (as the node's standing question), or once at the end
(--once). Writes results.json (every answer with its window and stamped results, in seconds
from the start of the recording) and annotated.mp4 (each frame with the newest answer given by
then drawn on it).
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ov2_ros.codec.encoder import H264EncoderConfig, encode_mp4
from ov2_ros.codec.ingest import FrameRecord, StreamIngest
from ov2_ros.errors import MissingInputError, UnsupportedStreamError
from ov2_ros.runtime.annotate import annotate
from ov2_ros.runtime.backend import Backend
from ov2_ros.runtime.perception import Perception, PerceptionResult, Query
from ov2_ros.tokenizer.files import decode_file
from ov2_ros.tokenizer.pipeline import StreamingTokenizer, TokenizerConfig


BAG_SUFFIXES = (".mcap", ".db3")
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


def is_bag(path: Path) -> bool:
    return path.suffix in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())


def bag_access_units(path: Path, topic: str | None = None) -> list[tuple[bytes, int]]:
    """(payload, header stamp ns) of every H.264 message of `topic` (default: the only
    CompressedImage topic) in a rosbag2 folder or file, in recording order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        candidates = [c for c in reader.connections if c.msgtype == COMPRESSED_IMAGE]
        if topic is not None:
            candidates = [c for c in candidates if c.topic == topic]
        topics = sorted({c.topic for c in candidates})
        if len(topics) != 1:
            found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise UnsupportedStreamError(f"{path}: need exactly one {COMPRESSED_IMAGE} topic"
                                         f"{' named ' + topic if topic else ''}, found {found}; pick one with --topic")
        units = []
        for connection, _, raw in reader.messages(connections=candidates):
            message = reader.deserialize(raw, connection.msgtype)
            if message.format.strip().lower() == "h264":
                units.append((bytes(message.data), message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec))
    return units


def decode_recording(path: str | Path, topic: str | None = None) -> tuple[list[FrameRecord], float]:
    """Decoded frames (stamps from the bag's headers, or the file's presentation times) and fps."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path} does not exist")
    if not is_bag(path):
        source, frames, _ = decode_file(path, export_macroblocks=False)
        return frames, source.info.fps or 30.0
    ingest = StreamIngest(max_stamp_gap_ns=10**18)  # a recording has no transport to lose frames in
    frames = []
    for payload, stamp_ns in bag_access_units(path, topic):
        frames += ingest.push(payload, stamp_ns).frames
    frames += ingest.finish()
    stamps = [frame.stamp_ns for frame in frames]
    steps = sorted(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
    return frames, (1e9 / steps[len(steps) // 2] if steps else 30.0)


def result_record(result: PerceptionResult, origin_ns: int) -> dict:
    seconds = lambda stamp: round((stamp - origin_ns) / 1e9, 3)
    record = result.answer.to_dict()
    record.update(request_id=result.query.request_id, window_s=[seconds(result.window_start_ns),
                                                                seconds(result.window_end_ns)],
                  groups=result.group_indices,
                  segments_s=[[seconds(s.start_ns), seconds(s.end_ns)] for s in result.segments],
                  boxes=[[b.x1, b.y1, b.x2, b.y2] for b in result.boxes],
                  tracks=[{"track_id": t.track_id, "label": t.label,
                           "points": [[seconds(p.stamp_ns), p.x, p.y] for p in t.points]} for t in result.tracks],
                  trace=[[w.x, w.y, w.depth_m] for w in result.trace.waypoints] if result.trace else [])
    return record


def replay(path: str | Path, prompt: str, backend: Backend, out_dir: str | Path, output_format: str | None = "auto",
           once: bool = False, budget_canvases: int = 16, window_s: float = 10.0, max_pixels: int | None = None,
           topic: str | None = None) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, fps = decode_recording(path, topic)
    if not frames:
        raise ValueError(f"{path}: no decodable frame")
    tokenizer = StreamingTokenizer(TokenizerConfig(max_pixels=max_pixels or backend.config.max_pixels))
    perception = Perception(backend, budget_canvases, window_s)
    query = Query(prompt, output_format)
    groups, answers = [], []  # answers: (the frame index it is available from, result)
    size = (frames[0].height, frames[0].width)
    for index, frame in enumerate(tqdm(frames, desc="replay", unit="frame", mininterval=1.0)):
        new = tokenizer.push(frame)
        if index == len(frames) - 1:
            new += tokenizer.flush()
        groups += new
        if new and (not once or index == len(frames) - 1):
            answers.append((index, perception.answer(groups, size, query)))
    origin = frames[0].stamp_ns
    document = {"source": str(path), "prompt": prompt, "fps": round(fps, 3), "frames": len(frames),
                "size": {"width": size[1], "height": size[0]}, "groups": len(groups),
                "answers": [dict(result_record(result, origin), from_frame=index) for index, result in answers]}
    (out_dir / "results.json").write_text(json.dumps(document, indent=1))

    def annotated():
        current, pending = None, list(answers)
        for index, frame in enumerate(frames):
            while pending and pending[0][0] <= index:
                current = pending.pop(0)[1]
            yield annotate(frame.rgb(), current, frame.stamp_ns)

    encode_mp4(annotated(), out_dir / "annotated.mp4",
               H264EncoderConfig(width=size[1], height=size[0], fps=min(240.0, max(1.0, fps))))
    return document
