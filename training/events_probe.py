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

`--world bounce` asks the same of the model's own vision tokens: real bounce clips (cached
training seeds, 8-12 s; unseen seeds to score), their canvases (`--input`, `--budget`) through
the model's frozen encoder and merger once, their real prompts and OV2's JumpScore wording.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from tqdm import tqdm

from ov2_ros.documents import write_json
from ov2_ros.model.checkpoint import load_model
from ov2_ros.model.generate import GenerationConfig, TorchSession, generate
from ov2_ros.model.parsers import EventTimes, format_events
from ov2_ros.model.prompt import IM_END, TextTokenizer, chat_prompt, video_text
from training.data import INPUT_MODES, ClipCache, clip_range
from training.evaluate import heldout_clips
from training.metrics import jumpscore, jumpscore_parse
from training.pointing_probe import answer_loss, batch_of, real_example, train_llm
from training.tasks import EVENT_WORDINGS, QA

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


REAL_DURATIONS_S = (8.0, 12.0)  # the early stages' bounce clips (most are cached)


class RealEpisodes:
    """Bounce clips of the clip cache as episodes: vision tokens made once by the model's own
    (frozen) encoder and merger from the clip's canvases, the real prompt with OV2's JumpScore
    wording, the true takeoff times as the answer."""

    def __init__(self, model, tokenizer: TextTokenizer, cache: ClipCache, specs, input_mode: str, budget: int,
                 seed: int, desc: str):
        self.rng = np.random.default_rng([seed, 13])
        self.episodes = []  # (vision tokens, input ids, 0, answer start, takeoffs, duration s)
        for spec in tqdm(specs, desc=desc):
            _, truth = cache.clip(spec)
            episode = truth["episode"]
            qa = QA("events", EVENT_WORDINGS[0].format(obj=episode["object"]),
                    format_events(EventTimes(tuple(episode["event_times_s"]))), "events")
            tokens, ids, answer_start = real_example(model, tokenizer, spec, cache.vision(spec, input_mode, budget), qa)
            self.episodes.append((tokens, ids, 0, answer_start, episode["event_times_s"], spec.duration_s))

    def batch(self, count: int, filler: int) -> tuple:
        chosen = [self.episodes[int(i)] for i in self.rng.integers(len(self.episodes), size=count)]
        return batch_of([e[:4] for e in chosen], filler)[:3]

    def all(self, filler: int) -> tuple:
        return (*batch_of([e[:4] for e in self.episodes], filler)[:3], [e[4] for e in self.episodes])

    def centre(self, mean: torch.Tensor) -> None:
        """Every vision token minus `mean` (the training episodes' mean token), as training centres them."""
        self.episodes = [(tokens - mean, *rest) for tokens, *rest in self.episodes]

    def mean_token(self) -> torch.Tensor:
        return torch.cat([e[0] for e in self.episodes]).mean(0)


def probe(model_dir: str, steps: int = 400, batch: int = 16, lr: float = 5e-4, eval_episodes: int = 32,
          every: int = 100, seed: int = 0, token_norm: float = 350.0, world: str | None = None,
          train_clips: int = 300, input_mode: str = "codec", budget: int = 8, centred: bool = False,
          cache_dir: str = "cache/worlds") -> dict:
    """world None: made-up episodes (Episodes); "bounce": real clips (RealEpisodes), their tokens
    `centred` or not."""
    torch.manual_seed(seed)
    model, tokenizer = load_model(model_dir), TextTokenizer(f"{model_dir}/tokenizer.json")
    filler = model.config.tokens.end_of_text
    if world is None:
        hidden = model.config.llm.hidden_size
        episodes = Episodes(tokenizer, hidden, token_norm, seed)
        held_out = Episodes(tokenizer, hidden, token_norm, seed, episodes_seed=seed + 1)
        input_ids, labels, tokens, truths = held_out.batch(eval_episodes, filler)
        prompt_lengths = [len(held_out.prompt)] * eval_episodes
        durations_s = [FRAMES / FPS] * eval_episodes
        setting = {"frames": FRAMES, "fps": FPS, "token_norm": token_norm}
    else:
        cache = ClipCache(cache_dir)
        model.eval()
        episodes = RealEpisodes(model, tokenizer, cache, clip_range(world, 0, train_clips, REAL_DURATIONS_S),
                                input_mode, budget, seed, "training clips")
        held_out = RealEpisodes(model, tokenizer, cache, heldout_clips(world, eval_episodes, REAL_DURATIONS_S, "train"),
                                input_mode, budget, seed, "held-out clips")
        if centred:
            mean = episodes.mean_token()
            episodes.centre(mean)
            held_out.centre(mean)
        input_ids, labels, tokens, truths = held_out.all(filler)
        prompt_lengths = [e[3] for e in held_out.episodes]
        durations_s = [e[5] for e in held_out.episodes]
        setting = {"world": world, "train_clips": train_clips, "input": input_mode, "budget": budget,
                   "centred": centred, "mean_prompt_tokens": round(float(np.mean(prompt_lengths)), 1)}

    @torch.no_grad()
    def scores() -> dict:
        model.eval()
        own = float(answer_loss(model, input_ids, labels, tokens))
        other = float(answer_loss(model, input_ids, labels, tokens[1:] + tokens[:1]))  # each episode another's frames
        predictions = []
        for row, episode_tokens in enumerate(tokens):
            result = generate(TorchSession(model), tokenizer, input_ids[row, :prompt_lengths[row]].tolist(),
                              episode_tokens, GenerationConfig(max_new_tokens=160, output_format="events",
                                                               max_time_s=durations_s[row]))
            predictions.append(jumpscore_parse(result.text))
        model.train()
        return {"nats_own_frames": round(own, 4), "nats_other_frames": round(other, 4),
                "jumpscore": round(jumpscore(predictions, truths), 1)}

    next_batch = (lambda: episodes.batch(batch, filler)[:3]) if world is None else (lambda: episodes.batch(batch, filler))
    curve = train_llm(model, next_batch, scores, steps, lr, every, "events probe steps")
    return {"model": str(model_dir), **setting, "batch": batch, "lr": lr, "seed": seed,
            "eval_episodes": eval_episodes, "curve": curve}


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
    parser.add_argument("--world", choices=("bounce",),
                        help="real clips of this world through the model's own encoder (default: made-up tokens)")
    parser.add_argument("--train-clips", type=int, default=300, help="with --world: training seeds 0..N-1")
    parser.add_argument("--input", choices=INPUT_MODES, default="codec", help="with --world: the clips' canvases")
    parser.add_argument("--budget", type=int, default=8, help="with --world: canvases a clip")
    parser.add_argument("--centred", action="store_true", help="with --world: subtract the mean vision token")
    parser.add_argument("--cache", default="cache/worlds")
    parser.add_argument("--out", default=None, help="JSON result")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = probe(args.model, args.steps, args.batch, args.lr, args.eval_episodes, args.every, args.seed,
                   args.token_norm, args.world, args.train_clips, args.input, args.budget, args.centred, args.cache)
    write_json(args.out, result)
    print(json.dumps(result["curve"][-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
