"""`ov2 demo`: the README's main job. Renders a held-out synthetic pick-and-place episode,
encodes it to H.264, starts the real `ov2_node` (embedded default model) in its own process,
streams the episode to it over ROS 2 like a camera (realtime, one access unit per message) with a
standing trace question, then asks it over the Query service when the gripper grasped the object
and where the plate is. Prints every answer next to the world's ground truth, and what the node
decoded and tokenized (its /diagnostics); writes the node's annotated images (one per answer,
from ov2/annotated) as annotated.mp4."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image

from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig, encode_mp4
from ov2_ros.model.scoring import box_iou, temporal_iou, trace_errors
from ov2_ros.msg import ManipulationTrace, ModelText
from ov2_ros.ros.conversions import time_to_ns
from ov2_ros.ros.harness import DiagnosticsWatcher, call_service, counter, ros_client, start_node_process, stop_process
from ov2_ros.ros.publisher import AccessUnitPublisher, play
from ov2_ros.srv import Query
from ov2_ros.synth.stream import write_world_stream
from ov2_ros.synth.worlds import PickPlaceWorld, Variation, WorldConfig

HELDOUT_SEED = 100_000  # as training/evaluate.py: seeds no training clip used
TRACE_PROMPT = "Trace where the gripper moved."
_REPORTED = (
    "frames_received", "frames_decoded", "frames_pending_in_decoder", "frames_dropped_waiting_for_idr",
    "decode_errors", "frames_dropped_queue_full", "width", "height", "input_rate_hz", "decode_ms_p99",
    "groups_emitted", "kept_fraction", "tokenizer_ms_mean", "answers_standing", "answers_query",
    "answers_failed", "inference_ms_p50", "inference_ms_p99",
)


def run_demo(out_dir: str | Path, duration_s: float = 8.0, seed: int = 0, start_frame: int = 0,
             node_parameters: dict | None = None) -> int:
    out_dir = Path(out_dir)
    world = PickPlaceWorld(WorldConfig(duration_s=duration_s, seed=HELDOUT_SEED + seed, variation=Variation("heldout")))
    config = world.config
    stream = write_world_stream(world, H264EncoderConfig(width=config.width, height=config.height, fps=config.fps),
                                out_dir, "demo_episode")
    truth = world.episode_truth()
    source = H264File(stream.h264_path)
    print(f"episode: {truth['instruction']} ({source.info.frame_count} access units, {config.width}x{config.height}; "
          f"ground truth {stream.truth_path})", flush=True)

    parameters = {"diagnostics_period_s": 0.5, "default_prompt": TRACE_PROMPT, "log_gop_summaries": False,
                  "visualize": True, **(node_parameters or {})}
    node_process = start_node_process(parameters, namespace="/demo")
    traces, texts, annotated = [], [], []  # appended by the spin thread, read once it has stopped
    try:
        with ros_client("ov2_demo") as node:
            watcher = DiagnosticsWatcher(node)
            node.create_subscription(ManipulationTrace, "/demo/ov2/trace", traces.append, 10)
            node.create_subscription(ModelText, "/demo/ov2/text", texts.append, 10)
            node.create_subscription(Image, "/demo/ov2/annotated", annotated.append, 10)
            publisher = AccessUnitPublisher(node, "/demo/image_raw/h264", frame_id="demo_camera")
            if not publisher.wait_for_subscribers(1, 120.0):
                print("ov2_node did not subscribe within 120 s (see its log above)")
                return 1
            base_ns = time.time_ns()
            report = play(publisher, source, pacing="realtime", start_frame=start_frame)
            client = node.create_client(Query, "/demo/ov2/query")
            client.wait_for_service(timeout_sec=30.0)
            grasp = next(s for s in truth["segments"] if s["phase"] == "grasp")
            questions = {"grasp": f"When does the gripper grasp the {truth['target']}?",
                         "plate": f"Where is the {truth['plate']}? Give its bounding box."}
            answers = {key: call_service(client, Query.Request(prompt=q, window_s=duration_s + 1.0,
                                                               max_new_tokens=64), 300.0)
                       for key, q in questions.items()}
            asked = sum(r is not None and r.success for r in answers.values())
            final = watcher.wait_for(lambda v: counter(v, "frames_received") >= report.sent and counter(v, "queue_depth") == 0
                                     and counter(v, "answers_query") >= asked, 30.0, name_prefix="/demo/ov2_node")
    finally:
        stop_process(node_process)

    # The episode's clock: the publisher stamped frame 0 at base_ns.
    seconds = lambda stamp: (time_to_ns(stamp) - base_ns) / 1e9
    summary = {"instruction": truth["instruction"], "published": report.sent, "answers": {}}
    print(f"\nstanding question '{TRACE_PROMPT}': {len(texts)} answers; the last trace:")
    if traces:
        last = traces[-1]
        points = [[round(p.x, 1), round(p.y, 1)] for p in last.waypoints]
        ade, _ = trace_errors(points, truth["gripper_path"], float(np.hypot(config.width, config.height)))
        print(f"  model  {points}\n  truth  {truth['gripper_path']}\n  ADE {ade:.3f} of the image diagonal")
        summary["answers"]["trace"] = {"waypoints": points, "ade_fraction_of_diagonal": round(ade, 3)}
    response = answers["grasp"]
    if response is not None and response.success and response.segments:
        segment = response.segments[0]
        start, end = seconds(segment.start), seconds(segment.end)
        segment_iou = temporal_iou((start, end), (grasp["start_s"], grasp["end_s"]))
        print(f"\n'{questions['grasp']}'\n  model  {start:.2f}-{end:.2f} s ({response.text!r})\n"
              f"  truth  {grasp['start_s']:.2f}-{grasp['end_s']:.2f} s   IoU {segment_iou:.2f}")
        summary["answers"]["grasp"] = {"model_s": [round(start, 2), round(end, 2)],
                                       "truth_s": [grasp["start_s"], grasp["end_s"]]}
    else:
        print(f"\n'{questions['grasp']}': no answer ({getattr(response, 'message', 'timed out')})")
    response = answers["plate"]
    if response is not None and response.success and response.groundings:
        box = response.groundings[0]
        model_box = [round(v, 1) for v in (box.x_min, box.y_min, box.x_max, box.y_max)]
        print(f"\n'{questions['plate']}'\n  model  {model_box} ({response.text!r})\n"
              f"  truth  {truth['plate_box_xyxy']}   IoU {box_iou(model_box, truth['plate_box_xyxy']):.2f}")
        summary["answers"]["plate_box"] = {"model": model_box, "truth": truth["plate_box_xyxy"]}
    else:
        print(f"\n'{questions['plate']}': no answer ({getattr(response, 'message', 'timed out')})")
    if final is None:
        print("\nno final diagnostics from ov2_node")
        return 1
    print("\nwhat ov2_node did (from its /diagnostics):")
    for key in _REPORTED:
        print(f"  {key:28s} {final.get(key)}")
    summary["diagnostics"] = final
    if annotated:
        frames = [np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3) for m in annotated]
        encode_mp4(frames, out_dir / "annotated.mp4", H264EncoderConfig(width=annotated[0].width,
                                                                        height=annotated[0].height, fps=2.0))
        print(f"annotated answers ({len(frames)} frames, one per answer, 2 fps): {out_dir / 'annotated.mp4'}")
    (out_dir / "demo_results.json").write_text(json.dumps(summary, indent=1))
    print(f"results: {out_dir / 'demo_results.json'}")
    decoded_all = counter(final, "frames_decoded") + counter(final, "frames_pending_in_decoder")
    answered = all(r is not None and r.success for r in answers.values()) and traces
    return 0 if answered and decoded_all + counter(final, "frames_dropped_waiting_for_idr") == report.sent else 1
