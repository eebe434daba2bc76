"""Micro-batching for the HTTP service: texts of concurrent requests classified in one model call.

A model classifies a batch of reviews much faster per review than one review at a
time, and an HTTP service mostly receives one review per request. ``MicroBatcher``
collects the requests that arrive within a few milliseconds, runs them as one call
in a single worker thread, and hands each request its own results. The one worker
thread also means the model never runs twice at once, whatever else (``call``) is
run on it, while the event loop stays free to read and answer other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Iterator, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 60  # the longest wait a refused request is asked for


def model_executor() -> ThreadPoolExecutor:
    """The one thread a model runs in. Load the model in it too: PyTorch's OpenMP threads belong to the
    thread that starts them, and a second set started by another thread competes with the first for the
    cores (docs/serving.md has the measurement)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")


class BatchFailed(RuntimeError):
    """The model call of a batch raised; the cause is logged once, for the whole batch."""


class Overloaded(RuntimeError):
    """More texts wait for the model than the batcher takes: refused at once, so that a flood of requests
    makes clients retry instead of making every request wait longer and longer (and the memory grow).
    ``retry_after_s``: about when the work queued now will be done (whole seconds, at least 1)."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class _Job:
    texts: List[str]
    future: "asyncio.Future[List[Any]]"
    arrived: float  # the event loop's clock


class MicroBatcher:
    """``await submit(texts)`` -> ``run(texts)``'s results for those texts, in order, computed in one call
    of ``run`` together with the texts of the other requests waiting at that moment.

    A batch starts once the model is free and ``max_batch`` texts wait, or ``wait_s`` after its oldest
    request arrived. Under load the requests that arrive while the model is busy form the next batch,
    so the model runs without pause while the event loop answers the last batch's clients and reads
    new requests (measured faster than holding batches for the clients just answered: bench/serve.py,
    bench/README.md). A batch holds at most ``max_batch`` texts (a single request with more runs
    alone). At most ``max_queued`` texts wait or run at a time, counting those of ``call``s given a
    ``cost``; a request beyond that raises ``Overloaded``. ``start`` and ``stop`` are called inside the
    running event loop.
    """

    def __init__(self, run: Callable[[List[str]], Sequence[Any]], wait_s: float, max_batch: int,
                 model_thread: Optional[ThreadPoolExecutor] = None, max_queued: Optional[int] = None):
        if wait_s < 0 or max_batch < 1 or (max_queued is not None and max_queued < 1):
            raise ValueError(f"the batch wait must be >= 0, max_batch and max_queued >= 1, got {wait_s}, "
                             f"{max_batch} and {max_queued}")
        self.run, self.wait_s, self.max_batch, self.max_queued = run, wait_s, max_batch, max_queued
        self.batches = 0  # model calls made, and texts classified by them (for /health and tests)
        self.texts = 0
        self.queued = 0  # texts of the requests not yet answered
        self.texts_per_second: Optional[float] = None  # the model's recent rate (a moving average over batches)
        self._executor = model_thread or model_executor()
        self._calls_running = 0  # in the model's thread; a call goes on there after its request was cancelled
        self._pending: Deque[_Job] = deque()
        self._pending_texts = 0
        self._arrived: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Stop taking batches; requests still waiting fail, and the worker thread ends after its call."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        _fail(list(self._pending), BatchFailed("the server is shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False)

    async def submit(self, texts: Sequence[str]) -> List[Any]:
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        with self._admitted(len(texts)):
            loop = asyncio.get_running_loop()
            job = _Job(list(texts), loop.create_future(), loop.time())
            self._pending.append(job)
            self._pending_texts += len(job.texts)
            self._arrived.set()
            return await job.future

    async def call(self, function: Callable[..., Any], *args: Any, cost: int = 0) -> Any:
        """``function(*args)`` in the model's worker thread, between batches; ``cost`` texts count as queued
        until it returns."""
        with self._admitted(cost):
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._counted, function, *args)

    def _counted(self, function: Callable[..., Any], *args: Any) -> Any:
        self._calls_running += 1
        try:
            return function(*args)
        finally:
            self._calls_running -= 1

    @property
    def model_busy(self) -> bool:
        """Whether the model's thread is running a call now (after ``stop``: one that was under way)."""
        return self._calls_running > 0

    @contextlib.contextmanager
    def _admitted(self, count: int) -> Iterator[None]:
        """``count`` more texts queued while the block runs; Overloaded when they would pass ``max_queued``."""
        if count and self.max_queued is not None and self.queued + count > self.max_queued:
            raise Overloaded(f"{self.queued} texts' worth of work already waits for the model (this server queues at "
                             f"most {self.max_queued})", self.seconds_to_clear())
        self.queued += count
        try:
            yield
        finally:
            self.queued -= count

    def seconds_to_clear(self) -> int:
        """Whole seconds the model needs for the texts queued now at its recent rate: 1 before the first
        batch, at most ``MAX_RETRY_AFTER_S``."""
        if not self.texts_per_second:
            return 1
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(self.queued / self.texts_per_second)))

    async def _dispatch(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            await self._gather()
            jobs = self._take()
            if not self._pending:
                self._arrived.clear()
            if jobs:
                await self._execute(jobs)

    async def _gather(self) -> None:
        """Wait until ``max_batch`` texts are pending or the batch's time has come (see the class)."""
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while self._pending and self._pending_texts < self.max_batch:
            remaining = self._pending[0].arrived + self.wait_s - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> List[_Job]:
        """The oldest pending requests that fit in one batch (at least one); cancelled ones (their ``submit``
        was cancelled, e.g. by ``asyncio.wait_for``) are dropped."""
        jobs: List[_Job] = []
        count = 0
        while self._pending and (not jobs or count + len(self._pending[0].texts) <= self.max_batch):
            job = self._pending.popleft()
            self._pending_texts -= len(job.texts)
            if not job.future.done():
                jobs.append(job)
                count += len(job.texts)
        return jobs

    def _timed_run(self, texts: List[str]) -> Tuple[Sequence[Any], float]:
        """``run(texts)`` and the seconds it took, timed in the model's thread (not counting the wait for it)."""
        started = time.perf_counter()
        results = self.run(texts)
        return results, time.perf_counter() - started

    async def _execute(self, jobs: List[_Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            results, seconds = await self.call(self._timed_run, texts)
            if len(results) != len(texts):
                raise BatchFailed(f"the model returned {len(results)} results for {len(texts)} texts")
        except asyncio.CancelledError:  # stop() during the call
            _fail(jobs, BatchFailed("the server is shutting down"))
            raise
        except Exception as err:  # the model's failure is each waiting request's, not the dispatcher's
            logger.exception("classifying a batch of %d texts failed", len(texts))
            _fail(jobs, BatchFailed(f"{type(err).__name__}: {err}"))
            return
        self.batches += 1
        self.texts += len(texts)
        rate = len(texts) / max(seconds, 1e-6)
        self.texts_per_second = rate if self.texts_per_second is None else (self.texts_per_second + rate) / 2
        offset = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(list(results[offset: offset + len(job.texts)]))
            offset += len(job.texts)


def _fail(jobs: List[_Job], error: BatchFailed) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
