"""A REAL Prometheus (Debian's package) scraping a REAL `eurolora serve` every second, read through the
canary's Prometheus client with its default series (the endpoint picker's per-target counters and latency,
vLLM's TTFT): the numbers it reports for a window are the requests really sent, including series born
inside the window (a fresh adapter's first errors), which `increase()` would undercount."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.local.prometheus_process import PrometheusServer, prometheus_process
from steps.canary.analysis import AdapterStats
from steps.canary.prometheus import PrometheusClient
from steps.canary.settings import MetricsSettings
from steps.common.residency import ResidencyPolicy
from tests.fixtures.serve import ServeServer

NAME = "prom-scrape-v1"


@pytest.fixture(scope="module")
def scraping(eurolora_server: ServeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    target = eurolora_server.root.removeprefix("http://")
    with prometheus_process([target], tmp_path_factory.mktemp("prometheus")) as prom:
        yield prom


def _wait_for(client: PrometheusClient, predicate, timeout_s: float = 20.0) -> AdapterStats | None:
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = predicate()
        if metrics is not None or time.monotonic() > deadline:
            return metrics
        time.sleep(0.5)


def test_window_counts_answers_errors_and_latency_of_a_fresh_adapter(
        eurolora_server: ServeServer, scraping: PrometheusServer, random_lora_adapters: tuple[Path, Path]) -> None:
    deadline = time.monotonic() + 20
    while not scraping.targets_up():
        assert time.monotonic() < deadline, "Prometheus never scraped the server"
        time.sleep(0.5)
    client = PrometheusClient(MetricsSettings(prometheus_url=scraping.url, timeout_s=5), ResidencyPolicy())
    assert eurolora_server.post("/v1/load_lora_adapter",
                                {"lora_name": NAME, "lora_path": str(random_lora_adapters[0])}).status_code == 200
    try:
        t0 = time.time()
        for _ in range(3):
            assert eurolora_server.chat(NAME, "Hi", max_tokens=1).status_code == 200
        assert eurolora_server.post("/v1/faults", {"model": NAME, "error_rate": 1.0}).status_code == 200
        for _ in range(2):
            assert eurolora_server.chat(NAME, "Hi", max_tokens=1).status_code == 500

        def complete() -> AdapterStats | None:
            metrics = client.window(NAME, t0, time.time())
            return metrics if metrics.requests == 5 and metrics.errors == 2 else None

        metrics = _wait_for(client, complete)
        assert metrics is not None, client.window(NAME, t0, time.time())
        assert metrics.error_rate == pytest.approx(0.4)
        # The histogram was born inside the window: rate() may not have two scrapes of it yet, the bucket
        # differences have every request.
        assert metrics.e2e_p95_s is not None and 0 < metrics.e2e_p95_s < 60
        assert metrics.ttft_p95_s is not None and 0 < metrics.ttft_p95_s < 60
        # Before the adapter existed there was nothing: the window before t0 is empty, not an error.
        empty = client.window(NAME, t0 - 30, t0 - 1)
        assert (empty.requests, empty.errors, empty.e2e_p95_s) == (0, 0, None)
        # The raw series really are in Prometheus: the endpoint picker's names by target model, vLLM's names
        # labelled by the adapter that served.
        assert scraping.query(f'inference_objective_request_error_total{{target_model_name="{NAME}",'
                              'error_code="ModelServerError"}')
        assert scraping.query(f'vllm:request_success_total{{model_name="{NAME}"}}')
    finally:
        eurolora_server.post("/v1/faults", {"model": NAME, "error_rate": 0.0})
        eurolora_server.post("/v1/unload_lora_adapter", {"lora_name": NAME})
        client.close()
