"""Settings of the canary step: where the replicas and Prometheus are, how traffic moves, what the SLOs are.

Defaults are production-shaped (10% of real traffic, 5-minute intervals); the local config and tests
shrink the intervals to seconds (there is no user traffic on a laptop: the canary's own traffic is the split).
"""

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class SLOSettings(BaseModel):
    """When the challenger is worse than the champion, or the server as a whole unhealthy. Checked after
    every analysis interval."""

    model_config = {"extra": "forbid"}
    # Error answers / all requests of an adapter (measured by the canary locally, the gateway's on a cluster).
    max_error_rate: float = Field(0.02, ge=0, le=1)  # absolute, for the challenger
    max_error_rate_increase: float = Field(0.01, ge=0, le=1)  # challenger minus champion
    # p95 latency ratios challenger / champion (time to first token and end to end) ...
    max_ttft_p95_ratio: float = Field(1.5, ge=1)
    max_e2e_p95_ratio: float = Field(1.5, ge=1)
    # ... that only count when the challenger is also slower by at least this much (a ratio of two tiny
    # numbers, or two neighbouring histogram buckets, is noise).
    min_latency_increase_s: float = Field(0.05, ge=0)
    # Absolute p95 ceilings for the challenger (None: no absolute ceiling).
    max_ttft_p95_s: float | None = Field(None, gt=0)
    max_e2e_p95_s: float | None = Field(None, gt=0)
    # An interval in which the challenger answered fewer requests is not judged (and not counted).
    min_samples: int = Field(20, ge=1)
    # Promotion needs at least this many judged intervals (with min_samples each); fewer -> roll back.
    min_judged_intervals: int = Field(1, ge=1)
    # The whole server (vLLM's series for the base model, every adapter included): internal request
    # errors / finished requests, and optional p95 ceilings.
    server_max_error_rate: float = Field(0.02, ge=0, le=1)
    server_max_ttft_p95_s: float | None = Field(None, gt=0)
    server_max_e2e_p95_s: float | None = Field(None, gt=0)


class SeriesSettings(BaseModel):
    """One Prometheus metric the analysis reads, and the label that names the model that served."""

    model_config = {"extra": "forbid"}
    metric: str = Field(..., pattern=_METRIC)  # a counter's full name (`..._total`) or a histogram's base name
    model_label: str = Field("target_model_name", pattern=_LABEL)
    selector: str = ""  # extra matchers for this metric only, e.g. 'error_code="ModelServerError"'


class SeriesSet(BaseModel):
    """Requests (error answers included), error answers, and the TTFT and end-to-end latency histograms."""

    model_config = {"extra": "forbid"}
    requests: SeriesSettings
    errors: SeriesSettings
    ttft: SeriesSettings | None  # None: no such series on this deployment (reported as not measured)
    e2e: SeriesSettings


def _vllm(metric: str, selector: str = "") -> SeriesSettings:
    return SeriesSettings(metric=metric, model_label="model_name", selector=selector)


class ServerSeries(SeriesSet):
    """vLLM's own series, labelled `model_name=<base_model_name>` for every request, LoRA ones included:
    the health of the server as a whole (vLLM has no per-adapter latency series)."""

    # Every finished request by `finished_reason`; "error" is vLLM's internal request error (an HTTP 500).
    requests: SeriesSettings = Field(default_factory=lambda: _vllm("vllm:request_success_total"))
    errors: SeriesSettings = Field(default_factory=lambda: _vllm("vllm:request_success_total",
                                                                 'finished_reason="error"'))
    ttft: SeriesSettings | None = Field(default_factory=lambda: _vllm("vllm:time_to_first_token_seconds"))
    e2e: SeriesSettings = Field(default_factory=lambda: _vllm("vllm:e2e_request_latency_seconds"))


