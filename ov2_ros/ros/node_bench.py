"""`ov2 bench node`: end-to-end latency of the real node, message in to result out.

For each resolution and camera count: synthetic H.264 streams at 30 fps are played in real time
to that many ov2_node processes (one namespace each) running a standing question on every new
temporal group. A result's latency = when this process receives its ModelText - the header stamp
of the newest frame the answer describes (the publisher stamps each frame as it sends it, on the
same clock), so it covers transport, decoding, the wait for the group to close, tokenizing and the
model. p50/p99 per configuration, plus whether every access unit was accounted for (none dropped).
Baseline from the same run: the same question answered offline (runtime.perception, same backend)
on the same kind of group; the ratio says what the live pipeline adds to the model itself.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.documents import write_json
from ov2_ros.msg import ModelText
from ov2_ros.ros.conversions import time_to_ns
from ov2_ros.ros.harness import DiagnosticsWatcher, counter, ros_client, start_camera_processes, stop_process
from ov2_ros.ros.inference import default_answer_threads
from ov2_ros.ros.publisher import AccessUnitPublisher, play
from ov2_ros.runtime.answer import ANSWER_STAGES
from ov2_ros.runtime.perception import AHEAD_GUESSES, DRAFT_TOKENS
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

PROMPT = "Trace where the gripper moved."


def _offline_answer(stream_path: Path, backend: str, dtype: str, budget: int, threads: int, prompt: str,
                    draft_tokens: int, encode_ahead: bool, prefill_ahead: bool, ahead_guesses: int) -> dict:
    """The model alone: the standing question, offline, on the windows the node answers, one
    per group after the first (the first answer warms up; the last ones alone, full windows
    whose guesses mostly hold, ran ~15 % faster than all); with encode_ahead, the guesses of
    the next window's groups encoded (and with prefill_ahead, their prompts' starts prefilled)
    ahead between answers, untimed, as the idle node does. Medians (ms): the answer's
    ("answer_ms") and its stages' ("stages")."""
    from ov2_ros.runtime.backend import open_backend
    from ov2_ros.runtime.perception import Perception, Query
    from ov2_ros.tokenizer.files import tokenize_file
    from ov2_ros.tokenizer.pipeline import TokenizerConfig

    model = open_backend(backend, dtype=dtype, threads=threads)
    # At the model's frame area, as the node tokenizes (its max_pixels parameter is left at 0).
    video, _, _, _ = tokenize_file(stream_path, "stream", TokenizerConfig(max_pixels=model.config.max_pixels))
    perception = Perception(model, budget_canvases=budget, draft_tokens=draft_tokens, prefill_ahead=prefill_ahead,
                            ahead_guesses=ahead_guesses)
    size = (video.geometry.source_height, video.geometry.source_width)
    groups = video.groups
    ends = range(2, len(groups) + 1)
    # Warm-up; then one timed answer per new group, as the node's standing question runs.
    perception.answer(groups[:1], size, Query(prompt))
    times, stages = [], {stage: [] for stage in ANSWER_STAGES}
    for end in ends:
        if encode_ahead:
            for guess in range(ahead_guesses):
                perception.encode_ahead(groups[:end - 1], guess=guess)
        started = time.perf_counter()
        answer = perception.answer(groups[:end], size, Query(prompt)).answer
        times.append((time.perf_counter() - started) * 1e3)
        for stage, values in stages.items():
            values.append(answer.timings_s[f"{stage}_s"] * 1e3)
    return {"answer_ms": round(float(np.median(times)), 1),
            "stages": {stage: round(float(np.median(values)), 1) for stage, values in stages.items()}}


