"""What the canary step talks to on one machine: vLLM's own server and a Prometheus scraping it.

On a cluster the canary finds vLLM replicas and the cluster's Prometheus. Locally the runner starts both
on 127.0.0.1 for the length of the canary step (`local.serving.managed`), points the step's settings at
them and stops them afterwards; their logs stay in the step's directory. vLLM runs with the Deployment's
flags (pipelines/serving/flags.py) and serves the base model only: the canary loads its adapters at run
time, as on the cluster. A server that does not answer within `local.serving.start_timeout_s` fails the
step with its log's name and tail.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.local.prometheus_process import prometheus_process
from pipelines.serving.flags import SERVER_FLAGS, LocalOverrides
from pipelines.serving.server import vllm_server
from steps.common.contract import RuntimeContext

VLLM_LOG = "vllm.log"


def needs_local_serving(config: PipelineConfig) -> bool:
    canary = config.canary
    return canary.enabled and canary.routing == "local" and config.local.serving.managed


@contextmanager
def canary_serving(config: PipelineConfig, inputs: dict[str, Any], step_dir: Path) -> Iterator[dict[str, Any]]:
    """Start the stack; yield the canary's inputs pointed at it (replicas and Prometheus URL)."""
    from steps.common.models import resolve_model_dir

    serving = config.local.serving
    model_dir = resolve_model_dir(config.base_model, RuntimeContext.model_validate(inputs["context"]))
    flags = replace(SERVER_FLAGS, served_model_name=config.canary.base_model_name or SERVER_FLAGS.served_model_name)
    step_dir.mkdir(parents=True, exist_ok=True)
    with vllm_server(model_dir, step_dir / VLLM_LOG, timeout_s=serving.start_timeout_s, flags=flags,
                     overrides=LocalOverrides(threads=serving.threads)) as server, \
            prometheus_process([server.address], step_dir / "prometheus", serving.scrape_interval_s,
                               timeout_s=serving.start_timeout_s) as prometheus:
        settings = dict(inputs["settings"])
        settings.update(replicas=[server.base_url], replica_dns="",
                        metrics={**settings["metrics"], "prometheus_url": prometheus.url})
        yield {**inputs, "settings": settings}
