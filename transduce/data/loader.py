"""Batches assembled ahead of the training step, in a background thread.

Gathering ids from the memory-mapped cache and padding them is NumPy work that releases
the GIL for most of its time, so a thread is enough to keep it off the step's path.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class Prefetcher(Generic[T, R]):
    """Iterates `make(item)` for `items`, in order, computing up to `ahead` results before
    they are asked for. Use as a context manager (or call `close`) so that the thread
    stops when the consumer stops early."""

    def __init__(self, make: Callable[[T], R], items: Sequence[T], ahead: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=max(ahead, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(make, items), daemon=True)
        self._thread.start()

    def _work(self, make: Callable[[T], R], items: Sequence[T]) -> None:
        try:
            for item in items:
                if not self._put(make(item)):
                    return
            self._put(_DONE)
        except BaseException as e:  # raised again in the consumer
            self._put(e)

    def _put(self, value: object) -> bool:
        """Queue `value` unless the consumer has gone; False if it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[R]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
