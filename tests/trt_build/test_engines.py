"""Engine manifests, cache keys, mismatch detection, profiles, the build lock and atomic
publishing: all that surrounds TensorRT, tested here; TensorRT itself where it is installed."""
import dataclasses
import json
import multiprocessing
import subprocess
import sys
import time

import pytest

from ov2_ros.errors import MissingInputError
from ov2_ros.runtime.engines import (EngineManifest, EngineMismatchError, HardwareIdentity, TensorRTUnavailableError,
                                     engine_dir, import_tensorrt, onnx_folder_key)
from ov2_ros.runtime.onnx_graphs import GRAPHS, OnnxManifest, past_names
from ov2_ros.runtime.folders import exclusive_lock, publish_folder
from trt_build.build import strongly_typed_for
from trt_build.profiles import ProfileConfig, compute_profiles, patches_per_canvas
from tests.model.conftest import tiny_config

ORIN = HardwareIdentity("Orin (nvgpu)", "8.7", "10.3.0", "12.6", "unknown", "36.4.0")
DESKTOP = HardwareIdentity("NVIDIA GeForce RTX 4090", "8.9", "10.3.0", "12.6", "560.35.03")


def onnx_manifest(tag="a") -> OnnxManifest:
    return OnnxManifest(dtype="fp32", opset=18, num_layers=2, merger_positions=False,
                        graphs={name: {"file": f"{name}.onnx", "sha256": (tag + name) * 8, "bytes": 1} for name in GRAPHS})


def engine_manifest(onnx: OnnxManifest, hardware=ORIN, precision="fp16") -> EngineManifest:
    return EngineManifest(onnx_sha256={n: e["sha256"] for n, e in onnx.graphs.items()}, hardware=hardware,
                          precision=precision, strongly_typed=False, profiles={}, engines={n: f"{n}.engine" for n in GRAPHS},
                          build_s=1.0, built_at="2026-11-24T00:00:00+0000")


def test_cache_folders_are_keyed_by_onnx_hardware_and_precision(tmp_path):
    onnx = onnx_manifest()
    same = engine_dir(tmp_path, onnx, ORIN, "fp16")
    assert same == engine_dir(tmp_path, onnx_manifest(), ORIN, "fp16")
    others = {engine_dir(tmp_path, onnx_manifest("b"), ORIN, "fp16"), engine_dir(tmp_path, onnx, DESKTOP, "fp16"),
              engine_dir(tmp_path, onnx, ORIN, "fp32"),
              engine_dir(tmp_path, onnx, dataclasses.replace(ORIN, tensorrt="10.7.0"), "fp16")}
    assert same not in others and len(others) == 4
    assert ORIN.key() == "orin-nvgpu_sm87_trt10.3.0_cuda12.6_jetpack36.4.0"
    assert same.parent.name == ORIN.key() and same.parent.parent.name == onnx_folder_key(onnx)
    with pytest.raises(ValueError, match="precision"):
        engine_dir(tmp_path, onnx, ORIN, "int8")


def test_the_manifest_round_trips_and_names_every_mismatch(tmp_path):
    onnx = onnx_manifest()
    manifest = engine_manifest(onnx)
    manifest.save(tmp_path)
    loaded = EngineManifest.load(tmp_path)
    assert loaded == manifest and loaded.mismatches(onnx, ORIN, "fp16") == []
    reasons = " | ".join(loaded.mismatches(onnx_manifest("b"), DESKTOP, "fp32"))
    for expected in ("vision: built from ONNX", "decode: built from ONNX", "gpu_name", "compute_capability",
                     "driver", "jetpack", "precision: built fp16, asked fp32"):
        assert expected in reasons
    assert loaded.mismatches(onnx, dataclasses.replace(ORIN, tensorrt="10.4.0"), "fp16") == [
        "tensorrt: built with '10.3.0', this machine has '10.4.0'"]
    (tmp_path / "build.json").write_text("{\"hardware\": 3}")
    with pytest.raises(EngineMismatchError, match="rebuild"):
        EngineManifest.load(tmp_path)
    with pytest.raises(MissingInputError, match="ov2 build-engines"):
        EngineManifest.load(tmp_path / "nowhere")


def test_profiles_cover_every_graph_input_and_the_configured_ranges(tokenizer):
    config = tiny_config(tokenizer)
    settings = ProfileConfig(max_pixels=150_000, canvases=(4, 16, 20), prompt_tokens=(16, 3200, 4096), kv_capacity=4608)
    profiles = compute_profiles(settings, config, merger_positions=False)
    per_canvas = patches_per_canvas(150_000, 14)
    assert per_canvas == 764 and per_canvas % 4 == 0
    assert profiles["vision"]["pixel_values"] == [[1, 4, 588], [4, 4 * per_canvas, 588], [5, 4 * per_canvas, 588]]
    assert profiles["vision"]["valid_patches"] == [[1], [4], [5]]
    assert "positions_thw" not in profiles["vision"]
    assert "positions_thw" in compute_profiles(settings, config, merger_positions=True)["vision"]
    assert profiles["prefill"]["inputs_embeds"][2] == [1, 4096, config.llm.hidden_size]
    for name in past_names(config.llm.num_layers):
        low, opt, high = profiles["decode"][name]
        assert high == [1, config.llm.num_kv_heads, 4607, config.llm.head_dim] and low[2] <= opt[2] <= high[2]
    for graph in profiles.values():
        for low, opt, high in graph.values():
            assert all(a <= b <= c for a, b, c in zip(low, opt, high))
    with pytest.raises(ValueError, match="kv_capacity"):
        ProfileConfig(prompt_tokens=(16, 100, 5000), kv_capacity=4096)
    # Unset, the canvas size is the one the model was trained at (its config's max_pixels).
    small = dataclasses.replace(config, max_pixels=18_816)
    own = compute_profiles(dataclasses.replace(settings, max_pixels=None), small, merger_positions=False)
    assert own["vision"]["pixel_values"][2] == [5, 4 * patches_per_canvas(18_816, 14), 588]


