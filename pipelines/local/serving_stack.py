"""What the canary step talks to on one machine: `eurolora serve` and a Prometheus scraping it.

On a cluster the canary finds vLLM replicas and the cluster's Prometheus. Locally the runner starts both
on 127.0.0.1 for the length of the canary step (`local.serving.managed`), points the step's settings at
them and stops them afterwards; their logs stay in the step's directory.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.local.processes import free_port, server_process
from pipelines.local.prometheus_process import prometheus_process
from steps.common.contract import RuntimeContext


def needs_local_serving(config: PipelineConfig) -> bool:
    canary = config.canary
    return canary.enabled and canary.routing == "local" and config.local.serving.managed


@contextmanager
def canary_serving(config: PipelineConfig, inputs: dict[str, Any], step_dir: Path) -> Iterator[dict[str, Any]]:
    """Start the stack; yield the canary's inputs pointed at it (replicas and Prometheus URL)."""
    from steps.common.models import EMBEDDED, resolve_model_dir

    serving = config.local.serving
    context = RuntimeContext.model_validate(inputs["context"])
    model = config.base_model if config.base_model == EMBEDDED else str(resolve_model_dir(config.base_model,
                                                                                           context))
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--model", model, "--served-model-name", config.canary.base_model_name or "base",
            "--threads", str(serving.threads), "--log-level", "warning"]
    step_dir.mkdir(parents=True, exist_ok=True)
    with server_process(argv, f"{root}/health", step_dir / "serve.log", timeout_s=serving.start_timeout_s), \
            prometheus_process([f"127.0.0.1:{port}"], step_dir / "prometheus", serving.scrape_interval_s,
                               timeout_s=serving.start_timeout_s) as prometheus:
        settings = dict(inputs["settings"])
        settings.update(replicas=[f"{root}/v1"], replica_dns="",
                        metrics={**settings["metrics"], "prometheus_url": prometheus.url})
        yield {**inputs, "settings": settings}
