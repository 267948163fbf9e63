"""Dynamic batching: concurrent requests wait briefly in one queue and are decoded together.

One asyncio task collects jobs: it takes the oldest, then keeps taking until the batch holds
`max_batch_tokens` (source tokens x beam size, the rows the decoder really runs) or the oldest
job has waited `max_wait_s`. Jobs that arrived while the previous batch was decoding are taken
at once, so under load batches grow by themselves and an idle server adds no more than the
short wait. Decoding runs on one worker thread, off the event loop; jobs are grouped by their
decoding options and each group is one `decode` call. A full queue refuses new jobs at once
(`QueueFull`) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # decoding options; jobs with equal keys decode together
R = TypeVar("R")  # one result per text


class QueueFull(Exception):
    """The queue already holds `max_queue` jobs; try again later."""


class ShuttingDown(Exception):
    """The batcher stopped before this job was decoded."""


@dataclass
class Job(Generic[K, R]):
    key: K
    texts: list[str]
    cost: int  # source tokens x beam size
    future: asyncio.Future[list[R]]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    requests: int  # jobs in the batch
    texts: int  # texts over all its decode calls
    cost: int  # summed job costs
    seconds: float  # time spent decoding


class Batcher(Generic[K, R]):
    """Queue jobs, decode them in batches on one thread, hand each job its own results.

    `decode(key, texts)` must return one result per text, in order. With `enabled=False`
    every job is decoded alone (the baseline the load benchmark compares against).
    """

    def __init__(self, decode: Callable[[K, list[str]], list[R]], max_batch_tokens: int,
                 max_wait_s: float, max_queue: int, enabled: bool = True,
                 on_batch: Callable[[BatchStats], None] | None = None):
        if max_batch_tokens < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_tokens and max_queue must be >= 1, max_wait_s >= 0")
        self._decode = decode
        self.max_batch_tokens, self.max_wait_s = max_batch_tokens, max_wait_s
        self.max_queue, self.enabled = max_queue, enabled
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Job[K, R]] | None = None
        self._carry: Job[K, R] | None = None  # taken but over budget: first in the next batch
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transduce-decode")
        self._worker = asyncio.create_task(self._run(), name="transduce-batcher")

    def depth(self) -> int:
        """Jobs waiting to be decoded (not counting the batch being decoded now)."""
        if self._queue is None:
            return 0
        return self._queue.qsize() + (self._carry is not None)

    async def submit(self, key: K, texts: list[str], cost: int) -> list[R]:
        """Queue `texts` and wait for their results (in order). Raises QueueFull at once."""
        if self._queue is None or self._worker is None or self._worker.done():
            raise ShuttingDown("the batcher is not running")
        job: Job[K, R] = Job(key, texts, max(1, cost), asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from None
        return await job.future

    async def stop(self) -> None:
        """Stop the worker; jobs still queued fail with ShuttingDown."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        leftover = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        self._carry = None
        _fail(leftover, ShuttingDown("the server is shutting down"))
        if self._executor is not None:  # waits for a batch still decoding, off the loop
            await asyncio.to_thread(self._executor.shutdown, True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [job for job in await self._collect() if not job.future.done()]
            if not jobs:  # every client in this batch went away
                continue
            try:
                tick = time.perf_counter()
                outcome = await loop.run_in_executor(self._executor, self._decode_groups, jobs)
            except BaseException as e:  # cancelled mid-batch: nobody may wait forever
                _fail(jobs, ShuttingDown("the server is shutting down"))
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            for job, result in outcome:
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            if self._on_batch is not None:
                self._on_batch(BatchStats(len(jobs), sum(len(j.texts) for j in jobs),
                                          sum(j.cost for j in jobs), time.perf_counter() - tick))

    async def _collect(self) -> list[Job[K, R]]:
        """The next batch: the oldest job, then more until the budget or the deadline."""
        assert self._queue is not None
        first, self._carry = self._carry or await self._queue.get(), None
        jobs, cost = [first], first.cost
        if not self.enabled:
            return jobs
        deadline = first.enqueued + self.max_wait_s
        while cost < self.max_batch_tokens:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if cost + job.cost > self.max_batch_tokens:
                self._carry = job
                break
            jobs.append(job)
            cost += job.cost
        return jobs

    def _decode_groups(self, jobs: list[Job[K, R]]) -> list[tuple[Job[K, R], list[R] | Exception]]:
        """On the worker thread: one decode call per group of equal keys, split back per job."""
        groups: dict[K, list[Job[K, R]]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        outcome: list[tuple[Job[K, R], list[R] | Exception]] = []
        for key, members in groups.items():
            texts = [t for job in members for t in job.texts]
            try:
                results = self._decode(key, texts)
                if len(results) != len(texts):
                    raise RuntimeError(f"decode returned {len(results)} results "
                                       f"for {len(texts)} texts")
            except Exception as e:
                outcome.extend((job, e) for job in members)
                continue
            start = 0
            for job in members:
                outcome.append((job, results[start:start + len(job.texts)]))
                start += len(job.texts)
        return outcome


def _fail(jobs: list[Job[K, R]], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
