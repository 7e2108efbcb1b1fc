"""One canary run's working set (`Canary`): its settings, state record, registry and the clients it
talks through (replicas, router, Kubernetes), with the plumbing every phase shares: events, saving the
state, discovering replicas, and loading or unloading an adapter on every replica.

The phases themselves live beside it: steps/canary/prepare.py, analyse.py, finalize.py; flow.py runs them.
"""

import logging
import time
from pathlib import Path
from typing import Any

from steps.canary.adapter_set import update_adapter_set
from steps.canary.kube import KubeClient
from steps.canary.routing import ClientSplit, ModelRewriteRouter, Router
from steps.canary.serving import AdapterConflict, ReplicaClient, ServingError, discover_replicas
from steps.canary.settings import CanarySettings
from steps.canary.state import CanaryState, save_state
from steps.common.contract import RuntimeContext
from steps.common.engines.base import EngineSettings
from steps.common.registry import Registry
from steps.common.tags import ADAPTER_URI_TAG

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

    def decide(self, decision: str, reason: str) -> None:
        st = self.state
        st.decision, st.reason, st.phase = decision, reason, "decided"  # type: ignore[assignment]
        self.event("decided", f"{decision}: {reason}")
        self.save()

    def replica(self, url: str) -> ReplicaClient:
        return ReplicaClient(url, self.context.residency, timeout_s=self.s.request_timeout_s,
                             api_key_env=self.s.api_key_env)

    def open(self) -> None:
        s = self.s
        urls = discover_replicas(s.replica_dns, self.context.residency) if s.replica_dns else list(s.replicas)
        self.replicas = [self.replica(u) for u in urls]
        if s.routing == "inference_model_rewrite":
            self.kube = KubeClient(s.kubernetes, self.context.residency)
            self.router = ModelRewriteRouter(self.kube, self.family, s.kubernetes.model_rewrite, s.kubernetes.pool)
        else:
            self.router = ClientSplit()

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
                self.replicas.append(self.replica(url))
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
        """`name` loaded on every replica. ServingError (vLLM's reason) when a replica refuses it; on a
        cluster a refusal is retried until `load_timeout_s`, as the sidecar may still be fetching the files."""
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
                    if not self.s.replica_adapter_dir or time.monotonic() > deadline:
                        raise
                    time.sleep(5.0)
            if outcome == "loaded":
                self.event("adapter_loaded", f"{name} on {replica.name}")

    def unload_everywhere(self, name: str) -> None:
        for replica in self.replicas:
            if replica.unload_adapter(name) == "unloaded":
                self.event("adapter_unloaded", f"{name} on {replica.name}")
