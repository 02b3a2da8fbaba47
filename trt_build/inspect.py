"""`ov2 inspect-engine`: what an engine folder was built for, whether it fits this machine, and
(where TensorRT is installed) the engines' I/O tensors and profiles as TensorRT reports them."""
from __future__ import annotations

from pathlib import Path

from ov2_ros.runtime.engines import EngineManifest, TensorRTUnavailableError, detect_hardware


def inspect_engines(folder: str | Path, onnx=None) -> dict:
    folder = Path(folder)
    manifest = EngineManifest.load(folder)
    report = {"folder": str(folder), "manifest": {"hardware": vars(manifest.hardware), "precision": manifest.precision,
                                                  "strongly_typed": manifest.strongly_typed,
                                                  "built_at": manifest.built_at, "build_s": manifest.build_s,
                                                  "profiles": manifest.profiles}}
    try:
        hardware = detect_hardware()
    except TensorRTUnavailableError as error:
        report["this_machine"] = {"usable": False, "why": [str(error)]}
        return report
    reasons = manifest.mismatches(onnx, hardware, manifest.precision) if onnx is not None else [
        f"{a}: built with {getattr(manifest.hardware, a)!r}, this machine has {getattr(hardware, a)!r}"
        for a in vars(hardware) if getattr(manifest.hardware, a) != getattr(hardware, a)]
    report["this_machine"] = {"hardware": vars(hardware), "usable": not reasons, "why": reasons}
    if not reasons:
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engines = {}
        for name, file in manifest.engines.items():
            engine = runtime.deserialize_cuda_engine((folder / file).read_bytes())
            if engine is None:
                engines[name] = {"error": "does not deserialise"}
                continue
            tensors = {}
            for index in range(engine.num_io_tensors):
                tensor = engine.get_tensor_name(index)
                tensors[tensor] = {"mode": str(engine.get_tensor_mode(tensor)).split(".")[-1],
                                   "dtype": str(engine.get_tensor_dtype(tensor)).split(".")[-1],
                                   "shape": list(engine.get_tensor_shape(tensor))}
            engines[name] = {"bytes": (folder / file).stat().st_size, "tensors": tensors,
                             "profiles": engine.num_optimization_profiles}
        report["engines"] = engines
    return report
