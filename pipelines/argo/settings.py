"""The `argo:` section of the pipeline config: where and how the pipeline runs on Argo Workflows.

Only read by `eurolora compile` / `submit` / `status` / `logs`; the local runner ignores it. Secrets are
never values here: only the names of Kubernetes Secrets (and keys) or of environment variables.
"""

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from pipelines.spec import ImageFamily

IMAGE_FAMILIES: tuple[ImageFamily, ...] = ("cpu", "train-gpu", "infer-gpu")
# Kubernetes quantities: "500m", "2", "1.5", "4Gi", "100M".
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_RESOURCE_KEYS = ("cpu", "memory", "ephemeral-storage")


def _check_quantities(value: dict[str, str]) -> dict[str, str]:
    for key, quantity in value.items():
        if key not in _RESOURCE_KEYS:
            raise ValueError(f"unknown resource {key!r}; use {list(_RESOURCE_KEYS)} (GPUs: `gpu`)")
        if not _QUANTITY.match(str(quantity)):
            raise ValueError(f"{key}={quantity!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    return {k: str(v) for k, v in value.items()}


class Resources(BaseModel):
    """Requests and limits of one step's main container. `gpu` is requested as `argo.gpu_resource`."""

    model_config = {"extra": "forbid"}
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "2Gi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "4Gi"})
    gpu: int = Field(0, ge=0, le=16)

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, value: object) -> object:
        return _check_quantities(value) if isinstance(value, dict) else value


def _default_resources() -> dict[str, Resources]:
    return {
        "cpu": Resources(),
        "train-gpu": Resources(requests={"cpu": "8", "memory": "48Gi"}, limits={"memory": "64Gi"}, gpu=1),
        "infer-gpu": Resources(requests={"cpu": "8", "memory": "48Gi"}, limits={"memory": "64Gi"}, gpu=1),
    }


