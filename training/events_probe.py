"""`python -m training.events_probe --model DIR`: can the model's LLM learn to time bounces when
the vision tokens make it easy?

The encoder is left out. An episode is FRAMES frames at FPS, one 2x2 block (one vision token) a
frame, written into the prompt exactly as the tokenizer's would be (a timestamp run per frame,
OV2's chat template, OV2's JumpScore wording); its tokens are made here: a frame with the ball on
the floor holds the FLOOR code, a frame with the ball in the air the AIR code (two fixed random
directions, each frame's own noise, scaled to `token_norm`). Bounces are timed as the bounce world
times them (takeoffs 1-3 Hz, jittered; in the air for 0.7 of the gap). The answer lists the
takeoffs, each the timestamp of the first frame in the air, in OV2's events format. Only the LLM
trains, on fresh episodes every step. Scored on held-out episodes: the answer's teacher-forced
nats with its own tokens and with another episode's (the gap is what the answer reads from the
video), and the JumpScore of greedy answers (training/metrics.py).

Why: after 400 steps on event lists the four-stage models answer from a prior (own and another
clip's pixels cost the same), even with an encoder that places the ball in every token. Timing a
bounce takes two hops: find the frame whose token says "in the air" after one that says "on the
floor", and copy the timestamp written before it. If this LLM learns that here within a few
hundred steps, timing is limited by the tokens the encoder and the canvases give it; if not, by
the LLM or its optimisation.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from ov2_ros.documents import write_json
from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.generate import GenerationConfig, TorchSession, generate
from ov2_ros.model.parsers import EventTimes, format_events
from ov2_ros.model.prompt import IM_END, TextTokenizer, chat_prompt, video_text
from training.metrics import jumpscore, jumpscore_parse
from training.pointing_probe import answer_loss, batch_of, train_llm
from training.tasks import EVENT_WORDINGS

FRAMES, FPS = 40, 10.0  # 4 s: about 4-12 takeoffs
CONTENT_NOISE = 0.3  # each frame's own variation, of the code's norm
QUESTION = EVENT_WORDINGS[0].format(obj="red ball")


def bounce_frames(rng, frames: int = FRAMES, fps: float = FPS) -> tuple[np.ndarray, list[float]]:
    """(in the air per frame (frames,) bool, takeoff times: the first frame in the air of each
    flight, seconds), bounces timed as in ov2_ros.synth.worlds.BounceWorld."""
    duration = frames / fps
    starts, t = [], float(rng.uniform(0.1, 0.6))
    while t < duration - 0.15:
        starts.append(t)
        rate = rng.uniform(1.0, 3.0)
        t += float(np.clip(rng.normal(1.0 / rate, 0.15 / rate), 0.22, 1.5))
    times = np.arange(frames) / fps
    in_air = np.zeros(frames, bool)
    for index, start in enumerate(starts):
        gap = (starts[index + 1] if index + 1 < len(starts) else duration) - start
        in_air |= (times >= start) & (times < start + 0.7 * min(gap, 1.0))
    takeoffs = [round(float(times[f]), 2) for f in range(frames) if in_air[f] and (f == 0 or not in_air[f - 1])]
    return in_air, takeoffs


class Episodes:
    """Episodes of one fixed FLOOR / AIR code draw (`seed`); the bounces from `episodes_seed`
    (default: `seed`), so a held-out set shows the same codes in other episodes."""

    def __init__(self, tokenizer: TextTokenizer, hidden: int, token_norm: float, seed: int,
                 episodes_seed: int | None = None):
        generator = torch.Generator().manual_seed(seed)
        self.floor, self.air = (F.normalize(torch.randn(hidden, generator=generator), dim=0) for _ in range(2))
        self.tokenizer, self.token_norm = tokenizer, token_norm
        self.rng = np.random.default_rng([seed if episodes_seed is None else episodes_seed, 11])
        self.generator = torch.Generator().manual_seed(seed if episodes_seed is None else episodes_seed)
        block = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
        positions = np.concatenate([np.column_stack([np.full(4, f), block]) for f in range(FRAMES)])
        self.prompt = tokenizer.encode(chat_prompt(QUESTION, video_text(positions, FPS)))

    def episode(self) -> tuple[torch.Tensor, list[int], int, int, list[float]]:
        """(vision tokens (FRAMES, hidden), input ids, 0, answer start, takeoff times)."""
        in_air, takeoffs = bounce_frames(self.rng)
        codes = torch.where(torch.from_numpy(in_air)[:, None], self.air, self.floor)  # (FRAMES, hidden)
        noise = F.normalize(torch.randn(codes.shape, generator=self.generator), dim=-1) * CONTENT_NOISE
        tokens = F.normalize(codes + noise, dim=-1) * self.token_norm
        answer = self.tokenizer.encode(format_events(EventTimes(tuple(takeoffs))) + IM_END)
        return tokens, self.prompt + answer, 0, len(self.prompt), takeoffs

    def batch(self, count: int, filler: int) -> tuple:
        episodes = [self.episode() for _ in range(count)]
        return (*batch_of([e[:4] for e in episodes], filler)[:3], [e[4] for e in episodes])


def probe(model_dir: str, steps: int = 400, batch: int = 16, lr: float = 5e-4, eval_episodes: int = 32,
          every: int = 100, seed: int = 0, token_norm: float = 350.0) -> dict:
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_dir), TextTokenizer(f"{model_dir}/tokenizer.json")
    filler = model.config.tokens.end_of_text
    hidden = model.config.llm.hidden_size
    episodes = Episodes(tokenizer, hidden, token_norm, seed)
    held_out = Episodes(tokenizer, hidden, token_norm, seed, episodes_seed=seed + 1)
    input_ids, labels, tokens, truths = held_out.batch(eval_episodes, filler)
    prompt_length = len(held_out.prompt)

    @torch.no_grad()
    def scores() -> dict:
        model.eval()
        own = float(answer_loss(model, input_ids, labels, tokens))
        other = float(answer_loss(model, input_ids, labels, tokens[1:] + tokens[:1]))  # each episode another's frames
        predictions = []
        for row, episode_tokens in enumerate(tokens):
            result = generate(TorchSession(model), tokenizer, input_ids[row, :prompt_length].tolist(), episode_tokens,
                              GenerationConfig(max_new_tokens=96, output_format="events", max_time_s=FRAMES / FPS))
            predictions.append(jumpscore_parse(result.text))
        model.train()
        return {"nats_own_frames": round(own, 4), "nats_other_frames": round(other, 4),
                "jumpscore": round(jumpscore(predictions, truths), 1)}

    curve = train_llm(model, lambda: episodes.batch(batch, filler)[:3], scores, steps, lr, every, "events probe steps")
    return {"model": str(model_dir), "frames": FRAMES, "fps": FPS, "token_norm": token_norm, "batch": batch, "lr": lr,
            "seed": seed, "eval_episodes": eval_episodes, "curve": curve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.events_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder whose LLM is probed")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16, help="episodes a step")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--token-norm", type=float, default=350.0, help="the vision tokens' norm (the default model's: ~346)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON result")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = probe(args.model, args.steps, args.batch, args.lr, args.eval_episodes, args.every, args.seed,
                   args.token_norm)
    write_json(args.out, result)
    print(json.dumps(result["curve"][-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
