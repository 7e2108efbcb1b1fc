"""Cluster manifests for the namespace the pipeline runs in, generated from the same config as the
workflows: namespace, least-privilege RBAC, a default-deny NetworkPolicy that lets workflow pods reach
only DNS, the API server (Argo's executor) and the configured EU endpoints (in-cluster ones by the pods
behind them, external ones by CIDR), the artifact repository,
the memoization cache, and a template of the Secrets the workflows reference (names only, no values).
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipelines.argo import constants as C
from pipelines.argo.checks import pod_endpoints, s3_endpoint
from pipelines.config import PipelineConfig

EXECUTOR_ROLE_RULES = [
    # Argo v3.4+: the executor (wait container) reports outputs as WorkflowTaskResults; nothing else.
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
]
ARTIFACT_GC_ROLE_RULES = [
    # The artifact GC pod reads its task and reports what it deleted; the S3 credentials come from the
    # artifact repository's Secret.
    {"apiGroups": ["argoproj.io"], "resources": ["workflowartifactgctasks"], "verbs": ["list", "watch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowartifactgctasks/status"], "verbs": ["patch"]},
]
SUBMITTER_ROLE_RULES = [
    # `eurolora submit/status/logs` through the Argo Server with this account's token.
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["create", "get", "list"]},
    {"apiGroups": ["argoproj.io"], "resources": ["cronworkflows"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
SECRETS_TEMPLATE = "secrets.template"
# The API server's in-cluster names: not pods a selector can match; the api_server_cidrs rule covers them.
API_SERVER_HOSTS = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")


@dataclass
class ClusterManifests:
    files: dict[str, list[dict[str, Any]]]  # file name -> documents
    secrets: list[dict[str, Any]]  # Secret manifests without values (written as SECRETS_TEMPLATE)
    warnings: list[str] = field(default_factory=list)


def _meta(name: str, namespace: str, **extra: Any) -> dict[str, Any]:
    labels = {C.PART_OF_LABEL: C.PART_OF}
    return {"name": name, "namespace": namespace, "labels": labels, **extra}


def _s3_location(config: PipelineConfig) -> tuple[str, str]:
    parts = urlsplit(config.storage.artifact_root)
    return parts.netloc, parts.path.strip("/")


def artifact_repository(config: PipelineConfig) -> dict[str, Any]:
    """The `s3:` artifact repository Argo stores output artifacts in (the judge's HTML report)."""
    bucket, prefix = _s3_location(config)
    endpoint = urlsplit(s3_endpoint(config))
    secret = config.argo.s3_secret
    key_format = "/".join(p for p in (prefix, "argo-artifacts", "{{workflow.name}}", "{{pod.name}}") if p)
    return {"s3": {
        "bucket": bucket,
        "endpoint": endpoint.netloc,
        "region": config.storage.s3.region,
        "insecure": endpoint.scheme == "http",
        "keyFormat": key_format,
        "accessKeySecret": {"name": secret.name, "key": secret.access_key_id_key},
        "secretKeySecret": {"name": secret.name, "key": secret.secret_access_key_key},
        **({"encryptionOptions": {"enableEncryption": True, "kmsKeyId": key}}
           if (key := config.storage.s3.kms_key_arn) else {}),
    }}


def _endpoints(config: PipelineConfig) -> list[tuple[str, str, int]]:
    """(config key, host, port) of every endpoint a step pod may call, one per host and port."""
    found: dict[tuple[str, int], str] = {}
    for key, url in pod_endpoints(config):
        parts = urlsplit(url)
        if parts.hostname:
            found.setdefault((parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)), key)
    return [(key, host, port) for (host, port), key in found.items()]


def network_policy(config: PipelineConfig) -> tuple[dict[str, Any], list[str]]:
    net, ns = config.argo.network, config.argo.namespace
    warnings: list[str] = []
    egress: list[dict[str, Any]] = [{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": net.dns_namespace}},
                "podSelector": {"matchLabels": dict(net.dns_pod_labels)}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }]
    if net.api_server_cidrs:
        egress.append({"to": [{"ipBlock": {"cidr": c}} for c in net.api_server_cidrs],
                       "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]})
    else:
        warnings.append("argo.network.api_server_cidrs is empty: the NetworkPolicy blocks the API server, so "
                        "Argo's executor cannot report step results")
    for key, host, port in sorted(_endpoints(config), key=lambda e: (e[1], e[2])):
        if host in API_SERVER_HOSTS and net.api_server_cidrs:
            continue
        labels = host.split(".")
        if host.endswith((".svc.cluster.local", ".svc")):
            pods = net.service_pods.get(host)
            if len(labels) < 3 or pods is None:
                warnings.append(f"{key}: no argo.network.service_pods entry for {host} (the labels of the pods "
                                "behind it); the NetworkPolicy blocks it")
                continue
            egress.append({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": labels[1]}},
                                   "podSelector": {"matchLabels": dict(pods.labels)}}],
                           "ports": [{"protocol": "TCP", "port": pods.target_port or port}]})
        elif net.external_cidrs.get(host):
            egress.append({"to": [{"ipBlock": {"cidr": c}} for c in net.external_cidrs[host]],
                           "ports": [{"protocol": "TCP", "port": port}]})
        else:
            warnings.append(f"{key}: no CIDRs for {host} in argo.network.external_cidrs; the NetworkPolicy "
                            "blocks it")
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("eurolora-workflow-pods", ns),
        "spec": {
            "podSelector": {"matchLabels": {C.PART_OF_LABEL: C.PART_OF}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],  # nothing may connect to a step pod
            "egress": egress,
        },
    }
    return policy, warnings


