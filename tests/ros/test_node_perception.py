"""The real ov2_node with the embedded default model, in its own process, fed a synthetic H.264
episode over ROS 2: standing questions, the Query service and the prompt topic answer with typed
messages stamped with the frames the model saw."""
import threading
import time

import numpy as np
import pytest

from ov2_ros.codec.container import H264File
from ov2_ros.model.scoring import trace_errors
from ov2_ros.msg import ModelText, SpatialGroundingArray, TemporalSegmentArray
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray
from ov2_ros.ros.conversions import time_to_ns
from ov2_ros.ros.harness import call_service, counter
from ov2_ros.ros.publisher import AccessUnitPublisher, play
from ov2_ros.srv import Query
from std_msgs.msg import String
from tests.conftest import make_stream
from training import tasks
from training.data import WORLD_DURATIONS_S, ClipCache
from training.evaluate import heldout_clips

GRASP = "When does the gripper grasp the cube?"
BOX = "Where is the red cube? Give its bounding box."


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    """320x240, 4 s at 30 fps: several temporal groups."""
    return make_stream(tmp_path_factory.mktemp("episode"), "episode", duration_s=4.0)


class Collector:
    def __init__(self, node, namespace):
        self.messages: dict[str, list] = {"text": [], "segments": [], "groundings": [], "annotated": [], "markers": []}
        self._condition = threading.Condition()
        for role, kind in (("text", ModelText), ("segments", TemporalSegmentArray),
                           ("groundings", SpatialGroundingArray), ("annotated", Image), ("markers", MarkerArray)):
            node.create_subscription(kind, f"{namespace}/ov2/{role}", lambda m, r=role: self._add(r, m), 10)

    def _add(self, role, message):
        with self._condition:
            self.messages[role].append(message)
            self._condition.notify_all()

    def wait(self, predicate, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True


def _stream(node, namespace, mp4_path):
    publisher = AccessUnitPublisher(node, f"{namespace}/image_raw/h264", frame_id="tabletop_camera")
    assert publisher.wait_for_subscribers(1, timeout_s=60.0), "ov2_node never subscribed"
    before = time.time_ns()
    report = play(publisher, H264File(mp4_path), pacing="realtime")
    return before, report


def _ask(node, client, prompt):
    # Safe to repeat: the tests find what was published by the response's request_id.
    response = call_service(client, Query.Request(prompt=prompt, output_format="auto", publish=True), 300.0, attempts=2)
    assert response is not None, f"no answer to {prompt!r}"
    assert response.success, response.message
    return response


def test_standing_question_answers_on_new_groups_with_frame_stamps(ros, node_under_test, episode):
    node, watcher = ros
    # Groups of 0.3-1.3 s: a window of three seconds slides, so the idle node encodes ahead.
    node_under_test("/standing", default_prompt=GRASP, budget_canvases=8, window_s=3.0)
    collector = Collector(node, "/standing")
    before, report = _stream(node, "/standing", episode.mp4_path)
    after = time.time_ns()
    assert collector.wait(lambda m: len(m["text"]) >= 1 and len(m["segments"]) >= 1, 120.0), watcher.latest("/standing")
    text = collector.messages["text"][0]
    assert text.prompt == GRASP and text.parsed and text.parse_error == ""
    assert text.model_id == "torch:fp32:embedded default" and text.header.frame_id == "tabletop_camera"
    start, end = time_to_ns(text.window_start), time_to_ns(text.window_end)
    assert before <= start < end <= after  # the frames the model saw were published in this run
    assert time_to_ns(text.header.stamp) == end
    segments = collector.messages["segments"][0]
    assert segments.request_id == text.request_id and len(segments.segments) == 1
    segment = segments.segments[0]
    assert start <= time_to_ns(segment.start) <= time_to_ns(segment.end) <= end + 2_000_000_000  # END_SLACK_S
    values = watcher.wait_for(lambda v: counter(v, "answers_standing") >= 2, 30.0, name_prefix="/standing/ov2_node")
    assert values is not None and counter(values, "answers_failed") == 0
    assert float(values["inference_ms_p50"]) > 0 and float(values["last_vision_s_ms"]) > 0
    # an answer's stages fit in its time; it waited for the thread at least 0 ms
    stages = sum(float(values[f"answer_{stage}_ms_p50"]) for stage in ("vision", "prefill", "decode"))
    assert 0 < stages <= 1.5 * float(values["inference_ms_p99"]) and float(values["answer_wait_ms_p50"]) >= 0
    # the newest frame an answer describes was sent (stamped) before the answer began
    assert 0.5 * float(values["inference_ms_p50"]) < float(values["result_age_ms_p50"]) < 60_000
    # the second answer on was drafted from the one before
    assert 0 < counter(values, "draft_tokens_confirmed") <= counter(values, "draft_tokens_proposed")
    # idle after its last answer, the node encoded ahead the next window's groups (its first group
    # at the next window start); whether a guess held depends on the next group's length
    values = watcher.wait_for(lambda v: counter(v, "groups_encoded_ahead") >= 1, 30.0,
                              name_prefix="/standing/ov2_node")
    assert values is not None, [(k, v) for k, v in watcher.latest("/standing").items() if "encoded" in k]
    assert counter(values, "groups_encoded_ahead_used") <= counter(values, "groups_encoded_ahead") \
        <= counter(values, "groups_encoded")


def test_query_service_and_prompt_topic(ros, node_under_test, episode):
    node, watcher = ros
    node_under_test("/asked", budget_canvases=4, visualize=True)
    collector = Collector(node, "/asked")
    client = node.create_client(Query, "/asked/ov2/query")
    assert client.wait_for_service(timeout_sec=60.0)
    # A format the node does not know is refused before it counts as a question; safe to repeat, so
    # it also waits out a response lost while discovery completes (see call_service).
    bad = call_service(client, Query.Request(prompt=BOX, output_format="hologram"), 30.0, attempts=6)
    assert not bad.success and "hologram" in bad.message
    early = call_service(client, Query.Request(prompt=BOX, output_format="auto"), 30.0)
    assert not early.success and "no temporal group" in early.message  # no video yet

    before, report = _stream(node, "/asked", episode.mp4_path)
    # Every frame decoded and tokenized: no group comes after this, the window stays as it is.
    assert watcher.wait_for(lambda v: counter(v, "groups_emitted") >= 1 and counter(v, "queue_depth") == 0 and
                            counter(v, "frames_decoded") == report.sent, 30.0, name_prefix="/asked/ov2_node")
    response = _ask(node, client, BOX)
    assert response.request_id and response.header.frame_id == "tabletop_camera"
    assert before <= time_to_ns(response.header.stamp) <= time.time_ns()
    assert len(response.groundings) == 1
    box = response.groundings[0]
    assert 0 <= box.x_min <= box.x_max <= 320 and 0 <= box.y_min <= box.y_max <= 240
    assert (box.image_width, box.image_height) == (320, 240)
    assert collector.wait(lambda m: any(g.request_id == response.request_id for g in m["groundings"]), 30.0)
    answered = watcher.wait_for(lambda v: counter(v, "answers_query") >= 1, 30.0, name_prefix="/asked/ov2_node")
    assert counter(answered, "groups_encoded") >= 1
    # visualize: the answer drawn on the newest frame, and as markers
    assert collector.wait(lambda m: m["annotated"] and m["markers"], 30.0)
    image = collector.messages["annotated"][-1]
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, "rgb8", 960)
    assert len(image.data) == 320 * 240 * 3 and image.header.frame_id == "tabletop_camera"
    assert time_to_ns(image.header.stamp) >= time_to_ns(response.header.stamp)  # the newest frame, not older
    boxes = [m for m in collector.messages["markers"][-1].markers if m.ns == "ov2/boxes"]
    assert len(boxes) == 1 and boxes[0].type == Marker.LINE_STRIP and len(boxes[0].points) == 5
    assert all(abs(p.x) <= 0.5 and p.z == 1.0 for p in boxes[0].points)

    prompts = node.create_publisher(String, "/asked/ov2/prompt", 10)
    prompts.publish(String(data=GRASP))
    assert collector.wait(lambda m: any(t.prompt == GRASP for t in m["text"]), 60.0)
    values = watcher.wait_for(lambda v: counter(v, "answers_query") >= 2, 30.0, name_prefix="/asked/ov2_node")
    assert values is not None and counter(values, "answers_failed") == 1  # the question before any video
    # The stream has ended: the second question sees the first one's window, encoded already.
    assert counter(values, "groups_encoded") == counter(answered, "groups_encoded")


