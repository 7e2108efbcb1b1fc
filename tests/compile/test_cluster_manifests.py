"""Cluster manifests: strict Kubernetes schema validation (kubernetes-validate, offline), least privilege,
egress only where the config points, and no secret value anywhere."""

import kubernetes_validate
import pytest
import yaml

from pipelines.argo.cluster import (
    EXECUTOR_ROLE_RULES,
    SUBMITTER_ROLE_RULES,
    cluster_manifests,
    network_policy,
)
from tests.compile.schemas import types_errors

K8S_VERSION = "1.33"


def _docs(config):
    manifests = cluster_manifests(config)
    return [d for docs in manifests.files.values() for d in docs], manifests


def test_every_manifest_validates_strictly(example_config):
    docs, manifests = _docs(example_config)
    for doc in [*docs, *manifests.secrets]:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelled_field(example_config):
    docs, _ = _docs(example_config)
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    policy["spec"]["egres"] = policy["spec"].pop("egress")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_workflow_account_is_least_privilege(example_config):
    docs, _ = _docs(example_config)
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert roles[example_config.argo.executor_service_account] == EXECUTOR_ROLE_RULES == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
    assert roles["eurolora-submitter"] == SUBMITTER_ROLE_RULES
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_network_policy_allows_only_configured_endpoints(example_config):
    policy, warnings = network_policy(example_config)
    assert warnings == []
    spec = policy["spec"]
    assert spec["ingress"] == [] and spec["policyTypes"] == ["Ingress", "Egress"]
    rules = spec["egress"]
    ports = [sorted(p["port"] for p in r["ports"]) for r in rules]
    assert [53, 53] in ports  # DNS
    for rule in rules:  # never a whole namespace: every namespace peer names the pods too
        for peer in rule["to"]:
            assert "ipBlock" in peer or peer["podSelector"]["matchLabels"], rule
    in_cluster = {(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                   tuple(sorted(peer["podSelector"]["matchLabels"].items())), r["ports"][0]["port"])
                  for r in rules for peer in r["to"] if "namespaceSelector" in peer}
    pods = example_config.argo.network.service_pods
    expected = {(host.split(".")[1], tuple(sorted(sp.labels.items())), sp.target_port or int(port))
                for host, sp in pods.items()
                for port in {u.rsplit(":", 1)[-1].split("/")[0] for _, u in _urls(example_config, host)}}
    dns = ("kube-system", tuple(sorted(example_config.argo.network.dns_pod_labels.items())), 53)
    assert in_cluster == expected | {dns}  # MLflow and vLLM, by their Services' selectors
    cidrs = {peer["ipBlock"]["cidr"] for r in rules for peer in r["to"] if "ipBlock" in peer}
    assert cidrs == {"10.40.16.0/22", "10.40.0.10/32"}  # S3 endpoint and API server, nothing else
    assert "0.0.0.0/0" not in cidrs


def _urls(config, host):
    from pipelines.argo.checks import pod_endpoints

    return [(k, u) for k, u in pod_endpoints(config) if f"//{host}:" in u]


def test_in_cluster_endpoint_without_its_pods_is_reported_and_blocked(example_config):
    config = example_config.model_copy(deep=True)
    del config.argo.network.service_pods["mlflow.mlops.svc.cluster.local"]
    policy, warnings = network_policy(config)
    assert any("no argo.network.service_pods entry for mlflow.mlops.svc.cluster.local" in w for w in warnings)
    peers = [p for r in policy["spec"]["egress"] for p in r["to"] if "namespaceSelector" in p]
    assert "mlops" not in {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers}


def test_unlisted_external_endpoint_is_reported(example_config):
    config = example_config.model_copy(deep=True)
    config.argo.network.external_cidrs = {}
    _, warnings = network_policy(config)
    assert any("s3.eu-central-1.amazonaws.com" in w for w in warnings)


def test_no_secret_values_and_a_complete_secret_list(example_config):
    docs, manifests = _docs(example_config)
    for secret in manifests.secrets:
        assert set(secret["stringData"].values()) == {""}
    for doc in docs:
        if doc["kind"] == "Secret":
            assert "data" not in doc and "stringData" not in doc  # Kubernetes fills the token in
    names = {s["metadata"]["name"] for s in manifests.secrets}
    assert {example_config.argo.s3_secret.name, "eurolora-llm", "eurolora-mlflow"} <= names


def test_artifact_repository_configmap(example_config):
    docs, _ = _docs(example_config)
    cm = next(d for d in docs if d["metadata"]["name"] == example_config.argo.artifact_repository_configmap)
    key = example_config.argo.artifact_repository_key
    assert cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == key
    repo = yaml.safe_load(cm["data"][key])
    assert types_errors(repo, "io.argoproj.workflow.v1alpha1.ArtifactRepository") == []
    s3 = repo["s3"]
    assert s3["endpoint"] == "s3.eu-central-1.amazonaws.com" and s3["region"] == "eu-central-1"
    assert s3["bucket"] == "eurolora-artifacts-eu-central-1" and "{{workflow.name}}" in s3["keyFormat"]
    assert set(s3["accessKeySecret"]) == {"name", "key"}  # by reference only
    cache = next(d for d in docs if d["metadata"]["name"] == example_config.argo.memoize_configmap)
    assert cache["metadata"]["labels"]["workflows.argoproj.io/configmap-type"] == "Cache"


def test_the_api_server_by_its_service_name_is_covered_by_its_cidrs(example_config):
    config = example_config.model_copy(deep=True)
    config.canary.kubernetes.api_url = "https://kubernetes.default.svc"
    policy, warnings = network_policy(config)
    assert not any("kubernetes.default.svc" in w for w in warnings)
    api = [r for r in policy["spec"]["egress"] if any("ipBlock" in p for p in r["to"])
           and {"protocol": "TCP", "port": 6443} in r["ports"]]
    assert [p["ipBlock"]["cidr"] for r in api for p in r["to"]] == config.argo.network.api_server_cidrs
