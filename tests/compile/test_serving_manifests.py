"""manifests/serving: built-in kinds validated strictly by kubernetes-validate (offline), custom resources
(ServiceMonitor, InferencePool, InferenceModelRewrite, HTTPRoute) checked field by field, and the policy:
multi-LoRA with runtime updates, offline and untracked, EU nodes, GPU, probes, non-root, secrets only by
reference, and names that agree across the objects, with the canary step's defaults and with the cluster
config's canary block (pipelines/configs/cluster-example.yaml)."""

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipelines.argo.served_models import SERVING_NAMESPACE, SHIPPED_SERVICES
from pipelines.config import CONFIG_DIR, load_config
from pipelines.serving.flags import SERVER_ENV, SERVER_MODULE, deployment_args
from steps.canary.adapter_set import CONFIG_KEY, AdapterSet
from steps.canary.routing import POOL_GROUP, REWRITE_API
from steps.canary.settings import CanarySettings
from steps.common.residency import EU_REGIONS
from steps.finetune.settings import LoraProfile

K8S_VERSION = "1.31"
SERVING = Path(__file__).resolve().parents[2] / "manifests" / "serving"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("inference.networking.k8s.io/v1", "InferencePool"),
          (REWRITE_API, "InferenceModelRewrite"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
          ("monitoring.coreos.com/v1", "PrometheusRule")}
SECRETISH = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


