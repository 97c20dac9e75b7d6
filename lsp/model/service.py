"""The model's lifecycle and its one worker thread.

llama.cpp contexts are not thread-safe and the machine has few cores, so every model call runs on a
single worker thread, in priority order: completions first, then code actions, then warm-ups. A new
completion cancels a running warm-up at once; a running action yields between tokens (see
`Job.should_yield`), so ghost text never waits behind a long generation for more than a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lsp.model.backend import Model, ModelError, ModelState

log = logging.getLogger(__name__)

T = TypeVar("T")


class Priority(enum.IntEnum):
    COMPLETION = 0
    ACTION = 1
    WARMUP = 2


class CancelToken:
    """Checked between tokens by the backend; set from the event loop on `$/cancelRequest`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


@dataclass(order=True)
class _Job(Generic[T]):
    priority: int
    seq: int
    fn: Callable[[Model], T] = field(compare=False)
    cancel: CancelToken = field(compare=False)
    future: asyncio.Future[T] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    queued_at: float = field(compare=False, default_factory=time.perf_counter)
    started_at: float = field(compare=False, default=0.0)


class ModelService:
    """Owns the loaded model. Async callers submit work; one thread executes it."""

    def __init__(self) -> None:
        self.state = ModelState.UNLOADED
        self.error: str | None = None
        self.model: Model | None = None
        self.load_seconds = 0.0
        self._queue: list[_Job[Any]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._running: _Job[Any] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="hushcode-model", daemon=True)
        self._thread.start()

    # -- lifecycle ------------------------------------------------------------------------------

    async def load(self, loader: Callable[[], Model]) -> Model:
        """Load (or reload) the model on the worker thread; failures set FAILED with the reason."""
        self.state = ModelState.LOADING
        self.error = None

        def do_load(_: Model | None) -> Model:
            old, self.model = self.model, None
            if old is not None:
                old.close()
            start = time.perf_counter()
            model = loader()
            self.load_seconds = time.perf_counter() - start
            return model

        try:
            model = await self._submit(
                Priority.COMPLETION, do_load, CancelToken(), needs_model=False
            )
        except ModelError as exc:
            self.state, self.error = ModelState.FAILED, str(exc)
            raise
        except Exception as exc:
            self.state, self.error = ModelState.FAILED, f"the model failed to load: {exc}"
            log.exception("model load failed")
            raise ModelError(self.error) from exc
        self.model, self.state = model, ModelState.READY
        return model

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY and self.model is not None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            for job in self._queue:
                job.cancel.cancel()
            if self._running is not None:
                self._running.cancel.cancel()
            self._cv.notify_all()
        if self.model is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                # Still inside llama.cpp: freeing the model under it would crash the process,
                # which is about to exit anyway.
                log.warning("the model thread did not stop in time; leaving the model to the OS")
                return
            self.model.close()
            self.model = None

    # -- work -----------------------------------------------------------------------------------

    async def run(self, priority: Priority, fn: Callable[[Model], T], cancel: CancelToken) -> T:
        """Run `fn(model)` on the worker thread. Raises ModelError when no model is ready."""
        if not self.ready:
            raise ModelError(self.error or f"the model is {self.state.value}")
        return await self._submit(priority, fn, cancel, needs_model=True)

    def running_priority(self) -> Priority | None:
        """The priority of the job on the worker thread now (None when idle)."""
        with self._cv:
            return Priority(self._running.priority) if self._running is not None else None

    def higher_priority_waiting(self, priority: Priority) -> bool:
        """True when a job more urgent than `priority` is queued (actions yield to completions)."""
        with self._cv:
            return bool(self._queue) and self._queue[0].priority < priority

    async def _submit(
        self, priority: Priority, fn: Callable[[Any], T], cancel: CancelToken, *, needs_model: bool
    ) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # A waiter that was cancelled never reads the job's outcome: mark it read.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        job: _Job[T] = _Job(int(priority), next(self._seq), fn, cancel, future, loop)
        with self._cv:
            if self._closed:
                raise ModelError("the model service is shut down")
            heapq.heappush(self._queue, job)
            running = self._running
            if (
                running is not None
                and running.priority == Priority.WARMUP
                and priority < running.priority
            ):
                running.cancel.cancel()  # a real request always pre-empts a warm-up
            self._cv.notify()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.cancel()
            raise

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                job = heapq.heappop(self._queue)
                self._running = job
            job.started_at = time.perf_counter()
            try:
                if job.cancel.cancelled:
                    raise asyncio.CancelledError()
                result = job.fn(self.model)  # type: ignore[arg-type]  # None only for a load
            except BaseException as exc:  # delivered to the awaiting coroutine
                self._deliver(job, None, exc)
            else:
                self._deliver(job, result, None)
            finally:
                with self._cv:
                    self._running = None

    @staticmethod
    def _deliver(job: _Job[Any], result: Any, exc: BaseException | None) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            job.loop.call_soon_threadsafe(settle)
