"""A small bounded load generator: for local runs and staging only, where no user traffic exists.

It sends `requests_per_interval` tiny chat requests for model `<family>` (the route, so the configured
split applies) spread evenly over one interval, at most `concurrency` at a time, across the replicas in
turn; it stops starting requests at the interval's end and waits for those in flight. The client-side
counts (status per serving adapter) are kept for the report as a cross-check of the Prometheus numbers.
"""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, Field

from steps.canary.serving import ReplicaClient
from steps.canary.settings import LoadSettings


class LoadSummary(BaseModel):
    sent: int = 0
    by_model: dict[str, dict[str, int]] = Field(default_factory=dict)  # served model -> status -> count
    failed_without_answer: int = 0  # status 0 or an error answer (no served model known)


def generate_load(replicas: list[ReplicaClient], model: str, duration_s: float, settings: LoadSettings,
                  stop: threading.Event | None = None) -> LoadSummary:
    stop = stop or threading.Event()
    n = settings.requests_per_interval
    spacing = duration_s / n
    start = time.monotonic()
    deadline = start + duration_s
    counts: dict[str, Counter[str]] = {}
    lock = threading.Lock()
    summary = LoadSummary()

    def one(i: int) -> None:
        replica = replicas[i % len(replicas)]
        prompt = settings.prompts[i % len(settings.prompts)]
        status, served, _ = replica.chat(model, prompt, settings.max_tokens)
        with lock:
            if served:
                counts.setdefault(served, Counter())[str(status)] += 1
            else:
                summary.failed_without_answer += 1
                counts.setdefault("?", Counter())[str(status)] += 1

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
    summary.by_model = {model: dict(c) for model, c in sorted(counts.items())}
    return summary
