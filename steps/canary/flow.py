"""The canary's phases (see steps/canary/state.py): prepare and shift, analyse, decide, finalize, report.

`Canary.run()` is resumable: it reads the state record, skips what is recorded as done and re-applies
the rest idempotently, so a re-run after a crash at any point ends in the same state.
"""

import logging
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from steps.canary import analysis
from steps.canary.adapter_set import AdapterSet, update_adapter_set
from steps.canary.analysis import AdapterStats
from steps.canary.kube import KubeClient
from steps.canary.load import LoadSummary, generate_load
from steps.canary.prometheus import PrometheusClient, PrometheusError
from steps.canary.routing import LocalRouter, ModelRewriteRouter, Router
from steps.canary.serving import AdapterConflict, ReplicaClient, ServingError, adapter_name, discover_replicas
from steps.canary.settings import CanarySettings
from steps.canary.shadow import ShadowRunner, sample_items
from steps.canary.state import CanaryState, IntervalRecord, save_state
from steps.common.contract import RuntimeContext, TransientError
from steps.common.engines.base import EngineSettings, OpenAISettings
from steps.common.promotion_lock import LeaseSettings, PromotionLock
from steps.common.registry import CHALLENGER, CHAMPION, PREVIOUS, Registry
from steps.common.tags import (
    ADAPTER_URI_TAG,
    CANARY_DECISION_TAG,
    CANARY_REASON_TAG,
    CANARY_REPORT_TAG,
    DECISION_TAG,
    REASON_TAG,
    clip,
)

log = logging.getLogger(__name__)


