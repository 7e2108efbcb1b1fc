"""Read the canary's numbers from Prometheus's HTTP API (`GET /api/v1/query`, instant queries at a time).

Which metrics and labels are read is configuration (a `SeriesSet`: one `SeriesSettings` each for
requests, errors, time to first token and end-to-end latency): the gateway's per-adapter series on a
cluster (`MetricsSettings` itself), vLLM's whole-server series for the base model (`metrics.server`).
Per served model and analysis window (t0, t1]:
- requests and errors: the counters' increase, as the difference of two instant values (`sum(...)` at t1
  minus at t0). Unlike `increase()`, that counts a series born inside the window from zero (a fresh
  adapter's first errors are exactly what must not be missed); a counter reset (replica or endpoint
  picker restart) counts from zero again. The requests counter includes the errors (the endpoint
  picker's `inference_objective_request_total` counts every routed request, vLLM's
  `vllm:request_success_total` every finished request whatever its `finished_reason`).
- p95 time to first token and end to end: `histogram_quantile(q, sum by (le) (rate(<h>_bucket{...}[W])))`
  evaluated at t1 with W = t1 - t0 (whole seconds, rounded up). When that has no answer although the
  window has successful answers (rate() needs two scrapes of a series: a fresh adapter's histogram born
  inside the window has fewer), the same quantile is computed from the buckets' differences between t0
  and t1 (`quantile_from_buckets`, Prometheus's interpolation). No answer at all, or no TTFT series
  configured (`ttft: null`) -> None.

Failures: an unreachable Prometheus (after retries) raises `TransientError`; a refused query raises
`PrometheusError`. The analysis treats both as "no data" for the interval (fail closed at the end).
"""

import logging
import math
import os
import time
from typing import Any

import httpx

from steps.canary.analysis import AdapterStats
from steps.canary.settings import MetricsSettings, SeriesSet, SeriesSettings
from steps.common.contract import TransientError
from steps.common.residency import ResidencyPolicy

log = logging.getLogger(__name__)


class PrometheusError(RuntimeError):
    """Prometheus refused a query (bad PromQL, bad parameters)."""


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(settings: MetricsSettings, series: SeriesSettings, model: str) -> str:
    """`{<series.model_label>="x",<settings.selector>,<series.selector>}`."""
    parts = [f'{series.model_label}="{_label_value(model)}"']
    parts += [s.strip() for s in (settings.selector, series.selector) if s.strip()]
    return "{" + ",".join(parts) + "}"


def counter_query(metric: str, sel: str) -> str:
    return f"sum({metric}{sel})"


def quantile_query(settings: MetricsSettings, histogram: str, sel: str, window_s: int) -> str:
    return (f"histogram_quantile({settings.quantile}, sum by (le) "
            f"(rate({histogram}_bucket{sel}[{window_s}s])))")


def window_seconds(t0: float, t1: float) -> int:
    return max(1, math.ceil(t1 - t0))


def buckets_query(histogram: str, sel: str) -> str:
    return f"sum by (le) ({histogram}_bucket{sel})"


def quantile_from_buckets(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's `histogram_quantile` on cumulative bucket counts {upper bound: count} (needs +Inf)."""
    bounds = sorted(buckets)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return None
    counts, running = [], 0.0
    for bound in bounds:  # cumulative counts never decrease (as Prometheus enforces)
        running = max(running, buckets[bound])
        counts.append(running)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    below = 0.0 if b == 0 else counts[b - 1]
    inside = counts[b] - below
    return start + (bounds[b] - start) * ((rank - below) / inside if inside > 0 else 1.0)


def counter_delta(before: float | None, after: float | None) -> float:
    """Increase of a counter between two instant values; absent = 0; a reset counts from zero."""
    b, a = before or 0.0, after or 0.0
    return a - b if a >= b else a


class PrometheusClient:
    def __init__(self, settings: MetricsSettings, residency: ResidencyPolicy,
                 transport: httpx.BaseTransport | None = None) -> None:
        residency.check_url(settings.prometheus_url, "canary.metrics.prometheus_url")
        self.settings = settings
        headers = {"Accept": "application/json"}
        token = os.environ.get(settings.bearer_token_env, "").strip() if settings.bearer_token_env else ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=settings.prometheus_url.rstrip("/"), headers=headers,
                                    timeout=settings.timeout_s, follow_redirects=False, trust_env=False,
                                    transport=transport)

    def close(self) -> None:
        self._client.close()

    def query(self, promql: str, at: float) -> list[tuple[dict[str, str], float]]:
        """An instant vector (or scalar) at unix time `at`: [(labels, value)]; NaN values are kept."""
        attempts = self.settings.max_retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.get("/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return _parse(response, promql)
                last = f"HTTP {response.status_code}"
            if attempt < attempts:
                time.sleep(min(2.0, 0.25 * 2 ** (attempt - 1)))
        raise TransientError(f"Prometheus at {self.settings.prometheus_url} unreachable ({last}) after "
                             f"{attempts} attempts")

    def value(self, promql: str, at: float) -> float | None:
        """The single value of an aggregated query; None when empty or NaN."""
        result = self.query(promql, at)
        if not result:
            return None
        value = result[0][1]
        return None if math.isnan(value) or math.isinf(value) else value

    def window(self, s: SeriesSet, model: str, t0: float, t1: float) -> AdapterStats:
        """`model`'s requests, errors and p95 latencies in (t0, t1], read from the series of `s`."""
        requests = self.increase(s.requests, model, t0, t1)
        errors = self.increase(s.errors, model, t0, t1)
        requests = max(requests, errors)  # errors before routing are not in the requests counter
        answers = requests - errors
        ttft = self.latency(s.ttft, model, t0, t1, answers) if s.ttft is not None else None
        e2e = self.latency(s.e2e, model, t0, t1, answers)
        return AdapterStats(requests=requests, errors=errors, ttft_p95_s=ttft, e2e_p95_s=e2e)

    def increase(self, series: SeriesSettings, model: str, t0: float, t1: float) -> float:
        query = counter_query(series.metric, selector(self.settings, series, model))
        return counter_delta(self.value(query, t0), self.value(query, t1))

    def latency(self, series: SeriesSettings, model: str, t0: float, t1: float, answers: float) -> float | None:
        sel = selector(self.settings, series, model)
        value = self.value(quantile_query(self.settings, series.metric, sel, window_seconds(t0, t1)), t1)
        if value is not None or answers <= 0:
            return value
        before, after = self.buckets(series.metric, sel, t0), self.buckets(series.metric, sel, t1)
        deltas = {le: counter_delta(before.get(le), count) for le, count in after.items()}
        log.debug("canary: %s%s from bucket differences (rate() had no answer)", series.metric, sel)
        return quantile_from_buckets(self.settings.quantile, deltas)

    def buckets(self, histogram: str, sel: str, at: float) -> dict[float, float]:
        return {float(labels.get("le", "nan")): value for labels, value in self.query(buckets_query(histogram, sel), at)
                if "le" in labels}


def _parse(response: httpx.Response, promql: str) -> list[tuple[dict[str, str], float]]:
    try:
        body: Any = response.json()
    except ValueError:
        raise PrometheusError(f"Prometheus answered HTTP {response.status_code} with a body that is not JSON "
                              f"for {promql!r}") from None
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused {promql!r}: {body.get('errorType', '')} "
                              f"{str(body.get('error', ''))[:300]}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [({}, float(result[1]))]
    if kind != "vector":
        raise PrometheusError(f"expected an instant vector for {promql!r}, got {kind}")
    return [(dict(item.get("metric") or {}), float(item["value"][1])) for item in result or []]
