"""Per-adapter numbers from the canary's own requests: how the local canary measures each adapter.

vLLM labels its latency series with the base model's name, LoRA requests included, so on one machine
(no gateway) nothing but the client can tell the champion's latency from the challenger's. The canary
streams every request it sends and records, per model it addressed: the HTTP status, the time to the
first generated token and the time to the end of the answer. `adapter_stats` turns one interval's
records into the same `AdapterStats` a gateway's Prometheus series give on a cluster.
"""

import math

from pydantic import BaseModel, Field

from steps.canary.analysis import AdapterStats


class RequestSample(BaseModel):
    """One timed request. `status` 0: no HTTP answer (connection failure or the request's deadline)."""

    status: int
    served: str = ""  # the model the answer names ("" without an answer)
    ttft_s: float | None = None  # to the first chunk carrying generated text (successful answers only)
    e2e_s: float


class ClientTally(BaseModel):
    """One interval's requests of one model: counts by status, latencies of the successful answers."""

    statuses: dict[str, int] = Field(default_factory=dict)
    ttft_s: list[float] = Field(default_factory=list)
    e2e_s: list[float] = Field(default_factory=list)

    def add(self, sample: RequestSample) -> None:
        key = str(sample.status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if sample.status == 200:
            self.e2e_s.append(sample.e2e_s)
            if sample.ttft_s is not None:
                self.ttft_s.append(sample.ttft_s)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return self.requests - self.statuses.get("200", 0)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of `values`, interpolated linearly between the closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def adapter_stats(tally: ClientTally | None, q: float) -> AdapterStats:
    """Requests, error answers and q-quantile latencies of one model in one interval (zeros if unseen)."""
    if tally is None:
        return AdapterStats(requests=0, errors=0)
    return AdapterStats(requests=tally.requests, errors=tally.errors, ttft_p95_s=quantile(tally.ttft_s, q),
                        e2e_p95_s=quantile(tally.e2e_s, q))