def _docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(SERVING.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in _docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


DEPLOYMENTS = ("vllm", "vllm-teacher")  # the student with its adapters, the QA writer and judge


def _pod(deployment: str = "vllm") -> dict[str, Any]:
    return _one("Deployment", deployment)["spec"]["template"]


def _containers(deployment: str = "vllm") -> dict[str, dict[str, Any]]:
    spec = _pod(deployment)["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn matchExpressions) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in ("In", "NotIn"), expr
        if (labels.get(expr["key"]) in expr["values"]) != (expr["operator"] == "In"):
            return False
    return True


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_builtin_kinds_validate_strictly_and_custom_ones_are_known() -> None:
    seen = set()
    for doc in _docs():
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"].get("namespace", "inference") == "inference" or doc["kind"] == "Namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "eurolora"
        seen.add(doc["kind"])
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "ServiceMonitor", "InferencePool",
            "InferenceModelRewrite", "HTTPRoute", "Role", "RoleBinding", "NetworkPolicy", "ClusterRole",
            "ClusterRoleBinding", "ServiceAccount", "Secret", "PrometheusRule"} <= seen


def test_strict_validation_catches_a_misspelled_field() -> None:
    deployment = _one("Deployment", "vllm")
    deployment["spec"]["template"]["spec"]["tolerations"][0]["efect"] = "NoSchedule"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_vllm_runs_with_the_flags_and_env_of_the_local_server() -> None:
    """One source (pipelines/serving/flags.py) for the Deployment and `eurolora run`'s local vLLM."""
    vllm = _containers()["vllm"]
    assert vllm["command"] == ["python", "-m", SERVER_MODULE]
    assert vllm["args"] == deployment_args()
    plain_env = {e["name"]: e["value"] for e in vllm["env"] if "value" in e}
    assert plain_env == {**SERVER_ENV, "HOME": plain_env["HOME"]}
    assert f"--port={vllm['ports'][0]['containerPort']}" in vllm["args"]


def test_vllm_serves_multi_lora_with_runtime_updates_offline() -> None:
    argv = _containers()["vllm"]["args"]
    assert "--enable-lora" in argv
    flags = dict(a.split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    assert int(flags["--max-loras"]) >= 2  # champion + challenger
    # Every rank the finetune step may train is servable, and no larger one is reserved on the GPU.
    (max_rank,) = [m.le for m in LoraProfile.model_fields["r"].metadata if getattr(m, "le", None) is not None]
    assert int(flags["--max-lora-rank"]) == max_rank
    env = _env(_containers()["vllm"])
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_run_offline_on_eu_gpu_nodes_non_root_with_probes(deployment: str) -> None:
    env = _env(_containers(deployment)["vllm"])
    for key, value in {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        assert env[key] == value, key
    for name, container in _containers(deployment).items():
        assert _env(container).get("DO_NOT_TRACK") == "1", name
        assert _env(container).get("HF_HUB_OFFLINE") == "1", name
    spec = _pod(deployment)["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    for term in terms:
        (expr,) = [e for e in term["matchExpressions"] if e["key"] == "topology.kubernetes.io/region"]
        assert expr["operator"] == "In" and expr["values"] and set(expr["values"]) <= set(EU_REGIONS)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    vllm = _containers(deployment)["vllm"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(vllm)
    assert vllm["livenessProbe"]["httpGet"]["path"] == "/health"
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for name, container in _containers(deployment).items():
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert container["image"].startswith("123456789012.dkr.ecr.eu-central-1.amazonaws.com/"), name
        assert "limits" in container["resources"] and "memory" in container["resources"]["limits"], name


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_secrets_only_by_reference(deployment: str) -> None:
    # The only Secret is a service-account token the cluster fills in: no credential in the manifests.
    for secret in [d for d in _docs() if d["kind"] == "Secret"]:
        assert secret["type"] == "kubernetes.io/service-account-token", secret
        assert not {"data", "stringData"} & set(secret), secret
    for name, container in _containers(deployment).items():
        for entry in container.get("env", []):
            if SECRETISH.search(entry["name"]):
                assert "value" not in entry, (name, entry["name"])
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, (name, entry["name"])
    assert "envFrom" not in json.dumps(_pod(deployment))


def test_adapter_set_is_declarative_and_restarted_pods_restore_it() -> None:
    configmap = _one("ConfigMap", "vllm-adapters")
    adapter_set = AdapterSet.model_validate_json(configmap["data"][CONFIG_KEY])
    assert adapter_set.adapters and any(a.role == "champion" for a in adapter_set.adapters)
    for entry in adapter_set.adapters:
        assert re.fullmatch(rf"{adapter_set.family}-v\d+", entry.name) and entry.name.endswith(f"-v{entry.version}")
        assert entry.uri.startswith("s3://")
    assert adapter_set.storage is not None and adapter_set.storage.s3.endpoint_url
    adapter_set.residency.check_url(adapter_set.storage.s3.endpoint_url, "storage.s3.endpoint_url")
    adapter_set.residency.check_region(adapter_set.storage.s3.region, "storage.s3.region")
    # The set is mounted where the sync commands and the readiness probe read it.
    containers = _containers()
    volumes = {v["name"]: v for v in _pod()["spec"]["volumes"]}
    assert volumes["adapter-set"]["configMap"]["name"] == "vllm-adapters"
    for name in ("fetch", "adapter-sync", "vllm"):
        mounts = {m["name"]: m["mountPath"] for m in containers[name]["volumeMounts"]}
        command = containers[name]["command"] if name != "vllm" else containers[name]["readinessProbe"]["exec"]["command"]
        assert command[:3] == ["python", "-m", "pipelines.serving.adapter_sync"]
        assert command[command.index("--config") + 1] == f"{mounts['adapter-set']}/{CONFIG_KEY}"
    assert containers["fetch"]["command"][3] == "fetch" and "restartPolicy" not in containers["fetch"]
    assert containers["adapter-sync"]["command"][3] == "run" and containers["adapter-sync"]["restartPolicy"] == "Always"
    assert containers["vllm"]["readinessProbe"]["exec"]["command"][3] == "ready"
    vllm_mounts = {m["name"]: m["mountPath"] for m in containers["vllm"]["volumeMounts"]}
    assert f"--model={vllm_mounts['models']}/base" in containers["vllm"]["args"]


def test_routing_splits_between_versioned_adapters_of_one_pool() -> None:
    labels = _pod()["metadata"]["labels"]
    port = _containers()["vllm"]["ports"][0]["containerPort"]
    pool = _one("InferencePool", "vllm")
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pool["spec"]["targetPorts"] == [{"number": port}]
    assert pool["spec"]["endpointPickerRef"]["name"] and pool["spec"]["endpointPickerRef"]["port"]["number"]
    adapter_set = AdapterSet.model_validate_json(_one("ConfigMap", "vllm-adapters")["data"][CONFIG_KEY])
    rewrite = _one("InferenceModelRewrite", adapter_set.family)
    assert rewrite["apiVersion"] == REWRITE_API
    assert rewrite["spec"]["poolRef"] == {"group": POOL_GROUP, "kind": "InferencePool", "name": "vllm"}
    (rule,) = rewrite["spec"]["rules"]
    assert rule["matches"] == [{"model": {"type": "Exact", "value": adapter_set.family}}]
    served = {a.name for a in adapter_set.adapters}
    assert {t["modelRewrite"] for t in rule["targets"]} <= served
    assert all(t.get("weight", 1) >= 1 for t in rule["targets"])
    route = _one("HTTPRoute", "vllm")
    (http_rule,) = route["spec"]["rules"]
    assert http_rule["backendRefs"] == [{"group": POOL_GROUP, "kind": "InferencePool", "name": "vllm"}]
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"


def test_services_and_scraping_select_the_vllm_pods() -> None:
    labels = _pod()["metadata"]["labels"]
    service, headless = _one("Service", "vllm"), _one("Service", "vllm-replicas")
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is False
    monitor = _one("ServiceMonitor", "vllm")
    for scraped in (service, _one("Service", "vllm-teacher")):
        assert _selects(monitor["spec"]["selector"], scraped["metadata"]["labels"])
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert int(endpoint["interval"].rstrip("s")) < CanarySettings().metrics.scrape_settle_s


def test_prometheus_rule_fields() -> None:
    """The PrometheusRule's shape as the Operator's CRD has it (promtool checks the rules themselves:
    tests/compile/test_prometheus_rules.py)."""
    rule = _one("PrometheusRule", "vllm")
    assert set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"], group["name"]
        for entry in group["rules"]:
            assert ("record" in entry) != ("alert" in entry) and isinstance(entry["expr"], str), entry
            if "alert" in entry:
                assert set(entry) == {"alert", "expr", "for", "labels", "annotations"}, entry["alert"]
                assert entry["labels"]["severity"] in ("warning", "critical") and entry["annotations"]["summary"]
            else:
                assert set(entry) == {"record", "expr"} and re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+",
                                                                         entry["record"]), entry


def _served_names(container: dict[str, Any]) -> tuple[str, ...]:
    """`--served-model-name` as vLLM's own argument parser reads the container's server arguments."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    assert container["command"] == ["python", "-m", SERVER_MODULE]
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(container["args"])
    return tuple(args.served_model_name)


def test_the_served_names_compile_checks_are_the_manifests_ones() -> None:
    """pipelines/argo/served_models.py (what `eurolora compile` checks a config against) is exactly what the
    manifests serve: each Service, the vLLM pods its selector picks, their --served-model-name."""
    derived = {}
    for service in [d for d in _docs() if d["kind"] == "Service"]:
        names = {_served_names(_containers(name)["vllm"]) for name in DEPLOYMENTS
                 if _selects({"matchLabels": service["spec"]["selector"]}, _pod(name)["metadata"]["labels"])}
        assert len(names) == 1, (service["metadata"]["name"], names)
        assert service["metadata"]["namespace"] == SERVING_NAMESPACE
        derived[service["metadata"]["name"]] = names.pop()
    assert derived == {s.service: s.names for s in SHIPPED_SERVICES}
    assert {d["metadata"]["name"] for d in _docs() if d["kind"] == "Deployment"} == set(DEPLOYMENTS)


def test_canary_may_patch_exactly_its_two_objects() -> None:
    role, binding = _one("Role", "eurolora-canary"), _one("RoleBinding", "eurolora-canary")
    defaults = CanarySettings().kubernetes
    adapter_set = AdapterSet.model_validate_json(_one("ConfigMap", "vllm-adapters")["data"][CONFIG_KEY])
    allowed = {(g, r, n) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for n in rule["resourceNames"]}
    assert allowed == {("", "configmaps", defaults.adapter_configmap),
                       ("inference.networking.x-k8s.io", "inferencemodelrewrites",
                        defaults.model_rewrite or adapter_set.family)}
    assert all(set(rule["verbs"]) <= {"get", "patch"} for rule in role["rules"])
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "eurolora-canary", "namespace": "eurolora"}]
    assert defaults.namespace == "inference" and defaults.pool == _one("InferencePool", "vllm")["metadata"]["name"]


def test_network_policy_limits_who_reaches_vllm() -> None:
    policy = _one("NetworkPolicy", "vllm")
    for deployment in DEPLOYMENTS:
        assert _selects(policy["spec"]["podSelector"], _pod(deployment)["metadata"]["labels"]), deployment
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    cidrs = [peer["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert "0.0.0.0/0" not in cidrs


def _cluster_canary() -> CanarySettings:
    return load_config(CONFIG_DIR / "cluster-example.yaml").canary


def test_the_cluster_canary_finds_the_replicas_adapters_and_routing_of_these_manifests() -> None:
    canary = _cluster_canary()
    headless = _one("Service", "vllm-replicas")
    port = headless["spec"]["ports"][0]["port"]
    ns = headless["metadata"]["namespace"]
    assert canary.replica_dns == f"{headless['metadata']['name']}.{ns}.svc.cluster.local:{port}"
    assert canary.replicas == [] and canary.routing == "inference_model_rewrite"
    mounts = {m["name"]: m["mountPath"] for m in _containers()["vllm"]["volumeMounts"]}
    assert canary.replica_adapter_dir == mounts["adapters"]
    assert canary.kubernetes.namespace == ns and canary.kubernetes.pool == _one("InferencePool", "vllm")["metadata"]["name"]
    vllm = _containers()["vllm"]
    assert f"--served-model-name={canary.base_model_name}" in vllm["args"]


def test_the_endpoint_picker_is_scraped_for_the_series_the_cluster_canary_reads() -> None:
    metrics = _cluster_canary().metrics
    pool = _one("InferencePool", "vllm")
    monitor = _one("ServiceMonitor", "vllm-epp")
    # The inferencepool chart names the picker's Service <pool>-epp, labels it so, metrics on `http-metrics`.
    assert pool["spec"]["endpointPickerRef"]["name"] == "vllm-epp"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm-epp"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert int(endpoint["interval"].rstrip("s")) < metrics.scrape_settle_s
    # With the token of an account allowed exactly `get /metrics`.
    secret = _one("Secret", endpoint["authorization"]["credentials"]["name"])
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    binding = _one("ClusterRoleBinding", "eurolora-epp-metrics-reader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "inference"}]
    assert _one("ServiceAccount", account)
    role = _one("ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    # The canary reads the picker's per-target series, in this namespace, and no per-adapter TTFT.
    assert f'namespace="{monitor["metadata"]["namespace"]}"' in metrics.selector
    for series in (metrics.requests, metrics.errors, metrics.e2e):
        assert series.metric.startswith("inference_objective_") and series.model_label == "target_model_name"
    assert metrics.ttft is None
    host = metrics.prometheus_url.split("//", 1)[1].split(":", 1)[0]
    assert host.endswith(".svc.cluster.local")


def test_the_cluster_workflow_pods_may_reach_every_shipped_service_they_call() -> None:
    """Every shipped Service the cluster config calls (the teacher's URLs, the canary's replica_dns) has an
    egress rule in the workflow pods' NetworkPolicy, selecting exactly that Service's pods."""
    from pipelines.argo.checks import pod_endpoints
    from pipelines.argo.cluster import network_policy

    config = load_config(CONFIG_DIR / "cluster-example.yaml")
    services = {f"{d['metadata']['name']}.{SERVING_NAMESPACE}.svc.cluster.local": d
                for d in _docs() if d["kind"] == "Service"}
    called = {url.split("//", 1)[1].split(":", 1)[0] for _, url in pod_endpoints(config)} & set(services)
    assert {"vllm-teacher.inference.svc.cluster.local", "vllm-replicas.inference.svc.cluster.local"} <= called
    policy, _ = network_policy(config)
    allowed = [(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                peer["podSelector"]["matchLabels"], rule["ports"][0]["port"])
               for rule in policy["spec"]["egress"] for peer in rule["to"] if "namespaceSelector" in peer]
    for host in called:
        service = services[host]
        assert (SERVING_NAMESPACE, service["spec"]["selector"], service["spec"]["ports"][0]["port"]) in allowed, host
