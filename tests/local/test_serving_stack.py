"""The canary's local serving stack (pipelines/local/serving_stack.py) for real: vLLM's own server on the
embedded model and Debian's Prometheus scraping it, started by the local runner around the step, and a
server that does not come up stopping the run with its log's name."""

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.config import PipelineConfig, load_config
from pipelines.local.display import LineDisplay
from pipelines.local.prometheus_process import PrometheusServer
from pipelines.local.runner import LocalRunner, StepFailed
from pipelines.local.serving_stack import VLLM_LOG, canary_serving
from pipelines.spec import FromConfig, FromRun, Node, Pipeline
from steps.canary.serving import ReplicaClient
from steps.canary.settings import CanarySettings
from steps.common.residency import ResidencyPolicy
from tests.support.processes import command_lines

ONE_STEP = Pipeline((Node("count", "tests.toy_steps.count", "cpu", {
    "context": FromRun("context"), "corpus_uri": FromConfig("corpus"), "label": FromConfig("name")}),))


def _config(workdir: Path, *overrides: str) -> PipelineConfig:
    corpus = workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    (corpus / "a.md").write_text("a")
    return load_config(overrides=[f"corpus={corpus.as_uri()}", *overrides], cwd=workdir)


def test_a_vllm_server_that_does_not_come_up_in_time_stops_the_run_naming_its_log(
        tmp_path: Path, embedded_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_MARKER_DIR", str(tmp_path))
    config = _config(tmp_path, "local.serving.start_timeout_s=1")
    runner = LocalRunner(config, ONE_STEP, LineDisplay(), services={"count": partial(canary_serving, config)})
    with pytest.raises(StepFailed) as failed:
        runner.run()
    record = failed.value.record
    log = Path(failed.value.summary.run_dir) / "steps" / "count" / VLLM_LOG
    assert record.status == "failed" and record.attempts == 0  # the step itself never started
    assert "vLLM server did not answer" in record.error and str(log) in record.error
    assert log.is_file() and str(log) in Path(record.log).read_text()
    assert not command_lines(str(log.parent)), "the server outlived the run it failed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("stack")
    config = _config(workdir, "local.serving.start_timeout_s=600")
    context = {"run_id": "t", "storage": {"artifact_root": (workdir / "artifacts").as_uri()},
               "residency": {}, "scratch_dir": str(workdir / "scratch")}
    inputs = {"context": context, "settings": CanarySettings().model_dump(mode="json")}
    with canary_serving(config, inputs, workdir / "canary") as pointed:
        yield {**pointed, "step_dir": workdir / "canary"}
    assert not command_lines(str(workdir / "canary")), "vLLM or Prometheus outlived the stack"


def test_the_canary_is_pointed_at_a_real_vllm_with_the_deployments_name(stack: dict[str, Any]) -> None:
    [replica] = stack["settings"]["replicas"]
    assert replica.startswith("http://127.0.0.1:") and stack["settings"]["replica_dns"] == ""
    with ReplicaClient(replica, ResidencyPolicy(), timeout_s=30) as client:
        models = client.models()
    assert list(models) == ["base"] and models["base"]["owned_by"] == "vllm"
    assert (stack["step_dir"] / VLLM_LOG).is_file()


def test_prometheus_scrapes_vllms_own_series_labelled_by_the_base_model(
        stack: dict[str, Any], random_lora_adapters: tuple[Path, Path]) -> None:
    """Requests to an adapter count under model_name="base" (vLLM has no per-adapter latency series)."""
    [replica] = stack["settings"]["replicas"]
    prometheus = PrometheusServer(url=stack["settings"]["metrics"]["prometheus_url"], scrape_interval_s=1.0,
                                  log=stack["step_dir"] / "prometheus" / "prometheus.log")
    success = 'sum(vllm:request_success_total{model_name="base"})'
    before = _value(prometheus, success)
    with ReplicaClient(replica, ResidencyPolicy(), timeout_s=120) as client:
        assert client.load_adapter("stack-v1", str(random_lora_adapters[0])) == "loaded"
        try:
            statuses = [client.chat(model, "Hi", max_tokens=2)[:2] for model in ("base", "stack-v1", "stack-v1")]
        finally:
            client.unload_adapter("stack-v1")
    assert statuses == [(200, "base"), (200, "stack-v1"), (200, "stack-v1")]
    deadline = time.monotonic() + 30
    while _value(prometheus, success) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _value(prometheus, success) == before + 3
    latency = prometheus.query('vllm:e2e_request_latency_seconds_count{model_name="base"}')
    assert latency and sum(float(r["value"][1]) for r in latency) >= 3
    assert not prometheus.query('vllm:e2e_request_latency_seconds_count{model_name="stack-v1"}')
    assert prometheus.targets_up()


def _value(prometheus: PrometheusServer, promql: str) -> float:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else 0.0


def test_vllm_logs_carry_no_prompt_text(stack: dict[str, Any]) -> None:
    secret = "Zebra-7731 quarterly figures"
    [replica] = stack["settings"]["replicas"]
    response = httpx.post(f"{replica}/chat/completions", timeout=60, trust_env=False, json={
        "model": "base", "messages": [{"role": "user", "content": f"Summarise: {secret}"}], "max_tokens": 2})
    assert response.status_code == 200
    assert secret not in (stack["step_dir"] / VLLM_LOG).read_text(errors="replace")
