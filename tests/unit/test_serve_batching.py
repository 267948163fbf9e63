"""The dynamic batcher on its own, with a fake decode function: no model, no HTTP."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from transduce.serve.batching import Batcher, QueueFull, ShuttingDown


class FakeDecoder:
    """Upper-cases texts, tagging each with its key; records every call (key, texts)."""

    def __init__(self, seconds: float = 0.0):
        self.calls: list[tuple[str, list[str]]] = []
        self.seconds = seconds
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, key: str, texts: list[str]) -> list[str]:
        self.entered.set()
        assert self.gate.wait(10), "test forgot to open the gate"
        if key == "boom":
            raise RuntimeError("decoder failed")
        time.sleep(self.seconds)
        self.calls.append((key, list(texts)))
        return [f"{key}:{t.upper()}" for t in texts]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _with_batcher(decoder: FakeDecoder, body, **kw):
    options = {"max_batch_tokens": 1000, "max_wait_s": 0.02, "max_queue": 100} | kw
    batcher: Batcher[str, str] = Batcher(decoder, **options)
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        decoder.gate.set()
        await batcher.stop()


def test_each_job_gets_its_own_results_in_order_and_jobs_share_calls():
    decoder = FakeDecoder(seconds=0.01)

    async def body(b: Batcher[str, str]) -> list[list[str]]:
        jobs = [b.submit("k", [f"a{i}", f"b{i}", f"c{i}"], cost=3) for i in range(20)]
        return await asyncio.gather(*jobs)

    results = run(_with_batcher(decoder, body))
    assert results == [[f"k:A{i}", f"k:B{i}", f"k:C{i}"] for i in range(20)]
    assert len(decoder.calls) < 20  # batched: fewer decode calls than requests
    assert sum(len(texts) for _, texts in decoder.calls) == 60


def test_jobs_with_different_keys_are_decoded_in_separate_calls():
    decoder = FakeDecoder()

    async def body(b: Batcher[str, str]) -> list[list[str]]:
        return await asyncio.gather(b.submit("x", ["one"], 1), b.submit("y", ["two"], 1),
                                    b.submit("x", ["three"], 1))

    assert run(_with_batcher(decoder, body)) == [["x:ONE"], ["y:TWO"], ["x:THREE"]]
    for key, texts in decoder.calls:
        assert set(texts) <= {"x": {"one", "three"}, "y": {"two"}}[key]


def test_without_batching_every_job_is_decoded_alone():
    decoder = FakeDecoder()

    async def body(b: Batcher[str, str]) -> list[list[str]]:
        return await asyncio.gather(*(b.submit("k", [str(i)], 1) for i in range(8)))

    assert run(_with_batcher(decoder, body, enabled=False)) == [[f"k:{i}"] for i in range(8)]
    assert [texts for _, texts in decoder.calls] == [[str(i)] for i in range(8)]


def test_token_budget_caps_a_batch_but_a_big_job_still_runs_alone():
    decoder = FakeDecoder()
    decoder.gate.clear()  # hold the first batch so the rest queue up behind it

    async def body(b: Batcher[str, str]) -> list[list[str]]:
        first = asyncio.ensure_future(b.submit("k", ["first"], 10))
        await asyncio.to_thread(decoder.entered.wait, 5)
        rest = [asyncio.ensure_future(b.submit("k", [f"t{i}"], 10)) for i in range(9)]
        big = asyncio.ensure_future(b.submit("k", ["big"], 500))
        await asyncio.sleep(0.05)
        decoder.gate.set()
        return await asyncio.gather(first, *rest, big)

    results = run(_with_batcher(decoder, body, max_batch_tokens=30))
    assert results[-1] == ["k:BIG"]
    sizes = [len(texts) for _, texts in decoder.calls]
    assert ["big"] in [texts for _, texts in decoder.calls]
    assert max(sizes) <= 3  # 3 jobs x cost 10 fill the budget of 30


def test_a_full_queue_refuses_at_once():
    decoder = FakeDecoder()
    decoder.gate.clear()

    async def body(b: Batcher[str, str]) -> None:
        running = asyncio.ensure_future(b.submit("k", ["running"], 1))
        await asyncio.to_thread(decoder.entered.wait, 5)
        queued = [asyncio.ensure_future(b.submit("k", [f"q{i}"], 1)) for i in range(2)]
        await asyncio.sleep(0)
        assert b.depth() == 2
        with pytest.raises(QueueFull):
            await b.submit("k", ["refused"], 1)
        decoder.gate.set()
        assert await running == ["k:RUNNING"]
        assert await asyncio.gather(*queued) == [["k:Q0"], ["k:Q1"]]

    run(_with_batcher(decoder, body, max_queue=2))


def test_a_failing_group_fails_only_its_own_jobs():
    decoder = FakeDecoder()

    async def body(b: Batcher[str, str]) -> list[object]:
        return await asyncio.gather(b.submit("boom", ["x"], 1), b.submit("ok", ["y"], 1),
                                    return_exceptions=True)

    bad, good = run(_with_batcher(decoder, body))
    assert isinstance(bad, RuntimeError) and good == ["ok:Y"]


def test_a_lone_request_waits_no_longer_than_max_wait():
    decoder = FakeDecoder()

    async def body(b: Batcher[str, str]) -> float:
        tick = time.monotonic()
        await b.submit("k", ["alone"], 1)
        return time.monotonic() - tick

    assert run(_with_batcher(decoder, body, max_wait_s=0.05)) < 1.0


def test_stop_fails_queued_jobs_instead_of_leaving_them_hanging():
    decoder = FakeDecoder()
    decoder.gate.clear()

    async def body() -> list[object]:
        b: Batcher[str, str] = Batcher(decoder, 1000, 0.0, 10, enabled=False)
        await b.start()
        running = asyncio.ensure_future(b.submit("k", ["running"], 1))
        await asyncio.to_thread(decoder.entered.wait, 5)
        queued = asyncio.ensure_future(b.submit("k", ["queued"], 1))
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0.05)
        decoder.gate.set()
        await stopping
        return await asyncio.gather(running, queued, return_exceptions=True)

    for outcome in run(body()):
        assert isinstance(outcome, ShuttingDown)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Batcher(FakeDecoder(), max_batch_tokens=0, max_wait_s=0.0, max_queue=1)
