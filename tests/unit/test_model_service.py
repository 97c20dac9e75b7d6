"""The model worker: one thread, priorities, warm-ups pre-empted, failures reported."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lsp.model.backend import ModelError, ModelState
from lsp.model.service import CancelToken, ModelService, Priority
from tests.unit.fake_model import FakeModel


@pytest.fixture
def service():
    s = ModelService()
    yield s
    s.close()


async def test_a_completion_preempts_a_running_warmup(service):
    await service.load(lambda: FakeModel("x"))
    started = threading.Event()
    warm_cancel = CancelToken()

    def warmup(model):
        started.set()
        deadline = time.monotonic() + 10
        while not warm_cancel.cancelled and time.monotonic() < deadline:
            time.sleep(0.005)
        return "warm-up stopped" if warm_cancel.cancelled else "warm-up ran to the end"

    warm = asyncio.ensure_future(service.run(Priority.WARMUP, warmup, warm_cancel))
    await asyncio.to_thread(started.wait, 5)
    t0 = time.monotonic()
    result = await service.run(Priority.COMPLETION, lambda m: "completion", CancelToken())
    assert result == "completion"
    assert await warm == "warm-up stopped"
    assert time.monotonic() - t0 < 5


async def test_queued_jobs_run_by_priority(service):
    await service.load(lambda: FakeModel("x"))
    gate = threading.Event()
    order: list[str] = []

    def blocker(model):
        gate.wait(5)
        return None

    first = asyncio.ensure_future(service.run(Priority.ACTION, blocker, CancelToken()))
    await asyncio.sleep(0.05)
    jobs = [
        asyncio.ensure_future(service.run(p, lambda m, n=name: order.append(n), CancelToken()))
        for name, p in [
            ("warmup", Priority.WARMUP),
            ("action", Priority.ACTION),
            ("completion", Priority.COMPLETION),
        ]
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *jobs)
    assert order == ["completion", "action", "warmup"]


async def test_a_failed_load_is_reported_and_requests_fail_fast(service):
    def broken():
        raise ModelError("model file not found: /nope.gguf")

    with pytest.raises(ModelError):
        await service.load(broken)
    assert service.state is ModelState.FAILED
    assert "not found" in (service.error or "")
    with pytest.raises(ModelError):
        await service.run(Priority.COMPLETION, lambda m: None, CancelToken())


async def test_cancelling_the_waiter_sets_the_jobs_cancel_flag(service):
    await service.load(lambda: FakeModel("x"))
    token = CancelToken()
    started = threading.Event()

    def slow(model):
        started.set()
        while not token.cancelled:
            time.sleep(0.005)
        return "stopped"

    task = asyncio.ensure_future(service.run(Priority.COMPLETION, slow, token))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert token.cancelled