class MetricsSettings(SeriesSet):
    """The Prometheus HTTP API and the series the analysis reads.

    Per adapter (`requests`, `errors`, `ttft`, `e2e`), on a cluster only (`routing:
    inference_model_rewrite`): the Gateway API Inference Extension endpoint picker's per-target-model series
    (`inference_objective_*{target_model_name=...}`). No per-adapter TTFT series exists there (`ttft`
    None; manifests/serving/README.md). Locally the canary measures each adapter itself, from its own
    requests (steps/canary/client_stats.py), and these four are not read.
    The whole server (`server`, both places): vLLM's own series for `base_model_name`; None: not read.
    """

    prometheus_url: str = "http://127.0.0.1:9090"
    bearer_token_env: str = ""  # name of an env var with a token for Prometheus (never the token)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    selector: str = ""  # matchers for every series, e.g. 'namespace="inference"'
    # Every request routed to an adapter, its error answers included (the endpoint picker's semantics).
    requests: SeriesSettings = Field(default_factory=lambda: SeriesSettings(metric="inference_objective_request_total"))
    # The error answers that count against an adapter (any non-200 answer of the model server).
    errors: SeriesSettings = Field(default_factory=lambda: SeriesSettings(
        metric="inference_objective_request_error_total", selector='error_code="ModelServerError"'))
    ttft: SeriesSettings | None = None
    e2e: SeriesSettings = Field(default_factory=lambda: SeriesSettings(
        metric="inference_objective_request_duration_seconds"))
    server: ServerSeries | None = Field(default_factory=ServerSeries)
    quantile: float = Field(0.95, gt=0, lt=1)
    # Wait this long after an interval before reading it: at least one scrape interval, so the last
    # requests of the interval are in Prometheus.
    scrape_settle_s: float = Field(20.0, ge=0)


class LoadSettings(BaseModel):
    """The canary's own traffic: streamed chat requests, each one timed (time to first token, end to end).

    Locally (`routing: local`) it always runs and IS the split: `traffic_fraction` of its requests name
    the challenger, the rest the champion, sent to the replicas in turn. On a cluster production has
    user traffic; `enabled` adds requests for model `<family>` to `target_url` (a staging gateway, whose
    InferenceModelRewrite splits them)."""

    model_config = {"extra": "forbid"}
    enabled: bool = False  # cluster only (see above); locally the load always runs
    target_url: str = ""  # the gateway's OpenAI base URL (`.../v1`), cluster only (not read locally)
    requests_per_interval: int = Field(20, ge=1, le=10_000)  # spread evenly over the interval
    concurrency: int = Field(4, ge=1, le=64)
    max_tokens: int = Field(4, ge=1, le=256)
    prompts: list[str] = Field(default_factory=lambda: [
        "Say hello in one word.", "Name a colour.", "What is 2 + 2?", "Name a European capital.",
    ], min_length=1)


class ShadowSettings(BaseModel):
    """Quality on a sampled shadow set: test questions answered by both adapters (not shown to users),
    graded by the self-hosted judge with the judge step's rubric (fail closed)."""

    model_config = {"extra": "forbid"}
    size: int = Field(20, ge=0, le=10_000)  # items sampled from qa_test.jsonl over the whole canary; 0: off
    min_items: int = Field(10, ge=1)  # promotion needs this many judged items (fail closed)
    seed: int = 0
    max_new_tokens: int = Field(128, ge=1, le=8192)
    judge_max_new_tokens: int = Field(96, ge=32, le=1024)
    concurrency: int = Field(4, ge=1, le=64)
    # Cumulative rates (0..1): challenger's C rate minus champion's, champion's A rate minus challenger's.
    max_c_rate_increase: float = Field(0.1, ge=0, le=1)
    max_a_rate_drop: float = Field(0.1, ge=0, le=1)
    timeout_s: float = Field(600.0, gt=0)  # waiting for the last shadow batch before deciding


IN_CLUSTER_API_URL = "https://kubernetes.default.svc.cluster.local"


class KubernetesSettings(BaseModel):
    """The cluster side: the declarative adapter set (ConfigMap) and the routing resource.

    Used only with `routing: inference_model_rewrite`. The step's service account needs get/patch on
    exactly these two objects (manifests/serving/60-rbac.yaml)."""

    model_config = {"extra": "forbid"}
    # "": the in-cluster API server (IN_CLUSTER_API_URL). Not a default URL on purpose: the cluster
    # manifests derive NetworkPolicy egress from every URL in the config (the API server has its own rule).
    api_url: str = ""
    namespace: str = "inference"
    token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    timeout_s: float = Field(10.0, gt=0)
    adapter_configmap: str = "vllm-adapters"  # holds adapters.json (see steps/canary/adapter_set.py)
    model_rewrite: str = ""  # the InferenceModelRewrite's name; "" -> the adapter family
    pool: str = "vllm"  # the InferencePool the rewrite points at


