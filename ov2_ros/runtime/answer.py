"""Video + question -> answer: the pipeline behind `ov2 generate` and the node's queries.

Canvases (from the tokenizer, live or offline) become the model's vision input, the question a
ChatML prompt with timestamped vision blocks, the backend generates (constrained to the answer's
format when there is one) and the text is parsed into seconds and source pixels.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ov2_ros.model.generate import DecodingSession, GenerationConfig, generate
from ov2_ros.model.inputs import vision_input_from
from ov2_ros.model.parsers import FrameSize, OutputParseError, infer_format, parse_output
from ov2_ros.model.prompt import encode_prompt
from ov2_ros.runtime.backend import Backend
from ov2_ros.tokenizer.geometry import DEFAULT_MAX_PIXELS


END_SLACK_S = 1.0  # events may lie a little after the last frame the tokenizer kept
ANSWER_STAGES = ("vision", "prefill", "decode")  # Answer.timings_s holds f"{stage}_s" for each


@dataclass
class Answer:
    question: str
    text: str
    output_format: str | None
    parsed: object | None  # a parsers dataclass (or list of PointTrack), None for free text / no parse
    parse_error: str | None
    vision_tokens: int
    prompt_tokens: int
    generated_tokens: int
    stop_reason: str
    timings_s: dict = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)  # the answer's tokens: the next draft's reference
    decoder_passes: int = 0  # after the prefill (model/generate.py)
    draft_proposed: int = 0
    draft_accepted: int = 0

    def to_dict(self) -> dict:
        parsed = self.parsed
        if isinstance(parsed, list):
            parsed = [dataclasses.asdict(item) for item in parsed]
        elif parsed is not None:
            parsed = dataclasses.asdict(parsed)
        return {"question": self.question, "text": self.text, "format": self.output_format, "parsed": parsed,
                "parse_error": self.parse_error, "vision_tokens": self.vision_tokens,
                "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                "stop_reason": self.stop_reason, "decoder_passes": self.decoder_passes,
                "draft_proposed": self.draft_proposed, "draft_accepted": self.draft_accepted,
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}}


def ask(backend: Backend, canvases: list[np.ndarray], positions_thw: list[np.ndarray], fps: float,
        source_size: tuple[int, int], question: str, output_format: str | None = "auto",
        generation: GenerationConfig = GenerationConfig(), vision_tokens: torch.Tensor | None = None,
        draft_reference: list[int] | tuple = (), session: DecodingSession | None = None) -> Answer:
    """canvases / positions_thw: per group, as the tokenizer made them; source_size (h, w) maps
    the answer's normalised coordinates back to source pixels. output_format "auto" infers it
    from the question; None answers in free text. vision_tokens: the backend's tokens of these
    canvases when the caller has them already (a live stream encodes each group once:
    runtime/perception.py); encoded here otherwise. draft_reference: tokens to copy draft
    tokens from (generation.draft_tokens), e.g. the last answer to the same question. session:
    the decoding session to use (default: a new one), e.g. one holding the prompt's start
    (model/generate.py's PrefixSession)."""
    if output_format == "auto":
        output_format = infer_format(question)
    timings = {}
    started = time.perf_counter()
    positions = np.concatenate(positions_thw)
    if vision_tokens is None:
        vision_tokens = backend.vision_tokens(vision_input_from(canvases, positions_thw))
    timings["vision_s"] = time.perf_counter() - started
    prompt = encode_prompt(backend.tokenizer, question, positions, fps)
    end_s = (int(positions[:, 0].max()) + 1) / fps + END_SLACK_S  # the last frame shown, and a little more
    result = generate(session or backend.session(), backend.tokenizer, prompt.input_ids, vision_tokens,
                      dataclasses.replace(generation, output_format=output_format, max_time_s=end_s),
                      draft_reference)
    timings.update(prefill_s=result.prefill_s, decode_s=result.decode_s)
    parsed, error = None, None
    if output_format is not None:
        try:
            parsed = parse_output(result.text, output_format, FrameSize(width=source_size[1], height=source_size[0]))
        except OutputParseError as failure:
            error = str(failure)
    return Answer(question, result.text, output_format, parsed, error, int(vision_tokens.shape[0]), len(prompt.input_ids),
                  len(result.token_ids), result.stop_reason, timings, result.token_ids, result.decoder_passes,
                  result.draft_proposed, result.draft_accepted)


def video_for_model(path, input_mode: str = "codec", budget: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(canvases per group, positions per group, fps, source (h, w)) of a video file or of a
    folder written by `ov2 canvases`.

    input_mode "codec": the offline codec tokenizer, held to at most `budget` canvases when one
    is given (tokenizer.pipeline.tokenize_at_budget). "frames": the frame-sampling baseline with
    `budget` uniform frames (default: as many as the codec run gives canvases)."""
    from pathlib import Path

    from ov2_ros.tokenizer.files import read_canvases, tokenize_file
    from ov2_ros.tokenizer.pipeline import TokenizerConfig, tokenize_at_budget

    path = Path(path)
    if path.is_dir():
        folder = read_canvases(path)
        return folder.canvases, folder.positions_thw, folder.fps, folder.source_size
    if input_mode not in ("codec", "frames"):
        raise ValueError(f"input mode {input_mode!r} is not 'codec' or 'frames'")
    config = TokenizerConfig(max_pixels=max_pixels)
    if input_mode == "codec" and budget is not None:
        from ov2_ros.tokenizer.files import decode_file
        source, frames, _ = decode_file(path, export_macroblocks=False)
        video = tokenize_at_budget(frames, budget, config)
    else:
        baseline = (budget or 0) if input_mode == "frames" else None
        video, source, _, _ = tokenize_file(path, "offline", config, frames_baseline=baseline)
    geometry = video.geometry
    return ([g.canvases for g in video.groups], [g.positions_thw for g in video.groups], source.info.fps,
            (geometry.source_height, geometry.source_width))