def test_profile_config_file_loads_and_refuses_unknown_settings(tmp_path):
    assert ProfileConfig.load() == ProfileConfig()  # trt_build/profiles.json holds the defaults
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"canvases": [4, 8, 8], "kv_cap": 10}))
    with pytest.raises(ValueError, match="kv_cap"):
        ProfileConfig.load(path)


def _hold_lock(path, seconds):
    with exclusive_lock(path):
        time.sleep(seconds)


def test_the_build_lock_makes_a_second_builder_wait(tmp_path):
    lock = tmp_path / "cache" / "x.lock"
    holder = multiprocessing.get_context("spawn").Process(target=_hold_lock, args=(lock, 2.0))
    holder.start()
    while not lock.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    with pytest.raises(TimeoutError, match="another process"):
        with exclusive_lock(lock, timeout_s=0.5):
            pass
    started = time.monotonic()
    with exclusive_lock(lock, timeout_s=30):
        waited = time.monotonic() - started
    holder.join()
    assert waited > 0.5


def test_publishing_replaces_a_cache_folder_whole(tmp_path):
    destination = tmp_path / "fp16"
    destination.mkdir()
    (destination / "vision.engine").write_text("old")
    (destination / "stale.engine").write_text("old")
    staging = tmp_path / "fp16.building-1"
    staging.mkdir()
    (staging / "vision.engine").write_text("new")
    publish_folder(staging, destination)
    assert sorted(p.name for p in destination.iterdir()) == ["vision.engine"]
    assert (destination / "vision.engine").read_text() == "new" and not staging.exists()
    assert not (tmp_path / "fp16.old").exists()


def test_precision_paths_of_tensorrt_10_and_11():
    assert strongly_typed_for("10.3.0", "fp32", "fp16") is False  # builder flag
    assert strongly_typed_for("10.3.0", "fp16", "fp16") is True
    assert strongly_typed_for("11.0.0", "fp16", "fp16") is True
    with pytest.raises(ValueError, match="--dtype fp16"):
        strongly_typed_for("11.0.0", "fp32", "fp16")
    with pytest.raises(ValueError, match="fp16 engines only"):
        strongly_typed_for("10.3.0", "fp16", "fp32")


def test_missing_tensorrt_gives_a_clear_error_and_exit_code(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: this test runs where it is absent (the build tests run here instead)")
    except ImportError:
        pass
    with pytest.raises(TensorRTUnavailableError, match="onnxruntime backend"):
        import_tensorrt()
    result = subprocess.run([sys.executable, "-m", "ov2_ros.cli", "build-engines", "--onnx", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr
    result = subprocess.run([sys.executable, "-m", "ov2_ros.cli", "generate", "x.mp4", "--prompt", "q",
                             "--backend", "tensorrt", "--model", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr


tensorrt_only = pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import tensorrt, torch; "
                                                   "assert torch.cuda.is_available()"], capture_output=True).returncode != 0,
                                   reason="needs TensorRT and a CUDA GPU")


@tensorrt_only
def test_engines_build_reuse_and_match_onnxruntime(exported, tokenizer, tmp_path):
    import torch

    from ov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from ov2_ros.runtime.tensorrt_backend import TensorRTBackend
    from tests.runtime.conftest import vision_input
    from trt_build.build import build_engines

    _, folder = exported["fp32"]
    settings = ProfileConfig(max_pixels=20_000, canvases=(4, 8, 12), prompt_tokens=(16, 256, 512), kv_capacity=640)
    path, manifest, built = build_engines(folder, settings, "fp32", tmp_path)
    assert built and EngineManifest.load(path) == manifest
    assert build_engines(folder, settings, "fp32", tmp_path)[2] is False  # reused
    trt_backend, ort_backend = TensorRTBackend(folder, "fp32", tmp_path), OnnxRuntimeBackend(folder)
    vision = vision_input([[4, 4, 6], [3, 4, 6]])
    torch.testing.assert_close(trt_backend.vision_tokens(vision), ort_backend.vision_tokens(vision), rtol=1e-3, atol=1e-3)
    (path / "decode.engine").write_bytes(b"garbage")
    with pytest.raises(EngineMismatchError, match="does not deserialise"):
        TensorRTBackend(folder, "fp32", tmp_path)
    assert build_engines(folder, settings, "fp32", tmp_path)[2] is True  # rebuilt
