"""ov2_node: watches a camera's H.264 topic, decodes it, cuts it live into OV2 temporal groups
of salient canvases and answers questions about them with the OV2 model, publishing typed
grounding and trace messages stamped with the frames they describe.

Threads (all visible here):
  "ov2-intake"     - one single-threaded executor for the cameras' subscriptions (each on a
                     companion node, `<node>_intake` in the camera's namespace): the callback only
                     copies an access unit (or raw image) into the decode queue.
  executor threads - the nodes' other callbacks: a question into the query queue; the Query
                     service callback (its own callback group) waits for its answer without
                     blocking the others; the diagnostics timer formats counters; lifecycle and
                     parameter services.
  "ov2-decode"     - takes access units from the queue and runs the offline StreamIngest
                     (parsing, loss detection, PyAV decoding), then the StreamingTokenizer on
                     each decoded frame; keeps the newest frames and groups.
  "ov2-infer-<i>"  - (ros/inference.py: the process's, shared by the cameras it hosts)
                     answers queued questions first, else the standing `default_prompt` on the
                     last window_s seconds whenever a group has completed since its last run (latest
                     wins: groups completed while it was busy are covered by the next window,
                     never queued); runs runtime.perception.Perception and publishes. Idle
                     after a standing answer, it encodes ahead the groups the next window will
                     likely show (`encode_ahead`) and prefills that window's prompt up to its
                     newest group (`prefill_ahead`), so the next answer encodes only its new
                     group and prefills only that group and the question; one guess of the
                     next window at a time (`ahead_guesses` of them), so that a question or
                     group that arrives meanwhile waits for one guess at most, and a guess
                     skips its prefill if one has arrived while it encoded. With several
                     cameras in one process (`ov2_node --cameras a,b`) their answers run
                     side by side (one thread per camera, up to the cores), the oldest due
                     first, and guesses only while no thread runs anything.
The decode queue is bounded; an access unit that does not fit is counted as dropped and the
ingest restarts at the next IDR (a lost picture corrupts the rest of its GOP). Inference never
blocks intake.
"""
from __future__ import annotations

import argparse
import collections
import gc
import queue
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ov2_ros.msg import ManipulationTrace, ModelText, PointTrackArray, SpatialGroundingArray, TemporalSegmentArray
from ov2_ros.srv import Query as QueryService

from ov2_ros.codec.encoder import H264EncoderConfig, LiveEncoder
from ov2_ros.codec.ingest import FrameRecord, PushResult, StreamIngest
from ov2_ros.codec.saliency import SCORERS
from ov2_ros.tokenizer.canvas import TokenizedGroup
from ov2_ros.tokenizer.groups import GroupingConfig
from ov2_ros.tokenizer.pipeline import StreamingTokenizer, TokenizerConfig
from ov2_ros.ros import names, results
from ov2_ros.ros.conversions import image_to_rgb, key_values, ns_to_time, time_to_ns
from ov2_ros.ros.inference import InferenceWorker, default_answer_threads
from ov2_ros.runtime.annotate import annotate
from ov2_ros.runtime.answer import ANSWER_STAGES
from ov2_ros.runtime.backend import BACKENDS
from ov2_ros.runtime.perception import AHEAD_GUESSES, DRAFT_TOKENS, Perception, PerceptionResult, Query


@dataclass(frozen=True)
class _Received:
    payload: bytes
    stamp_ns: int
    fmt: str
    receive_ns: int
    frame_id: str
    image: Image | None = None  # a raw camera image, to encode before ingest (input "image")


@dataclass
class _Job:
    """One question for the inference thread; `done` is set when `result` or `error` is."""

    query: Query
    publish: bool
    kind: str = "query"  # or "standing": the default_prompt on new groups
    # When it became due (perf_counter s): a question's arrival, a standing one's group completing.
    due_s: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: PerceptionResult | None = None
    error: str = ""


class RollingWindow:
    """The last `size` samples of a measurement, for mean and percentiles."""

    def __init__(self, size: int = 300):
        self._samples: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self._samples.append(value)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self._samples, q)) if self._samples else float("nan")

    def mean(self) -> float:
        return float(np.mean(self._samples)) if self._samples else float("nan")


def _descriptor(description: str, kind: int, read_only: bool = False,
                int_range: tuple[int, int] | None = None,
                float_range: tuple[float, float] | None = None) -> ParameterDescriptor:
    """A parameter's type, documentation and allowed range (enforced by rclpy on every set)."""
    return ParameterDescriptor(
        description=description, type=kind, read_only=read_only,
        integer_range=[IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)] if int_range else [],
        floating_point_range=[FloatingPointRange(from_value=float_range[0], to_value=float_range[1], step=0.0)]
        if float_range else [],
    )