def _rbac(config: PipelineConfig) -> list[dict[str, Any]]:
    """One account per job: step pods and the canary get none of these roles (the canary's is in the
    serving namespace: manifests/serving/60-rbac.yaml), the executor and artifact GC only theirs."""
    argo, ns = config.argo, config.argo.namespace
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, ns),
         "automountServiceAccountToken": False}
        for account in dict.fromkeys([argo.service_account, *argo.step_service_accounts.values()])]
    for account, rules in ((argo.executor_service_account, EXECUTOR_ROLE_RULES),
                           (argo.artifact_gc_service_account, ARTIFACT_GC_ROLE_RULES),
                           ("eurolora-submitter", SUBMITTER_ROLE_RULES)):
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, ns)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(account, ns),
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(account, ns),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]},
        ]
    # A long-lived token for the submitter (ARGO_TOKEN): Kubernetes fills it in; nothing is committed.
    docs.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                 "metadata": _meta("eurolora-submitter-token", ns, annotations={
                     "kubernetes.io/service-account.name": "eurolora-submitter"})})
    return docs


def secret_templates(config: PipelineConfig) -> list[dict[str, Any]]:
    """Every Secret the workflows reference, with its keys and empty values (fill in, never commit)."""
    keys: dict[str, list[str]] = {}
    s3 = config.argo.s3_secret
    keys.setdefault(s3.name, []).extend([s3.access_key_id_key, s3.secret_access_key_key])
    for item in config.argo.secret_env:
        keys.setdefault(item.secret, []).append(item.key)
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": _meta(name, config.argo.namespace),
             "stringData": {k: "" for k in dict.fromkeys(ks)}} for name, ks in keys.items()]


def cluster_manifests(config: PipelineConfig) -> ClusterManifests:
    ns, argo = config.argo.namespace, config.argo
    policy, warnings = network_policy(config)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {C.PART_OF_LABEL: C.PART_OF,
                               # Every compiled pod is `restricted`; Argo's init/wait containers are too
                               # once the controller's executor securityContext is set (README.md).
                               "pod-security.kubernetes.io/enforce": "restricted",
                               "pod-security.kubernetes.io/audit": "restricted",
                               "pod-security.kubernetes.io/warn": "restricted"}}}
    repo = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(argo.artifact_repository_configmap, ns, annotations={
                "workflows.argoproj.io/default-artifact-repository": argo.artifact_repository_key}),
            "data": {argo.artifact_repository_key: yaml.safe_dump(artifact_repository(config), sort_keys=False)}}
    cache = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {**_meta(argo.memoize_configmap, ns),
                          "labels": {C.PART_OF_LABEL: C.PART_OF, "workflows.argoproj.io/configmap-type": "Cache"}}}
    files = {
        "00-namespace.yaml": [namespace],
        "10-rbac.yaml": _rbac(config),
        "20-network-policy.yaml": [policy],
        "30-artifact-repository.yaml": [repo],
        "40-memoization-cache.yaml": [cache],
    }
    return ClusterManifests(files=files, secrets=secret_templates(config), warnings=warnings)


def secrets_template_text(config: PipelineConfig, secrets: list[dict[str, Any]]) -> str:
    ns = config.argo.namespace
    lines = [
        "# The Secrets the eurolora workflows reference, without values. Not applied by",
        "# `kubectl apply -f manifests/cluster` (not a .yaml file). Create them with kubectl, e.g.:",
    ]
    for secret in secrets:
        literals = " ".join(f"--from-literal={k}=..." for k in secret["stringData"])
        lines.append(f"#   kubectl -n {ns} create secret generic {secret['metadata']['name']} {literals}")
    lines.append("# or fill in a copy of this file outside the repository and apply that. Never commit values.")
    return "\n".join(lines) + "\n" + yaml.safe_dump_all(secrets, sort_keys=False)
