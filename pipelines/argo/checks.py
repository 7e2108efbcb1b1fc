"""What a config needs before it may run on a cluster, beyond being a valid config: EU regions and
endpoints, shared storage, no endpoint that only exists on the developer's machine, and no request for a
model name the shipped vLLM Services do not serve (served_models.py).

Also the one walk over the config's endpoints that both these checks and the NetworkPolicy use, so a URL
the pods will call is either refused here or given an egress rule there.
"""

import ipaddress
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from pipelines.argo.served_models import served_name_problems
from pipelines.config import PipelineConfig
from steps.common.residency import ResidencyError

# Used by the CLI on the submitter's machine (a port-forward is fine there), never by a pod.
CLIENT_ONLY_KEYS = ("argo.server_url",)


class CompileError(ValueError):
    """Everything that stops the pipeline from compiling for a cluster, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot compile for Argo:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def pinned_regions(config: PipelineConfig) -> list[str]:
    allowed = [r.lower() for r in config.residency.allowed_regions]
    wanted = [r.lower() for r in config.argo.node_regions] or allowed
    return [r for r in dict.fromkeys(wanted) if r in allowed]


def s3_endpoint(config: PipelineConfig) -> str:
    s3 = config.storage.s3
    return s3.endpoint_url or f"https://s3.{s3.region}.amazonaws.com"


def pod_endpoints(config: PipelineConfig) -> Iterator[tuple[str, str]]:
    """(config key, URL) of every http(s) endpoint a step pod may call, the S3 endpoint and the canary's
    replicas included.

    An engine's `openai` server settings only count when that engine's kind is `openai`: the defaults
    of an unused engine are not an endpoint anyone calls.
    """

    def walk(node: Any, key: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "openai" and node.get("kind", "openai") != "openai":
                    continue
                yield from walk(v, f"{key}.{k}" if key else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{key}[{i}]")
        elif isinstance(node, str) and node.lower().startswith(("http://", "https://")) \
                and key not in CLIENT_ONLY_KEYS:
            yield key, node

    found = dict(walk(config.model_dump(mode="json"), ""))
    found.setdefault("storage.s3.endpoint_url", s3_endpoint(config))
    if config.canary.enabled and config.canary.replica_dns:  # host:port of the replicas' headless Service
        found.setdefault("canary.replica_dns", f"http://{config.canary.replica_dns}")
    yield from found.items()


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_problems(config: PipelineConfig) -> list[str]:
    """Every reason `config` cannot run on a cluster (empty: it can)."""
    policy, argo = config.residency, config.argo
    problems: list[str] = []

    def check(fn: Any, value: str, key: str) -> None:
        try:
            fn(value, key)
        except ResidencyError as exc:
            problems.append(str(exc))

    for i, region in enumerate(argo.node_regions):
        check(policy.check_region, region, f"argo.node_regions[{i}]")
    if not pinned_regions(config):
        problems.append("argo.node_regions: no region left that residency.allowed_regions allows; pods could "
                        "not be pinned to the EU")
    check(policy.check_region, config.storage.s3.region, "storage.s3.region")
    check(policy.check_url, f"https://{argo.images.registry_host}/", "argo.images.registry")
    if argo.server_url:
        check(policy.check_url, argo.server_url, "argo.server_url")
    for key, url in pod_endpoints(config):
        if is_loopback(urlsplit(url).hostname or ""):
            problems.append(f"{key}={url!r}: a loopback address is the pod itself on a cluster; use the "
                            "service's in-cluster URL (e.g. http://NAME.NAMESPACE.svc.cluster.local:PORT)")
        else:
            check(policy.check_url, url, key)
    if not config.storage.artifact_root.startswith("s3://"):
        problems.append(f"storage.artifact_root={config.storage.artifact_root!r}: pods share no file system; "
                        "use an s3:// URI in the EU bucket")
    if not config.corpus.startswith("s3://"):
        problems.append(f"corpus={config.corpus!r}: pods cannot read this machine's files; upload the corpus "
                        "and use its s3:// prefix")
    uri = config.registry.tracking_uri
    if not uri.startswith(("http://", "https://")):
        problems.append(f"registry.tracking_uri={uri!r}: pods need an MLflow server (http(s)://...)")
    if config.base_model == "embedded":
        problems.append("base_model='embedded': the embedded model is only installed for local runs; use the "
                        "s3:// URI of the base model in the EU bucket")
    return problems + served_name_problems(config)