class Ov2Node(LifecycleNode):
    def __init__(self, inference: InferenceWorker | None = None, **kwargs):
        """inference: the worker shared with the other cameras of this process (main's
        --cameras); None: one of its own."""
        super().__init__(names.NODE_NAME, **kwargs)
        # The camera's subscription lives on a companion node that main spins with a single-
        # threaded executor: rclpy's MultiThreadedExecutor (Jazzy) keeps polling a subscription
        # whose message a worker thread has not taken yet, which cost 0.54-0.96 of a core for
        # two 30 fps streams of 8.6 kB access units, against 0.02 single-threaded (ros2/rclpy#1223).
        # It takes no process-wide arguments (a `__node:=` remap would give it this node's
        # name); the topic it reads is this node's, remapped (on_activate).
        self.intake_node = Node(f"{self.get_name()}_intake", namespace=self.get_namespace(), context=self.context,
                                use_global_arguments=False, start_parameter_services=False)
        self._inference = inference or InferenceWorker()
        p = self._declare_parameters()
        self._gop_summaries = p["log_gop_summaries"]

        self._ingest = StreamIngest(
            max_stamp_gap_ns=int(p["max_stamp_gap_s"] * 1e9),
            export_motion_vectors=p["export_motion_vectors"],
            decoder_threads=p["decoder_threads"],
            export_macroblocks=p["saliency"] == "bitcost",
        )
        self._tokenizer: StreamingTokenizer | None = None  # configure makes it, at the model's frame area
        # Newest completed groups (canvases + positions): the model's input.
        self.groups: collections.deque[TokenizedGroup] = collections.deque(maxlen=p["group_buffer_size"])
        self._group_times_ns = collections.deque(maxlen=100)
        self._kept_fractions = collections.deque(maxlen=20)
        self._tokenizer_ms = RollingWindow()
        self._groups_emitted = 0
        self._last_group = ""
        self._seen_resets = 0
        self._queue: queue.Queue[_Received] = queue.Queue(maxsize=p["decode_queue_size"])
        # Newest decoded frames, oldest first: the streaming tokenizer's input.
        self.frames: collections.deque[FrameRecord] = collections.deque(maxlen=p["frame_buffer_size"])
        self._gop: list[FrameRecord] = []

        # Guards everything the decode thread and the diagnostics timer share.
        self._lock = threading.Lock()
        self._messages_received = 0
        self._dropped_queue_full = 0
        self._internal_errors = 0
        self._overflow_pending = False
        self._frame_id = ""
        self._last_receive_ns = 0
        self._receive_times = collections.deque(maxlen=300)
        self._decode_ms = RollingWindow()
        self._stamp_delay_ms = RollingWindow()
        self._stamp_to_decoded_ms = RollingWindow()
        self._last_problem = ""
        self._last_warned: dict[str, float] = {}

        self._qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=p["qos_depth"],
            reliability=ReliabilityPolicy.BEST_EFFORT if p["qos_reliability"] == "best_effort"
            else ReliabilityPolicy.RELIABLE,
        )
        self._input = p["input"]
        if self._input == "image":
            self._encoder_settings = (p["encoder_gop_frames"], p["encoder_bitrate_bps"])
            self._live_encoder: LiveEncoder | None = None  # made for the first image's size
            self._encode_ms = RollingWindow()
        self._diagnostics = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS_TOPIC, 10)
        self._timer = self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)

        # Guards the inference thread's inputs: questions, the standing prompt, group arrivals
        # (the worker's, shared with the other cameras of this process).
        self._work = self._inference.work
        self._queries: collections.deque[_Job] = collections.deque()
        self._query_queue_size, self._query_timeout_s = p["query_queue_size"], p["query_timeout_s"]
        self._default_prompt, self._output_format = p["default_prompt"], p["output_format"]
        self._groups_seen = 0  # groups completed; the standing question last ran at _standing_seen
        self._group_completed_s = 0.0  # perf_counter when the newest group completed
        self._standing_seen = 0
        self._encode_ahead = p["encode_ahead"]
        self._ahead_guesses = p["ahead_guesses"]
        # Guesses of the next window encoded ahead (_ahead_done) once _ahead_seen groups had completed.
        self._ahead_seen = self._ahead_done = 0
        self._answers = collections.Counter()  # standing, query, refused, failed
        self._drafts = collections.Counter()  # draft tokens proposed and confirmed, over all answers
        self._inference_ms = RollingWindow()
        # Per answer: how long it waited for the inference thread (behind another answer or a
        # guess encoded ahead), and each stage of the model (Answer.timings_s).
        self._answer_wait_ms = RollingWindow()
        self._inference_cpu_ms = RollingWindow()  # the inference thread's CPU time per answer
        # Age of the newest frame an answer describes when the answer is published (header stamps
        # on this node's clock, as a live camera's are): the end-to-end latency as the node sees it.
        self._result_age_ms = RollingWindow()
        # The same age when the model started on the answer: the frame's way through decoding,
        # the group's closing and the wait for the inference thread.
        self._start_age_ms = RollingWindow()
        self._stage_ms = {stage: RollingWindow() for stage in ANSWER_STAGES}
        self._last_stage_s: dict = {}
        self._last_answer = ""
        self._model_id = ""
        self._perception: Perception | None = None
        self._results: dict = {}
        self._subscription = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._settings = p
        self._lifecycle = "unconfigured"
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if p["autostart"]:
            self.trigger_configure()
            if self._lifecycle != "inactive":
                raise RuntimeError(f"ov2_node could not configure: {self._last_problem}")
            self.trigger_activate()

    # --- lifecycle: configure loads the model, activate subscribes ------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = self._settings
        started = time.perf_counter()
        try:
            backend = self._inference.backend(p["backend"], p["model_path"] or None, p["dtype"],
                                              p["inference_threads"])
            tokenizer_config = TokenizerConfig(
                max_pixels=p["max_pixels"] or backend.config.max_pixels, frame_stride=p["frame_stride"],
                saliency=p["saliency"], grouping=GroupingConfig(min_group_frames=p["min_group_frames"],
                                                                max_group_frames=p["max_group_frames"]))
        except Exception as error:  # a bad path, export or setting: say why, stay unconfigured
            self._last_problem = f"not configured: {error}"
            self.get_logger().error(self._last_problem)
            return TransitionCallbackReturn.FAILURE
        if p["backend"] == "torch":
            import torch
            torch.set_num_threads(p["inference_threads"])
        self._model_id = f"{p['backend']}:{p['dtype']}:{p['model_path'] or 'embedded default'}"
        self._tokenizer = StreamingTokenizer(tokenizer_config)
        self._perception = Perception(backend, p["budget_canvases"], p["window_s"], p["max_new_tokens"],
                                      draft_tokens=p["draft_tokens"], prefill_ahead=p["prefill_ahead"],
                                      ahead_guesses=p["ahead_guesses"])
        self.get_logger().info(f"model {self._model_id} loaded in {time.perf_counter() - started:.1f} s")
        gc.collect()
        gc.freeze()  # see HEAP_COLLECT_PERIOD_S
        self._results = {
            "text": self.create_publisher(ModelText, names.TEXT_TOPIC, 10),
            "segments": self.create_publisher(TemporalSegmentArray, names.SEGMENTS_TOPIC, 10),
            "groundings": self.create_publisher(SpatialGroundingArray, names.GROUNDINGS_TOPIC, 10),
            "tracks": self.create_publisher(PointTrackArray, names.TRACKS_TOPIC, 10),
            "trace": self.create_publisher(ManipulationTrace, names.TRACE_TOPIC, 10),
        }
        if p["visualize"]:
            self._results["annotated"] = self.create_publisher(Image, names.ANNOTATED_TOPIC, 2)
            self._results["markers"] = self.create_publisher(MarkerArray, names.MARKERS_TOPIC, 10)
        self._prompts = self.create_subscription(String, names.PROMPT_TOPIC, self._on_prompt, 10)
        # Its own group: a service call waits for its answer while the other callbacks go on.
        self._query_service = self.create_service(QueryService, names.QUERY_SERVICE, self._on_query,
                                                  callback_group=MutuallyExclusiveCallbackGroup())
        self._stop.clear()
        self._threads = [threading.Thread(target=self._decode_loop, name="ov2-decode", daemon=True)]
        for thread in self._threads:
            thread.start()
        self._inference.attach(self)
        self._lifecycle = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        if self._input == "image":
            self._subscription = self.intake_node.create_subscription(
                Image, self.resolve_topic_name(names.IMAGE_TOPIC), self._on_image, self._qos)
        else:
            self._subscription = self.intake_node.create_subscription(
                CompressedImage, self.resolve_topic_name(names.H264_TOPIC), self._on_access_unit, self._qos)
        self._lifecycle = "active"
        self.get_logger().info(
            f"listening on {self._subscription.topic_name} ({self._settings['qos_reliability']}, depth "
            f"{self._settings['qos_depth']}); questions on {self._query_service.srv_name} and "
            f"{self._prompts.topic_name}; diagnostics on {names.DIAGNOSTICS_TOPIC}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.intake_node.destroy_subscription(self._subscription)  # intake stops; what is queued is still decoded
        self._subscription = None
        self._lifecycle = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self._subscription is not None:
            self.intake_node.destroy_subscription(self._subscription)
            self._subscription = None
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Back to unconfigured: threads stopped, the model and its interfaces gone."""
        self._inference.detach(self)  # an answer in progress finishes
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30.0)
        self._threads = []
        for publisher in self._results.values():
            self.destroy_publisher(publisher)
        self._results = {}
        if self._perception is not None:
            self.destroy_subscription(self._prompts)
            self.destroy_service(self._query_service)
        self._perception = None
        self._lifecycle = "unconfigured"

    # --- parameters -----------------------------------------------------------------------

    def _declare_parameters(self) -> dict:
        int_t, float_t = ParameterType.PARAMETER_INTEGER, ParameterType.PARAMETER_DOUBLE
        bool_t, str_t = ParameterType.PARAMETER_BOOL, ParameterType.PARAMETER_STRING
        specs = {
            "qos_reliability": ("reliable", _descriptor(
                "Reliability of the H.264 subscription: 'reliable' (default; a lost packet "
                "costs the rest of its GOP) or 'best_effort'.", str_t, read_only=True)),
            "qos_depth": (300, _descriptor(
                "History depth of the H.264 subscription; keep it >= 2 x the camera GOP.",
                int_t, read_only=True, int_range=(1, 10000))),
            "decode_queue_size": (300, _descriptor(
                "Access units waiting for the decode thread; beyond it they are dropped and "
                "decoding restarts at the next IDR.", int_t, read_only=True,
                int_range=(1, 10000))),
            "input": ("h264", _descriptor(
                "'h264': sensor_msgs/CompressedImage access units on image_raw/h264; 'image': raw "
                "sensor_msgs/Image on image_raw (rgb8, bgr8, rgba8, bgra8, mono8), encoded here with libx264 "
                "like a camera (no B-frames, fixed GOP, zero latency) so any camera works.", str_t,
                read_only=True)),
            "encoder_gop_frames": (30, _descriptor(
                "input 'image': frames between IDRs of the encoder (a loss recovers at the next one).", int_t,
                read_only=True, int_range=(1, 600))),
            "encoder_bitrate_bps": (2_000_000, _descriptor(
                "input 'image': target bitrate of the encoder.", int_t, read_only=True,
                int_range=(10_000, 200_000_000))),
            "frame_buffer_size": (128, _descriptor(
                "Newest decoded frames kept for the tokenizer (720p: 1.4 MB each).", int_t,
                read_only=True, int_range=(1, 4096))),
            "max_stamp_gap_s": (0.5, _descriptor(
                "A header stamp further than this from the newest one (forward or back) is a "
                "discontinuity: decoding restarts at the next IDR.", float_t,
                float_range=(0.01, 3600.0))),
            "export_motion_vectors": (True, _descriptor(
                "Export motion vectors from the decoder (+export_mvs).", bool_t, read_only=True)),
            "decoder_threads": (1, _descriptor(
                "Slice threads for the decoder (0 = auto). Frame threading is never used: it "
                "delays output by several frames.", int_t, read_only=True,
                int_range=(0, 16))),
            "diagnostics_period_s": (1.0, _descriptor(
                "Period of /diagnostics messages.", float_t, read_only=True,
                float_range=(0.05, 60.0))),
            "max_pixels": (0, _descriptor(
                "Tokenizer: bound on the processed frame area (H and W multiples of 28); 0: the area the "
                "model was trained at (its config's max_pixels; 150,000 for released OV2 checkpoints).",
                int_t, read_only=True, int_range=(0, 4_000_000))),
            "min_group_frames": (8, _descriptor(
                "Tokenizer: shortest temporal group, in scored frames.", int_t, read_only=True,
                int_range=(2, 1024))),
            "max_group_frames": (64, _descriptor(
                "Tokenizer: longest temporal group; a group is out at most this many scored "
                "frames after it starts.", int_t, read_only=True,
                int_range=(2, 1024))),
            "frame_stride": (1, _descriptor(
                "Tokenizer: score every n-th decoded frame (the others still serve as motion "
                "references).", int_t, read_only=True, int_range=(1, 64))),
            "saliency": ("motion_residual", _descriptor(
                f"Tokenizer: block scorer, one of {', '.join(SCORERS)} (docs/tokenizer.md).", str_t,
                read_only=True)),
            "group_buffer_size": (16, _descriptor(
                "Newest completed temporal groups kept for the model.", int_t, read_only=True,
                int_range=(1, 1024))),
            "log_gop_summaries": (True, _descriptor(
                "Log one line per decoded GOP (size, bits, motion vectors) and per temporal group.",
                bool_t)),
            "backend": ("torch", _descriptor(
                f"Model runtime: {', '.join(BACKENDS)} (docs/deployment.md).", str_t, read_only=True)),
            "model_path": ("", _descriptor(
                "torch: a model folder (ours or a released LLaVA-OneVision-2); onnxruntime / tensorrt: a "
                "folder written by `ov2 export-onnx`; empty: the embedded default model (exported once "
                "into $OV2_CACHE or ~/.cache/ov2_ros for onnxruntime / tensorrt).", str_t,
                read_only=True)),
            "dtype": ("fp32", _descriptor(
                "Precision the model runs in: torch fp32, fp16 or bf16; onnxruntime fp32 or int8 (weights "
                "int8, docs/deployment.md); tensorrt the export's fp32 or fp16.", str_t, read_only=True)),
            "inference_threads": (1, _descriptor(
                "CPU threads for the model (torch / onnxruntime).", int_t, read_only=True, int_range=(1, 64))),
            "default_prompt": ("", _descriptor(
                "Standing question answered on the newest video whenever a temporal group completes "
                "(e.g. 'Where is the gripper going? Give the trace.'); empty: none. Settable at run time.",
                str_t)),
            "output_format": ("auto", _descriptor(
                "Answer format of the standing question: auto (from its wording), segment, events, box, "
                "tracks, trace, trace2d or text.", str_t)),
            "budget_canvases": (16, _descriptor(
                "At most this many canvases per question; when the window holds more, groups spread over it "
                "(newest and oldest kept).", int_t, read_only=True,
                int_range=(1, 256))),
            "window_s": (10.0, _descriptor(
                "The video each question covers (seconds back from the newest frame, by header stamps), "
                "unless the query asks otherwise.", float_t, read_only=True, float_range=(0.1, 3600.0))),
            "max_new_tokens": (64, _descriptor(
                "Generated tokens per free-text answer (formatted answers stop when complete).", int_t,
                read_only=True, int_range=(1, 4096))),
            "draft_tokens": (DRAFT_TOKENS, _descriptor(
                "Greedy answers: guess up to this many tokens per decoder pass, copied from the last answer "
                "to the same question, and keep those the model confirms (same answer, fewer passes; "
                "onnxruntime and torch); 0: one pass per token.", int_t, read_only=True, int_range=(0, 63))),
            "encode_ahead": (True, _descriptor(
                "While idle after a standing answer, encode the groups the next window will likely show "
                "(for the window start it will likely have), so that the next answer encodes only its new "
                "group; a wrong guess costs idle time and changes no answer. False: encode at answer time.",
                bool_t, read_only=True)),
            "prefill_ahead": (True, _descriptor(
                "With encode_ahead, also prefill the start of the next window's prompt (up to its newest "
                "group) while idle, so that the next answer prefills only its new group and the question "
                "(torch and onnxruntime; checked against the real prompt, else a whole prefill). The same "
                "answers up to the rounding of a prefill in two passes.", bool_t, read_only=True)),
            "ahead_guesses": (AHEAD_GUESSES, _descriptor(
                "With encode_ahead: how many guesses of the next window (by the length and canvases of the "
                "group still to come) are encoded, and with prefill_ahead prefilled, while idle, most likely "
                "first; each costs idle time (about an answer's) and memory for its prompt's cache. Where "
                "several cameras' nodes share few cores, that idle time is another node's: 1 there.", int_t,
                read_only=True, int_range=(1, 4))),
            "visualize": (False, _descriptor(
                "Also publish each answer drawn on the newest frame (ov2/annotated, sensor_msgs/Image) and "
                "as markers (ov2/markers, visualization_msgs/MarkerArray).", bool_t, read_only=True)),
            "query_queue_size": (8, _descriptor(
                "Questions waiting for the inference thread; beyond it they are refused.", int_t,
                read_only=True, int_range=(1, 1024))),
            "query_timeout_s": (120.0, _descriptor(
                "The Query service gives up waiting for an answer after this long.", float_t,
                read_only=True, float_range=(1.0, 3600.0))),
            "autostart": (True, _descriptor(
                "Configure (load the model) and activate (subscribe) at start; false: wait for a "
                "lifecycle manager (ros2 lifecycle set ... configure / activate).", bool_t, read_only=True)),
            "log_throttle_s": (5.0, _descriptor(
                "At most one warning per this many seconds for each kind of bad input.", float_t,
                read_only=True, float_range=(0.0, 3600.0))),
        }
        values = {}
        for name, (default, descriptor) in specs.items():
            values[name] = self.declare_parameter(name, default, descriptor).value
        if values["saliency"] not in SCORERS:
            raise ValueError(f"saliency must be one of {SCORERS}, got '{values['saliency']}'")
        if values["min_group_frames"] > values["max_group_frames"]:
            raise ValueError("min_group_frames must not exceed max_group_frames, got "
                             f"{values['min_group_frames']} > {values['max_group_frames']}")
        if values["qos_reliability"] not in ("reliable", "best_effort"):
            raise ValueError(f"qos_reliability must be 'reliable' or 'best_effort', got "
                             f"'{values['qos_reliability']}'")
        if values["input"] not in ("h264", "image"):
            raise ValueError(f"input must be 'h264' or 'image', got '{values['input']}'")
        if values["backend"] not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got '{values['backend']}'")
        if values["output_format"] not in results.SERVICE_FORMATS:
            raise ValueError(f"output_format must be one of {sorted(results.SERVICE_FORMATS)}, got "
                             f"'{values['output_format']}'")
        self._log_throttle_s = values["log_throttle_s"]
        return values

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "max_stamp_gap_s":
                with self._lock:
                    self._ingest.max_stamp_gap_ns = int(parameter.value * 1e9)
            elif parameter.name == "log_gop_summaries":
                self._gop_summaries = bool(parameter.value)
            elif parameter.name == "output_format" and parameter.value not in results.SERVICE_FORMATS:
                return SetParametersResult(successful=False, reason=f"output_format must be one of "
                                                                    f"{sorted(results.SERVICE_FORMATS)}")
        for parameter in parameters:
            if parameter.name in ("default_prompt", "output_format"):
                with self._work:
                    setattr(self, f"_{parameter.name}", parameter.value)
                    self._work.notify()
        return SetParametersResult(successful=True)

    # --- executor thread ------------------------------------------------------------------

    def _on_access_unit(self, message: CompressedImage) -> None:
        self._enqueue(_Received(bytes(message.data), time_to_ns(message.header.stamp), message.format,
                                time.time_ns(), message.header.frame_id))

    def _on_image(self, message: Image) -> None:
        # The message object itself is kept (rclpy hands it over); encoding is the decode thread's.
        self._enqueue(_Received(b"", time_to_ns(message.header.stamp), names.H264_FORMAT, time.time_ns(),
                                message.header.frame_id, image=message))

    def _enqueue(self, received: _Received) -> None:
        with self._lock:
            self._messages_received += 1
            self._receive_times.append(received.receive_ns)
        try:
            self._queue.put_nowait(received)
        except queue.Full:
            with self._lock:
                self._dropped_queue_full += 1
                self._overflow_pending = True
            self.get_logger().warning(
                f"decode queue full ({self._queue.maxsize}); dropping access units until the "
                "next IDR", throttle_duration_sec=self._log_throttle_s)

    # --- decode thread --------------------------------------------------------------------

    def _decode_loop(self) -> None:
        collect_at = time.monotonic() + HEAP_COLLECT_PERIOD_S
        while not self._stop.is_set():
            if time.monotonic() >= collect_at:
                gc.collect()
                collect_at = time.monotonic() + HEAP_COLLECT_PERIOD_S
            try:
                received = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._ingest_one(received)
            except Exception as error:  # the decode thread must outlive any one access unit
                with self._lock:
                    self._internal_errors += 1
                    frames = self._ingest.mark_discontinuity()
                self._keep(frames)
                self.get_logger().error(f"internal error on an access unit, restarting at the next "
                                        f"IDR: {error!r}")

    def _encode(self, image: Image) -> bytes:
        """A raw image -> one access unit, like a camera's encoder (input 'image')."""
        started = time.perf_counter()
        rgb = image_to_rgb(image)
        rgb = rgb[:rgb.shape[0] // 2 * 2, :rgb.shape[1] // 2 * 2]  # 4:2:0 needs even sizes
        if self._live_encoder is None or (self._live_encoder.config.height, self._live_encoder.config.width) != rgb.shape[:2]:
            gop, bitrate = self._encoder_settings
            self._live_encoder = LiveEncoder(H264EncoderConfig(width=rgb.shape[1], height=rgb.shape[0],
                                                               gop_frames=gop, bitrate_bps=bitrate))
        access_unit = self._live_encoder.encode(rgb)
        with self._lock:
            self._encode_ms.add((time.perf_counter() - started) * 1e3)
        return access_unit

    def _ingest_one(self, received: _Received) -> None:
        payload, refused = received.payload, ""
        if received.image is not None:
            try:
                payload = self._encode(received.image)
            except Exception as error:  # an image that cannot be encoded is refused, not fatal
                refused = f"raw image not encodable: {error}"
        with self._lock:
            frames = []
            if self._overflow_pending:
                self._overflow_pending = False
                frames += self._ingest.mark_discontinuity()
            if refused:
                result = self._ingest.reject_format(refused)
            else:
                result = self._ingest.push(payload, received.stamp_ns, received.fmt, received.receive_ns)
            frames += result.frames
            self._record(received, result, frames)
            restarted = self._ingest.counters.decoder_resets != self._seen_resets
            self._seen_resets = self._ingest.counters.decoder_resets
        self._keep(frames)
        self._tokenize(frames, restarted)
        if result.problem:
            self._warn(result)

    def _tokenize(self, frames: list[FrameRecord], restarted: bool) -> None:
        if restarted:  # frames were lost: the next one has no valid motion reference
            self._tokenizer.reset_motion()
        for frame in frames:
            started = time.perf_counter()
            groups = self._tokenizer.push(frame)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            with self._lock:
                self._tokenizer_ms.add(elapsed_ms)
                for group in groups:
                    self._groups_emitted += 1
                    self._group_times_ns.append(time.time_ns())
                    self._kept_fractions.append(group.kept_fraction)
                    self._last_group = (f"t {group.first_t}-{group.last_t} ({group.frame_count} frames, "
                                        f"{group.canvases.shape[0]} canvases, {group.stop_reason})")
                self.groups.extend(groups)
            if groups:
                with self._work:
                    self._groups_seen += len(groups)
                    self._group_completed_s = time.perf_counter()
                    self._work.notify()
            if self._gop_summaries:
                for group in groups:
                    self.get_logger().info(
                        f"temporal group {group.index}: frames {group.first_t}-{group.last_t} "
                        f"({group.frame_count}), {group.canvases.shape[0]} canvases of "
                        f"{group.canvases.shape[2]}x{group.canvases.shape[1]}, kept "
                        f"{100 * group.kept_fraction:.1f}% of patches, stop: {group.stop_reason}")

    def _record(self, received: _Received, result: PushResult, frames: list[FrameRecord]) -> None:
        self._frame_id = received.frame_id
        self._last_receive_ns = received.receive_ns
        if received.stamp_ns:
            self._stamp_delay_ms.add((received.receive_ns - received.stamp_ns) / 1e6)
        if result.outcome == "accepted":
            self._decode_ms.add(result.decode_ms)
        else:
            self._last_problem = f"{result.outcome}: {result.detail}"
        for frame in frames:
            if frame.stamp_ns:
                self._stamp_to_decoded_ms.add((frame.decoded_ns - frame.stamp_ns) / 1e6)

    def _keep(self, frames: list[FrameRecord]) -> None:
        for frame in frames:
            if frame.key_frame and self._gop:
                self._log_gop(self._gop)
                self._gop = []
            self._gop.append(frame)
            self.frames.append(frame)

    def _log_gop(self, gop: list[FrameRecord]) -> None:
        if not self._gop_summaries:
            return
        key_bits = gop[0].bit_cost_bits
        other_bits = [frame.bit_cost_bits for frame in gop[1:]] or [0]
        vectors = [len(frame.motion_vectors) for frame in gop[1:]] or [0]
        types = "".join(frame.picture_type for frame in gop[:12]) + ("..." if len(gop) > 12 else "")
        self.get_logger().info(
            f"decoded GOP: {len(gop)} frames {gop[0].width}x{gop[0].height} [{types}], "
            f"IDR {key_bits / 1000:.1f} kbit, others mean {np.mean(other_bits) / 1000:.1f} kbit, "
            f"{np.mean(vectors):.0f} motion vectors/frame, "
            f"stamps {gop[0].stamp_ns / 1e9:.3f}-{gop[-1].stamp_ns / 1e9:.3f} s")

    def _warn(self, result: PushResult) -> None:
        """Log bad input at most once per `log_throttle_s` for each kind of outcome, so a flood
        of one kind neither fills the log nor hides another kind."""
        now = time.monotonic()
        if now - self._last_warned.get(result.outcome, -np.inf) < self._log_throttle_s:
            return
        self._last_warned[result.outcome] = now
        message = f"{result.outcome}: {result.detail}"
        # rclpy requires one severity per call site.
        if result.outcome == "dropped_waiting_for_idr":
            self.get_logger().info(message)
        else:
            self.get_logger().warning(message)

    # --- questions: executor threads ------------------------------------------------------

    def _submit(self, job: _Job) -> bool:
        with self._work:
            if len(self._queries) >= self._query_queue_size:
                self._answers["refused"] += 1
                return False
            self._queries.append(job)
            self._work.notify()
        return True

    def _on_prompt(self, message: String) -> None:
        if not self._submit(_Job(Query(message.data).with_id(), publish=True)):
            self.get_logger().warning(f"query queue full ({self._query_queue_size}); question refused",
                                      throttle_duration_sec=self._log_throttle_s)

    def _on_query(self, request, response):
        output_format = results.SERVICE_FORMATS.get(request.output_format.strip().lower(), "unknown")
        if output_format == "unknown":
            response.success = False
            response.message = (f"output_format '{request.output_format}' is not one of "
                                f"{sorted(results.SERVICE_FORMATS)}")
            return response
        job = _Job(Query(request.prompt, output_format, request.window_s, request.max_new_tokens).with_id(),
                   publish=request.publish)
        response.request_id = job.query.request_id
        if not self._submit(job):
            response.success, response.message = False, f"query queue full ({self._query_queue_size})"
        elif not job.done.wait(self._query_timeout_s):
            response.success, response.message = False, f"no answer within {self._query_timeout_s} s"
        elif job.error:
            response.success, response.message = False, job.error
        else:
            result, frame_id = job.result, self._frame_id
            response.success, response.message = True, ""
            response.header = results.header(result, frame_id)
            response.text = result.answer.text
            response.segments = results.segments(result, frame_id)
            response.groundings = results.groundings(result, frame_id)
            response.tracks = results.tracks(result)
            response.traces = results.traces(result, frame_id)
        return response

    # --- inference (ros/inference.py's worker calls these; the ones named in its Camera) -----

    def due_s(self) -> float | None:
        """Under self._work: when the answer next_job would return became due, None if none is."""
        if self._queries:
            return self._queries[0].due_s
        return self._group_completed_s if self._standing_due() else None

    def next_job(self) -> _Job | None:
        """Under self._work: a waiting question, else the standing one if a group completed."""
        if self._queries:
            return self._queries.popleft()
        if self._standing_due():
            self._standing_seen = self._groups_seen
            output_format = results.SERVICE_FORMATS[self._output_format]
            return _Job(Query(self._default_prompt, output_format).with_id(), publish=True, kind="standing",
                        due_s=self._group_completed_s)
        return None

    def _standing_due(self) -> bool:
        """Under self._work: a group has completed since the standing question last ran."""
        return bool(self._default_prompt) and self._groups_seen > self._standing_seen

    def next_guess(self) -> int | None:
        """Under self._work: the guess of the next window to encode ahead now, if any (once the
        standing question has answered the newest group, each guess once)."""
        if not (self._encode_ahead and self._default_prompt and 0 < self._groups_seen == self._standing_seen):
            return None
        if self._ahead_seen != self._groups_seen:
            self._ahead_seen, self._ahead_done = self._groups_seen, 0
        if self._ahead_done == self._ahead_guesses:
            return None
        self._ahead_done += 1
        return self._ahead_done - 1

    def run_guess(self, guess: int) -> None:
        with self._lock:
            groups = list(self.groups)
        try:
            # Stops before the prefill if an answer became due meanwhile, on any camera of the worker.
            self._perception.encode_ahead(groups, guess=guess, stop=self._inference.answer_due)
        except Exception as error:  # the next answer encodes what this could not
            self.get_logger().warning(f"encoding ahead failed: {type(error).__name__}: {error}",
                                      throttle_duration_sec=self._log_throttle_s)

    def run_job(self, job: _Job) -> None:
        with self._lock:
            groups = list(self.groups)
            geometry = self._tokenizer.geometry
            frame_id = self._frame_id
        started, cpu_started, started_ns = time.perf_counter(), time.thread_time(), time.time_ns()
        try:
            if geometry is None:
                raise ValueError("no temporal group has been completed yet: no video to answer about")
            job.result = self._perception.answer(groups, (geometry.source_height, geometry.source_width), job.query)
        except Exception as error:  # the inference thread outlives any one question
            job.error = f"{type(error).__name__}: {error}"
            with self._work:
                self._answers["failed"] += 1
            self.get_logger().warning(f"question {job.query.request_id} failed: {job.error}",
                                      throttle_duration_sec=self._log_throttle_s)
            job.done.set()
            return
        elapsed_ms = (time.perf_counter() - started) * 1e3
        cpu_ms = (time.thread_time() - cpu_started) * 1e3
        answer = job.result.answer
        with self._work:
            self._answers[job.kind] += 1
            self._drafts.update(proposed=answer.draft_proposed, confirmed=answer.draft_accepted)
            self._inference_ms.add(elapsed_ms)
            self._inference_cpu_ms.add(cpu_ms)
            self._answer_wait_ms.add((started - job.due_s) * 1e3)
            for stage, window in self._stage_ms.items():
                window.add(answer.timings_s[f"{stage}_s"] * 1e3)
            self._last_stage_s = dict(answer.timings_s)
            self._last_answer = f"{job.query.request_id} [{answer.output_format}] {answer.text[:80]}"
            if job.result.window_end_ns:
                self._start_age_ms.add((started_ns - job.result.window_end_ns) / 1e6)
        if job.publish and self.context.ok():  # not once shutdown has begun
            self._results["text"].publish(results.model_text(job.result, frame_id, self._model_id))
            for role, message in results.arrays(job.result, frame_id).items():
                self._results[role].publish(message)
            if "annotated" in self._results:
                self._publish_visualisation(job.result, frame_id)
            if job.result.window_end_ns:
                with self._work:
                    self._result_age_ms.add((time.time_ns() - job.result.window_end_ns) / 1e6)
        job.done.set()

    def _publish_visualisation(self, result: PerceptionResult, frame_id: str) -> None:
        with self._lock:
            newest = self.frames[-1] if self.frames else None
        if newest is not None:
            drawn = annotate(newest.rgb(), result, newest.stamp_ns)
            self._results["annotated"].publish(results.image_message(
                drawn, Header(stamp=ns_to_time(newest.stamp_ns), frame_id=frame_id)))
        self._results["markers"].publish(results.markers(result, frame_id))

    # --- diagnostics ----------------------------------------------------------------------

    def ingest_snapshot(self) -> dict:
        """Counters and rates, consistent with each other (ingest ones taken under the decode lock,
        perception ones under the inference lock)."""
        with self._lock:
            counters = self._ingest.counters.to_dict()
            now_ns = time.time_ns()
            recent = [t for t in self._receive_times if now_ns - t < 5_000_000_000]
            rate = (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9) if len(recent) > 2 else 0.0
            width, height = self._ingest.frame_size or (0, 0)
            geometry = self._tokenizer.geometry if self._tokenizer is not None else None
            values = {
                "frames_received": self._messages_received,
                **{key: counters[key] for key in (
                    "frames_decoded", "frames_pending_in_decoder", "decode_errors",
                    "frames_dropped_waiting_for_idr", "frames_discarded_by_decoder",
                    "frames_rejected_format", "frames_rejected_empty", "frames_rejected_malformed")},
                "frames_dropped_queue_full": self._dropped_queue_full,
                "internal_errors": self._internal_errors,
                "queue_depth": self._queue.qsize(),
                **{key: counters[key] for key in (
                    "decoder_resets", "frame_num_gaps", "stamp_discontinuities",
                    "reported_discontinuities", "resolution_changes")},
                "awaiting_idr": self._ingest.awaiting_idr,
                "width": width,
                "height": height,
                "input_rate_hz": rate,
                "decode_ms_mean": self._decode_ms.mean(),
                "decode_ms_p99": self._decode_ms.percentile(99),
                "stamp_delay_ms_p50": self._stamp_delay_ms.percentile(50),
                "stamp_delay_ms_p99": self._stamp_delay_ms.percentile(99),
                "stamp_to_decoded_ms_p50": self._stamp_to_decoded_ms.percentile(50),
                "stamp_to_decoded_ms_p99": self._stamp_to_decoded_ms.percentile(99),
                "frames_buffered": len(self.frames),
                # The processed frame (max_pixels: the model's own unless set): what the model sees.
                "canvas_width": geometry.width if geometry else 0,
                "canvas_height": geometry.height if geometry else 0,
                "groups_emitted": self._groups_emitted,
                "groups_per_second": self._groups_per_second(now_ns),
                "kept_fraction": float(np.mean(self._kept_fractions)) if self._kept_fractions else float("nan"),
                "tokenizer_ms_mean": self._tokenizer_ms.mean(),
                "tokenizer_ms_p99": self._tokenizer_ms.percentile(99),
                "last_group": self._last_group,
                "last_problem": self._last_problem,
            }
            if self._input == "image":
                values.update(encode_ms_mean=self._encode_ms.mean(), encode_ms_p99=self._encode_ms.percentile(99))
            idle_s = (now_ns - self._last_receive_ns) / 1e9 if self._last_receive_ns else None
            frame_id = self._frame_id
        with self._work:
            values.update({
                "lifecycle_state": self._lifecycle,
                "model": self._model_id,
                # Cameras served by this process's inference threads (and sharing its models), this one included.
                "cameras_in_process": self._inference.cameras,
                "answers_standing": self._answers["standing"],
                "answers_query": self._answers["query"],
                "queries_refused": self._answers["refused"],
                "answers_failed": self._answers["failed"],
                "queries_pending": len(self._queries),
                # Groups run through the encoder: a question on the window of the last answer adds none.
                "groups_encoded": self._perception.groups_encoded if self._perception is not None else 0,
                # Of those, encoded ahead while idle (encode_ahead), and then shown by an answer.
                "groups_encoded_ahead": self._perception.groups_encoded_ahead if self._perception is not None else 0,
                "groups_encoded_ahead_used": self._perception.groups_ahead_used if self._perception is not None else 0,
                # Prompt starts prefilled ahead while idle (prefill_ahead), and answers that used one.
                "prompts_prefilled_ahead": self._perception.prompts_prefilled_ahead if self._perception is not None else 0,
                "prompts_prefilled_ahead_used": self._perception.prompts_ahead_used if self._perception is not None else 0,
                "inference_ms_p50": self._inference_ms.percentile(50),
                "inference_ms_p99": self._inference_ms.percentile(99),
                # Below inference_ms: the thread waited (the GIL, a busy CPU) within its answers.
                "inference_cpu_ms_p50": self._inference_cpu_ms.percentile(50),
                "result_age_ms_p50": self._result_age_ms.percentile(50),
                "result_age_ms_p99": self._result_age_ms.percentile(99),
                "start_age_ms_p50": self._start_age_ms.percentile(50),
                "answer_wait_ms_p50": self._answer_wait_ms.percentile(50),
                "answer_wait_ms_p99": self._answer_wait_ms.percentile(99),
                **{f"answer_{stage}_ms_p50": window.percentile(50) for stage, window in self._stage_ms.items()},
                # Draft tokens (parameter draft_tokens): each confirmed one is a decoder pass saved.
                "draft_tokens_proposed": self._drafts["proposed"],
                "draft_tokens_confirmed": self._drafts["confirmed"],
                **{f"last_{stage}_ms": seconds * 1e3 for stage, seconds in self._last_stage_s.items()},
                "last_answer": self._last_answer,
            })
        return {"values": values, "frame_id": frame_id, "idle_s": idle_s}

    def _groups_per_second(self, now_ns: int) -> float:
        recent = [t for t in self._group_times_ns if now_ns - t < 10_000_000_000]
        return len(recent) / 10.0

    def _publish_diagnostics(self) -> None:
        snapshot = self.ingest_snapshot()
        values, idle_s = snapshot["values"], snapshot["idle_s"]
        if idle_s is None:
            level, message = DiagnosticStatus.WARN, "no H.264 received yet"
        elif idle_s > 2.0:
            level, message = DiagnosticStatus.STALE, f"no H.264 for {idle_s:.1f} s"
        elif values["awaiting_idr"]:
            level, message = DiagnosticStatus.WARN, "waiting for an IDR with SPS/PPS"
        else:
            level, message = DiagnosticStatus.OK, (
                f"decoding {values['width']}x{values['height']} at {values['input_rate_hz']:.1f} Hz")
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: {names.DIAGNOSTIC_NAME_SUFFIX}",
            message=message, hardware_id=snapshot["frame_id"], values=key_values(values))
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

    def destroy_node(self) -> None:
        self._inference.detach(self)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30.0)
        self.intake_node.destroy_node()
        super().destroy_node()


