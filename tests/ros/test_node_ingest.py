"""The real ov2_node in its own process, fed over ROS 2 by a camera-like publisher in this
process; every check reads the node's /diagnostics."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter

from ov2_ros.codec.container import H264File
from ov2_ros.model.config import Ov2Config
from ov2_ros.model.default import default_model_dir
from ov2_ros.tokenizer.geometry import DEFAULT_MAX_PIXELS, FrameGeometry
from ov2_ros.ros.harness import call_service, counter, start_node_process, stop_process
from ov2_ros.ros.publisher import AccessUnitPublisher, play
from tests.conftest import media_file

REPO = Path(__file__).resolve().parents[2]


def _publisher(node, namespace):
    publisher = AccessUnitPublisher(node, f"{namespace}/image_raw/h264", frame_id=f"{namespace[1:]}_optical")
    assert publisher.wait_for_subscribers(1, timeout_s=30.0), "ov2_node never subscribed"
    return publisher


def _settled(watcher, namespace, received, timeout_s=20.0):
    # Every access unit received and its fate counted: an empty queue alone is not enough, the
    # decode thread may hold the last one between taking it off the queue and counting it.
    values = watcher.wait_for(
        lambda v: counter(v, "frames_received") == received and counter(v, "queue_depth") == 0
        and _accounted(v) == received, timeout_s, name_prefix=f"{namespace}/ov2_node")
    assert values is not None, f"diagnostics never showed {received} frames: {watcher.latest(namespace)}"
    return values


def _accounted(values):
    keys = ("frames_decoded", "frames_pending_in_decoder", "decode_errors", "frames_dropped_waiting_for_idr",
            "frames_discarded_by_decoder", "frames_rejected_format", "frames_rejected_empty",
            "frames_rejected_malformed", "frames_dropped_queue_full")
    return sum(counter(values, key) for key in keys)


def test_every_published_frame_is_decoded(ros, node_under_test, p_stream, b_stream):
    node, watcher = ros
    for namespace, path in (("/p_camera", p_stream.h264_path), ("/b_camera", b_stream.mp4_path)):
        node_under_test(namespace)
        report = play(_publisher(node, namespace), H264File(path), pacing="acked")
        assert report.sent == 60 and report.unacked == 0
        values = _settled(watcher, namespace, 60)
        assert _accounted(values) == 60
        # B-frame reordering may still hold the last pictures: the stream has not ended for a live node
        assert counter(values, "frames_decoded") + counter(values, "frames_pending_in_decoder") == 60
        assert counter(values, "frames_dropped_waiting_for_idr") == counter(values, "decode_errors") == 0
        assert (counter(values, "width"), counter(values, "height")) == (320, 240)
        assert values["hardware_id"] == f"{namespace[1:]}_optical"
        assert float(values["decode_ms_mean"]) > 0 and float(values["input_rate_hz"]) > 0
        assert values["awaiting_idr"] == "false"


def test_a_remapped_input_topic_is_read(ros, p_stream):
    """The subscription lives on a companion node (ov2_node_intake) that takes no process-wide
    arguments: it reads the topic the node's own remaps name."""
    node, watcher = ros
    namespace, topic = "/remapped_camera", "/elsewhere/camera/h264"
    process = start_node_process({"diagnostics_period_s": 0.2}, remaps={"image_raw/h264": topic},
                                 namespace=namespace)
    try:
        publisher = AccessUnitPublisher(node, topic, frame_id="remapped_optical")
        assert publisher.wait_for_subscribers(1, timeout_s=30.0), "ov2_node never subscribed to the remapped topic"
        report = play(publisher, H264File(p_stream.h264_path), pacing="acked")
        assert report.sent == 60 and report.unacked == 0
        values = _settled(watcher, namespace, 60)
        assert counter(values, "frames_decoded") + counter(values, "frames_pending_in_decoder") == 60
        assert node.count_subscribers(f"{namespace}/image_raw/h264") == 0  # nothing listens where the remap moved it from
    finally:
        stop_process(process)


def test_ov2_publish_late_joiner_waits_for_an_idr(ros, node_under_test, p_stream):
    """Three processes: `ov2 publish` joining mid-GOP -> ov2_node -> diagnostics read here."""
    _, watcher = ros
    node_under_test("/late")
    publisher = subprocess.run(
        [sys.executable, "-m", "ov2_ros.cli", "publish", str(p_stream.h264_path), "--topic", "/late/image_raw/h264",
         "--pacing", "acked", "--start-frame", "5"], capture_output=True, text=True, timeout=120)
    assert publisher.returncode == 0, publisher.stderr
    assert "sent 55 access units" in publisher.stdout
    values = _settled(watcher, "/late", 55)
    assert counter(values, "frames_dropped_waiting_for_idr") == 10  # 5..14; IDR at 15
    assert counter(values, "frames_decoded") == 45
    assert _accounted(values) == 55


