"""`ov2 bench model`: CPU latency and peak memory of the small configurations.

Per preset (random weights; speed does not depend on their values):
  encoder  one group (4 canvases of 504x280 = 2,880 patches, one attention window), ms;
  prefill  the LLM over a prompt of one group's vision tokens plus text, tokens/s;
  decode   greedy steps with the KV cache, tokens/s.
Each part runs in a fresh process, so its peak resident memory (above the process after
loading the model) is its own. The baseline, measured in the same run, is a plain fp32 matrix
product of the same shape class: each part's throughput is printed as a fraction of it, which
says how much of the machine's GEMM rate the model reaches.
"""
from __future__ import annotations

import json
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from ov2_ros.documents import write_json

CANVAS_PATCHES = (280 // 14) * (504 // 14)  # 720p under max_pixels 150,000: 20 x 36 patches
GROUP_CANVASES = 4
TEXT_TOKENS = 64
DECODE_TOKENS = 48


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _gemm_flops_per_s(size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _measure(preset_name: str, part: str, threads: int, repeats: int) -> dict:
    from ov2_ros.model.config import preset
    from ov2_ros.model.ov2 import Ov2Model, VisionInput

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = preset(preset_name, vocab_size=8192)
    model = Ov2Model(config).eval()
    base = _peak_rss_mb()
    patches = GROUP_CANVASES * CANVAS_PATCHES
    rows, cols = 280 // 14, 504 // 14
    positions = torch.stack([torch.arange(patches) // CANVAS_PATCHES * 8,
                             torch.arange(patches) % CANVAS_PATCHES // cols,
                             torch.arange(patches) % cols], 1)
    vision = VisionInput(torch.randn(patches, config.encoder.patch_dim), positions,
                         torch.tensor([[GROUP_CANVASES, rows, cols]]))
    parameters = sum(p.numel() for p in model.parameters())
    with torch.inference_mode():
        if part == "encoder":
            model.vision_tokens(vision)  # warm-up
            seconds = min(_timed(lambda: model.vision_tokens(vision)) for _ in range(repeats))
            encoder_parameters = sum(p.numel() for p in model.visual.parameters())
            flops = 2 * encoder_parameters * patches  # matmuls only (attention excluded)
            result = {"ms_per_group": seconds * 1e3, "patches": patches, "flops_per_s": flops / seconds}
        else:
            length = patches // 4 + TEXT_TOKENS
            embeds = torch.randn(1, length, config.llm.hidden_size)
            llm_parameters = sum(p.numel() for p in model.language_model.layers.parameters())
            if part == "prefill":
                model.logits(embeds[:, :32], model.new_cache())  # warm-up
                seconds = min(_timed(lambda: model.logits(embeds, model.new_cache())) for _ in range(repeats))
                result = {"prompt_tokens": length, "tokens_per_s": length / seconds,
                          "flops_per_s": 2 * llm_parameters * length / seconds}
            else:
                cache = model.new_cache()
                logits = model.logits(embeds, cache)[0, -1]
                started = time.perf_counter()
                for _ in range(DECODE_TOKENS):
                    token = logits.argmax().view(1, 1)
                    logits = model.logits(model.language_model.embed_tokens(token), cache)[0, -1]
                seconds = time.perf_counter() - started
                result = {"context_tokens": length, "tokens_per_s": DECODE_TOKENS / seconds,
                          "flops_per_s": 2 * llm_parameters * DECODE_TOKENS / seconds}
    result.update(peak_mb_above_model=_peak_rss_mb() - base, parameters=parameters)
    return result


def _child(queue, *args) -> None:
    queue.put(_measure(*args))


def run_model_bench(out_path: str | Path | None = None, presets=("nano", "small"), threads: int = 1,
                    repeats: int = 3) -> dict:
    torch.set_num_threads(threads)
    gemm = _gemm_flops_per_s()
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in presets:
        for part in ("encoder", "prefill", "decode"):
            queue = context.Queue()
            process = context.Process(target=_child, args=(queue, name, part, threads, repeats))
            process.start()
            result = queue.get(timeout=1800)
            process.join()
            result = {"preset": name, "part": part, **{k: round(v, 3) if isinstance(v, float) else v
                                                       for k, v in result.items()}}
            result["fraction_of_gemm_rate"] = round(result["flops_per_s"] / gemm, 3)
            rows.append(result)
            print(json.dumps(result), flush=True)
    document = {"benchmark": "model", "unix_time": time.time(), "threads": threads,
                "baseline_gemm_flops_per_s": round(gemm), "group": f"{GROUP_CANVASES} canvases x {CANVAS_PATCHES} patches",
                "rows": rows}
    write_json(out_path, document)
    return document
