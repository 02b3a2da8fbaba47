"""`ov2 bench prefill`: ONNX Runtime's prefill with its causal attention in blocks of query rows
(runtime/ort_attention.py) against one attention over every score, offline.

The model (default: the embedded one) is exported once per block count to a temporary folder.
A held-out pick-and-place episode (runtime/episodes.py, 640x480) is tokenized as the node does;
on every new temporal group the node's standing question is asked of the window the node would
show (runtime/perception.py), and each export runs that prompt's prefill (fp32, and int8 where
the export has int8 graphs), the block counts interleaved prompt by prompt so that machine noise
falls on all of them alike. Baseline: one block (every score of the L x L matrix computed, as
before blocks), measured in the same run. Per precision and block count: median prefill ms,
its ratio to the baseline's, and the largest difference of the next-token logits from the
baseline's, relative to their largest magnitude (the blocks change the order of no sum a row
sees: only rounding).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ov2_ros.documents import write_json

QUESTION = "Trace where the gripper moved."


def run_prefill_bench(out_path: str | Path | None, blocks=(1, 2, 4, 8), dtypes=("fp32", "int8"), threads: int = 1,
                      budget: int = 16, duration_s: float = 12.0, seed: int = 100_000, question: str = QUESTION,
                      model_dir: str | Path | None = None) -> dict:
    import torch

    from ov2_ros.model.checkpoint import load_any
    from ov2_ros.model.default import default_model_dir
    from ov2_ros.model.prompt import encode_prompt
    from ov2_ros.runtime.episodes import held_out_episode
    from ov2_ros.runtime.onnx_export import export_onnx
    from ov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from ov2_ros.runtime.perception import Perception
    from ov2_ros.tokenizer.canvas import rebase_t

    if 1 not in blocks:
        blocks = (1, *blocks)  # the baseline
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    model, _ = load_any(model_dir, torch.float32)
    groups, _ = held_out_episode(model.config.max_pixels, duration_s, seed)
    with tempfile.TemporaryDirectory(prefix="ov2_bench_prefill_") as scratch:
        backends = {}
        for count in blocks:
            folder = Path(scratch) / f"blocks{count}"
            export_onnx(model, folder, model_dir / "tokenizer.json", source_model=str(model_dir),
                        prefill_query_blocks=count)
            for dtype in dtypes:
                backends[dtype, count] = OnnxRuntimeBackend(folder, threads=threads, precision=dtype)
        reference = backends[dtypes[0], 1]
        perception = Perception(reference, budget_canvases=budget)
        prompts = []  # (input ids, vision tokens) of the window the node shows at each new group
        for end in range(1, len(groups) + 1):
            chosen = perception.select(groups[:end], perception.window_s)
            positions = np.concatenate([rebase_t(g.positions_thw, chosen[0].first_t) for g in chosen])
            prompt = encode_prompt(reference.tokenizer, question, positions, perception.fps(chosen))
            prompts.append((prompt.input_ids, perception.vision_tokens(chosen)))
        timings = {key: [] for key in backends}
        differences = {key: [] for key in backends}
        for backend in backends.values():  # warm-up (first calls allocate)
            backend.session().prefill(*prompts[0])
        for input_ids, tokens in prompts:
            for dtype in dtypes:
                baseline_logits = None
                for count in blocks:
                    session = backends[dtype, count].session()
                    started = time.perf_counter()
                    logits = session.prefill(input_ids, tokens)
                    timings[dtype, count].append((time.perf_counter() - started) * 1e3)
                    if baseline_logits is None:
                        baseline_logits = logits
                    differences[dtype, count].append(float((logits - baseline_logits).abs().max()
                                                           / baseline_logits.abs().max()))
    rows = []
    for dtype in dtypes:
        base_ms = float(np.median(timings[dtype, 1]))
        for count in blocks:
            ms = float(np.median(timings[dtype, count]))
            row = {"dtype": dtype, "query_blocks": count, "prompts": len(prompts),
                   "prompt_tokens_p50": int(np.median([len(ids) for ids, _ in prompts])),
                   "prefill_ms_p50": round(ms, 1), "vs_one_block": round(ms / base_ms, 3),
                   "logits_max_difference": float(f"{max(differences[dtype, count]):.2e}")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    document = {"benchmark": "prefill", "unix_time": time.time(), "model": str(model_dir), "threads": threads,
                "budget_canvases": budget, "question": question,
                "episode": {"world": "pickplace", "seed": seed, "variation": "heldout", "duration_s": duration_s,
                            "size": "640x480"}, "rows": rows}
    write_json(out_path, document)
    return document
