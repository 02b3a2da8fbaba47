"""Folders that several processes may build at once (engine caches, exported default models):
a lock file so one builds while the others wait, and an atomic swap into place so nobody ever
sees half a folder."""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path, timeout_s: float = 3600.0):
    """An exclusive lock on `path` (a file), waiting up to timeout_s for whoever holds it (another
    process building the same engines or export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process holds {path} for over {timeout_s:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_folder(staging: Path, destination: Path) -> None:
    """Move a finished build into place atomically (rename), replacing an older one."""
    old = destination.with_name(destination.name + ".old")
    if destination.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(destination, old)
    os.replace(staging, destination)
    shutil.rmtree(old, ignore_errors=True)
