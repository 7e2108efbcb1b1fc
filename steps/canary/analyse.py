"""The canary's analysis intervals: traffic, the numbers of the window, the checks, a breach's rollback.

Each interval: the traffic runs for `analysis_interval_s`, then (after `scrape_settle_s`, so Prometheus
has the window's last requests) the window is read and judged (steps/canary/analysis.py):
- per adapter, from series that exist: locally the canary's own timed requests (client_stats.py: vLLM
  labels latency with the base model, so only the client can tell the adapters apart); on a cluster the
  gateway endpoint picker's per-adapter series in Prometheus;
- the whole server: vLLM's own series for `base_model_name` in Prometheus (`metrics.server`);
- quality: the shadow batches judged so far.
Any breach decides `rolled_back` and moves all traffic back to the champion at once, without waiting
for a shadow batch still being judged.
"""

import threading
import time
from pathlib import Path

from steps.canary import analysis
from steps.canary.analysis import AdapterStats
from steps.canary.client_stats import adapter_stats
from steps.canary.finalize import route_to_champion
from steps.canary.load import LoadSummary, generate_load
from steps.canary.prometheus import PrometheusClient, PrometheusError
from steps.canary.routing import ClientSplit
from steps.canary.session import Canary
from steps.canary.shadow import ShadowRunner, sample_items
from steps.canary.state import IntervalRecord
from steps.common.contract import TransientError
from steps.common.engines.base import OpenAISettings

Window = tuple[AdapterStats | None, AdapterStats | None]


def analyse(canary: Canary) -> None:
    """Run the remaining intervals; on a breach decide `rolled_back` and route everything to the champion."""
    st, s = canary.state, canary.s
    assert st.champion is not None
    prom = PrometheusClient(s.metrics, canary.context.residency)
    shadow = shadow_runner(canary)
    try:
        t0 = time.time()
        for index in range(len(st.intervals) + 1, s.intervals + 1):
            canary.refresh_replicas()
            reload_missing(canary)
            if shadow is not None and index - 1 not in st.shadow_batches_done:
                shadow.submit(index - 1)
            load = traffic(canary, s.analysis_interval_s)
            time.sleep(s.metrics.scrape_settle_s)
            t1 = time.time()
            challenger, champion = read_window(canary, prom, load, t0, t1)
            server = read_server(canary, prom, t0, t1)
            if shadow is not None:
                collect_shadow(canary, shadow, None)
            judgement = analysis.judge_interval(challenger, champion, st.quality, s.slo, s.shadow,
                                                ttft_measured=s.routing == "local" or s.metrics.ttft is not None,
                                                server=server)
            st.intervals.append(IntervalRecord(
                index=index, started_at=t0, ended_at=t1, challenger=challenger, champion=champion, server=server,
                checks=judgement.checks, judged=judgement.judged, breaches=judgement.breaches, load=load,
                shadow_items=st.quality.items))
            verdict = "breach" if judgement.breached else ("ok" if judgement.judged else "not judged")
            canary.event(f"interval_{index}", f"{verdict}: " + "; ".join(c.detail for c in judgement.checks))
            if judgement.breached:
                canary.decide("rolled_back", f"SLO breach in interval {index}: " + "; ".join(judgement.breaches))
                route_to_champion(canary)
                return
            canary.save()
            t0 = t1
        if shadow is not None:
            collect_shadow(canary, shadow, s.shadow.timeout_s)
    finally:
        prom.close()
        if shadow is not None:
            shadow.stop()


def reload_missing(canary: Canary) -> None:
    """A restarted replica must serve the challenger again."""
    st = canary.state
    for replica in canary.replicas:
        if st.challenger not in replica.models():
            canary.event("adapter_missing", f"{st.challenger} on {replica.name}: reloading")
            replica.load_adapter(st.challenger, canary.replica_path(st.challenger, st.model_version))


def traffic(canary: Canary, seconds: float) -> LoadSummary | None:
    """One interval of the canary's own traffic: locally the split itself; on a cluster only with
    `load.enabled` (staging: through the gateway), else the interval just passes (users send traffic)."""
    s = canary.s
    if isinstance(canary.router, ClientSplit):
        return generate_load(canary.replicas, canary.router.model_for, seconds, s.load, threading.Event())
    if not s.load.enabled:
        time.sleep(seconds)
        return None
    with canary.replica(s.load.target_url) as gateway:
        return generate_load([gateway], lambda _: canary.family, seconds, s.load, threading.Event())


def read_window(canary: Canary, prom: PrometheusClient, load: LoadSummary | None, t0: float, t1: float) -> Window:
    """(challenger, champion) numbers of the window; (None, None) when they could not be read."""
    st, s = canary.state, canary.s
    assert st.champion is not None
    if s.routing == "local":
        by_model = load.by_model if load is not None else {}
        q = s.metrics.quantile
        return adapter_stats(by_model.get(st.challenger), q), adapter_stats(by_model.get(st.champion), q)
    try:
        return prom.window(s.metrics, st.challenger, t0, t1), prom.window(s.metrics, st.champion, t0, t1)
    except (TransientError, PrometheusError) as exc:
        canary.event("metrics_unavailable", str(exc)[:300])
        return None, None


def read_server(canary: Canary, prom: PrometheusClient, t0: float, t1: float) -> AdapterStats | None:
    """vLLM's whole-server numbers (its series for the base model); None when not configured or unreadable."""
    s = canary.s
    if s.metrics.server is None or not s.base_model_name:
        return None
    try:
        return prom.window(s.metrics.server, s.base_model_name, t0, t1)
    except (TransientError, PrometheusError) as exc:
        canary.event("server_metrics_unavailable", str(exc)[:300])
        return None


def shadow_runner(canary: Canary) -> ShadowRunner | None:
    st, s = canary.state, canary.s
    if s.shadow.size == 0:
        return None
    from steps.common.engines import make_engine
    from steps.common.engines.openai_engine import OpenAIEngine
    from steps.common.qa_dataset import TEST_FILE

    qa_dir = canary.context.store().materialize(canary.qa_uri, canary.context.scratch() / "canary" / "qa")
    items = sample_items(Path(qa_dir) / TEST_FILE, s.shadow.size, s.shadow.seed)
    answer_settings = OpenAISettings(base_url=canary.replicas[0].base_url, model=st.challenger,
                                     api_key_env=s.api_key_env, concurrency=s.shadow.concurrency,
                                     timeout_s=s.request_timeout_s, max_retries=1)
    answerer = OpenAIEngine(answer_settings, canary.context.residency, temperature=0.0, seed=s.shadow.seed)
    judge = make_engine(canary.judge_engine, canary.context)
    assert st.champion is not None
    return ShadowRunner(items, s.intervals, answerer, judge, {"challenger": st.challenger, "champion": st.champion},
                        s.shadow)


def collect_shadow(canary: Canary, shadow: ShadowRunner, timeout_s: float | None) -> None:
    st = canary.state
    before = {item.batch for item in st.shadow_items}
    shadow.collect(st.quality, st.shadow_items, timeout_s)
    for batch in sorted({item.batch for item in st.shadow_items} - before):
        st.shadow_batches_done.append(batch)
        canary.event("shadow_batch", f"batch {batch} judged; {st.quality.items} items so far")