def _measure(streams: list[Path], backend: str, dtype: str, budget: int, threads: int, duration_s: float,
             prompt: str, draft_tokens: int, encode_ahead: bool, prefill_ahead: bool, ahead_guesses: int,
             one_process: bool, answer_threads: int | None) -> dict:
    namespaces = [f"/bench_cam{index}" for index in range(len(streams))]
    parameters = {"backend": backend, "dtype": dtype, "default_prompt": prompt, "budget_canvases": budget,
                  "inference_threads": threads, "draft_tokens": draft_tokens, "encode_ahead": encode_ahead,
                  "prefill_ahead": prefill_ahead, "ahead_guesses": ahead_guesses, "log_gop_summaries": False,
                  "diagnostics_period_s": 0.5}
    processes = start_camera_processes(parameters, namespaces, one_process, answer_threads)
    latencies_ms: dict[str, list[float]] = {namespace: [] for namespace in namespaces}
    try:
        with ros_client("ov2_bench_node") as node:
            watcher = DiagnosticsWatcher(node)

            def on_text(namespace):
                def record(message: ModelText):
                    latencies_ms[namespace].append((time.time_ns() - time_to_ns(message.header.stamp)) / 1e6)
                return record

            for namespace in namespaces:
                node.create_subscription(ModelText, f"{namespace}/ov2/text", on_text(namespace), 50)
            publishers = [AccessUnitPublisher(node, f"{namespace}/image_raw/h264", frame_id=namespace[1:])
                          for namespace in namespaces]
            for publisher in publishers:
                if not publisher.wait_for_subscribers(1, 300.0):
                    raise RuntimeError("a node never subscribed (model loading or export failed?)")
            reports = [None] * len(streams)

            def stream_to(index):
                reports[index] = play(publishers[index], H264File(streams[index]), pacing="realtime")

            players = [threading.Thread(target=stream_to, args=(i,)) for i in range(len(streams))]
            for player in players:
                player.start()
            for player in players:
                player.join()
            finals = [watcher.wait_for(lambda v, sent=report.sent: counter(v, "frames_received") >= sent
                                       and counter(v, "queue_depth") == 0, 60.0, name_prefix=f"{namespace}/ov2_node")
                      for namespace, report in zip(namespaces, reports)]
            time.sleep(2.0)  # answers still in flight
    finally:
        for process in processes:
            stop_process(process, timeout_s=30.0)
    all_latencies = [value for values in latencies_ms.values() for value in values]
    lost = []
    for report, final in zip(reports, finals):
        if final is None:
            lost.append(None)
            continue
        accounted = counter(final, "frames_decoded") + counter(final, "frames_pending_in_decoder")
        lost.append(report.sent - accounted)
    return {"answers": len(all_latencies),
            "latency_ms_p50": round(float(np.percentile(all_latencies, 50)), 1) if all_latencies else None,
            "latency_ms_p99": round(float(np.percentile(all_latencies, 99)), 1) if all_latencies else None,
            "answers_per_camera": [len(v) for v in latencies_ms.values()],
            "latencies_ms": [[round(value, 1) for value in values] for values in latencies_ms.values()],
            "frames_sent": [r.sent for r in reports], "frames_lost": lost,
            "dropped_queue_full": [counter(f, "frames_dropped_queue_full") if f else None for f in finals],
            "groups_emitted": [counter(f, "groups_emitted") if f else None for f in finals],
            # The model's share, as each node times it (the rest: transport, decoding, the wait for
            # a group to close and for the worker to finish the previous answer).
            "node_inference_ms_p50": [round(float(f["inference_ms_p50"]), 1) if f else None for f in finals],
            "node_inference_ms_p99": [round(float(f["inference_ms_p99"]), 1) if f else None for f in finals],
            # Where an answer's time went: a frame's decoding, the newest frame's age when the
            # model started on the answer and when the result was published, a frame's tokenizing,
            # the inference thread's CPU time, the wait for that thread, the model's stages.
            **{f"node_{name}": [round(float(f[name]), 1) if f else None for f in finals]
               for name in ("stamp_to_decoded_ms_p50", "start_age_ms_p50", "result_age_ms_p50",
                            "tokenizer_ms_mean", "inference_cpu_ms_p50",
                            "answer_wait_ms_p50", "answer_wait_ms_p99",
                            *(f"answer_{stage}_ms_p50" for stage in ANSWER_STAGES))},
            # Groups through the encoder, of them encoded ahead while idle, and of those shown.
            **{name: [counter(f, name) if f else None for f in finals]
               for name in ("groups_encoded", "groups_encoded_ahead", "groups_encoded_ahead_used",
                            "prompts_prefilled_ahead", "prompts_prefilled_ahead_used")}}


def run_node_bench(out_path: str | Path | None, backend: str = "onnxruntime", sizes=((640, 480), (1280, 720)),
                   cameras=(1, 2), duration_s: float = 20.0, budget: int = 4, threads: int = 1,
                   prompt: str = PROMPT, dtype: str = "fp32", draft_tokens: int = DRAFT_TOKENS,
                   encode_ahead: bool = True, prefill_ahead: bool = True, ahead_guesses: int = AHEAD_GUESSES,
                   one_process: bool = True, answer_threads: int | None = None) -> dict:
    """one_process: the cameras as the nodes of one process (ov2_node --cameras), whose answers may
    run `answer_threads` at once (None: the node's default); else a process per camera."""
    with tempfile.TemporaryDirectory(prefix="ov2_bench_node_") as scratch:  # the streams, for the run
        return _node_bench(Path(scratch), out_path, backend, dtype, sizes, cameras, duration_s, budget, threads,
                           prompt, draft_tokens, encode_ahead, prefill_ahead, ahead_guesses, one_process, answer_threads)


def _node_bench(work: Path, out_path, backend, dtype, sizes, cameras, duration_s, budget, threads, prompt,
                draft_tokens, encode_ahead, prefill_ahead, ahead_guesses, one_process, answer_threads) -> dict:
    if backend != "torch":  # export the default model once, before timing anything
        from ov2_ros.runtime.backend import open_backend

        open_backend(backend, dtype=dtype)
    rows = []
    for width, height in sizes:
        streams = [write_synthetic_stream(SceneConfig(width=width, height=height, duration_s=duration_s, seed=seed),
                                          H264EncoderConfig(width=width, height=height), work, f"{width}x{height}_{seed}",
                                          progress=False).mp4_path for seed in range(max(cameras))]
        offline = _offline_answer(streams[0], backend, dtype, budget, threads, prompt, draft_tokens,
                                  encode_ahead, prefill_ahead, ahead_guesses)
        for count in cameras:
            row = {"width": width, "height": height, "cameras": count, "backend": backend, "dtype": dtype,
                   "budget_canvases": budget, "draft_tokens": draft_tokens, "encode_ahead": encode_ahead,
                   "prefill_ahead": prefill_ahead, "ahead_guesses": ahead_guesses,
                   "one_process": one_process,
                   "answer_threads": (answer_threads or default_answer_threads(count)) if one_process else None,
                   "offline_answer_ms": offline["answer_ms"],
                   "offline_stage_ms_p50": offline["stages"],
                   **_measure(streams[:count], backend, dtype, budget, threads, duration_s, prompt, draft_tokens,
                              encode_ahead, prefill_ahead, ahead_guesses, one_process, answer_threads)}
            if row["latency_ms_p50"] is not None:
                row["p50_vs_offline_answer"] = round(row["latency_ms_p50"] / offline["answer_ms"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    document = {"benchmark": "node", "unix_time": time.time(), "prompt": prompt, "duration_s": duration_s, "rows": rows}
    write_json(out_path, document)
    return document
