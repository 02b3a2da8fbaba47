"""The inference threads of an ov2_node process, shared by every camera the process hosts.

One process can host several ov2 nodes, one per camera namespace (`ov2_node --cameras
front,wrist`). They share this worker: `answer_threads` threads (ov2_node's default: one per
camera, at most one per CPU core) that run the model for all of them, and each model opened
once. What a free thread runs next:
  1. the oldest answer due on a camera that no thread is serving (a question's arrival, or the
     newest group's completion for the standing question; within a camera its questions go
     first), so different cameras' answers run side by side and one camera's run in order;
  2. only when no thread runs anything and no answer is due, one guess of some camera's next
     window (encoded, and its prompt's start prefilled, ahead: Perception.encode_ahead), the
     cameras taking turns; a guess skips its prefill if an answer has become due meanwhile.
So a guess never starts beside an answer; an answer that becomes due during a guess starts at
once on a free thread (with one thread, once the guess has encoded), and the guess then skips its
prefill. With a process per camera each camera's guesses ran beside, and slowed, the other's
answers on the same cores (two cameras on two cores: p50 172-215 ms against 127-130 ms here,
docs/node.md). A node alone in its process has a worker with one thread: one camera behaves as
before.
"""
from __future__ import annotations

import os
import threading
from typing import Protocol

from ov2_ros.runtime.backend import Backend, open_backend


def default_answer_threads(cameras: int) -> int:
    """One answer thread per camera, at most one per CPU core (more would only contend)."""
    return max(1, min(cameras, os.cpu_count() or 1))


class Camera(Protocol):
    """What an ov2 node gives the worker; `due_s`, `next_job` and `next_guess` are called with
    the worker's `work` condition held."""

    def due_s(self) -> float | None:
        """When the answer next_job would return became due (perf_counter s), None if none is."""

    def next_job(self):
        """The due answer to run now (and mark taken), or None."""

    def next_guess(self) -> int | None:
        """Which guess of the next window to encode ahead now (and mark taken), or None."""

    def run_job(self, job) -> None:
        """Answer it and publish (without the condition held)."""

    def run_guess(self, guess: int) -> None:
        """Encode that guess ahead (without the condition held)."""


class InferenceWorker:
    def __init__(self, answer_threads: int = 1):
        """answer_threads: how many answers (of different cameras) may run at once; a guess runs
        only while nothing else does, on any of them."""
        if answer_threads < 1:
            raise ValueError("an inference worker needs at least one thread")
        # Guards every attached camera's questions, group arrivals and guess state, and wakes
        # the threads; the cameras use it as their own work condition.
        self.work = threading.Condition()
        self.answer_threads = answer_threads
        self._cameras: list[Camera] = []
        self._running: set[Camera] = set()  # cameras whose answer or guess a thread is in
        self._turn = 0  # the camera whose guess comes first next time
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._backends: dict[tuple, Backend] = {}
        self._backends_lock = threading.Lock()

    def backend(self, kind: str, path: str | None, dtype: str, threads: int) -> Backend:
        """open_backend, once per (kind, path, dtype, threads) in this process: cameras that
        name the same model share it (its sessions are per answer; the caches are Perception's)."""
        key = (kind, path, dtype, threads)
        with self._backends_lock:
            if key not in self._backends:
                self._backends[key] = open_backend(kind, path, dtype, threads)
            return self._backends[key]

    @property
    def cameras(self) -> int:
        with self.work:
            return len(self._cameras)

    def attach(self, camera: Camera) -> None:
        with self.work:
            self._cameras.append(camera)
            if not self._threads:
                self._stop.clear()
                self._threads = [threading.Thread(target=self._loop, name=f"ov2-infer-{index}", daemon=True)
                                 for index in range(self.answer_threads)]
                for thread in self._threads:
                    thread.start()
            self.work.notify_all()

    def detach(self, camera: Camera, timeout_s: float = 30.0) -> None:
        """Stop serving `camera` once its answer or guess in progress (if any) has finished; the
        threads end with the last camera."""
        with self.work:
            if camera in self._cameras:
                self._cameras.remove(camera)
            self.work.wait_for(lambda: camera not in self._running, timeout_s)
            threads = self._threads if not self._cameras else []
            if threads:
                self._stop.set()
                self._threads = []
                self.work.notify_all()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    def answer_due(self) -> bool:
        """Whether an answer is due on any camera (a guess then skips its prefill)."""
        with self.work:
            return any(camera.due_s() is not None for camera in self._cameras)

    def _pick(self):
        """Under self.work: (camera, job, None) for the oldest due answer of a camera not already
        being served, else, when no thread runs anything, (camera, None, guess) for the next guess
        in turn, else None."""
        due = [(camera.due_s(), index) for index, camera in enumerate(self._cameras) if camera not in self._running]
        due = [(due_s, index) for due_s, index in due if due_s is not None]
        if due:
            camera = self._cameras[min(due)[1]]
            return camera, camera.next_job(), None
        if self._running:
            return None
        count = len(self._cameras)
        for step in range(count):
            camera = self._cameras[(self._turn + step) % count]
            guess = camera.next_guess()
            if guess is not None:
                self._turn = (self._turn + step + 1) % count
                return camera, None, guess
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.work:
                picked = self._pick()
                if picked is None:
                    self.work.wait(0.2)
                    continue
                camera, job, guess = picked
                self._running.add(camera)
            try:
                if job is not None:
                    camera.run_job(job)
                else:
                    camera.run_guess(guess)
            finally:
                with self.work:
                    self._running.discard(camera)
                    self.work.notify_all()