class CanarySettings(BaseModel):
    model_config = {"extra": "forbid"}
    enabled: bool = True  # False: the step records "skipped" and leaves serving and registry alone
    # Every replica's OpenAI base URL (`.../v1`). Locally one vLLM server; on a cluster either list
    # the pods, or name a headless Service in `replica_dns` (host:port) and they are discovered by DNS.
    replicas: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    replica_dns: str = ""  # when set, `replicas` is not used (leave it empty)
    api_key_env: str = "EUROLORA_LLM_API_KEY"  # env var holding the replicas' API key, never the key
    request_timeout_s: float = Field(60.0, gt=0)
    # How replicas read adapter files. "": the step passes a local path (it materialises the adapter
    # from its artifact URI: a server on this machine). A directory: replicas read `<dir>/<name>`,
    # synced from S3 by their adapter-sync sidecar (manifests/serving).
    replica_adapter_dir: str = ""
    load_timeout_s: float = Field(300.0, gt=0)  # waiting for a replica to have the adapter files
    # Local: the canary's own traffic is the split (see LoadSettings). Cluster: the Gateway API Inference
    # Extension's InferenceModelRewrite (adapter-level weights inside one InferencePool).
    routing: Literal["local", "inference_model_rewrite"] = "local"
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    traffic_fraction: float = Field(0.1, gt=0, lt=1)  # share of the family's traffic on the challenger
    # The base model's served name. With no previous champion the first adapter of a family is canaried
    # against the base model (as the judge step compares it with the base); "": it is served directly.
    base_model_name: str = "base"
    analysis_interval_s: float = Field(300.0, gt=0)
    intervals: int = Field(6, ge=1, le=1000)
    smoke_requests: int = Field(2, ge=0, le=100)  # direct requests to each adapter before any traffic moves
    smoke_max_tokens: int = Field(4, ge=1, le=256)
    # Wait between the route change and unloading the losing adapter: in-flight requests finish, and on a
    # cluster the kubelet has updated the replicas' mounted adapter set (about a minute) so their sidecar
    # no longer re-loads it.
    drain_s: float = Field(90.0, ge=0)
    slo: SLOSettings = Field(default_factory=SLOSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    load: LoadSettings = Field(default_factory=LoadSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    # The registry-wide promotion lock held while `champion` is restored on rollback.
    lock_ttl_s: float = Field(300.0, gt=0)
    lock_wait_s: float = Field(60.0, ge=0)

    @field_validator("replicas")
    @classmethod
    def _distinct(cls, replicas: list[str]) -> list[str]:
        cleaned = [r.strip().rstrip("/") for r in replicas]
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("canary.replicas lists a replica twice")
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> "CanarySettings":
        if not self.replicas and not self.replica_dns:
            raise ValueError("canary needs its replicas: list them in canary.replicas or name a headless "
                             "Service in canary.replica_dns (host:port)")
        if self.routing == "inference_model_rewrite" and not self.replica_adapter_dir:
            raise ValueError("canary.routing=inference_model_rewrite needs canary.replica_adapter_dir (where "
                             "the replicas' adapter-sync sidecar puts adapters, e.g. /adapters)")
        if self.shadow.size and self.shadow.min_items > self.shadow.size:
            raise ValueError("canary.shadow.min_items must not exceed canary.shadow.size")
        return self

    def fraction_weights(self) -> tuple[int, int]:
        """(champion, challenger) integer weights for `traffic_fraction`, reduced (0.1 -> 9, 1)."""
        from math import gcd

        challenger = max(1, round(self.traffic_fraction * 1000))
        champion = max(1, 1000 - challenger)
        d = gcd(champion, challenger)
        return champion // d, challenger // d