@pytest.mark.parametrize("parameters, reasons", [
    ({"model_path": "{tmp}/nowhere"}, [b"nowhere", b"does not exist"]),
    ({"dtype": "int8"}, [b"the torch backend runs in fp32, fp16, bf16, not 'int8'"]),
])
def test_a_model_that_cannot_load_stops_the_node_with_the_reason(tmp_path, parameters, reasons):
    import subprocess

    from ov2_ros.ros.harness import start_node_process

    parameters = {name: value.format(tmp=tmp_path) for name, value in parameters.items()}
    process = start_node_process(parameters, namespace="/nomodel", stdout=subprocess.PIPE)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and all(reason in output for reason in reasons), output[-2000:]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The first held-out pick-and-place world of `ov2 eval` (unseen seed, colours, background and
    speed): its H.264 clip and exact truth."""
    spec = heldout_clips("pickplace", 1, WORLD_DURATIONS_S["pickplace"])[0]
    mp4, truth = ClipCache(tmp_path_factory.mktemp("world")).clip(spec)
    return spec, mp4, truth


def test_trace_and_grounding_match_the_worlds_truth(ros, node_under_test, world):
    spec, mp4, truth = world
    episode = truth["episode"]
    node, watcher = ros
    node_under_test("/world", window_s=spec.duration_s + 1.0)  # the default budget, the whole clip
    collector = Collector(node, "/world")
    client = node.create_client(Query, "/world/ov2/query")
    assert client.wait_for_service(timeout_sec=60.0)
    before, report = _stream(node, "/world", mp4)
    assert watcher.wait_for(lambda v: counter(v, "queue_depth") == 0 and counter(v, "frames_decoded") == report.sent,
                            30.0, name_prefix="/world/ov2_node")

    traced = _ask(node, client, tasks.TRACE_WORDINGS[0])
    assert len(traced.traces) == 1 and (traced.traces[0].image_width, traced.traces[0].image_height) == (spec.width, spec.height)
    waypoints = [[p.x, p.y] for p in traced.traces[0].waypoints]
    ade, _ = trace_errors(waypoints, episode["gripper_path"], float(np.hypot(spec.width, spec.height)))
    grasp = next(s for s in episode["segments"] if s["phase"] == "grasp")
    grasped = _ask(node, client, tasks.SEGMENT_WORDINGS["grasp"][0].format(target=episode["target"]))
    assert collector.wait(lambda m: any(t.request_id == grasped.request_id for t in m["text"]), 30.0)
    text = next(t for t in collector.messages["text"] if t.request_id == grasped.request_id)
    origin = time_to_ns(text.window_start)  # the clip's first frame: the window covers it all
    start_s, end_s = ((time_to_ns(t) - origin) / 1e9 for t in (grasped.segments[0].start, grasped.segments[0].end))
    truth_s = (grasp["start_s"], grasp["end_s"])
    # Stated tolerances: the embedded model's own accuracy on the node's view of held-out worlds
    # (`ov2 eval --input live`: trace ADE 0.14-0.16 of the diagonal on average; grasp segments
    # mostly a learnt prior, within 1.3 s of the truth at worst for the defaults of 2026-11 and
    # 2026-12-07), delivered end to end: stamps, window, tokenizer, model, parsing and messages.
    # A window or stamp mapped wrongly misses by seconds. (Measured on this clip, the default of
    # 2026-12-08: ADE 0.079, grasp (2.9, 2.9) s against (2.275, 2.872) s; of 2026-12-07: 0.163,
    # (2.0, 3.0) s; before: 0.19, (2.7, 3.2) s.)
    assert ade <= 0.30, (ade, waypoints, episode["gripper_path"])
    assert abs(start_s - truth_s[0]) <= 1.5 and abs(end_s - truth_s[1]) <= 1.5, ((start_s, end_s), truth_s)
    assert not traced.traces[0].predicted