def test_injected_faults_are_counted_and_decoding_recovers(ros, node_under_test, p_stream):
    node, watcher = ros
    node_under_test("/faulty")
    publisher = _publisher(node, "/faulty")
    units = list(H264File(p_stream.h264_path))
    stamp = 10**18
    sent = 0

    def send(data, fmt="h264"):
        nonlocal stamp, sent
        publisher.publish(data, stamp, fmt)
        assert publisher.wait_acked(5.0)
        stamp += 33_333_333
        sent += 1

    for au in units[:15]:
        send(au.data)
    send(units[15].data, fmt="jpeg")  # wrong format
    send(b"")  # empty
    send(b"\x89PNG\r\n\x1a\n not h264")  # garbage
    for index, au in enumerate(units[15:], start=15):
        if index != 20:  # a lost P picture: 21..29 cannot be decoded until the IDR at 30
            send(au.data)
    values = _settled(watcher, "/faulty", sent)
    assert sent == 62
    assert counter(values, "frames_rejected_format") == 1
    assert counter(values, "frames_rejected_empty") == 1
    assert counter(values, "frames_rejected_malformed") == 1
    assert counter(values, "frame_num_gaps") == 1
    assert counter(values, "frames_dropped_waiting_for_idr") == 9
    assert counter(values, "frames_decoded") == 15 + 5 + 30
    assert _accounted(values) == 62
    assert "dropped_waiting_for_idr" in values["last_problem"]


def test_resolution_change_is_followed(ros, node_under_test, p_stream, large_stream):
    node, watcher = ros
    node_under_test("/resize")
    publisher = _publisher(node, "/resize")
    units = list(H264File(p_stream.h264_path))[:30] + list(H264File(large_stream.h264_path))
    for index, au in enumerate(units):
        publisher.publish(au.data, 10**18 + index * 33_333_333)
        assert publisher.wait_acked(5.0)
    values = _settled(watcher, "/resize", 90)
    assert counter(values, "resolution_changes") == 1
    assert (counter(values, "width"), counter(values, "height")) == (640, 480)
    assert counter(values, "frames_decoded") == 90
    # Tokenized at the frame area the model was trained at (its config's max_pixels), not OV2's.
    trained = Ov2Config.from_dict(json.loads((default_model_dir() / "config.json").read_text())).max_pixels
    canvas = FrameGeometry.for_source(480, 640, trained)
    assert trained < DEFAULT_MAX_PIXELS and canvas.width * canvas.height <= trained
    assert (counter(values, "canvas_width"), counter(values, "canvas_height")) == (canvas.width, canvas.height)


def test_real_camera_mp4_with_b_frames(ros, node_under_test):
    node, watcher = ros
    source = H264File(media_file("sam2_03_blocks.mp4"))
    node_under_test("/real")
    report = play(_publisher(node, "/real"), source, pacing="acked")
    values = _settled(watcher, "/real", report.sent, timeout_s=60.0)
    assert report.sent == source.info.frame_count
    assert counter(values, "frames_decoded") + counter(values, "frames_pending_in_decoder") == report.sent
    assert counter(values, "decode_errors") == 0
    assert (counter(values, "width"), counter(values, "height")) == (1280, 720)


def test_params_file_is_applied_and_bad_values_are_refused(ros, tmp_path):
    node, _ = ros
    shipped = (REPO / "config" / "ov2_node.yaml").read_text()
    edited = shipped.replace("qos_depth: 300", "qos_depth: 400").replace("max_stamp_gap_s: 0.5", "max_stamp_gap_s: 0.25")
    assert edited.count("400") == 1 and "0.25" in edited
    params_file = tmp_path / "ov2_node.yaml"
    params_file.write_text(edited)
    process = start_node_process(namespace="/configured", params_file=params_file)
    try:
        get = node.create_client(GetParameters, "/configured/ov2_node/get_parameters")
        assert get.wait_for_service(timeout_sec=30.0)
        # Both requests are safe to repeat: a response lost while discovery completes is asked again.
        response = call_service(get, GetParameters.Request(names=["qos_depth", "max_stamp_gap_s"]), 10.0, attempts=6)
        assert response.values[0].integer_value == 400
        assert response.values[1].double_value == pytest.approx(0.25)
        set_ = node.create_client(SetParameters, "/configured/ov2_node/set_parameters")
        assert set_.wait_for_service(timeout_sec=10.0)
        results = call_service(set_, SetParameters.Request(parameters=[
            Parameter("qos_depth", value=10).to_parameter_msg(),  # read-only: needs a restart
            Parameter("max_stamp_gap_s", value=1.5).to_parameter_msg(),
            Parameter("max_stamp_gap_s", value=-1.0).to_parameter_msg(),  # outside its range
        ]), 10.0, attempts=6).results
        assert [r.successful for r in results] == [False, True, False]
    finally:
        stop_process(process)
    bad = start_node_process({"qos_reliability": "sometimes"}, namespace="/bad")
    assert bad.wait(timeout=30) != 0


