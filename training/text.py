"""The small model's tokenizer: byte-level BPE trained with `tokenizers` on the task language
(questions, answers, captions, numbers), with OV2's special tokens."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ov2_ros.model.prompt import DEFAULT_SYSTEM, TextTokenizer, train_tokenizer
from ov2_ros.synth.scene import COLOURS_RGB
from training import tasks

DEFAULT_VOCAB = 2048


def corpus(count: int = 4000, seed: int = 0) -> list[str]:
    """Task templates filled with random objects, places and numbers, plus timestamps."""
    rng = np.random.default_rng(seed)
    templates = [*tasks.EVENT_WORDINGS, *tasks.COUNT_WORDINGS, *tasks.BOUNCE_CAPTIONS, *tasks.BOX_WORDINGS,
                 *tasks.TRACK_WORDINGS, *tasks.TRACE_WORDINGS, *tasks.PREDICT_WORDINGS, *tasks.PICKPLACE_CAPTIONS,
                 *tasks.WHICH_WORDINGS, *tasks.WHERE_WORDINGS,
                 *(w for wordings in tasks.SEGMENT_WORDINGS.values() for w in wordings)]
    colours = list(COLOURS_RGB)
    texts = [DEFAULT_SYSTEM]
    for _ in range(count):
        colour, other = rng.choice(colours, 2, replace=False)
        thing = f"{colour} {rng.choice(['cube', 'cylinder', 'ball'])}"
        words = {"obj": thing, "target": thing, "plate": f"{other} plate", "thing": thing,
                 "instruction": f"Put the {thing} on the {other} plate"}
        texts.append(str(rng.choice(templates)).format(**words))
        numbers = rng.uniform(0, 60, 6)
        texts.append(f"<{numbers[0]:.1f} seconds>" + "[" + ", ".join(f"{v:.2f}" for v in numbers) + "]")
        texts.append(f"The event happens in {numbers[1]:.1f} - {numbers[2]:.1f} seconds")
        xy = rng.integers(0, 1000, 8)
        texts.append(f"[{xy[0]}, {xy[1]}, {xy[2]}, {xy[3]}] [[{xy[4]}, {xy[5]}], [{xy[6]}, {xy[7]}]]")
        texts.append(f'<tracks coords="{numbers[3]:.1f} 1 {xy[0]} {xy[1]};{numbers[4]:.1f} 1 {xy[2]} {xy[3]}">{thing}</tracks>')
        texts.append(f"The gripper picks up the {thing} and puts it on the {other} plate. A {thing} bounces on the floor {xy[0] % 40} times.")
    return texts


def build_tokenizer(path: str | Path, vocab_size: int = DEFAULT_VOCAB) -> TextTokenizer:
    return train_tokenizer(corpus(), vocab_size, path)
