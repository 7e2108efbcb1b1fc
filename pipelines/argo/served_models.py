"""Which model names each shipped vLLM Service (manifests/serving) serves, and the compile-time check that
a config asks those Services only for names they serve.

A request for a name vLLM does not serve fails with 404 (`The model ... does not exist`), every request of
a nightly run alike; this check moves that failure to `eurolora compile`. The table is data in the package
(a compile on an installed package has no manifests folder); tests/compile/test_serving_manifests.py
derives the same table from the manifests' Services, Deployments and `--served-model-name` arguments.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipelines.config import PipelineConfig
from pipelines.spec import REMOTE_ENGINE

SERVING_NAMESPACE = "inference"


@dataclass(frozen=True)
class ServedModels:
    """A Service of manifests/serving and the `--served-model-name`s of the vLLM pods behind it (the first
    labels vLLM's metrics). LoRA adapters loaded at run time are served under their own names as well, but
    they come and go with the canary: a pipeline step may only rely on these."""

    service: str
    names: tuple[str, ...]

    @property
    def host(self) -> str:
        return f"{self.service}.{SERVING_NAMESPACE}.svc.cluster.local"


SHIPPED_SERVICES = (
    ServedModels("vllm", ("base",)),  # the student base model with the family's adapters (the canary's)
    ServedModels("vllm-replicas", ("base",)),  # the same pods, headless (canary.replica_dns)
    ServedModels("vllm-teacher", ("qa-writer", "judge")),  # the larger model writing QA pairs and judging
)


def llm_requests(config: PipelineConfig) -> Iterator[tuple[str, str, str]]:
    """(config key of the model name, server URL, model name) of every request a step sends to an LLM
    server: each `openai` engine anywhere in the config, and the canary's base model on its replicas."""

    def walk(node: Any, key: str) -> Iterator[tuple[str, str, str]]:
        if isinstance(node, dict):
            if node.get("kind") == REMOTE_ENGINE and isinstance(node.get(REMOTE_ENGINE), dict):
                server = node[REMOTE_ENGINE]
                yield f"{key}.{REMOTE_ENGINE}.model", server.get("base_url", ""), server.get("model", "")
            for k, v in node.items():
                yield from walk(v, f"{key}.{k}" if key else k)

    yield from walk(config.model_dump(mode="json"), "")
    canary = config.canary
    if canary.enabled and canary.base_model_name:
        replicas = [f"http://{canary.replica_dns}"] if canary.replica_dns else canary.replicas
        for url in replicas:
            yield "canary.base_model_name", url, canary.base_model_name


def served_name_problems(config: PipelineConfig) -> list[str]:
    """Every request that names a model the shipped Service it goes to does not serve."""
    by_host = {s.host: s for s in SHIPPED_SERVICES}
    problems = []
    for key, url, model in llm_requests(config):
        served = by_host.get((urlsplit(url).hostname or "").lower().rstrip("."))
        if served is None or model in served.names:
            continue
        elsewhere = [s.service for s in SHIPPED_SERVICES if model in s.names]
        hint = f"Service {elsewhere[0]} serves {model!r}" if elsewhere else f"no shipped Service serves {model!r}"
        problems.append(f"{key}={model!r}: {url} (Service {served.service} of manifests/serving) serves only "
                        f"{list(served.names)} ({hint}); vLLM would answer every request with 404")
    return problems
