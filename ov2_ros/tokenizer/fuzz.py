"""`ov2 fuzz`: mutated access units through ingest, decoding and the streaming tokenizer, seeded
and bounded in time, checking what must hold whatever arrives.

The base stream is a synthetic 320x240 H.264 scene (I and P pictures, and a B-frame variant).
Each access unit is, with seeded probabilities, passed through unchanged or mutated: bits flipped,
bytes inserted, deleted or zeroed, truncated, a NAL unit duplicated or removed, start codes
broken, replaced by garbage or by a unit of the other stream, dropped, reordered with the next,
sent with a stamp that jumps or goes back. Invariants checked on every push:
  - nothing escapes StreamIngest.push or StreamingTokenizer.push (any exception is a failure,
    reported with the seed and index that reproduce it);
  - every message lands in exactly one ingest counter;
  - every decoded frame has the size its stream declared, and every tokenized group's
    positions are inside its canvas grid and its frames (t within the frames pushed).
"""
from __future__ import annotations

import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ov2_ros.codec.bitstream import iter_nal_spans
from ov2_ros.codec.container import H264File
from ov2_ros.codec.encoder import H264EncoderConfig
from ov2_ros.codec.ingest import StreamIngest
from ov2_ros.documents import write_json
from ov2_ros.synth.scene import SceneConfig
from ov2_ros.synth.stream import write_synthetic_stream
from ov2_ros.tokenizer.pipeline import StreamingTokenizer, TokenizerConfig

MUTATIONS = ("flip_bits", "insert_bytes", "delete_bytes", "zero_run", "truncate", "duplicate_nal", "drop_nal",
             "break_start_code", "garbage", "other_stream", "drop", "swap_next", "stamp_jump", "stamp_back")


def _base_streams(work: Path) -> list[list[bytes]]:
    streams = []
    for name, b_frames in (("p", 0), ("b", 2)):
        stream = write_synthetic_stream(SceneConfig(width=320, height=240, duration_s=4.0, seed=7),
                                        H264EncoderConfig(width=320, height=240, gop_frames=15, b_frames=b_frames),
                                        work, f"fuzz_{name}", progress=False)
        streams.append([au.data for au in H264File(stream.h264_path)])
    return streams


def _mutate(data: bytes, kind: str, rng: np.random.Generator, other: list[bytes]) -> bytes:
    buffer = bytearray(data)
    if kind == "flip_bits":
        for _ in range(int(rng.integers(1, 9))):
            position = int(rng.integers(len(buffer)))
            buffer[position] ^= 1 << int(rng.integers(8))
    elif kind == "insert_bytes":
        position = int(rng.integers(len(buffer) + 1))
        buffer[position:position] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == "delete_bytes":
        position = int(rng.integers(len(buffer)))
        del buffer[position:position + int(rng.integers(1, 64))]
    elif kind == "zero_run":
        position = int(rng.integers(len(buffer)))
        length = int(rng.integers(1, 256))
        buffer[position:position + length] = bytes(len(buffer[position:position + length]))
    elif kind == "truncate":
        del buffer[int(rng.integers(len(buffer))):]
    elif kind in ("duplicate_nal", "drop_nal"):
        units = [bytes(buffer[s.payload_begin:s.payload_end]) for s in iter_nal_spans(bytes(buffer))]
        if units:
            index = int(rng.integers(len(units)))
            if kind == "duplicate_nal":
                units.insert(index, units[index])
            else:
                del units[index]
        buffer = bytearray(b"".join(b"\x00\x00\x00\x01" + unit for unit in units))
    elif kind == "break_start_code":
        position = bytes(buffer).find(b"\x00\x00\x01", int(rng.integers(len(buffer))))
        if position >= 0:
            buffer[position + 2] = int(rng.integers(2, 256))
    elif kind == "garbage":
        buffer = bytearray(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes())
    elif kind == "other_stream":
        buffer = bytearray(other[int(rng.integers(len(other)))])
    return bytes(buffer)


