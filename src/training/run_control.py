"""Keeping a run safe: one run per checkpoint folder, a writable folder, clean stops on signals, and a
time limit."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from src.exceptions import TrainingError
from src.utils.device import available_memory

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


def ensure_writable(directory: Path, what: str = "checkpoints", flag: str = "--checkpoint-dir") -> None:
    """Fail at the start, not after the work, if ``what`` cannot be written to ``directory``."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as err:
        reason = "it is a file, not a folder" if Path(directory).is_file() else err.strerror or err
        raise TrainingError(f"cannot write {what} to {directory} ({reason}); choose another {flag}") from None


def check_room(directory: Path, needed_bytes: int, what: str, flag: str) -> None:
    """Fail at the start if the disk of ``directory`` (or of its nearest existing parent) has less free
    space than ``needed_bytes``."""
    existing = Path(directory).resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise TrainingError(f"{directory} has {free / 1e6:.0f} MB free but {what} needs about "
                            f"{needed_bytes / 1e6:.0f} MB; free some space or choose another {flag}")


def check_memory(needed_bytes: int, what: str, advice: str) -> None:
    """Fail at the start, with ``advice``, if ``what`` needs more memory than the machine has available
    (where it says): allocating it would end in the allocator's traceback or the out-of-memory killer."""
    available = available_memory()
    if available is not None and available < needed_bytes:
        raise TrainingError(f"{what} needs about {needed_bytes / 1e6:,.0f} MB of memory, more than the "
                            f"{available / 1e6:,.0f} MB this machine has available; {advice}")


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


@contextlib.contextmanager
def signals_raise(make_error: Callable[[int], BaseException]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``make_error(signum)`` at once: for work that has no
    step boundary to stop at (fitting the n-gram model, the test evaluation, writing the model)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        error = make_error(signum)
        logger.warning("received %s: %s", signal.Signals(signum).name, error)  # in train.log too
        raise error

    previous = {sig: signal.signal(sig, handle) for sig in StopSignals.SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class TimeBudget:
    """The wall-clock limit of a run (``--max-minutes``): training stops before an epoch that would end
    past it, language-model pretraining when it is reached. The clock starts at ``started`` (a
    ``time.perf_counter()`` value; default now), so work before training, such as pretraining, counts.
    Loading a checkpoint's state restarts the clock from the time the checkpoint had spent (the minutes of
    this process before the load are not counted twice)."""

    def __init__(self, minutes: Optional[float] = None, started: Optional[float] = None):
        self.seconds = None if minutes is None else 60.0 * minutes
        self.started = time.perf_counter() if started is None else started
        self.spent_before = 0.0

    def spent(self) -> float:
        """Seconds of the run so far, earlier runs that this one resumes included."""
        return self.spent_before + time.perf_counter() - self.started

    def run_started(self) -> float:
        """The ``time.perf_counter()`` value at which this run would have started had all of it run in this
        process: what a new budget's ``started`` takes to go on counting this one's time."""
        return self.started - self.spent_before

    def allows(self, more_seconds: float) -> bool:
        """Whether work of ``more_seconds`` would end within the limit (always, without one)."""
        return self.seconds is None or self.spent() + more_seconds <= self.seconds

    def epochs_left(self, epoch_seconds: float) -> Optional[int]:
        """How many more epochs of ``epoch_seconds`` end within the limit (None without one): the
        epochs ``allows`` will let run."""
        if self.seconds is None:
            return None
        return max(0, math.floor((self.seconds - self.spent()) / max(epoch_seconds, 1e-9)))

    def state_dict(self) -> Dict[str, Any]:
        return {"spent": self.spent()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        spent = state["spent"]
        if isinstance(spent, bool) or not isinstance(spent, (int, float)) or not 0 <= spent < float("inf"):
            raise ValueError(f"its time spent must be a non-negative number of seconds, got {spent!r}")
        self.spent_before, self.started = float(spent), time.perf_counter()
