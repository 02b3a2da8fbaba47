"""The shared inference thread's order (ros/inference.py): cameras here are plain objects with the
worker's Camera methods, recording what the thread ran, so the order is observable exactly."""
import threading
import time

from ov2_ros.ros.inference import InferenceWorker


class RecordingCamera:
    """Answers due at given times and guesses to encode; run_job / run_guess record the call
    (and may block until released, to hold the thread in one camera's work)."""

    def __init__(self, name: str, worker: InferenceWorker, log: list, guesses: int = 0):
        self.name, self.worker, self.log = name, worker, log
        self.due: list[float] = []  # due times of waiting answers, oldest first
        self.guesses_left = guesses
        self.release = threading.Event()
        self.release.set()

    def due_s(self):
        return self.due[0] if self.due else None

    def next_job(self):
        return (self.name, self.due.pop(0)) if self.due else None

    def next_guess(self):
        if self.guesses_left == 0:
            return None
        self.guesses_left -= 1
        return self.guesses_left

    def run_job(self, job):
        self.log.append(("answer", self.name))
        self.release.wait(10.0)

    def run_guess(self, guess):
        # what Ov2Node does: check, before the long half of a guess, whether an answer is due
        self.log.append(("guess", self.name, self.worker.answer_due()))
        self.release.wait(10.0)


def _wait(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the worker did not get there"
        time.sleep(0.01)


def test_oldest_due_answer_of_any_camera_first_and_guesses_only_when_none_is_due():
    worker, log = InferenceWorker(), []
    front, wrist = RecordingCamera("front", worker, log, guesses=2), RecordingCamera("wrist", worker, log, guesses=2)
    front.release.clear()  # hold the thread in front's first answer while the others queue up
    with worker.work:
        front.due = [1.0]
    worker.attach(front)
    _wait(lambda: log == [("answer", "front")])
    with worker.work:  # wrist's answer is older than front's second one
        front.due.append(3.0)
        wrist.due.append(2.0)
    worker.attach(wrist)
    front.release.set()
    _wait(lambda: len(log) == 7)
    assert log[:3] == [("answer", "front"), ("answer", "wrist"), ("answer", "front")]
    # then the guesses, the cameras taking turns, each seeing no answer due
    assert log[3:] == [("guess", "front", False), ("guess", "wrist", False),
                       ("guess", "front", False), ("guess", "wrist", False)]
    assert worker.cameras == 2
    worker.detach(front)
    worker.detach(wrist)
    assert worker.cameras == 0


def test_a_guess_sees_an_answer_due_on_another_camera_and_detach_waits_for_the_running_work():
    worker, log = InferenceWorker(), []
    front, wrist = RecordingCamera("front", worker, log, guesses=1), RecordingCamera("wrist", worker, log)
    front.release.clear()
    worker.attach(wrist)
    worker.attach(front)
    _wait(lambda: log == [("guess", "front", False)])
    with worker.work:
        wrist.due.append(5.0)
    assert worker.answer_due()  # what front's guess asks before its prefill
    detached = threading.Event()
    threading.Thread(target=lambda: (worker.detach(front), detached.set()), daemon=True).start()
    time.sleep(0.2)
    assert not detached.is_set()  # front's guess is still running
    front.release.set()
    assert detached.wait(10.0)
    _wait(lambda: ("answer", "wrist") in log)
    assert worker.cameras == 1
    threads = [thread for thread in threading.enumerate() if thread.name.startswith("ov2-infer")]
    assert threads
    worker.detach(wrist)
    assert not any(thread.is_alive() for thread in threads)  # the threads end with the last camera


def test_two_answer_threads_run_two_cameras_answers_at_once_and_guesses_only_alone():
    worker, log = InferenceWorker(answer_threads=2), []
    front = RecordingCamera("front", worker, log, guesses=1)
    wrist = RecordingCamera("wrist", worker, log, guesses=1)
    front.release.clear()
    wrist.release.clear()
    with worker.work:
        front.due = [1.0, 2.0]  # front's second answer must wait for its first
        wrist.due = [3.0]
    worker.attach(front)
    worker.attach(wrist)
    _wait(lambda: len(log) == 2)
    assert sorted(log) == [("answer", "front"), ("answer", "wrist")]  # both at once
    front.release.set()
    _wait(lambda: len(log) == 3)
    assert log[2] == ("answer", "front")  # then front's second, still beside wrist's first
    time.sleep(0.2)
    assert len(log) == 3  # no guess while wrist's answer runs, though a thread is free
    wrist.release.set()
    _wait(lambda: len(log) == 5)
    assert sorted(log[3:]) == [("guess", "front", False), ("guess", "wrist", False)]
    worker.detach(front)
    worker.detach(wrist)