class Canary:
    def __init__(self, *, context: RuntimeContext, settings: CanarySettings, registry: Registry, family: str,
                 state: CanaryState, qa_uri: str, judge_engine: EngineSettings) -> None:
        self.context, self.s, self.registry, self.family, self.state = context, settings, registry, family, state
        self.qa_uri, self.judge_engine = qa_uri, judge_engine
        self.report_uri = context.output_uri("canary", "report")
        self.replicas: list[ReplicaClient] = []
        self.kube: KubeClient | None = None
        self.router: Router | None = None
        self._paths: dict[str, str] = {}

    # -- plumbing ----------------------------------------------------------------------------------
    def event(self, name: str, detail: str = "") -> None:
        self.state.log(name, detail)
        log.info("canary %s: %s %s", self.state.challenger, name, detail)

    def save(self) -> None:
        save_state(self.context, self.state)

    def open(self) -> None:
        s, residency = self.s, self.context.residency
        urls = discover_replicas(s.replica_dns, residency) if s.replica_dns else list(s.replicas)
        self.replicas = [ReplicaClient(u, residency, timeout_s=s.request_timeout_s, api_key_env=s.api_key_env)
                         for u in urls]
        if s.routing == "inference_model_rewrite":
            self.kube = KubeClient(s.kubernetes, residency)
            self.router = ModelRewriteRouter(self.kube, self.family, s.kubernetes.model_rewrite, s.kubernetes.pool)
        else:
            self.router = LocalRouter(self.replicas, self.family, s.route_strategy)

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        if self.kube is not None:
            self.kube.close()

    def refresh_replicas(self) -> None:
        """With DNS discovery, pick up replicas that came (back) since the last look."""
        if not self.s.replica_dns:
            return
        known = {r.base_url for r in self.replicas}
        for url in discover_replicas(self.s.replica_dns, self.context.residency):
            if url not in known:
                self.replicas.append(ReplicaClient(url, self.context.residency, timeout_s=self.s.request_timeout_s,
                                                   api_key_env=self.s.api_key_env))
                self.event("replica_discovered", url)

    # -- adapters ----------------------------------------------------------------------------------
    def adapter_uri(self, version: str) -> str:
        info = self.registry.get_version(version)
        uri = info.tags.get(ADAPTER_URI_TAG)
        if not uri:
            raise ValueError(f"version {version} of {self.registry.model_name!r} has no {ADAPTER_URI_TAG} tag: "
                             "register it with the promote step")
        return uri

    def replica_path(self, name: str, version: str) -> str:
        """The path a replica loads `name` from: a local folder here, or `<replica_adapter_dir>/<name>`."""
        if name not in self._paths:
            if self.s.replica_adapter_dir:
                self._paths[name] = f"{self.s.replica_adapter_dir.rstrip('/')}/{name}"
            else:
                local = self.context.store().materialize(self.adapter_uri(version),
                                                         self.context.scratch() / "canary" / "adapters")
                self._paths[name] = str(Path(local).resolve())
        return self._paths[name]

    def change_adapter_set(self, change: Any, what: str) -> None:
        if self.kube is None:
            return
        update_adapter_set(self.kube, self.s.kubernetes.adapter_configmap, change)
        self.event("adapter_set", what)

    def load_everywhere(self, name: str, version: str) -> None:
        path = self.replica_path(name, version)
        deadline = time.monotonic() + self.s.load_timeout_s
        for replica in self.replicas:
            while True:
                try:
                    outcome = replica.load_adapter(name, path)
                    break
                except AdapterConflict:
                    raise
                except ServingError:
                    # On a cluster the sidecar may still be downloading the files: wait for them.
                    if not self.s.replica_adapter_dir or time.monotonic() > deadline:
                        raise
                    time.sleep(5.0)
            if outcome == "loaded":
                self.event("adapter_loaded", f"{name} on {replica.name}")

    def unload_everywhere(self, name: str) -> None:
        for replica in self.replicas:
            if replica.unload_adapter(name) == "unloaded":
                self.event("adapter_unloaded", f"{name} on {replica.name}")

    # -- phases ------------------------------------------------------------------------------------
    def prepare(self) -> str | None:
        """Challenger (and the baseline champion) loaded and verified on every replica; the reason to roll
        back when a replica refuses the challenger (a broken adapter must not stay champion), else None."""
        st = self.state
        if self.kube is not None:
            uri = self.adapter_uri(st.model_version)
            champ_uri = self.adapter_uri(st.baseline_version) if st.baseline_version else ""

            def add(current: AdapterSet) -> AdapterSet:
                out = current.with_adapter(st.challenger, uri, st.model_version, "challenger")
                if st.baseline_version and st.champion:
                    out = out.with_adapter(st.champion, champ_uri, st.baseline_version, "champion")
                return out

            self.change_adapter_set(add, f"{st.challenger} added as challenger")
        if st.champion and st.baseline_version:
            self.load_everywhere(st.champion, st.baseline_version)
        try:
            self.load_everywhere(st.challenger, st.model_version)
        except ServingError as exc:
            return f"challenger could not be loaded: {exc}"
        self.event("challenger_ready", f"{st.challenger} listed by /v1/models on {len(self.replicas)} replica(s)")
        return None

    def smoke(self) -> str | None:
        """Direct requests to both adapters before any user traffic; the reason to roll back, or None.

        A champion that fails raises instead: a canary cannot compare with (or roll back to) a baseline
        that does not answer, so nothing moves until it does."""
        st = self.state
        for replica in self.replicas:
            for _ in range(self.s.smoke_requests):
                status, _, _seconds = replica.chat(st.challenger, "Say hello in one word.", self.s.smoke_max_tokens)
                if status != 200:
                    return f"challenger failed its smoke test on {replica.name}: HTTP {status}"
                if st.champion:
                    status, _, _seconds = replica.chat(st.champion, "Say hello in one word.",
                                                      self.s.smoke_max_tokens)
                    if status != 200:
                        raise ServingError(f"the baseline {st.champion} failed its smoke request on {replica.name} "
                                           f"(HTTP {status}): fix serving, then re-run the step (no traffic moved)")
        if self.s.smoke_requests:
            self.event("smoke_passed", f"{self.s.smoke_requests} request(s) per replica")
        return None

    def canary_weights(self) -> dict[str, int]:
        champion_w, challenger_w = self.s.fraction_weights()
        assert self.state.champion is not None
        return {self.state.champion: champion_w, self.state.challenger: challenger_w}

    def shift(self) -> None:
        assert self.router is not None
        weights = self.canary_weights()
        self.router.set_weights(weights)
        self.event("traffic_shifted", f"{self.family}: {weights} ({self.s.traffic_fraction:.0%} to the challenger)")

    def analyse(self) -> None:
        """Run the remaining intervals. On a breach: decide `rolled_back` and move all traffic back to the
        champion at once, then stop the shadow work without waiting for it."""
        st, s = self.state, self.s
        assert st.champion is not None
        prom = PrometheusClient(s.metrics, self.context.residency)
        shadow = self.shadow_runner()
        try:
            t0 = time.time()
            for index in range(len(st.intervals) + 1, s.intervals + 1):
                self.refresh_replicas()
                for replica in self.replicas:  # a restarted replica must serve the challenger again
                    if st.challenger not in replica.models():
                        self.event("adapter_missing", f"{st.challenger} on {replica.name}: reloading")
                        replica.load_adapter(st.challenger, self.replica_path(st.challenger, st.model_version))
                if shadow is not None and index - 1 not in st.shadow_batches_done:
                    shadow.submit(index - 1)
                load = self.traffic(s.analysis_interval_s)
                time.sleep(s.metrics.scrape_settle_s)
                t1 = time.time()
                challenger, champion = self.read_window(prom, t0, t1)
                if shadow is not None:
                    self.collect_shadow(shadow, None)
                judgement = analysis.judge_interval(challenger, champion, st.quality, s.slo, s.shadow,
                                                    ttft_measured=s.metrics.ttft is not None)
                st.intervals.append(IntervalRecord(
                    index=index, started_at=t0, ended_at=t1, challenger=challenger, champion=champion,
                    checks=judgement.checks, judged=judgement.judged, breaches=judgement.breaches, load=load,
                    shadow_items=st.quality.items))
                verdict = "breach" if judgement.breached else ("ok" if judgement.judged else "not judged")
                self.event(f"interval_{index}", f"{verdict}: " + "; ".join(c.detail for c in judgement.checks))
                if judgement.breached:
                    self.decide("rolled_back", f"SLO breach in interval {index}: " + "; ".join(judgement.breaches))
                    self.route_to_champion()
                    return
                self.save()
                t0 = t1
            if shadow is not None:
                self.collect_shadow(shadow, s.shadow.timeout_s)
        finally:
            prom.close()
            if shadow is not None:
                shadow.stop()

    def traffic(self, seconds: float) -> LoadSummary | None:
        load = self.s.load
        if not load.enabled:
            time.sleep(seconds)
            return None
        if not load.target_url:
            return generate_load(self.replicas, self.family, seconds, load, threading.Event())
        with ReplicaClient(load.target_url, self.context.residency, timeout_s=self.s.request_timeout_s,
                           api_key_env=self.s.api_key_env) as gateway:
            return generate_load([gateway], self.family, seconds, load, threading.Event())

    def read_window(self, prom: PrometheusClient, t0: float, t1: float
                    ) -> tuple[AdapterStats | None, AdapterStats | None]:
        st = self.state
        assert st.champion is not None
        try:
            return prom.window(st.challenger, t0, t1), prom.window(st.champion, t0, t1)
        except (TransientError, PrometheusError) as exc:
            self.event("metrics_unavailable", str(exc)[:300])
            return None, None

    def shadow_runner(self) -> ShadowRunner | None:
        st, s = self.state, self.s
        if s.shadow.size == 0:
            return None
        from steps.common.engines import make_engine
        from steps.common.engines.openai_engine import OpenAIEngine
        from steps.common.qa_dataset import TEST_FILE

        qa_dir = self.context.store().materialize(self.qa_uri, self.context.scratch() / "canary" / "qa")
        items = sample_items(Path(qa_dir) / TEST_FILE, s.shadow.size, s.shadow.seed)
        answer_settings = OpenAISettings(base_url=self.replicas[0].base_url, model=st.challenger,
                                         api_key_env=s.api_key_env, concurrency=s.shadow.concurrency,
                                         timeout_s=s.request_timeout_s, max_retries=1)
        answerer = OpenAIEngine(answer_settings, self.context.residency, temperature=0.0, seed=s.shadow.seed)
        judge = make_engine(self.judge_engine, self.context)
        assert st.champion is not None
        return ShadowRunner(items, s.intervals, answerer, judge,
                            {"challenger": st.challenger, "champion": st.champion}, s.shadow)

    def collect_shadow(self, shadow: ShadowRunner, timeout_s: float | None) -> None:
        st = self.state
        before = {item.batch for item in st.shadow_items}
        shadow.collect(st.quality, st.shadow_items, timeout_s)
        for batch in sorted({item.batch for item in st.shadow_items} - before):
            st.shadow_batches_done.append(batch)
            self.event("shadow_batch", f"batch {batch} judged; {st.quality.items} items so far")

    def decide(self, decision: str, reason: str) -> None:
        st = self.state
        st.decision, st.reason, st.phase = decision, reason, "decided"  # type: ignore[assignment]
        self.event("decided", f"{decision}: {reason}")
        self.save()

    # -- finalize ----------------------------------------------------------------------------------
    def drain(self) -> None:
        final = self.state.first("route_final")
        wait = (final.at + self.s.drain_s - time.time()) if final else self.s.drain_s
        if wait > 0:
            time.sleep(wait)

    def route_to_champion(self) -> None:
        """All of the family's traffic back on the champion (absolute: safe to repeat)."""
        st = self.state
        assert self.router is not None and st.champion is not None
        self.router.set_weights({st.champion: 1})
        if st.first("route_final") is None:
            self.event("route_final", f"{self.family}: 100% {st.champion} (challenger removed)")
            self.save()

    def finalize(self) -> None:
        st = self.state
        assert self.router is not None
        if st.decision == "promoted":
            self.router.set_weights({st.challenger: 1})
            if st.first("route_final") is None:
                self.event("route_final", f"{self.family}: 100% {st.challenger}")
            # The set first: the replicas' sidecars must stop re-loading the loser before it is unloaded
            # (the drain also covers the kubelet's delay in updating the mounted ConfigMap).
            self.change_adapter_set(lambda cur: cur.promoted(st.challenger), f"{st.challenger} is the champion")
            if st.champion and st.baseline_version:  # an adapter baseline is unloaded; the base model stays
                self.drain()
                self.unload_everywhere(st.champion)
            self.registry_after_promotion()
        else:
            self.route_to_champion()
            self.registry_after_rollback()
            self.change_adapter_set(lambda cur: cur.without(st.challenger), f"{st.challenger} removed")
            self.drain()
            self.unload_everywhere(st.challenger)
        champion = self.registry.alias_version(CHAMPION)
        st.champion_version_after = champion.version if champion else ""
        st.phase = "finalized"
        self.event("finalized", f"champion is version {st.champion_version_after or 'none'}")
        self.save()

    def _tags(self, decision: str) -> dict[str, str]:
        return {CANARY_DECISION_TAG: decision, CANARY_REASON_TAG: clip(self.state.reason),
                CANARY_REPORT_TAG: self.report_uri}

    def registry_after_promotion(self) -> None:
        st = self.state
        aliases = self.registry.aliases()
        if aliases.get(CHALLENGER) == st.model_version:
            self.registry.delete_alias(CHALLENGER)  # the challenger won: it is the champion now
        if aliases.get(CHAMPION) != st.model_version:
            self.event("registry_note", f"champion is version {aliases.get(CHAMPION)}, not {st.model_version}: "
                                        "another promotion happened during the canary; aliases left alone")
        self.registry.tag_version(st.model_version, self._tags("promoted"))
        self.event("registry", f"version {st.model_version} stays champion; previous={aliases.get(PREVIOUS)}")

    def registry_after_rollback(self) -> None:
        """Under the promotion lock: champion back to the baseline (none when the baseline is the base
        model), only if it still is the challenger."""
        st = self.state
        lease = LeaseSettings(ttl_s=self.s.lock_ttl_s, wait_s=self.s.lock_wait_s)
        promotion = PromotionLock(self.registry)
        with promotion.lock(lease, purpose="canary-rollback") as held:
            current = self.registry.alias_version(CHAMPION)
            current_version = current.version if current else None
            if current_version == st.model_version:
                promotion.confirm(held)
                if st.baseline_version is None:
                    self.registry.delete_alias(CHAMPION)
                else:
                    self.registry.set_alias(CHAMPION, st.baseline_version)
                    if self.registry.aliases().get(PREVIOUS) == st.baseline_version:
                        self.registry.delete_alias(PREVIOUS)  # it would point at the champion itself
                self.event("registry", f"champion restored: version {st.model_version} -> "
                                       f"{st.baseline_version or 'none (the base model)'}")
            elif current_version == st.baseline_version:
                self.event("registry", f"champion already restored to version {st.baseline_version or 'none'}")
            else:
                self.event("registry_note", f"champion is version {current_version}, neither {st.model_version} "
                                            f"nor {st.baseline_version}: left alone (another promotion)")
            if self.registry.aliases().get(CHALLENGER) == st.model_version:
                self.registry.delete_alias(CHALLENGER)
        self.registry.tag_version(st.model_version, {
            DECISION_TAG: "rejected", REASON_TAG: clip(f"canary rolled back: {st.reason}"),
            **self._tags("rolled_back")})