# Reading a picture's motion vectors (PyAV's frame.side_data) ties the frame to its side data in a
# reference cycle, so the frame, its picture buffer included, is freed only by Python's cyclic
# collector, and one that reaches the collector's oldest generation only by a full collection,
# which with a heap of torch's size (~200,000 objects) runs rarely and takes ~80 ms. So once the
# model is loaded the node moves what is alive out of the collector's sight (gc.freeze) and the
# decode thread runs a full collection this often, < 1 ms then. Offline, 40,000 640x480 access
# units through StreamIngest beside the loaded model: resident memory 445 -> 464 MB and rising
# without; with, 413 MB throughout.
HEAP_COLLECT_PERIOD_S = 5.0

# How long a Python thread may hold the GIL while another waits for it (CPython's default: 5 ms).
# The inference thread wants it back after every ONNX Runtime call (~20 an answer) while the
# decode thread tokenizes; offline, an int8 answer beside a 30 fps decode thread took p50 136
# instead of 145 ms with 0.5 ms (two runs each way).
GIL_SWITCH_INTERVAL_S = 0.0005


def _process_arguments(argv: list[str]) -> argparse.Namespace:
    """The non-ROS arguments: `--cameras a,b` (namespaces; none: one node, named by the usual
    --ros-args remaps) and `--answer-threads`."""
    parser = argparse.ArgumentParser(prog="ov2_node", description="the ov2 perception node (ROS 2)")
    parser.add_argument("--cameras", default="",
                        help="comma-separated camera names: one node per camera, in namespace /<camera>, all "
                             "in this process, sharing its inference threads and each model (ros/inference.py)")
    parser.add_argument("--answer-threads", type=int, default=None,
                        help="answers of different cameras that may run at once (default: one per camera, at most "
                             "one per CPU core); a guess of a next window runs only while nothing else does")
    options = parser.parse_args(argv)
    try:
        options.cameras = names.camera_namespaces(options.cameras)
    except ValueError as error:  # the reason, not argparse's "invalid value"
        parser.error(f"--cameras: {error}")
    if options.answer_threads is None:
        options.answer_threads = default_answer_threads(len(options.cameras))
    elif options.answer_threads < 1:
        parser.error("--answer-threads must be at least 1")
    return options


def main(args=None) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    argv = sys.argv if args is None else args
    options = _process_arguments(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    nodes, intake = [], SingleThreadedExecutor()
    try:
        inference = InferenceWorker(options.answer_threads)
        if options.cameras:
            nodes = [Ov2Node(inference=inference, namespace=namespace) for namespace in options.cameras]
        else:
            nodes = [Ov2Node(inference=inference)]
        # Per camera: timer and prompts, lifecycle and parameter calls, a waiting Query call.
        executor = MultiThreadedExecutor(num_threads=3 * len(nodes))
        for node in nodes:
            intake.add_node(node.intake_node)
            executor.add_node(node)
        threading.Thread(target=_spin_intake, args=(intake,), name="ov2-intake", daemon=True).start()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        intake.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()


def _spin_intake(executor: SingleThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:  # the process is ending (main's executor sees it too)
        pass


if __name__ == "__main__":
    main()