class Images(BaseModel):
    """Image references: `<registry>/eurolora-<family>:<tag>` (built from images/<family>.Dockerfile)."""

    model_config = {"extra": "forbid"}
    registry: str = Field("registry.invalid/eurolora", pattern=r"^[a-z0-9.:-]+(/[a-z0-9._-]+)*$")
    tag: str = Field("0.1.0", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    pull_secret: str | None = Field(None, pattern=_DNS_LABEL)
    # The pushed image's digest per family, where known: the reference then pins it (`:tag@sha256:...`),
    # so a re-pushed tag cannot change what runs.
    digests: dict[ImageFamily, str] = Field(default_factory=dict)

    @field_validator("digests")
    @classmethod
    def _sha256(cls, value: dict[str, str]) -> dict[str, str]:
        for family, digest in value.items():
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ValueError(f"{family}: {digest!r} is not an image digest (sha256:<64 hex digits>)")
        return value

    def ref(self, family: str) -> str:
        digest = self.digests.get(family)  # type: ignore[call-overload]
        return f"{self.registry}/eurolora-{family}:{self.tag}" + (f"@{digest}" if digest else "")

    @property
    def registry_host(self) -> str:
        return self.registry.split("/", 1)[0]


class SecretEnv(BaseModel):
    """An environment variable of every step pod, read from a Kubernetes Secret (never a value)."""

    model_config = {"extra": "forbid"}
    env: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secret: str = Field(..., pattern=_DNS_LABEL)
    key: str = Field(..., pattern=r"^[-._a-zA-Z0-9]+$")
    optional: bool = False


class S3Secret(BaseModel):
    """The Secret holding the artifact bucket's credentials (step pods and Argo's artifact repository)."""

    model_config = {"extra": "forbid"}
    name: str = Field("eurolora-s3", pattern=_DNS_LABEL)
    access_key_id_key: str = "access-key-id"
    secret_access_key_key: str = "secret-access-key"


class ServicePods(BaseModel):
    """The pods behind an in-cluster Service: egress is allowed to exactly these, not the whole namespace."""

    model_config = {"extra": "forbid"}
    labels: dict[str, str] = Field(..., min_length=1, description="the Service's selector")
    # NetworkPolicy ports are the pods' ports (matched after the Service's translation): set this when
    # the Service's port differs from its targetPort.
    target_port: int | None = Field(None, ge=1, le=65535)


class Network(BaseModel):
    """Egress allowed by the NetworkPolicy of workflow pods (besides DNS and the API server).

    A NetworkPolicy matches pods and IP blocks, not host names: list the pods behind every in-cluster
    endpoint (`NAME.NAMESPACE.svc.cluster.local`, by their Service's selector) and the CIDRs behind every
    endpoint outside the cluster (the S3 endpoint: its VPC endpoint's subnet or the provider's published
    ranges for the region). An endpoint with neither gets no rule, and compile warns that it is blocked.
    """

    model_config = {"extra": "forbid"}
    external_cidrs: dict[str, list[str]] = Field(default_factory=dict,
                                                 description="endpoint host -> CIDRs it resolves into")
    service_pods: dict[str, ServicePods] = Field(default_factory=dict,
                                                 description="in-cluster endpoint host -> the pods behind it")
    api_server_cidrs: list[str] = Field(default_factory=list,
                                        description="the Kubernetes API server (Argo's executor reports there)")
    dns_namespace: str = "kube-system"
    dns_pod_labels: dict[str, str] = Field(default_factory=lambda: {"k8s-app": "kube-dns"})

    @field_validator("api_server_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_check_cidr(c) for c in value]

    @field_validator("external_cidrs")
    @classmethod
    def _host_cidrs(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {host: [_check_cidr(c) for c in cidrs] for host, cidrs in value.items()}


def _check_cidr(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR ({exc})") from None


class Schedule(BaseModel):
    """The nightly CronWorkflow."""

    model_config = {"extra": "forbid"}
    schedules: list[str] = Field(default_factory=lambda: ["0 2 * * *"], min_length=1)
    timezone: str = "Europe/Berlin"
    starting_deadline_s: int = Field(3600, ge=0)
    successful_jobs_history_limit: int = Field(7, ge=0)
    failed_jobs_history_limit: int = Field(14, ge=0)
    suspend: bool = False

    @field_validator("schedules")
    @classmethod
    def _cron(cls, value: list[str]) -> list[str]:
        for item in value:
            if len(item.split()) != 5 and not item.startswith("@"):
                raise ValueError(f"{item!r} is not a 5-field cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value


class Retry(BaseModel):
    """Retries of transient failures only (exit code 75, or the pod lost: Argo phase Error)."""

    model_config = {"extra": "forbid"}
    limit: int = Field(3, ge=0, le=20)
    backoff_duration: str = Field("30s", pattern=r"^[0-9]+(s|m|h)$")
    backoff_factor: int = Field(2, ge=1, le=10)
    backoff_max_duration: str = Field("1h", pattern=r"^[0-9]+(s|m|h)$")


class ArgoSettings(BaseModel):
    model_config = {"extra": "forbid"}

    namespace: str = Field("eurolora", pattern=_DNS_LABEL)
    # Step pods run as service_account without a token; Argo's executor (init/wait containers) gets
    # executor_service_account's token, which may only report results; steps that call the Kubernetes API
    # (the canary) run as their own account, with a token; artifact GC pods as artifact_gc_service_account.
    service_account: str = Field("eurolora-workflow", pattern=_DNS_LABEL)
    executor_service_account: str = Field("eurolora-executor", pattern=_DNS_LABEL)
    step_service_accounts: dict[str, str] = Field(default_factory=lambda: {"canary": "eurolora-canary"},
                                                  description="step -> account whose token it mounts")
    artifact_gc_service_account: str = Field("eurolora-artifact-gc", pattern=_DNS_LABEL)
    # The Argo Server (submit/status/logs). A path prefix (https://host/argo) is kept. The bearer token:
    # the environment variable named by token_env when set, else token_file (e.g. a mounted Secret), else
    # token. It is sent only in the Authorization header, never printed, logged or compiled into YAML.
    server_url: str | None = None
    token_env: str = Field("ARGO_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = None
    token: SecretStr | None = None
    verify_tls: bool = True
    request_timeout_s: float = Field(30.0, gt=0, le=600)

    # Pods are pinned to these regions (node label topology.kubernetes.io/region); empty: every region of
    # the residency policy. Each must be in residency.allowed_regions.
    node_regions: list[str] = Field(default_factory=list)
    images: Images = Field(default_factory=Images)
    resources: dict[ImageFamily, Resources] = Field(default_factory=_default_resources,
                                                   description="per image family")
    step_resources: dict[str, Resources] = Field(default_factory=dict,
                                                 description="per step, replaces its family's default")
    gpu_resource: str = "nvidia.com/gpu"
    gpu_toleration_key: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    scratch_size: str = Field("100Gi", pattern=_QUANTITY.pattern)
    shm_size: str = Field("16Gi", pattern=_QUANTITY.pattern, description="/dev/shm of GPU pods")

    step_timeout_s: int = Field(6 * 3600, ge=60, description="activeDeadlineSeconds of one step pod")
    step_timeouts_s: dict[str, int] = Field(default_factory=dict, description="per step")
    workflow_timeout_s: int = Field(24 * 3600, ge=60)
    retry: Retry = Field(default_factory=Retry)
    memoize_max_age: str = Field("168h", pattern=r"^[0-9]+(s|m|h)$")
    memoize_configmap: str = Field("eurolora-memo-cache", pattern=_DNS_LABEL)
    pod_gc_strategy: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"] = \
        "OnPodSuccess"  # failed pods stay for `kubectl logs` until the workflow's TTL
    pod_gc_delete_delay: str = Field("10m", pattern=r"^[0-9]+(s|m|h)$")
    schedule: Schedule = Field(default_factory=Schedule)

    artifact_repository_configmap: str = Field("artifact-repositories", pattern=_DNS_LABEL)
    artifact_repository_key: str = Field("eurolora", pattern=r"^[-._a-zA-Z0-9]+$")
    s3_secret: S3Secret = Field(default_factory=S3Secret)
    secret_env: list[SecretEnv] = Field(default_factory=list)
    # Steps whose HTML report the Argo UI shows (output artifact; see pipelines/argo/constants.py).
    ui_report_steps: list[str] = Field(default_factory=lambda: ["judge"])
    network: Network = Field(default_factory=Network)

    @model_validator(mode="after")
    def _one_token_source(self) -> "ArgoSettings":
        if self.token is not None and self.token_file is not None:
            raise ValueError("argo.token and argo.token_file are both set; keep one (token_file is safer)")
        return self

    def resources_for(self, step: str, family: str) -> Resources:
        return self.step_resources.get(step) or self.resources.get(family) or Resources()  # type: ignore[call-overload]

    def timeout_for(self, step: str) -> int:
        return self.step_timeouts_s.get(step, self.step_timeout_s)

    @field_validator("step_service_accounts")
    @classmethod
    def _account_names(cls, value: dict[str, str]) -> dict[str, str]:
        for step, account in value.items():
            if not re.fullmatch(_DNS_LABEL, account):
                raise ValueError(f"{step}: {account!r} is not a service account name (a DNS label)")
        return value
