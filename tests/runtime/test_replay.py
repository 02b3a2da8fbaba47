"""`ov2 replay`: the node's pipeline offline on a recording, its JSON and its annotated video."""
import json

import av
import numpy as np
import pytest

from ov2_ros.cli import main
from ov2_ros.model.checkpoint import save_model
from ov2_ros.model.parsers import Box, Trace, Waypoint
from ov2_ros.runtime.annotate import BOX, TRACE, annotate
from ov2_ros.runtime.answer import Answer
from ov2_ros.runtime.perception import PerceptionResult, Query
from tests.model.conftest import tiny_model


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_model(tiny_model(tokenizer, seed=2), folder, tokenizer.path)
    return folder


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
