"""TensorRT engines on disk: the manifest `build.json` that trt_build/ writes next to them, the
hardware identity they were built for, and where they are cached.

An engine only runs on the GPU, TensorRT version and (for safety) driver / CUDA / JetPack it was
built with, from the exact ONNX it was built from, at one precision. So engines live in
  <cache root>/<ONNX folder's hash>/<hardware key>/<precision>/{vision,embed,prefill,decode}.engine
with build.json recording all of it; a manifest that disagrees with the current machine or ONNX
means "rebuild" (`ov2 build-engines`), never "try and see". TensorRT itself is imported lazily:
nothing here needs it, so cache keys and mismatch checks are testable anywhere.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ov2_ros.errors import MissingInputError, Ov2Error
from ov2_ros.runtime.onnx_graphs import GRAPHS, OnnxManifest

BUILD_MANIFEST = "build.json"
ENGINE_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16")


class TensorRTUnavailableError(Ov2Error, ImportError):
    """TensorRT, or a CUDA GPU, is not on this machine."""


class EngineMismatchError(Ov2Error, ValueError):
    """Engines built for other hardware, another TensorRT, another ONNX or precision, or that fail
    to deserialise: they must be rebuilt."""


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailableError(
            "TensorRT is not installed here (`import tensorrt` failed: " f"{error}); install it (JetPack ships it; "
            "on a desktop: pip install tensorrt) or use the onnxruntime backend") from None
    return tensorrt


@dataclass(frozen=True)
class HardwareIdentity:
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "11.0" (Thor), "8.9" (RTX 40xx) ...
    tensorrt: str
    cuda: str
    driver: str
    jetpack: str | None = None  # the L4T / JetPack release on Jetson, else None

    def key(self) -> str:
        """Folder name: engines are portable only across identical GPU model, SM and TensorRT."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        key = f"{gpu}_sm{self.compute_capability.replace('.', '')}_trt{self.tensorrt}_cuda{self.cuda}"
        return key + (f"_jetpack{self.jetpack}" if self.jetpack else "")


def _jetpack_release() -> str | None:
    """L4T release from /etc/nv_tegra_release ("# R36 (release), REVISION: 3.0" -> "36.3.0")."""
    path = Path("/etc/nv_tegra_release")
    if not path.is_file():
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", path.read_text())
    return f"{match.group(1)}.{match.group(2)}" if match else "unknown"


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"  # Jetson has no nvidia-smi before JetPack 6; the L4T release stands in


def detect_hardware() -> HardwareIdentity:
    """This machine's GPU and software stack (needs TensorRT and a CUDA GPU)."""
    tensorrt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("no CUDA GPU is visible (torch.cuda.is_available() is false); TensorRT "
                                       "engines need one; use the onnxruntime backend")
    major, minor = torch.cuda.get_device_capability(0)
    return HardwareIdentity(gpu_name=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}",
                            tensorrt=tensorrt.__version__, cuda=str(torch.version.cuda), driver=_driver_version(),
                            jetpack=_jetpack_release())


def onnx_folder_key(manifest: OnnxManifest) -> str:
    """A short hash of every graph's sha256 and the weights': which ONNX engines come from."""
    import hashlib

    text = json.dumps({"graphs": {name: entry["sha256"] for name, entry in sorted(manifest.graphs.items())},
                       "weights": manifest.weights.get("sha256")})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_cache_root(onnx_folder: str | Path) -> Path:
    """$OV2_ENGINE_CACHE if set, else <ONNX folder>/engines."""
    return Path(os.environ.get("OV2_ENGINE_CACHE") or Path(onnx_folder) / "engines")


def engine_dir(root: str | Path, manifest: OnnxManifest, hardware: HardwareIdentity, precision: str) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    return Path(root) / onnx_folder_key(manifest) / hardware.key() / precision


@dataclass
class EngineManifest:
    """build.json."""

    onnx_sha256: dict[str, str]
    hardware: HardwareIdentity
    precision: str
    strongly_typed: bool
    profiles: dict[str, dict[str, list[list[int]]]]  # graph -> input -> [min, opt, max] shapes
    engines: dict[str, str]  # graph -> file name
    build_s: float
    built_at: str
    timing_cache: str | None = None
    format_version: int = ENGINE_FORMAT_VERSION
    engine_sha256: dict[str, str] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        (Path(folder) / BUILD_MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "EngineManifest":
        path = Path(folder) / BUILD_MANIFEST
        if not path.is_file():
            raise MissingInputError(f"no engines at {folder} (no {BUILD_MANIFEST}); build them with "
                                    "`ov2 build-engines --onnx DIR`")
        try:
            data = json.loads(path.read_text())
            data["hardware"] = HardwareIdentity(**data["hardware"])
            return cls(**data)
        except (ValueError, TypeError, KeyError) as error:
            raise EngineMismatchError(f"{path} is not a build manifest this ov2_ros reads ({error}); rebuild") from None

    def mismatches(self, onnx: OnnxManifest, hardware: HardwareIdentity, precision: str) -> list[str]:
        """Why these engines cannot serve this ONNX on this machine at this precision ([] if they can)."""
        reasons = []
        if self.format_version != ENGINE_FORMAT_VERSION:
            reasons.append(f"manifest format {self.format_version} != {ENGINE_FORMAT_VERSION}")
        for name in GRAPHS:
            built_from = self.onnx_sha256.get(name)
            if built_from != onnx.graphs[name]["sha256"]:
                reasons.append(f"{name}: built from ONNX {str(built_from)[:12]}, the folder has "
                               f"{onnx.graphs[name]['sha256'][:12]}")
            if name not in self.engines:
                reasons.append(f"{name}: no engine listed")
        for attribute in ("gpu_name", "compute_capability", "tensorrt", "cuda", "driver", "jetpack"):
            built, here = getattr(self.hardware, attribute), getattr(hardware, attribute)
            if built != here:
                reasons.append(f"{attribute}: built with {built!r}, this machine has {here!r}")
        if self.precision != precision:
            reasons.append(f"precision: built {self.precision}, asked {precision}")
        return reasons
