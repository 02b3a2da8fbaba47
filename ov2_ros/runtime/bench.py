"""`ov2 bench runtime`: ONNX Runtime against PyTorch eager on this CPU, as ratios from one run.

The model (default: the embedded one) is exported once to a temporary folder (or --onnx is
used). Each backend then runs the same work through the shared backend interface:
  encoder  one group: 4 canvases of 20 x 36 patches (720p under the default max_pixels), ms;
  prefill  that group's 720 vision tokens plus 64 text tokens, tokens/s;
  decode   48 steps with the KV cache after that prompt, tokens/s.
Baseline: PyTorch eager fp32 with the same thread count, measured in the same run; ONNX Runtime
is reported with its fused-attention graphs (*.ort.onnx), with the portable graphs TensorRT
takes, and with the fused graphs' int8-weight variants (*.ort.int8.onnx; ort_int8.py). With a
CUDA GPU, PyTorch fp16 on it is added.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from ov2_ros.documents import write_json
from ov2_ros.model.ov2 import VisionInput

ROWS, COLS, CANVASES = 20, 36, 4
TEXT_TOKENS = 64
DECODE_TOKENS = 48


def _group(patch_dim: int) -> VisionInput:
    per_canvas = ROWS * COLS
    index = torch.arange(CANVASES * per_canvas)
    canvas, within = index // per_canvas, index % per_canvas
    block, corner = within // 4, within % 4  # rows in 2x2 block order
    h = block // (COLS // 2) * 2 + corner // 2
    w = block % (COLS // 2) * 2 + corner % 2
    positions = torch.stack([canvas * 8, h, w], 1)
    generator = torch.Generator().manual_seed(0)
    return VisionInput(torch.randn(len(index), patch_dim, generator=generator), positions,
                       torch.tensor([[CANVASES, ROWS, COLS]]))


def _best(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(backend, repeats: int, synchronize=lambda: None) -> dict:
    config = backend.config
    vision = _group(config.encoder.patch_dim)

    def encode():
        backend.vision_tokens(vision)
        synchronize()

    encoder_s = _best(encode, repeats)
    tokens = backend.vision_tokens(vision)
    pad, text = config.tokens.image_pad, 1000 % config.llm.vocab_size
    prompt = [pad] * tokens.shape[0] + [text] * TEXT_TOKENS
    prefill_s = _best(lambda: backend.session().prefill(prompt, tokens), repeats)

    def decode():
        session = backend.session()
        logits = session.prefill(prompt, tokens)
        started = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            logits = session.step(int(logits.argmax()))
        return time.perf_counter() - started

    decode_s = min(decode() for _ in range(max(1, repeats - 1)))
    return {"encoder_ms_per_group": round(encoder_s * 1e3, 2), "prefill_tokens_per_s": round(len(prompt) / prefill_s, 1),
            "decode_tokens_per_s": round(DECODE_TOKENS / decode_s, 1)}


def run_runtime_bench(out_path: str | Path | None = None, model_dir: str | Path | None = None,
                      onnx_dir: str | Path | None = None, threads: tuple[int, ...] = (1, 2), repeats: int = 3) -> dict:
    from ov2_ros.model.checkpoint import load_any
    from ov2_ros.model.default import default_model_dir
    from ov2_ros.runtime.backend import TorchBackend
    from ov2_ros.runtime.onnx_export import export_onnx
    from ov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    model_dir = Path(model_dir) if model_dir else default_model_dir()
    model, tokenizer = load_any(model_dir, torch.float32)
    document = {"benchmark": "runtime", "unix_time": time.time(), "model": str(model_dir),
                "group": f"{CANVASES} canvases x {ROWS * COLS} patches", "text_tokens": TEXT_TOKENS,
                "decode_tokens": DECODE_TOKENS, "rows": []}
    with tempfile.TemporaryDirectory(prefix="ov2_bench_onnx_") as scratch:
        if onnx_dir is None:
            started = time.perf_counter()
            onnx_dir = Path(scratch)
            export_onnx(model, onnx_dir, model_dir / "tokenizer.json", source_model=str(model_dir))
            document["export_s"] = round(time.perf_counter() - started, 1)
        for count in threads:
            torch.set_num_threads(count)
            baseline = measure(TorchBackend(model, tokenizer), repeats)
            rows = [{"backend": "torch", "device": "cpu", "dtype": "fp32", "threads": count, **baseline}]
            for fused, dtype in ((True, "fp32"), (False, "fp32"), (True, "int8")):
                backend = OnnxRuntimeBackend(onnx_dir, threads=count, fused_attention=fused, precision=dtype)
                rows.append({"backend": "onnxruntime", "graphs": "fused attention" if fused else "portable",
                             "device": "cpu", "dtype": dtype, "threads": count, **measure(backend, repeats)})
            for row in rows:
                row["vs_torch"] = {
                    "encoder": round(baseline["encoder_ms_per_group"] / row["encoder_ms_per_group"], 2),
                    "prefill": round(row["prefill_tokens_per_s"] / baseline["prefill_tokens_per_s"], 2),
                    "decode": round(row["decode_tokens_per_s"] / baseline["decode_tokens_per_s"], 2)}
                print(json.dumps(row), flush=True)
            document["rows"] += rows
    if torch.cuda.is_available():
        gpu = TorchBackend(load_any(model_dir, torch.float16)[0].cuda(), tokenizer)
        row = {"backend": "torch", "device": torch.cuda.get_device_name(0), "dtype": "fp16",
               **measure(gpu, repeats, torch.cuda.synchronize)}
        print(json.dumps(row), flush=True)
        document["rows"].append(row)
    write_json(out_path, document)
    return document

