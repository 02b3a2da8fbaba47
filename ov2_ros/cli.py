"""The `ov2` command line: a veneer over importable functions. Subcommands that need ROS import
rclpy only when they run, so the offline tools work on a machine without ROS."""
from __future__ import annotations

import argparse
import json
import sys

from ov2_ros.errors import Ov2Error


def _bitrate(text: str) -> int:
    """'2M', '800k' or '1500000' -> bits per second."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _add_synth_stream(commands) -> None:
    parser = commands.add_parser(
        "synth-stream", help="render a synthetic scene or training world to H.264 (Annex-B + MP4) with ground truth")
    parser.add_argument("--world", choices=("scene", "bounce", "pickplace", "stills", "lone", "mid", "closeup"),
                        default="scene",
                        help="scene: moving objects and a gripper (ingest tests); bounce, pickplace, stills, lone, "
                             "mid, closeup: the training worlds (ov2_ros/synth/worlds.py), episode truth included")
    parser.add_argument("--variation", choices=("train", "heldout"), default="train",
                        help="training worlds: the colours, backgrounds and speeds of training or held-out ones")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default="scene", help="file stem (default: %(default)s)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, grey levels")
    parser.add_argument("--gop", type=int, default=30, help="frames between IDRs")
    parser.add_argument("--bitrate", type=_bitrate, default=_bitrate("2M"), help="e.g. 2M, 800k")
    parser.add_argument("--b-frames", type=int, default=0, help="consecutive B-frames (0: none)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset")
    parser.set_defaults(handler=_run_synth_stream)


def _run_synth_stream(args) -> int:
    from ov2_ros.codec.encoder import H264EncoderConfig
    from ov2_ros.synth.scene import SceneConfig
    from ov2_ros.synth.stream import write_synthetic_stream, write_world_stream
    from ov2_ros.synth.worlds import WORLDS, Variation, WorldConfig

    encoder = H264EncoderConfig(width=args.width, height=args.height, fps=args.fps, gop_frames=args.gop,
                                bitrate_bps=args.bitrate, b_frames=args.b_frames, preset=args.preset)
    if args.world == "scene":
        scene = SceneConfig(width=args.width, height=args.height, fps=args.fps, duration_s=args.duration,
                            seed=args.seed, num_objects=args.objects, noise_sigma=args.noise)
        stream = write_synthetic_stream(scene, encoder, args.out, args.name)
    else:
        world = WORLDS[args.world](WorldConfig(width=args.width, height=args.height, fps=args.fps,
                                               duration_s=args.duration, seed=args.seed, noise_sigma=args.noise,
                                               variation=Variation(args.variation)))
        stream = write_world_stream(world, encoder, args.out, args.name)
    print(json.dumps({"h264": str(stream.h264_path), "mp4": str(stream.mp4_path),
                      "ground_truth": str(stream.truth_path), "frames": stream.frame_count}))
    return 0


def _add_probe(commands) -> None:
    parser = commands.add_parser("probe", help="describe an H.264 file from its bitstream (no decoding)")
    parser.add_argument("file")
    parser.add_argument("--frames", action="store_true", help="also list every access unit")
    parser.set_defaults(handler=_run_probe)


def _run_probe(args) -> int:
    from dataclasses import asdict

    from ov2_ros.codec.bitstream import ParameterSets, describe_access_unit
    from ov2_ros.codec.container import H264File

    source = H264File(args.file)
    params, units = ParameterSets(), []
    for au in source:
        info = describe_access_unit(au.data, params)
        units.append({"decode_index": au.decode_index, "pts_s": round(au.pts_seconds, 6),
                      "type": info.picture_type, "idr": info.is_idr, "bits": info.bit_cost_bits})
    idr = [u["decode_index"] for u in units if u["idr"]]
    summary = {
        **asdict(source.info),
        "idr_count": len(idr),
        "gop_frames": (idr[1] - idr[0]) if len(idr) > 1 else None,
        "bits_per_type": {t: sum(u["bits"] for u in units if u["type"] == t) for t in "IPB"},
        "sps": [asdict(sps) for sps in params.sps.values()],
    }
    if args.frames:
        summary["access_units"] = units
    print(json.dumps(summary, indent=1))
    return 0


def _add_canvases(commands) -> None:
    parser = commands.add_parser(
        "canvases", help="tokenize an H.264 file into canvases + true (t, h, w) positions (method.md 1)")
    parser.add_argument("video", help="MP4, MKV or raw .h264 (with or without B-frames)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mode", choices=("offline", "stream"), default="offline",
                        help="offline: whole-video threshold (OV2); stream: causal, bounded latency")
    parser.add_argument("--frames-baseline", type=int, default=None, metavar="N",
                        help="write the frame-sampling baseline with N frames instead (0: match the codec run)")
    parser.add_argument("--max-pixels", type=int, default=150_000, help="processed frame area bound")
    parser.add_argument("--sample-frames", type=int, default=None, metavar="N",
                        help="score N uniformly sampled frames only (OV2 samples before grouping)")
    parser.add_argument("--stride", type=int, default=1, help="stream mode: score every n-th frame")
    parser.add_argument("--saliency", choices=("motion_residual", "bitcost"), default="motion_residual",
                        help="block scorer (codec/saliency.py)")
    parser.add_argument("--min-group-frames", type=int, default=8)
    parser.add_argument("--max-group-frames", type=int, default=64)
    parser.set_defaults(handler=_run_canvases)


def _run_canvases(args) -> int:
    from ov2_ros.tokenizer.files import tokenize_file, write_canvases
    from ov2_ros.tokenizer.groups import GroupingConfig
    from ov2_ros.tokenizer.pipeline import TokenizerConfig

    config = TokenizerConfig(max_pixels=args.max_pixels, frame_stride=args.stride, saliency=args.saliency,
                             grouping=GroupingConfig(
        min_group_frames=args.min_group_frames, max_group_frames=args.max_group_frames))
    video, source, frames, stats = tokenize_file(args.video, args.mode, config, args.sample_frames,
                                                 args.frames_baseline)
    meta = write_canvases(video, args.out, source, frames, config, {"ingest": stats["ingest"]})
    print(json.dumps({"out": args.out, "mode": meta["mode"], "frames": meta["frames"],
                      "groups": len(meta["groups"]), "canvases": meta["canvases"],
                      "processed_size": meta["processed_size"], "timings_s": meta["timings_s"]}))
    return 0


def _add_publish(commands) -> None:
    parser = commands.add_parser("publish", help="play an H.264 file as a camera topic (ROS 2)")
    parser.add_argument("file", help="H.264 file: raw Annex-B (.h264/.264), MP4 or MKV")
    parser.add_argument("--topic", default="image_raw/h264", help="topic (default: %(default)s)")
    parser.add_argument("--frame-id", default="camera", help="header.frame_id (default: %(default)s)")
    parser.add_argument("--pacing", choices=("realtime", "acked"), default="realtime",
                        help="realtime: at the stream's rate; acked: as fast as subscribers acknowledge")
    parser.add_argument("--speed", type=float, default=1.0, help="realtime playback speed factor")
    parser.add_argument("--loop", type=int, default=1, metavar="N", help="play N times (0: forever)")
    parser.add_argument("--start-frame", type=int, default=0,
                        help="first access unit to send (decode order), to join mid-GOP")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frame rate of raw files without SPS timing (default: %(default)s)")
    parser.add_argument("--qos-depth", type=int, default=300)
    parser.add_argument("--best-effort", action="store_true", help="BEST_EFFORT instead of RELIABLE")
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="wait for N subscribers before sending (acked pacing waits for 1)")
    parser.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for them")
    parser.set_defaults(handler=_run_publish)


def _run_publish(args) -> int:
    from ov2_ros.ros.publisher import publish_file

    return publish_file(args.file, args.topic, args.frame_id, args.pacing, args.speed, args.loop,
                        args.start_frame, args.max_frames, args.fps, args.qos_depth,
                        not args.best_effort, args.wait_subscribers, args.wait_timeout)


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        "demo", help="stream a synthetic pick-and-place episode through the real ov2_node and print its answers")
    parser.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-frame", type=int, default=0, help="join the stream mid-GOP")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from ov2_ros.ros.demo import run_demo

    return run_demo(args.out, args.duration, args.seed, start_frame=args.start_frame)


def _add_bench(commands) -> None:
    parser = commands.add_parser("bench", help="benchmarks, as ratios against a baseline of the same run")
    benches = parser.add_subparsers(dest="bench", required=True)
    ingest = benches.add_parser("ingest", help="decode throughput vs bare PyAV; node latency over ROS 2")
    ingest.add_argument("--out", default="out/bench_ingest.json", help="JSON results (default: %(default)s)")
    ingest.add_argument("--duration", type=float, default=10.0, help="seconds of video per resolution")
    ingest.add_argument("--repeats", type=int, default=3)
    ingest.add_argument("--no-ros", action="store_true", help="skip the node latency measurement")
    ingest.set_defaults(handler=_run_bench_ingest)
    tokenizer = benches.add_parser("tokenizer", help="live tokenizer throughput vs bare decode; wall time vs codec-video-prep")
    tokenizer.add_argument("--out", default="out/bench_tokenizer.json", help="JSON results (default: %(default)s)")
    tokenizer.add_argument("--reference-cli", default=None,
                           help="codec-video-prep executable (tools/setup_reference.sh makes .venv-reference)")
    tokenizer.add_argument("--media", nargs="*", default=[], help="more H.264 files to measure")
    tokenizer.add_argument("--duration", type=float, default=10.0, help="seconds of synthetic 720p video")
    tokenizer.add_argument("--repeats", type=int, default=2)
    tokenizer.set_defaults(handler=_run_bench_tokenizer)
    model = benches.add_parser("model", help="CPU latency and peak memory of the small model configurations")
    model.add_argument("--out", default="out/bench_model.json", help="JSON results (default: %(default)s)")
    model.add_argument("--presets", nargs="+", default=["nano", "small"])
    model.add_argument("--threads", type=int, default=1)
    model.add_argument("--repeats", type=int, default=3)
    model.set_defaults(handler=_run_bench_model)
    runtime = benches.add_parser("runtime", help="ONNX Runtime vs PyTorch eager on this CPU (and PyTorch CUDA if any)")
    runtime.add_argument("--out", default="out/bench_runtime.json", help="JSON results (default: %(default)s)")
    runtime.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    runtime.add_argument("--onnx", default=None, help="an exported folder of that model (default: export it now)")
    runtime.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    runtime.add_argument("--repeats", type=int, default=3)
    runtime.set_defaults(handler=_run_bench_runtime)
    drafts = benches.add_parser("drafts", help="a standing question with and without draft tokens, offline")
    drafts.add_argument("--out", default="out/bench_drafts.json", help="JSON results (default: %(default)s)")
    drafts.add_argument("--backend", choices=("torch", "onnxruntime"), default="onnxruntime")
    drafts.add_argument("--dtype", choices=("fp32", "fp16", "bf16", "int8"), default="int8")
    drafts.add_argument("--threads", type=int, default=1, help="model threads")
    drafts.add_argument("--drafts", type=int, nargs="+", default=[0, 4, 8, 16], help="draft_tokens settings (0: baseline)")
    drafts.add_argument("--budget", type=int, default=16, help="canvases per answer")
    drafts.add_argument("--duration", type=float, default=12.0, help="seconds of the episode")
    drafts.set_defaults(handler=_run_bench_drafts)
    prefill = benches.add_parser("prefill", help="ONNX Runtime's prefill in causal blocks of query rows vs one "
                                                 "attention, offline")
    prefill.add_argument("--out", default="out/bench_prefill.json", help="JSON results (default: %(default)s)")
    prefill.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    prefill.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8], help="query blocks (1: baseline)")
    prefill.add_argument("--dtypes", nargs="+", choices=("fp32", "int8"), default=["fp32", "int8"])
    prefill.add_argument("--threads", type=int, default=1, help="model threads")
    prefill.add_argument("--budget", type=int, default=16, help="canvases per answer")
    prefill.add_argument("--duration", type=float, default=12.0, help="seconds of the episode")
    prefill.set_defaults(handler=_run_bench_prefill)
    node = benches.add_parser("node", help="the real node's latency, message in to result out, and losses")
    node.add_argument("--out", default="out/bench_node.json", help="JSON results (default: %(default)s)")
    node.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="onnxruntime")
    node.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WxH of the streams")
    node.add_argument("--cameras", type=int, nargs="+", default=[1, 2])
    node.add_argument("--duration", type=float, default=20.0, help="seconds of 30 fps video per stream")
    node.add_argument("--budget", type=int, default=4, help="canvases per answer")
    node.add_argument("--threads", type=int, default=1, help="model threads per node")
    node.add_argument("--dtype", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                      help="the node's `dtype` parameter (onnxruntime: fp32 or int8)")
    node.add_argument("--prompt", default=None, help="the standing question (default: a gripper trace)")
    node.add_argument("--draft-tokens", type=int, default=None,
                      help="the node's `draft_tokens` parameter (default: the node's default)")
    node.add_argument("--encode-ahead", action=argparse.BooleanOptionalAction, default=True,
                      help="the node's `encode_ahead` parameter (default: on)")
    node.add_argument("--prefill-ahead", action=argparse.BooleanOptionalAction, default=True,
                      help="the node's `prefill_ahead` parameter (default: on)")
    node.add_argument("--ahead-guesses", type=int, default=None,
                      help="the node's `ahead_guesses` parameter (default: the node's default)")
    node.add_argument("--one-process", action=argparse.BooleanOptionalAction, default=True,
                      help="several cameras as one process (`ov2_node --cameras`, sharing its inference "
                           "threads; the launch file's default) or, with --no-one-process, a process each")
    node.add_argument("--answer-threads", type=int, default=None,
                      help="with --one-process: answers of different cameras that may run at once (ov2_node "
                           "--answer-threads; default: the node's, one per camera up to the cores)")
    node.set_defaults(handler=_run_bench_node)
    fuzz = benches.add_parser("fuzz", help="mutated access units through ingest and tokenizer: nothing may escape")
    fuzz.add_argument("--out", default="out/fuzz.json", help="JSON results (default: %(default)s)")
    fuzz.add_argument("--count", type=int, default=100_000, help="access units to push")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    fuzz.add_argument("--mutation-rate", type=float, default=0.3)
    fuzz.set_defaults(handler=_run_bench_fuzz)
    faults = benches.add_parser("faults", help="the real node under packet loss, late join, stamp regression, "
                                               "resolution change and publisher restart")
    faults.add_argument("--out", default="out/faults.json", help="JSON results (default: %(default)s)")
    faults.set_defaults(handler=_run_bench_faults)
    soak = benches.add_parser("soak", help="two cameras for N minutes: memory growth and survival")
    soak.add_argument("--out", default="out/soak.json", help="JSON results (default: %(default)s)")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="onnxruntime")
    soak.add_argument("--one-process", action=argparse.BooleanOptionalAction, default=True,
                      help="the two cameras as one process (`ov2_node --cameras`; the launch file's default) "
                           "or, with --no-one-process, a process each")
    soak.set_defaults(handler=_run_bench_soak)


def _run_bench_ingest(args) -> int:
    from pathlib import Path

    from ov2_ros.ros.ingest_bench import run_ingest_bench

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    run_ingest_bench(args.out, args.duration, args.repeats, with_ros=not args.no_ros)
    return 0


def _run_bench_tokenizer(args) -> int:
    from pathlib import Path

    from ov2_ros.tokenizer.bench import run_tokenizer_bench

    run_tokenizer_bench(args.out, args.reference_cli, [Path(m) for m in args.media], args.duration, args.repeats)
    return 0


def _run_bench_model(args) -> int:
    from ov2_ros.model.bench import run_model_bench

    run_model_bench(args.out, args.presets, args.threads, args.repeats)
    return 0


def _run_bench_runtime(args) -> int:
    from ov2_ros.runtime.bench import run_runtime_bench

    run_runtime_bench(args.out, args.model, args.onnx, tuple(args.threads), args.repeats)
    return 0


def _run_bench_drafts(args) -> int:
    from ov2_ros.runtime.drafts_bench import run_drafts_bench

    run_drafts_bench(args.out, args.backend, args.dtype, args.threads, tuple(args.drafts), args.budget, args.duration)
    return 0


def _run_bench_prefill(args) -> int:
    from ov2_ros.runtime.prefill_bench import run_prefill_bench

    run_prefill_bench(args.out, tuple(args.blocks), tuple(args.dtypes), args.threads, args.budget, args.duration,
                      model_dir=args.model)
    return 0


def _run_bench_node(args) -> int:
    from ov2_ros.ros.node_bench import PROMPT, run_node_bench
    from ov2_ros.runtime.perception import AHEAD_GUESSES, DRAFT_TOKENS

    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes]
    run_node_bench(args.out, args.backend, sizes, tuple(args.cameras), args.duration, args.budget, args.threads,
                   args.prompt or PROMPT, args.dtype, DRAFT_TOKENS if args.draft_tokens is None else args.draft_tokens,
                   args.encode_ahead, args.prefill_ahead,
                   AHEAD_GUESSES if args.ahead_guesses is None else args.ahead_guesses,
                   args.one_process, args.answer_threads)
    return 0


def _run_bench_fuzz(args) -> int:
    from ov2_ros.tokenizer.fuzz import run_fuzz

    document = run_fuzz(args.count, args.seed, args.max_seconds, args.mutation_rate, args.out)
    print(json.dumps({key: document[key] for key in ("access_units", "sessions", "seconds", "outcomes",
                                                     "frames_decoded", "groups", "failure_count")}))
    return 0 if document["failure_count"] == 0 else 1


def _run_bench_faults(args) -> int:
    from ov2_ros.ros.robustness import run_faults

    document = run_faults(args.out)
    for row in document["faults"]:
        print(json.dumps(row))
    return 0 if document["all_ok"] else 1


def _run_bench_soak(args) -> int:
    from ov2_ros.ros.robustness import run_soak

    document = run_soak(args.out, args.minutes, args.backend, args.one_process)
    print(json.dumps(document["nodes"]))
    return 0 if document["all_ok"] else 1


def _add_study(commands) -> None:
    parser = commands.add_parser("study", help="studies that compare ov2_ros with references")
    studies = parser.add_subparsers(dest="study", required=True)
    fidelity = studies.add_parser("fidelity", help="tokenizer vs codec-video-prep 0.2.5 on the same files")
    fidelity.add_argument("videos", nargs="+", help="H.264 files (MP4/MKV)")
    fidelity.add_argument("--reference-cli", default=".venv-reference/bin/codec-video-prep",
                          help="codec-video-prep executable (default: %(default)s, from tools/setup_reference.sh)")
    fidelity.add_argument("--work", default="out/fidelity", help="folder for both tokenizers' outputs")
    fidelity.add_argument("--max-pixels", type=int, default=150_000)
    fidelity.set_defaults(handler=_run_study_fidelity)


def _run_study_fidelity(args) -> int:
    from pathlib import Path

    from ov2_ros.errors import MissingInputError
    from ov2_ros.tokenizer.fidelity import run_study

    if not Path(args.reference_cli).is_file():
        raise MissingInputError(f"no codec-video-prep at {args.reference_cli}; run tools/setup_reference.sh")
    work = Path(args.work)
    run_study([Path(v) for v in args.videos], args.reference_cli, work, work / "fidelity.json", args.max_pixels)
    return 0


def _add_generate(commands) -> None:
    parser = commands.add_parser("generate", help="answer a question about a video (or a canvases folder)")
    parser.add_argument("video", help="H.264 file (MP4, MKV, raw) or a folder written by `ov2 canvases`")
    parser.add_argument("--prompt", required=True, help="the question")
    parser.add_argument("--model", default=None,
                        help="model folder (ours or a released LLaVA-OneVision-2; default: the embedded model)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch",
                        help="torch: --model is a model folder; onnxruntime / tensorrt: --model is a folder "
                             "written by `ov2 export-onnx` (tensorrt: with engines from `ov2 build-engines`)")
    parser.add_argument("--input", choices=("codec", "frames"), default="codec",
                        help="codec canvases or the frame-sampling baseline")
    parser.add_argument("--budget", type=int, default=None, help="at most N canvases")
    parser.add_argument("--format", default="auto",
                        choices=("auto", "text", "segment", "events", "box", "tracks", "trace", "trace2d"),
                        help="answer format (auto: from the question's wording; text: free, unparsed)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--draft-tokens", type=int, default=None,
                        help="greedy: guess up to this many tokens per decoder pass from the answer so far "
                             "(0: one pass per token; default: the node's, runtime.perception.DRAFT_TOKENS)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16", "int8"), default="fp32",
                        help="torch: fp32, fp16 or bf16; onnxruntime: fp32 or int8 (weights); tensorrt: the "
                             "export's fp32 or fp16")
    parser.set_defaults(handler=_run_generate)


def _run_generate(args) -> int:
    from ov2_ros.model.generate import GenerationConfig
    from ov2_ros.runtime.answer import ask, video_for_model
    from ov2_ros.runtime.backend import open_backend
    from ov2_ros.runtime.perception import DRAFT_TOKENS

    backend = open_backend(args.backend, args.model, args.dtype)
    canvases, positions, fps, source_size = video_for_model(args.video, args.input, args.budget,
                                                            backend.config.max_pixels)
    answer = ask(backend, canvases, positions, fps, source_size, args.prompt,
                 None if args.format == "text" else args.format,
                 GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                                  draft_tokens=DRAFT_TOKENS if args.draft_tokens is None else args.draft_tokens))
    print(json.dumps(answer.to_dict()))
    return 0


def _add_forward(commands) -> None:
    parser = commands.add_parser("forward", help="one forward pass on released-processor inputs (parity tool)")
    parser.add_argument("--model", required=True, help="model folder (ours or a released LLaVA-OneVision-2)")
    parser.add_argument("--inputs", required=True, help="IN.npz: pixel_values, patch_positions, image_grid_thw[, input_ids]")
    parser.add_argument("--out", required=True, help="OUT.npz: vision_hidden, vision_merged[, logits]")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32")
    parser.add_argument("--positions-order", choices=("block", "raster"), default="block",
                        help="order of patch_positions rows in each canvas (block: same as pixel_values)")
    parser.set_defaults(handler=_run_forward)


def _run_forward(args) -> int:
    from ov2_ros.model.checkpoint import DTYPE_NAMES
    from ov2_ros.runtime.forward import run_forward

    shapes = run_forward(args.model, args.inputs, args.out, DTYPE_NAMES[args.dtype], args.positions_order)
    print(json.dumps({"out": args.out, "shapes": shapes}))
    return 0


def _add_replay(commands) -> None:
    parser = commands.add_parser("replay", help="the node's pipeline offline on a recording: answers as JSON, "
                                                "an annotated video")
    parser.add_argument("file", help="recording: MP4, MKV, raw Annex-B .h264, or a rosbag2 (folder, .db3 or .mcap)")
    parser.add_argument("--topic", default=None, help="rosbag2: the CompressedImage H.264 topic (default: the only one)")
    parser.add_argument("--prompt", required=True, help="the question (answered on every new temporal group)")
    parser.add_argument("--once", action="store_true", help="answer once, at the end of the recording")
    parser.add_argument("--format", default="auto",
                        choices=("auto", "text", "segment", "events", "box", "tracks", "trace", "trace2d"))
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch")
    parser.add_argument("--model", default=None, help="as for `ov2 generate` (default: the embedded model)")
    parser.add_argument("--budget", type=int, default=16, help="canvases per answer, spread over the window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of video per answer")
    parser.add_argument("--out", default="out/replay", help="folder for results.json and annotated.mp4")
    parser.set_defaults(handler=_run_replay)


def _run_replay(args) -> int:
    from ov2_ros.runtime.backend import open_backend
    from ov2_ros.runtime.replay import replay

    backend = open_backend(args.backend, args.model)
    document = replay(args.file, args.prompt, backend, args.out, None if args.format == "text" else args.format,
                      args.once, args.budget, args.window, topic=args.topic)
    for answer in document["answers"]:
        print(json.dumps({key: answer[key] for key in ("from_frame", "window_s", "text", "parsed")}))
    print(json.dumps({"results": f"{args.out}/results.json", "video": f"{args.out}/annotated.mp4",
                      "answers": len(document["answers"])}))
    return 0


def _add_export_onnx(commands) -> None:
    parser = commands.add_parser("export-onnx", help="export the model as ONNX graphs (vision, embed, prefill, "
                                                     "decode) for ONNX Runtime and TensorRT")
    parser.add_argument("--model", default=None, help="model folder (ours or a released LLaVA-OneVision-2; "
                                                      "default: the embedded model)")
    parser.add_argument("--out", required=True, help="folder to write (*.onnx, onnx.json, config.json, tokenizer.json)")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                        help="fp32 (TensorRT 10: --precision fp16 at build; with ONNX Runtime's fused and "
                             "int8-weight graphs too) or fp16 (TensorRT 11 strongly typed)")
    parser.set_defaults(handler=_run_export_onnx)


def _run_export_onnx(args) -> int:
    from pathlib import Path

    from ov2_ros.model.checkpoint import DTYPE_NAMES, load_any_model
    from ov2_ros.model.default import default_model_dir
    from ov2_ros.runtime.onnx_export import export_onnx

    folder = Path(args.model) if args.model else default_model_dir()
    model = load_any_model(folder, DTYPE_NAMES[args.dtype])
    manifest = export_onnx(model, args.out, folder / "tokenizer.json", source_model=str(folder.resolve()))
    print(json.dumps({"out": args.out, "dtype": manifest.dtype, "opset": manifest.opset,
                      "graphs": {name: entry["bytes"] for name, entry in manifest.graphs.items()},
                      "onnxruntime_int8_graphs": {name: entry["bytes"]
                                                  for name, entry in manifest.ort_int8_graphs.items()}}))
    return 0


def _add_plugins(commands) -> None:
    """Subcommands of packages that sit on top of ov2_ros (training: `ov2 train`, `ov2 eval`),
    found through the "ov2.commands" entry points, so ov2_ros never imports them."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="ov2.commands"):
        entry.load()(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov2", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_synth_stream(commands)
    _add_probe(commands)
    _add_canvases(commands)
    _add_publish(commands)
    _add_demo(commands)
    _add_bench(commands)
    _add_study(commands)
    _add_generate(commands)
    _add_forward(commands)
    _add_export_onnx(commands)
    _add_replay(commands)
    _add_plugins(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Ov2Error as error:
        print(f"ov2 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"ov2 {args.command}: invalid value: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
