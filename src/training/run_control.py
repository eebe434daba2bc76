"""Keeping a run safe: one run per checkpoint folder, a writable folder, clean stops on signals."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Optional

from src.exceptions import TrainingError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, runs are not protected from each other
    fcntl = None


class RunLock:
    """An exclusive lock on a checkpoint folder, held while a run trains.

    Uses ``flock``, which the operating system releases when the process dies, so a
    killed run never leaves a stale lock behind.
    """

    _held_here: set = set()  # lock files this process holds: taking one again is a no-op

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self._handle = None

    def __enter__(self) -> "RunLock":
        key = str(self.path.resolve())
        if fcntl is None or key in RunLock._held_here:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise TrainingError(f"another run (process {owner}) is training in {self.path.parent}; wait for it "
                                "to finish or use another --checkpoint-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        RunLock._held_here.add(key)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            RunLock._held_here.discard(str(self.path.resolve()))
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed run left behind (only call while holding the lock)."""
    for leftover in Path(directory).glob(".*.tmp"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)  # a model directory staged there by a killed run
        else:
            leftover.unlink(missing_ok=True)


def ensure_writable(directory: Path) -> None:
    """Fail at the start, not after the first epoch, if checkpoints cannot be written."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as err:
        raise TrainingError(f"cannot write checkpoints to {directory} ({err.strerror or err}); "
                            "choose another --checkpoint-dir") from None


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step.

    A second signal is not intercepted: Ctrl-C twice stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: Optional[int] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signum
        logger.warning("received %s: stopping after the current step (send it again to stop at once)",
                       signal.Signals(signum).name)
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
