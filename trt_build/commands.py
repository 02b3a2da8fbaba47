"""`ov2 build-engines` and `ov2 inspect-engine`, registered through setup.py's "ov2.commands"."""
from __future__ import annotations

import json


def add_build_engines(commands) -> None:
    parser = commands.add_parser("build-engines", help="build (or reuse) TensorRT engines of an ONNX folder for this GPU")
    parser.add_argument("--onnx", required=True, help="folder written by `ov2 export-onnx`")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--profiles", default=None,
                        help="JSON profile settings (canvases, prompt_tokens, kv_capacity, max_pixels (default: the model's), workspace_mib); "
                             "default: trt_build/profiles.json")
    parser.add_argument("--cache", default=None, help="engine cache root (default: $OV2_ENGINE_CACHE or <onnx>/engines)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached engines fit")
    parser.set_defaults(handler=_run_build_engines)


def _run_build_engines(args) -> int:
    from tqdm import tqdm

    from ov2_ros.runtime.engines import detect_hardware
    from trt_build.build import build_engines
    from trt_build.profiles import DEFAULT_PROFILE_CONFIG, ProfileConfig

    profiles = ProfileConfig.load(args.profiles or DEFAULT_PROFILE_CONFIG)
    detect_hardware()  # a clear error before anything starts when TensorRT or the GPU is missing
    with tqdm(total=4, desc="engines", unit="graph") as bar:
        def progress(name):
            bar.set_postfix_str(name)
            bar.update(1)
        folder, manifest, built = build_engines(args.onnx, profiles, args.precision, args.cache, args.force, progress)
    print(json.dumps({"engines": str(folder), "built": built, "build_s": manifest.build_s,
                      "hardware": vars(manifest.hardware), "precision": manifest.precision}))
    return 0


def add_inspect_engine(commands) -> None:
    parser = commands.add_parser("inspect-engine", help="what an engine folder was built for and whether it fits here")
    parser.add_argument("folder", help="an engine folder (holds build.json)")
    parser.add_argument("--onnx", default=None, help="the ONNX folder, to check the engines were built from it")
    parser.set_defaults(handler=_run_inspect_engine)


def _run_inspect_engine(args) -> int:
    from ov2_ros.runtime.onnx_graphs import OnnxManifest
    from trt_build.inspect import inspect_engines

    onnx = OnnxManifest.load(args.onnx) if args.onnx else None
    print(json.dumps(inspect_engines(args.folder, onnx), indent=2))
    return 0