def test_node_cuts_the_live_stream_into_groups(ros, node_under_test, b_stream):
    node, watcher = ros
    node_under_test("/groups", min_group_frames=4, max_group_frames=12)
    report = play(_publisher(node, "/groups"), H264File(b_stream.mp4_path), pacing="acked")
    # Groups of at most 12 frames, the newest frames held back by B-frame reordering and the open
    # group: of 60 frames at least 60 / 12 - 1 groups close (6 in most runs, 4 in one).
    values = watcher.wait_for(
        lambda v: counter(v, "frames_received") == report.sent and counter(v, "queue_depth") == 0
        and counter(v, "groups_emitted") >= report.sent // 12 - 1, 20.0, name_prefix="/groups/ov2_node")
    assert values is not None, watcher.latest("/groups")
    decoded = counter(values, "frames_decoded")
    # every group spans 4..12 frames; all but the open one are out
    assert decoded / 12 - 1 <= counter(values, "groups_emitted") <= decoded / 4
    assert 0 < float(values["kept_fraction"]) <= 1.0
    assert float(values["tokenizer_ms_mean"]) > 0
    assert "canvases" in values["last_group"]


def test_raw_images_are_encoded_like_a_camera_and_tokenized(ros, node_under_test, p_stream):
    """input 'image': a camera without an encoder. Every raw frame becomes an access unit here,
    is decoded and tokenized; an image in an encoding the node cannot take is refused and counted."""
    from sensor_msgs.msg import Image

    from ov2_ros.ros.conversions import ns_to_time
    from ov2_ros.tokenizer.files import decode_file

    node, watcher = ros
    node_under_test("/raw", input="image", encoder_gop_frames=15)
    publisher = node.create_publisher(Image, "/raw/image_raw", 300)
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    _, frames, _ = decode_file(p_stream.mp4_path, export_macroblocks=False)
    start_ns = time.time_ns()
    for index, frame in enumerate(frames):
        bgr = np.ascontiguousarray(frame.rgb()[:, :, ::-1])
        message = Image(height=240, width=320, encoding="bgr8", step=960, data=bgr.tobytes())
        message.header.stamp = ns_to_time(start_ns + index * 33_333_333)
        message.header.frame_id = "raw_camera"
        publisher.publish(message)
        time.sleep(1 / 30)
    publisher.publish(Image(height=2, width=2, encoding="32FC1", step=16, data=bytes(16)))
    values = _settled(watcher, "/raw", len(frames) + 1)
    assert counter(values, "frames_decoded") == len(frames) and counter(values, "frames_rejected_format") == 1
    assert counter(values, "groups_emitted") >= 1 and (values["width"], values["height"]) == ("320", "240")
    assert 0 < float(values["encode_ms_mean"]) < 100
    assert "not encodable" in values["last_problem"] and "32FC1" in values["last_problem"]


def test_lifecycle_configure_loads_activate_subscribes_deactivate_stops_intake(ros, node_under_test, p_stream):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    node, watcher = ros
    node_under_test("/managed", autostart=False)
    change = node.create_client(ChangeState, "/managed/ov2_node/change_state")
    get_state = node.create_client(GetState, "/managed/ov2_node/get_state")
    assert change.wait_for_service(timeout_sec=30.0) and get_state.wait_for_service(timeout_sec=10.0)

    def state():
        response = call_service(get_state, GetState.Request(), 5.0, attempts=6)  # safe to repeat
        assert response is not None, "get_state never answered"
        return response.current_state.label

    publisher = AccessUnitPublisher(node, "/managed/image_raw/h264", frame_id="managed_camera")
    assert state() == "unconfigured" and publisher.publisher.get_subscription_count() == 0

    def transition(kind, reached):
        response = call_service(change, ChangeState.Request(transition=Transition(id=kind)), 120.0)
        if response is None:  # the response lost (see call_service): the state says whether it happened
            return state() == reached
        return response.success

    assert transition(Transition.TRANSITION_CONFIGURE, "inactive") and state() == "inactive"
    assert publisher.publisher.get_subscription_count() == 0  # the model is loaded; intake waits for activate
    assert transition(Transition.TRANSITION_ACTIVATE, "active") and state() == "active"
    assert publisher.wait_for_subscribers(1, 30.0)
    report = play(publisher, H264File(p_stream.mp4_path), pacing="acked")
    values = _settled(watcher, "/managed", report.sent)
    assert counter(values, "frames_decoded") == report.sent and values["lifecycle_state"] == "active"
    assert transition(Transition.TRANSITION_DEACTIVATE, "inactive") and state() == "inactive"
    deadline = time.monotonic() + 10
    while publisher.publisher.get_subscription_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.publisher.get_subscription_count() == 0
    assert transition(Transition.TRANSITION_CLEANUP, "unconfigured") and state() == "unconfigured"
    values = watcher.wait_for(lambda v: v["lifecycle_state"] == "unconfigured", 10.0, name_prefix="/managed/ov2_node")
    assert values is not None and counter(values, "frames_received") == report.sent  # counters outlive the model