def run_fuzz(count: int = 100_000, seed: int = 0, max_seconds: float = 600.0, mutation_rate: float = 0.3,
             out_path: str | Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ov2_fuzz_") as scratch:  # the base streams, read into memory
        streams = _base_streams(Path(scratch))
    rng = np.random.default_rng(seed)
    outcomes, mutations, failures = Counter(), Counter(), []
    frames_out = groups_out = 0
    started = time.monotonic()
    pushed = 0
    bar = tqdm(total=count, desc="fuzz", unit="AU", mininterval=1.0)
    session = 0
    while pushed < count and time.monotonic() - started < max_seconds:
        # A session: one ingest + tokenizer fed a few passes over a base stream, mutated.
        which = int(rng.integers(len(streams)))
        units, other = streams[which], streams[1 - which]
        ingest = StreamIngest(max_stamp_gap_ns=500_000_000, export_motion_vectors=True)
        tokenizer = StreamingTokenizer(TokenizerConfig(max_pixels=60_000))
        stamp_ns, displayed = 1_000_000_000, 0
        queue = [units[i % len(units)] for i in range(int(rng.integers(60, 3 * len(units))))]
        index = 0
        while index < len(queue) and pushed < count:
            data = queue[index]
            kind = str(rng.choice(MUTATIONS)) if rng.random() < mutation_rate else "none"
            mutations[kind] += 1
            index += 1
            if kind == "drop":
                continue
            if kind == "swap_next" and index < len(queue):
                data, queue[index] = queue[index], data
            if kind in MUTATIONS[:10]:
                data = _mutate(data, kind, rng, other)
            stamp_ns += {"stamp_jump": 5_000_000_000, "stamp_back": -2_000_000_000}.get(kind, 33_333_333)
            stamp_ns = max(stamp_ns, 1)
            pushed += 1
            bar.update(1)
            try:
                result = ingest.push(data, stamp_ns)
                outcomes[result.outcome] += 1
                for frame in result.frames:
                    if (frame.width, frame.height) != (320, 240):
                        failures.append({"seed": seed, "session": session, "index": index,
                                         "problem": f"frame of {frame.width}x{frame.height}"})
                    displayed = max(displayed, frame.display_index + 1)
                    for group in tokenizer.push(frame):
                        groups_out += 1
                        _check_group(group, displayed, failures, seed, session, index)
                frames_out += len(result.frames)
            except Exception:  # an escape is exactly what the fuzzer looks for
                failures.append({"seed": seed, "session": session, "index": index, "mutation": kind,
                                 "problem": traceback.format_exc(limit=3)})
        counters = ingest.counters
        if counters.accounted() != counters.frames_received:
            failures.append({"seed": seed, "session": session, "problem":
                             f"{counters.frames_received} received but {counters.accounted()} accounted"})
        session += 1
    bar.close()
    document = {"benchmark": "fuzz", "seed": seed, "access_units": pushed, "sessions": session,
                "seconds": round(time.monotonic() - started, 1), "mutation_rate": mutation_rate,
                "mutations": dict(mutations), "outcomes": dict(outcomes), "frames_decoded": frames_out,
                "groups": groups_out, "failures": failures[:50], "failure_count": len(failures)}
    write_json(out_path, document)
    return document


def _check_group(group, displayed: int, failures: list, seed: int, session: int, index: int) -> None:
    positions = group.positions_thw
    real = positions[positions[:, 0] >= 0]
    rows, cols = group.canvases.shape[1] // 14, group.canvases.shape[2] // 14
    padding_ok = bool(np.all(positions[positions[:, 0] < 0] == -1))
    inside = (len(real) == 0 or (real[:, 0].max() < displayed and real[:, 1].max() < rows and real[:, 2].max() < cols
                                 and real.min() >= 0))
    if not (inside and padding_ok and group.first_t <= group.last_t < displayed):
        failures.append({"seed": seed, "session": session, "index": index,
                         "problem": f"group {group.index}: positions outside its grid or frames"})
