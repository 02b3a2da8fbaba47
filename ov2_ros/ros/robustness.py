"""Robustness scripts over the real node (`ov2 bench faults`, `ov2 bench soak`), with results as
JSON: what robots do to a camera stream, and what hours of running do to memory.

faults: one ov2_node process; a synthetic stream (GOP 15) is published with, in turn, packet
loss (3 access units dropped mid-GOP), a join mid-GOP (a fresh publisher starting at frame 7), a
stamp regression (2 s back), a resolution change (another stream, at its IDR) and a publisher
restart (the publisher destroyed and re-created, resuming mid-GOP). After each fault the script
waits for the node to settle and records the counters' change: the node must stay alive, count
every message, and lose at most the rest of the GOP the fault hit (it resumes at the next IDR).

soak: two nodes (two cameras, one namespace each; a process each, or with one_process both in
one) with a standing question on every group, fed looping streams in real time for `minutes`;
each process's resident memory is sampled every 10 s, and growth is measured from the end of the
first 20 % (model loaded, buffers full) to the end.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path


from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.documents import write_json
from ov2_ros.ros.harness import (DiagnosticsWatcher, counter, ros_client, start_camera_processes, start_node_process,
                                  stop_process)
from ov2_ros.ros.publisher import AccessUnitPublisher, play, use_prompt_acknowledgements
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream

GOP = 15
_COUNTED = ("frames_received", "frames_decoded", "frames_pending_in_decoder", "frames_dropped_waiting_for_idr",
            "decode_errors", "decoder_resets", "frame_num_gaps", "stamp_discontinuities", "resolution_changes",
            "internal_errors", "frames_dropped_queue_full")


def _stream(work: Path, name: str, width: int, height: int, seconds: float, seed: int) -> H264File:
    stream = write_synthetic_stream(SceneConfig(width=width, height=height, duration_s=seconds, seed=seed),
                                    H264EncoderConfig(width=width, height=height, gop_frames=GOP), work, name,
                                    progress=False)
    return H264File(stream.mp4_path)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _publish(publisher: AccessUnitPublisher, units, stamp_ns: int, skip=()) -> tuple[int, int]:
    """Publish access units acked, one frame period apart in stamps; -> (sent, next stamp)."""
    sent = 0
    for index, au in enumerate(units):
        if index not in skip:
            publisher.publish(au.data, stamp_ns)
            publisher.wait_acked(5.0)
            sent += 1
        stamp_ns += 33_333_333
    return sent, stamp_ns


def run_faults(out_path: str | Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ov2_faults_") as scratch:  # the streams, read into memory
        main = list(_stream(Path(scratch), "faults_main", 320, 240, 4.0, 1))
        other = list(_stream(Path(scratch), "faults_other", 480, 272, 2.0, 2))
    process = start_node_process({"diagnostics_period_s": 0.2, "log_gop_summaries": False}, namespace="/faults")
    rows, sent_total = [], 0
    use_prompt_acknowledgements()  # each access unit is acknowledged before the next goes out
    try:
        with ros_client("ov2_faults") as node:
            watcher = DiagnosticsWatcher(node)
            topic = "/faults/image_raw/h264"
            publisher = AccessUnitPublisher(node, topic, frame_id="faults")
            if not publisher.wait_for_subscribers(1, 120.0):
                raise RuntimeError("ov2_node never subscribed")
            stamp = time.time_ns()
            before = {key: 0 for key in _COUNTED}

            def settle(name: str, sent: int, allowed_loss: int) -> None:
                nonlocal before, sent_total
                sent_total += sent
                values = watcher.wait_for(lambda v: counter(v, "frames_received") >= sent_total
                                          and counter(v, "queue_depth") == 0, 30.0, name_prefix="/faults/ov2_node")
                if values is None:
                    latest = watcher.latest("/faults/ov2_node") or {}
                    rows.append({"fault": name, "ok": False, "why": f"the node counted {latest.get('frames_received')} "
                                 f"messages of {sent_total} sent, queue {latest.get('queue_depth')}"})
                    before = {key: counter(latest, key) for key in _COUNTED}
                    sent_total = counter(latest, "frames_received")
                    return
                time.sleep(0.5)  # anything delivered late shows up too
                values = watcher.latest("/faults/ov2_node")
                now = {key: counter(values, key) for key in _COUNTED}
                delta = {key: now[key] - before[key] for key in _COUNTED}
                extra = now["frames_received"] - sent_total  # delivered more than once by the transport
                sent_total = now["frames_received"]
                lost = delta["frames_received"] - delta["frames_decoded"] - delta["frames_pending_in_decoder"]
                ok = (process.poll() is None and delta["internal_errors"] == 0 and lost - extra <= allowed_loss)
                rows.append({"fault": name, "sent": sent, "delivered_twice": extra, "frames_not_decoded": lost,
                             "allowed": allowed_loss,
                             "ok": ok, **{k: v for k, v in delta.items() if v}})
                before = now

            sent, stamp = _publish(publisher, main, stamp)
            settle("clean stream", sent, 0)
            sent, stamp = _publish(publisher, main, stamp, skip={20, 21, 22})
            settle("packet loss (3 access units mid-GOP)", sent, GOP)
            node.destroy_publisher(publisher.publisher)  # one camera at a time: a new one joins mid-GOP
            publisher = AccessUnitPublisher(node, topic, frame_id="faults")
            publisher.wait_for_subscribers(1, 30.0)
            sent, stamp = _publish(publisher, main[7:], stamp)
            settle("join mid-GOP (frame 7)", sent, GOP)
            sent, stamp = _publish(publisher, main[:8], stamp)
            regressed, stamp = _publish(publisher, main[8:], stamp - 2_000_000_000)
            settle("stamp regression (2 s back at frame 8)", sent + regressed, GOP)
            sent, stamp = _publish(publisher, other, stamp)
            settle("resolution change (480x272 at an IDR)", sent, 0)
            node.destroy_publisher(publisher.publisher)
            time.sleep(1.0)
            restarted = AccessUnitPublisher(node, topic, frame_id="faults")
            restarted.wait_for_subscribers(1, 30.0)
            sent, stamp = _publish(restarted, main[4:], stamp + 1_000_000_000)
            settle("publisher restart (resumes at frame 4, 1 s later)", sent, GOP)
    finally:
        alive = process.poll() is None
        stop_process(process)
    document = {"benchmark": "faults", "gop": GOP, "node_alive_at_end": alive, "faults": rows,
                "all_ok": alive and all(row["ok"] for row in rows)}
    write_json(out_path, document)
    return document


SAMPLE_PERIOD_S = 10.0


def _plot_memory(series: dict[str, list[float]], path: Path) -> None:
    """Resident memory over the soak, one line per process, the warm-up's end marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    for label, values in series.items():
        axes.plot([index * SAMPLE_PERIOD_S / 60 for index in range(len(values))], values, label=label)
        warm = max(0, len(values) // 5 - 1)
        axes.axvline(warm * SAMPLE_PERIOD_S / 60, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("minutes")
    axes.set_ylabel("resident memory (MB)")
    axes.set_title("ov2 bench soak: growth is measured from the dotted line")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_soak(out_path: str | Path | None, minutes: float = 10.0, backend: str = "onnxruntime",
             one_process: bool = True) -> dict:
    """one_process: the two cameras as the nodes of one process (ov2_node --cameras), else a
    process each."""
    with tempfile.TemporaryDirectory(prefix="ov2_soak_") as scratch:  # the looping streams, for the run
        return _soak(Path(scratch), out_path, minutes, backend, one_process)


def _soak(work: Path, out_path: str | Path | None, minutes: float, backend: str, one_process: bool) -> dict:
    streams = [_stream(work, f"soak_{index}", 640, 480, 30.0, 10 + index) for index in range(2)]
    if backend != "torch":  # the default model's export, once, before the clock starts
        from ov2_ros.runtime.backend import open_backend

        open_backend(backend)
    namespaces = ["/soak0", "/soak1"]
    parameters = {"backend": backend, "default_prompt": "Trace where the gripper moved.", "budget_canvases": 4,
                  "log_gop_summaries": False}
    processes = start_camera_processes(parameters, namespaces, one_process)
    process_of = [0] * len(namespaces) if one_process else list(range(len(namespaces)))  # each camera's
    samples: list[list[float]] = [[] for _ in processes]
    try:
        with ros_client("ov2_soak") as node:
            watcher = DiagnosticsWatcher(node)
            publishers = [AccessUnitPublisher(node, f"{namespace}/image_raw/h264", frame_id=namespace[1:])
                          for namespace in namespaces]
            for publisher in publishers:
                if not publisher.wait_for_subscribers(1, 300.0):
                    raise RuntimeError("a node never subscribed")
            loops = max(1, int(round(minutes * 60 / 30.0)))
            players = [threading.Thread(target=play, args=(publisher, stream), kwargs={"loops": loops})
                       for publisher, stream in zip(publishers, streams)]
            for player in players:
                player.start()
            started = time.monotonic()
            while any(player.is_alive() for player in players):
                for index, process in enumerate(processes):
                    samples[index].append(_rss_mb(process.pid))
                time.sleep(SAMPLE_PERIOD_S)
            for player in players:
                player.join()
            elapsed_min = (time.monotonic() - started) / 60
            finals = [watcher.latest(f"{namespace}/ov2_node") for namespace in namespaces]
    finally:
        alive = [process.poll() is None for process in processes]
        for process in processes:
            stop_process(process, timeout_s=30.0)
    nodes = []
    for index, namespace in enumerate(namespaces):
        series = samples[process_of[index]]  # its process's memory (shared with the other camera's node there)
        warm = series[max(0, len(series) // 5 - 1)]
        growth = (series[-1] - warm) / warm if series and warm > 0 else float("nan")
        final = finals[index] or {}
        nodes.append({"namespace": namespace, "alive": alive[process_of[index]], "rss_mb_warm": round(warm, 1),
                      "rss_mb_end": round(series[-1], 1), "rss_mb_max": round(max(series), 1),
                      "growth_after_warmup": round(growth, 4), "samples": len(series),
                      **{key: final.get(key) for key in ("frames_received", "frames_decoded",
                                                         "frames_dropped_queue_full", "answers_standing",
                                                         "answers_failed", "internal_errors")}})
    labels = [" + ".join(namespaces)] if one_process else namespaces  # one per process
    document = {"benchmark": "soak", "minutes": round(elapsed_min, 1), "backend": backend,
                "one_process": one_process, "nodes": nodes,
                "goal": "memory growth < 5 %",
                "all_ok": all(n["alive"] and n["growth_after_warmup"] < 0.05 for n in nodes),
                # each process's resident memory, sampled every SAMPLE_PERIOD_S: where it grew
                "rss_mb_series": {label: [round(value, 1) for value in series]
                                  for label, series in zip(labels, samples)}}
    write_json(out_path, document)
    if out_path is not None:
        _plot_memory(document["rss_mb_series"], Path(out_path).with_suffix(".png"))
    return document
