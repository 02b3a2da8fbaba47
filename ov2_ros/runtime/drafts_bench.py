"""`ov2 bench drafts`: what draft tokens (model/generate.py) save a standing question, offline.

A held-out pick-and-place episode (ov2_ros/synth/worlds.py, 640x480, encoded as a camera
would) is tokenized as the node does; each question is then answered on every new temporal
group, as the node's standing query is, once per draft setting (0: one decoder pass per token,
the baseline of the same run), the settings interleaved group by group so that machine noise
falls on all of them alike. Each keeps its own last answers (runtime.perception.Perception), so
from the second group on a question's drafts come from its previous answer.

Per setting and question: median answer and decode ms, decoder passes per answer, draft tokens
proposed and confirmed, the ratio to the baseline's median answer and decode ms, and the share
of answers whose text equals the baseline's (drafting changes no token, up to the rounding of a
batched pass). At a reduced precision (int8), the share equal to the fp32 model's answers too:
there drafts are checked in fp32 (runtime/onnxruntime_backend.py), so drafted answers move
toward fp32's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ov2_ros.documents import write_json

QUESTIONS = ("Trace where the gripper moved.", "When does the gripper grasp the object?")


def run_drafts_bench(out_path: str | Path | None, backend: str = "onnxruntime", dtype: str = "int8",
                     threads: int = 1, drafts=(0, 4, 8, 16), budget: int = 16, duration_s: float = 12.0,
                     seed: int = 100_000, questions=QUESTIONS) -> dict:
    from ov2_ros.runtime.backend import open_backend
    from ov2_ros.runtime.episodes import held_out_episode
    from ov2_ros.runtime.perception import Perception, Query

    if 0 not in drafts:
        drafts = (0, *drafts)  # the baseline
    model = open_backend(backend, dtype=dtype, threads=threads)
    groups, size = held_out_episode(model.config.max_pixels, duration_s, seed)
    perceptions = {count: Perception(model, budget_canvases=budget, draft_tokens=count) for count in drafts}
    # untimed: the full-precision answers, to compare a reduced precision's with
    full = Perception(open_backend(backend, dtype="fp32", threads=threads), budget_canvases=budget,
                      draft_tokens=0) if dtype != "fp32" else None
    full_texts = {question: [] for question in questions}
    answers = {(count, question): [] for count in drafts for question in questions}
    perceptions[0].answer(groups[:1], size, Query(questions[0]))  # warm-up (first calls allocate)
    for end in range(1, len(groups) + 1):
        for question in questions:
            if full is not None:
                full_texts[question].append(full.answer(groups[:end], size, Query(question)).answer.text)
            for count in drafts:
                started = time.perf_counter()
                answer = perceptions[count].answer(groups[:end], size, Query(question)).answer
                answers[count, question].append({"ms": (time.perf_counter() - started) * 1e3,
                                                 "decode_ms": answer.timings_s["decode_s"] * 1e3, "text": answer.text,
                                                 "passes": answer.decoder_passes, "tokens": answer.generated_tokens,
                                                 "proposed": answer.draft_proposed, "accepted": answer.draft_accepted})
    rows = []
    for question in questions:
        baseline = answers[0, question]
        base_ms = np.median([a["ms"] for a in baseline])
        base_decode = np.median([a["decode_ms"] for a in baseline])
        for count in drafts:
            runs = answers[count, question]
            proposed = sum(a["proposed"] for a in runs)
            row = {"question": question, "draft_tokens": count, "answers": len(runs),
                   "answer_ms_p50": round(float(np.median([a["ms"] for a in runs])), 1),
                   "decode_ms_p50": round(float(np.median([a["decode_ms"] for a in runs])), 1),
                   "tokens_per_answer": round(float(np.mean([a["tokens"] for a in runs])), 1),
                   "passes_per_answer": round(float(np.mean([a["passes"] for a in runs])), 1),
                   "draft_confirmed_share": round(sum(a["accepted"] for a in runs) / proposed, 3) if proposed else None,
                   "same_text_as_baseline": round(float(np.mean([a["text"] == b["text"]
                                                                 for a, b in zip(runs, baseline)])), 3)}
            if full is not None:
                row["same_text_as_fp32"] = round(float(np.mean([a["text"] == text for a, text
                                                                in zip(runs, full_texts[question])])), 3)
            row["answer_vs_baseline"] = round(row["answer_ms_p50"] / base_ms, 3)
            row["decode_vs_baseline"] = round(row["decode_ms_p50"] / base_decode, 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    document = {"benchmark": "drafts", "unix_time": time.time(), "backend": backend, "dtype": dtype,
                "threads": threads, "budget_canvases": budget, "groups": len(groups),
                "episode": {"world": "pickplace", "seed": seed, "variation": "heldout", "duration_s": duration_s,
                            "size": "640x480"}, "rows": rows}
    write_json(out_path, document)
    return document
