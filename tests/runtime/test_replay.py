"""`ov2 replay`: the node's pipeline offline on a recording, its JSON and its annotated video."""
import json

import av
import numpy as np
import pytest

from ov2_ros.cli import main
from ov2_ros.model.parsers import Box, Trace, Waypoint
from ov2_ros.runtime.annotate import BOX, TRACE, annotate
from ov2_ros.runtime.answer import Answer
from ov2_ros.runtime.perception import PerceptionResult, Query


def test_replay_answers_on_every_group_and_writes_an_annotated_video(model_dir, p_stream, tmp_path, capsys):
    out = tmp_path / "replay"
    assert main(["replay", str(p_stream.mp4_path), "--model", str(model_dir), "--prompt",
                 "Where is the red cube? Give its bounding box.", "--budget", "4", "--out", str(out)]) == 0
    document = json.loads((out / "results.json").read_text())
    assert document["frames"] == 60 and document["groups"] >= 2
    assert len(document["answers"]) >= 2  # one per group that completed, the last at the end of the file
    previous_end = -1.0
    for answer in document["answers"]:
        start, end = answer["window_s"]
        assert 0 <= start <= end <= 2.0 and end >= previous_end  # windows move forward through the file
        previous_end = end
        assert answer["format"] == "box" and answer["parse_error"] is None and len(answer["boxes"]) == 1
        x1, y1, x2, y2 = answer["boxes"][0]
        assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
    with av.open(str(out / "annotated.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 60 and frames[0].shape == (240, 320, 3)
    assert main(["replay", str(p_stream.mp4_path), "--model", str(model_dir), "--prompt", "Trace the gripper.",
                 "--once", "--out", str(tmp_path / "once")]) == 0
    once = json.loads((tmp_path / "once" / "results.json").read_text())
    assert len(once["answers"]) == 1 and once["answers"][0]["from_frame"] == 59 and len(once["answers"][0]["trace"]) >= 5


def test_annotation_draws_the_box_and_the_trace_where_they_are():
    answer = Answer("q", "[1, 2, 3, 4]", "box", None, None, 0, 0, 0, "format_complete")
    result = PerceptionResult(Query("Where is it?", request_id="q1"), answer, 0, 10**9, [0], (120, 160),
                              boxes=[Box(20, 30, 80, 90)],
                              trace=Trace(tuple(Waypoint(x, 100, None) for x in (10, 40, 70, 100, 130))))
    image = np.zeros((120, 160, 3), np.uint8)
    drawn = annotate(image, result, 5 * 10**8)
    assert tuple(drawn[60, 20]) == BOX and tuple(drawn[30, 50]) == BOX  # left edge, top edge
    assert tuple(drawn[60, 50]) == (0, 0, 0)  # inside the box: untouched
    on_trace = drawn[100, 55].astype(int) - np.array(TRACE)  # on the (anti-aliased) polyline between waypoints
    assert np.abs(on_trace).max() < 40 and drawn[110, 55].max() == 0
    assert image.max() == 0  # the input is not modified


def _write_bag(path, p_stream, plugin, topics=("/front/h264",)):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from ov2_ros.codec.container import H264File

    store = get_typestore(Stores.ROS2_JAZZY)
    message_type = store.types["sensor_msgs/msg/CompressedImage"]
    header, time_ = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    base_ns = 1_700_000_000_000_000_000
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = [writer.add_connection(topic, message_type.__msgtype__, typestore=store) for topic in topics]
        for au in H264File(p_stream.mp4_path):
            stamp = base_ns + int(round(au.pts_seconds * 1e9))
            message = message_type(header=header(stamp=time_(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="front"),
                                   format="h264", data=np.frombuffer(au.data, np.uint8))
            for connection in connections:
                writer.write(connection, stamp + 5_000_000, store.serialize_cdr(message, message_type.__msgtype__))


@pytest.mark.parametrize("storage", ["SQLITE3", "MCAP"])
def test_replay_reads_rosbag2_recordings_with_their_header_stamps(model_dir, p_stream, tmp_path, capsys, storage):
    from rosbags.rosbag2 import StoragePlugin

    bag = tmp_path / f"bag_{storage}"
    _write_bag(bag, p_stream, getattr(StoragePlugin, storage))
    out = tmp_path / "out"
    assert main(["replay", str(bag), "--model", str(model_dir), "--prompt", "Where is the red cube? Give its bounding box.",
                 "--budget", "4", "--out", str(out)]) == 0
    from_bag = json.loads((out / "results.json").read_text())
    assert main(["replay", str(p_stream.mp4_path), "--model", str(model_dir), "--prompt",
                 "Where is the red cube? Give its bounding box.", "--budget", "4", "--out", str(tmp_path / "file")]) == 0
    from_file = json.loads((tmp_path / "file" / "results.json").read_text())
    assert from_bag["frames"] == from_file["frames"] == 60 and from_bag["fps"] == pytest.approx(30.0, abs=0.01)
    # The same access units, so the same answers over the same windows (stamps re-based to the start).
    assert [a["text"] for a in from_bag["answers"]] == [a["text"] for a in from_file["answers"]]
    windows = lambda document: [t for answer in document["answers"] for t in answer["window_s"]]
    assert windows(from_bag) == pytest.approx(windows(from_file), abs=0.002)


def test_a_bag_with_two_h264_topics_needs_one_chosen(model_dir, p_stream, tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin

    bag = tmp_path / "two"
    _write_bag(bag, p_stream, StoragePlugin.MCAP, topics=("/left/h264", "/right/h264"))
    question = ["replay", str(bag), "--model", str(model_dir), "--prompt", "Trace the gripper.", "--once",
                "--out", str(tmp_path / "out")]
    assert main(question) == 2
    assert "/left/h264" in capsys.readouterr().err
    assert main([*question, "--topic", "/right/h264"]) == 0
