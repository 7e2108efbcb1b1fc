"""The canary's own traffic: a small bounded load of streamed, timed chat requests.

Locally it is the only traffic and it does the split: request i names `model_for(i)` (steps/canary/
routing.py `ClientSplit`) and goes to the replicas in turn. On a staging cluster it names the family and
goes to the gateway, whose InferenceModelRewrite picks the adapter. `requests_per_interval` requests are
spread evenly over one interval, at most `concurrency` at a time; no request starts after the interval's
end, and those in flight are waited for (each one is bounded by the request timeout).

Every answer is recorded under the model it came from (`ClientTally` per model: statuses, time to first
token, end to end); an answer that names no model (an error) under the model the request named.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, Field

from steps.canary.client_stats import ClientTally
from steps.canary.serving import ReplicaClient
from steps.canary.settings import LoadSettings


class LoadSummary(BaseModel):
    sent: int = 0
    by_model: dict[str, ClientTally] = Field(default_factory=dict)


def generate_load(targets: list[ReplicaClient], model_for: Callable[[int], str], duration_s: float,
                  settings: LoadSettings, stop: threading.Event | None = None) -> LoadSummary:
    stop = stop or threading.Event()
    n = settings.requests_per_interval
    spacing = duration_s / n
    start = time.monotonic()
    deadline = start + duration_s
    lock = threading.Lock()
    summary = LoadSummary()

    def one(i: int) -> None:
        model = model_for(i)
        sample = targets[i % len(targets)].timed_chat(model, settings.prompts[i % len(settings.prompts)],
                                                      settings.max_tokens)
        with lock:
            summary.by_model.setdefault(sample.served or model, ClientTally()).add(sample)

    slots = threading.BoundedSemaphore(settings.concurrency)

    def guarded(i: int) -> None:
        try:
            one(i)
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="canary-load") as pool:
        for i in range(n):
            due = start + i * spacing
            if stop.wait(max(0.0, due - time.monotonic())) or time.monotonic() >= deadline:
                break
            # Wait for a free slot, but never past the interval's end.
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            pool.submit(guarded, i)
            summary.sent += 1
    remaining = deadline - time.monotonic()
    if remaining > 0:
        stop.wait(remaining)
    return summary