def begin_state(registry: Registry, family: str, model_version: str, base_model_name: str = ""
                ) -> tuple[CanaryState | None, str]:
    """A fresh state from the registry's aliases, or (None, why there is nothing to canary).

    The baseline is the champion before promote (`previous`); without one, the base model served as
    `base_model_name` (None when that is "": the first adapter is then served without comparison)."""
    aliases = registry.aliases()
    champion = aliases.get(CHAMPION)
    if champion != model_version:
        return None, (f"champion is version {champion or 'none'}, not {model_version}: promote did not leave "
                      "this version as champion (or another promotion or rollback happened since); nothing to do")
    previous = aliases.get(PREVIOUS)
    baseline = previous if previous and previous != model_version else None
    state = CanaryState(model_version=model_version, family=family,
                        challenger=adapter_name(family, model_version), baseline_version=baseline,
                        champion=adapter_name(family, baseline) if baseline else (base_model_name or None))
    return state, ""


def run_canary(canary: Canary) -> None:
    """Every phase not yet recorded, in order; the state is saved after each."""
    st = canary.state
    if not st.reached("decided"):
        broken = canary.prepare()
        if broken and st.champion is not None:
            canary.decide("rolled_back", broken)
        elif broken:
            raise ServingError(f"{broken}; there is no previous champion to roll back to")
        elif st.champion is None:
            canary.decide("promoted", "no previous champion to compare with: the first adapter of "
                                      f"{canary.family} is served directly")
        elif st.phase == "started":
            failure = canary.smoke()
            if failure:
                canary.decide("rolled_back", failure)
            else:
                canary.shift()
                st.phase = "shifted"
                canary.save()
        else:
            canary.shift()  # re-applied absolutely after a crash
        if not st.reached("decided"):
            canary.analyse()  # decides by itself on a breach
        if not st.reached("decided"):
            judged = sum(1 for i in st.intervals if i.judged)
            canary.decide(*analysis.final_decision(judged, len(st.intervals), st.quality, canary.s.slo,
                                                   canary.s.shadow))
    if not st.reached("finalized"):
        canary.finalize()


def close_quietly(canary: Canary) -> None:
    with suppress(Exception):
        canary.close()
