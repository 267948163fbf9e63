"""Server metrics in the Prometheus text exposition format (version 0.0.4), no dependency.

Everything is updated on the event loop (HTTP middleware and the batcher's callback), so the
counters need no locks.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import Any

from transduce.serve.batching import BatchStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(name: str, labels: Labels, value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    number = repr(float(value)) if value != int(value) else str(int(value))
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


class Counter:
    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}\n# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield _series(self.name, labels, value)


class Gauge:
    """A value read when scraped."""

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help, read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge"
        yield _series(self.name, (), self.read())


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help, buckets
        self.counts: dict[Labels, list[int]] = {}  # per bucket, not cumulative; last is +Inf
        self.sums: dict[Labels, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}\n# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            total = 0
            for bound, count in zip([*self.buckets, float("inf")], counts):
                total += count
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                yield _series(f"{self.name}_bucket", (*labels, ("le", le)), total)
            yield _series(f"{self.name}_sum", labels, self.sums[labels])
            yield _series(f"{self.name}_count", labels, total)


class Metrics:
    """Everything /metrics reports."""

    def __init__(self, queue_depth: Callable[[], float], models_ready: Callable[[], float]):
        self.requests = Counter("transduce_http_requests_total",
                                "HTTP requests by endpoint, method and status code.")
        self.errors = Counter("transduce_http_errors_total",
                              "HTTP responses with status >= 400, by endpoint and status code.")
        self.latency = Histogram("transduce_http_request_duration_seconds",
                                 "Time from request to the end of the response.", LATENCY_BUCKETS)
        self.texts = Counter("transduce_translated_texts_total", "Texts translated, by model.")
        self.batch_requests = Histogram("transduce_batch_requests",
                                        "Requests decoded together in one batch.", SIZE_BUCKETS)
        self.batch_texts = Histogram("transduce_batch_texts",
                                     "Texts decoded together in one batch.", SIZE_BUCKETS)
        self.batch_seconds = Histogram("transduce_batch_decode_seconds",
                                       "Time one batch spends decoding.", LATENCY_BUCKETS)
        self.overloaded = Counter("transduce_queue_rejections_total",
                                  "Requests refused with 503 because the queue was full.")
        self.queue_depth = Gauge("transduce_queue_depth",
                                 "Requests waiting to be decoded.", queue_depth)
        self.models_ready = Gauge("transduce_models_ready",
                                  "1 once every model is loaded, else 0.", models_ready)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_texts.observe(stats.texts)
        self.batch_seconds.observe(stats.seconds)

    def render(self) -> str:
        parts: list[Any] = [self.requests, self.errors, self.latency, self.texts,
                            self.batch_requests, self.batch_texts, self.batch_seconds,
                            self.overloaded, self.queue_depth, self.models_ready]
        return "\n".join(line for p in parts for line in p.render()) + "\n"


class HttpMetricsMiddleware:
    """ASGI middleware: count every request and time it, labelled by a known endpoint path.

    Unknown paths share the label "other" so that scanners cannot blow up the series count.
    """

    def __init__(self, app: Any, metrics: Metrics, endpoints: frozenset[str]):
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tick = time.perf_counter()
        status = 500

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope["path"] if scope["path"] in self.endpoints else "other"
            code = str(status)
            self.metrics.requests.inc(endpoint=path, method=scope["method"], status=code)
            if status >= 400:
                self.metrics.errors.inc(endpoint=path, status=code)
            self.metrics.latency.observe(time.perf_counter() - tick, endpoint=path)
