"""Build (or reuse) the TensorRT engines of an exported ONNX folder for this machine.

    engines = build_engines(onnx_folder, ProfileConfig.load(...), precision="fp16")

Reuse when build.json matches this ONNX, GPU, TensorRT/CUDA/driver/JetPack and precision and
every engine deserialises; otherwise rebuild. Builds go to a temporary folder renamed into
place (a crash never leaves half a cache), under a lock file (two nodes starting together
build once). A timing cache per hardware key makes rebuilds fast.

TensorRT 10: fp32 ONNX, precision by builder flag (fp16 allowed), or fp16 ONNX strongly typed.
TensorRT 11 dropped the precision flags: networks are strongly typed, so the ONNX's own dtype
is the precision (export with --dtype fp16 for fp16 engines).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ov2_ros.runtime.engines import (BUILD_MANIFEST, EngineManifest, EngineMismatchError, HardwareIdentity,
                                     detect_hardware, engine_cache_root, engine_dir, import_tensorrt)
from ov2_ros.runtime.folders import exclusive_lock, publish_folder
from ov2_ros.runtime.onnx_graphs import GRAPHS, OnnxManifest, read_folder_config, sha256_file
from trt_build.profiles import ProfileConfig, compute_profiles


def strongly_typed_for(tensorrt_version: str, onnx_dtype: str, precision: str) -> bool:
    """TensorRT 11+: always (the ONNX dtype is the precision). TensorRT 10: when the ONNX is fp16."""
    major = int(tensorrt_version.split(".")[0])
    if major >= 11:
        if precision != onnx_dtype:
            raise ValueError(f"TensorRT {tensorrt_version} builds strongly typed networks: {precision} engines need "
                             f"an {precision} ONNX export (this one is {onnx_dtype}); run "
                             f"`ov2 export-onnx --dtype {precision}`")
        return True
    if onnx_dtype == "fp16" and precision != "fp16":
        raise ValueError("an fp16 ONNX export builds fp16 engines only")
    return onnx_dtype == "fp16"


def usable_engines(folder: Path, onnx: OnnxManifest, hardware: HardwareIdentity, precision: str) -> list[str]:
    """[] when the engines in `folder` can be used as they are, else why not."""
    if not (folder / BUILD_MANIFEST).is_file():
        return ["no engines built yet"]
    try:
        manifest = EngineManifest.load(folder)
    except EngineMismatchError as error:
        return [str(error)]
    reasons = manifest.mismatches(onnx, hardware, precision)
    if not reasons:
        trt = import_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        for name in GRAPHS:
            path = folder / manifest.engines[name]
            if not path.is_file() or runtime.deserialize_cuda_engine(path.read_bytes()) is None:
                reasons.append(f"{name}: engine {path.name} does not deserialise")
    return reasons


def _build_one(trt, logger, onnx_path: Path, profile: dict, strongly_typed: bool, precision: str,
               workspace_mib: int, timing_cache: Path) -> bytes:
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external weights next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    optimisation = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        optimisation.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    staging = timing_cache.with_name(timing_cache.name + f".{os.getpid()}")
    staging.write_bytes(memoryview(config.get_timing_cache().serialize()))
    os.replace(staging, timing_cache)
    return bytes(serialized)


def build_engines(onnx_folder: str | Path, profiles: ProfileConfig, precision: str = "fp16",
                  cache_root: str | Path | None = None, force: bool = False, progress=None) -> tuple[Path, EngineManifest, bool]:
    """-> (engine folder, its manifest, whether it was built now)."""
    trt = import_tensorrt()
    onnx_folder = Path(onnx_folder)
    onnx = OnnxManifest.load(onnx_folder)
    onnx.verify(onnx_folder)
    hardware = detect_hardware()
    strongly_typed = strongly_typed_for(hardware.tensorrt, onnx.dtype, precision)
    root = Path(cache_root) if cache_root else engine_cache_root(onnx_folder)
    destination = engine_dir(root, onnx, hardware, precision)
    with exclusive_lock(destination.with_name(destination.name + ".lock")):
        if not force and not usable_engines(destination, onnx, hardware, precision):
            return destination, EngineManifest.load(destination), False
        onnx.verify(onnx_folder, weights_hash=True)  # the weights too, once, before building for an hour
        shapes = compute_profiles(profiles, read_folder_config(onnx_folder), onnx.merger_positions)
        staging = destination.with_name(destination.name + f".building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        timing_cache = destination.parent / "timing.cache"
        logger = trt.Logger(trt.Logger.WARNING)
        started = time.perf_counter()
        engines, hashes = {}, {}
        try:
            for name in GRAPHS:
                if progress:
                    progress(name)
                blob = _build_one(trt, logger, onnx.graph_path(onnx_folder, name), shapes[name], strongly_typed,
                                  precision, profiles.workspace_mib, timing_cache)
                engines[name] = f"{name}.engine"
                (staging / engines[name]).write_bytes(blob)
                hashes[name] = sha256_file(staging / engines[name])
            manifest = EngineManifest(
                onnx_sha256={name: onnx.graphs[name]["sha256"] for name in GRAPHS}, hardware=hardware,
                precision=precision, strongly_typed=strongly_typed, profiles=shapes, engines=engines,
                build_s=round(time.perf_counter() - started, 1), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                timing_cache=timing_cache.name, engine_sha256=hashes)
            manifest.save(staging)
            publish_folder(staging, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination, manifest, True
