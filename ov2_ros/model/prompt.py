"""Prompts as OV2 sees them (method.md 2.2): ChatML, and the video as one block per run of equal t.

    <|im_start|>system
    You are a helpful assistant.<|im_end|>
    <|im_start|>user
    <0.0 seconds><|vision_start|><|image_pad|>...<|vision_end|>
    <0.5 seconds><|vision_start|><|image_pad|>...<|vision_end|>
    What happens?<|im_end|>
    <|im_start|>assistant

A run is a maximal stretch of consecutive 2x2 blocks whose first patch has the same t; padding
blocks (t = -1) are skipped. Time reaches the LLM only through these `<X.X seconds>` tags and
the encoder's RoPE.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ov2_ros.errors import MissingInputError
from ov2_ros.model.config import TokenIds
from ov2_ros.model.ov2 import PlaceholderMismatchError

DEFAULT_SYSTEM = "You are a helpful assistant."
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)


def timestamp_runs(positions_thw: np.ndarray, merge_size: int = 2) -> list[tuple[int, int]]:
    """[(t, blocks), ...]: runs of consecutive 2x2 blocks with equal t, padding skipped."""
    block_t = np.asarray(positions_thw).reshape(-1, merge_size * merge_size, 3)[:, 0, 0]
    runs: list[list[int]] = []
    previous = None
    for t in block_t.tolist():
        if t == previous and runs:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
        previous = t
    return [(t, count) for t, count in runs if t >= 0]


def video_text(positions_thw: np.ndarray, fps: float, merge_size: int = 2) -> str:
    if fps <= 0:
        raise ValueError(f"fps must be positive to write timestamps, got {fps}")
    return "".join(f"<{t / fps:.1f} seconds>{VISION_START}{IMAGE_PAD * count}{VISION_END}\n"
                   for t, count in timestamp_runs(positions_thw, merge_size))


def prompt_head(video: str = "", system: str = DEFAULT_SYSTEM) -> str:
    """What every prompt on this video has before its question."""
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{video}"


def chat_prompt(question: str, video: str = "", system: str = DEFAULT_SYSTEM, answer: str | None = None) -> str:
    """ChatML with the generation prompt; with `answer`, the finished turn (for training)."""
    text = f"{prompt_head(video, system)}{question}{IM_END}\n{IM_START}assistant\n"
    return text if answer is None else text + answer + IM_END + "\n"


class TextTokenizer:
    """A `tokenizers` tokenizer.json with OV2's special tokens."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"tokenizer file {path} does not exist")
        self.path = path
        self.backend = Tokenizer.from_file(str(path))
        missing = [token for token in SPECIAL_TOKENS if self.backend.token_to_id(token) is None]
        if missing:
            raise ValueError(f"{path} lacks the special tokens {missing}")
        self._texts: list[str] | None = None

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_ids(self) -> TokenIds:
        ids = {token: self.backend.token_to_id(token) for token in SPECIAL_TOKENS}
        return TokenIds(image_pad=ids[IMAGE_PAD], video_pad=ids[VIDEO_PAD], vision_start=ids[VISION_START],
                        vision_end=ids[VISION_END], im_start=ids[IM_START], im_end=ids[IM_END],
                        end_of_text=ids[END_OF_TEXT])

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=False)

    def token_texts(self) -> list[str]:
        """The text each id decodes to on its own (for constrained decoding)."""
        if self._texts is None:
            self._texts = [self.backend.decode([i], skip_special_tokens=False) for i in range(self.vocab_size)]
        return self._texts


@dataclass(frozen=True)
class EncodedPrompt:
    text: str
    input_ids: list[int]
    vision_tokens: int


def encode_prompt(tokenizer: TextTokenizer, question: str, positions_thw: np.ndarray | None, fps: float,
                  system: str = DEFAULT_SYSTEM) -> EncodedPrompt:
    """Prompt text and ids; the <|image_pad|> count must equal the video's non-padding blocks."""
    video = "" if positions_thw is None else video_text(positions_thw, fps)
    text = chat_prompt(question, video, system)
    ids = tokenizer.encode(text)
    expected = 0 if positions_thw is None else sum(count for _, count in timestamp_runs(positions_thw))
    found = ids.count(tokenizer.token_ids().image_pad)
    if found != expected:
        raise PlaceholderMismatchError(f"prompt has {found} {IMAGE_PAD} ids for {expected} vision tokens "
                                       "(does the question itself contain the placeholder?)")
    return EncodedPrompt(text, ids, expected)


def train_tokenizer(texts, vocab_size: int, path: str | Path) -> TextTokenizer:
    """A byte-level BPE tokenizer.json trained on `texts`, with OV2's special tokens. Byte-level:
    every character stays encodable, which constrained decoding relies on. Digits are always
    single tokens, as in Qwen's tokenizer: "484" is 4, 8, 4, never a merged "484" or "48"+"4".
    A merged-number vocabulary makes every coordinate and timestamp its own class, seen a handful
    of times in training; with digits the model learns place value once for all of them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backend.save(str(path))
    return TextTokenizer(path)
