"""Dynamic batching: concurrent requests are gathered into one engine call, run in a worker thread.

The batcher waits up to `window_s` after the first request of a batch arrives (or not at all when
requests already queued up while the previous batch ran) for up to `max_batch` requests, then hands
them to `generate` in its single worker thread: one engine call at a time (the model is not
thread-safe), the event loop stays free to accept and answer requests meanwhile. This is static
batching per engine call, not vLLM's continuous batching: a request that arrives while a batch runs
waits for it, and a batch lasts as long as its longest generation.

Requests with different sampling settings (temperature, seed) go to separate engine calls. If an
engine call raises (the engine promises not to), its requests are retried one by one so that only
the culprit fails (those retries stream no text: the caller sends the rest of the text at the end).

A job may carry `on_text`: it receives the job's text as it is generated, from the worker thread.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipelines.serve.metrics import ServeMetrics
from steps.common.engines.base import GenerationRequest, GenerationResult

log = logging.getLogger("eurolora.serve")


@dataclass(frozen=True)
class Sampling:
    temperature: float
    seed: int


# (request index, new text): called from the generating thread, in order, while a batch runs.
OnText = Callable[[int, str], None]
Generate = Callable[[list[GenerationRequest], Sampling, OnText | None], list[GenerationResult]]


class ServerBusy(Exception):
    """The waiting queue is full."""


class BatcherClosed(Exception):
    """The server is shutting down."""


@dataclass
class Job:
    request: GenerationRequest
    sampling: Sampling
    model: str  # the served model name (metrics label)
    lora: str | None  # the served adapter name, None for the base model
    future: asyncio.Future[GenerationResult]
    on_text: Callable[[str], None] | None = None  # called from the worker thread with each new piece of text
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    finished: float = 0.0
    batch_size: int = 0


class Batcher:
    def __init__(self, generate: Generate, *, max_batch: int, window_s: float, max_waiting: int,
                 metrics: ServeMetrics) -> None:
        self._generate = generate
        self._max_batch = max_batch
        self._window_s = window_s
        self._max_waiting = max_waiting
        self._metrics = metrics
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-engine")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="serve-batcher")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in [*self._waiting, *self._running]:
            if not job.future.done():
                job.future.set_exception(BatcherClosed())
        self._executor.shutdown(wait=False, cancel_futures=True)

    def enqueue(self, request: GenerationRequest, sampling: Sampling, model: str, lora: str | None,
                on_text: Callable[[str], None] | None = None) -> Job:
        """Queue one request; its result arrives in `job.future`. ServerBusy when the queue is full."""
        if self._closed:
            raise BatcherClosed()
        if len(self._waiting) >= self._max_waiting:
            raise ServerBusy()
        job = Job(request, sampling, model, lora, asyncio.get_running_loop().create_future(), on_text)
        self._waiting.append(job)
        self._metrics.waiting.labels(model).inc()
        self._lora_state()
        self._queue.put_nowait(job)
        return job

    async def submit(self, request: GenerationRequest, sampling: Sampling, model: str, lora: str | None) -> Job:
        """Queue one request and wait for its result (in `job.future`, already done on return)."""
        job = self.enqueue(request, sampling, model, lora)
        await asyncio.shield(job.future)  # a cancelled client does not cancel the batch it is part of
        return job

    # -- the loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            # The window counts from the first request's arrival: a backlog is taken at once.
            deadline = first.enqueued + self._window_s
            while len(batch) < self._max_batch:
                left = deadline - time.perf_counter()
                try:
                    job = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                batch.append(job)
            groups: dict[Sampling, list[Job]] = {}
            for job in batch:
                groups.setdefault(job.sampling, []).append(job)
            for sampling, jobs in groups.items():
                try:
                    await self._run(loop, sampling, jobs)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug here must not stop the loop for everyone
                    log.error("serve: batch bookkeeping failed: %s", type(exc).__name__)
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)

    async def _run(self, loop: asyncio.AbstractEventLoop, sampling: Sampling, jobs: list[Job]) -> None:
        started = time.perf_counter()
        for job in jobs:
            self._waiting.remove(job)
            self._running.append(job)
            job.started, job.batch_size = started, len(jobs)
            self._metrics.waiting.labels(job.model).dec()
            self._metrics.running.labels(job.model).inc()
        self._lora_state()
        self._metrics.batch_size.observe(len(jobs))
        self.batches += 1
        requests = [job.request for job in jobs]
        listeners = [job.on_text for job in jobs]
        on_text = None if not any(listeners) else _fan_out(listeners)
        outcome: list[GenerationResult] | BaseException
        try:
            outcome = await loop.run_in_executor(self._executor, self._call_isolated, requests, sampling, on_text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the executor itself failed: fail these jobs only
            outcome = exc
        finished = time.perf_counter()
        for index, job in enumerate(jobs):
            self._running.remove(job)
            job.finished = finished
            self._metrics.running.labels(job.model).dec()
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome[index])
        self._lora_state()
        log.info("serve: batch of %d (%d adapters) ran in %.3fs, %d completion tokens", len(jobs),
                 len({job.lora for job in jobs if job.lora}), finished - started,
                 sum(r.completion_tokens for r in outcome) if isinstance(outcome, list) else 0)

    def _call_isolated(self, requests: list[GenerationRequest], sampling: Sampling,
                       on_text: OnText | None = None) -> list[GenerationResult]:
        """In the worker thread. Never raises: a failing call is retried request by request."""
        try:
            results = self._generate(requests, sampling, on_text)
            if len(results) != len(requests):
                raise RuntimeError(f"the engine returned {len(results)} results for {len(requests)} requests")
            return results
        except Exception as exc:  # noqa: BLE001
            if len(requests) == 1:
                log.error("serve: engine call failed: %s", type(exc).__name__)
                return [GenerationResult(text="", finish_reason="error", error=f"engine failure: {type(exc).__name__}")]
            log.warning("serve: engine call of %d failed (%s); retrying one by one", len(requests),
                        type(exc).__name__)
            return [self._call_isolated([request], sampling)[0] for request in requests]

    def _lora_state(self) -> None:
        self._metrics.lora_state(running=[j.lora for j in self._running if j.lora],
                                 waiting=[j.lora for j in self._waiting if j.lora])


def _fan_out(listeners: list[Callable[[str], None] | None]) -> OnText:
    def on_text(index: int, piece: str) -> None:
        listener = listeners[index]
        if listener is not None:
            listener(piece)
    return on_text
