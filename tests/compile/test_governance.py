"""Issue 16 in the compiled and shipped manifests: retention (workflow TTL, pod GC, artifact GC), SSE-KMS for
Argo's artifact repository, and least privilege (tokens only where needed, Pod Security `restricted`, only
vLLM's inference paths behind the gateway, required secrets, images by digest)."""

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipelines.argo.cluster import ARTIFACT_GC_ROLE_RULES, EXECUTOR_ROLE_RULES, cluster_manifests
from pipelines.argo.compiler import compile_pipeline
from pipelines.argo.settings import Images
from steps.common.retention import RetentionSettings
from tests.compile.conftest import fake_pipeline
from tests.compile.schemas import crd_errors

K8S_VERSION = "1.33"
SERVING = Path(__file__).resolve().parents[2] / "manifests" / "serving"
DIGEST = "sha256:" + "ab" * 32


def _pod_templates(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in template["spec"]["templates"] if "script" in t or "container" in t]


def _serving(kind: str, name: str) -> dict[str, Any]:
    docs = [d for f in sorted(SERVING.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_workflow_ttl_and_artifact_gc_follow_the_retention_settings(example_config):
    config = example_config.model_copy(update={"retention": RetentionSettings(logs_days=9, reports_days=4)})
    compiled = compile_pipeline(config, fake_pipeline())
    for obj in (compiled.template, compiled.inline_workflow):
        spec = obj["spec"]
        assert spec["ttlStrategy"] == {"secondsAfterCompletion": 4 * 24 * 3600}
        assert spec["podGC"]["strategy"] == config.argo.pod_gc_strategy
        gc = spec["artifactGC"]
        assert gc["strategy"] == "OnWorkflowDeletion"
        assert gc["serviceAccountName"] == config.argo.artifact_gc_service_account
        assert json.loads(gc["podSpecPatch"])["securityContext"]["runAsNonRoot"] is True
        assert crd_errors(obj) == []
    # the nightly and manual runs take the template's spec, TTL and GC included
    for obj in (compiled.workflow, compiled.cron):
        run_spec = obj["spec"].get("workflowSpec", obj["spec"])
        assert run_spec["workflowTemplateRef"]["name"] == compiled.template["metadata"]["name"]
        assert "ttlStrategy" not in run_spec


def test_artifact_gc_account_may_only_handle_its_gc_tasks(example_config):
    docs = cluster_manifests(example_config).files["10-rbac.yaml"]
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert roles[example_config.argo.artifact_gc_service_account] == ARTIFACT_GC_ROLE_RULES
    assert {r for rule in ARTIFACT_GC_ROLE_RULES for r in rule["resources"]} == {
        "workflowartifactgctasks", "workflowartifactgctasks/status"}


def test_argo_artifact_repository_encrypts_with_the_eu_key(example_config):
    key = example_config.storage.s3.kms_key_arn
    assert key and key.split(":")[3] == "eu-central-1"
    (configmap,) = cluster_manifests(example_config).files["30-artifact-repository.yaml"]
    repo = yaml.safe_load(configmap["data"][example_config.argo.artifact_repository_key])
    assert repo["s3"]["encryptionOptions"] == {"enableEncryption": True, "kmsKeyId": key}
    shipped = Path(__file__).resolve().parents[2] / "manifests" / "cluster" / "30-artifact-repository.yaml"
    assert key in shipped.read_text()


def test_only_the_canary_pod_mounts_a_token(real_compiled, example_config):
    argo = example_config.argo
    for obj in (real_compiled.template, real_compiled.inline_workflow):
        spec = obj["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["executor"] == {"serviceAccountName": argo.executor_service_account}
        assert spec["serviceAccountName"] == argo.service_account
    with_token = {t["name"]: t["serviceAccountName"] for t in _pod_templates(real_compiled.template)
                  if t.get("automountServiceAccountToken")}
    assert with_token == {"canary": "eurolora-canary"} == argo.step_service_accounts
    docs = cluster_manifests(example_config).files["10-rbac.yaml"]
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    assert accounts[argo.service_account]["automountServiceAccountToken"] is False
    assert accounts["eurolora-canary"]["automountServiceAccountToken"] is False  # the pod asks for it
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert argo.service_account not in roles and "eurolora-canary" not in roles
    assert roles[argo.executor_service_account] == EXECUTOR_ROLE_RULES
    binding = _serving("RoleBinding", "eurolora-canary")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "eurolora-canary", "namespace": "eurolora"}]


def test_vllm_pods_run_as_their_own_account_without_a_token():
    pod = _serving("Deployment", "vllm")["spec"]["template"]["spec"]
    account = _serving("ServiceAccount", pod["serviceAccountName"])
    assert pod["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    kubernetes_validate.validate(account, K8S_VERSION, strict=True)


def _restricted_violations(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """The Pod Security `restricted` profile's checks on one container (pod-level fields may satisfy them)."""
    sc, psc = container.get("securityContext", {}), pod.get("securityContext", {})
    problems = []
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot")
    if (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities")
    return problems


def test_namespace_enforces_restricted_and_every_compiled_pod_meets_it(compiled, example_config):
    (namespace,) = cluster_manifests(example_config).files["00-namespace.yaml"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    kubernetes_validate.validate(namespace, K8S_VERSION, strict=True)
    pod = compiled.template["spec"]
    templates = _pod_templates(compiled.template)
    assert templates
    for template in templates:
        assert _restricted_violations(pod, template.get("script") or template["container"]) == [], template["name"]
    gc_patch = json.loads(pod["artifactGC"]["podSpecPatch"])
    assert _restricted_violations(gc_patch, gc_patch["containers"][0]) == []


def test_a_container_missing_a_restricted_field_is_caught(fake_compiled):
    template = json.loads(json.dumps(_pod_templates(fake_compiled.template)[0]))
    template["script"]["securityContext"].pop("capabilities")
    assert _restricted_violations(fake_compiled.template["spec"], template["script"]) == ["capabilities"]


def test_gateway_routes_only_vllm_inference_paths():
    route = _serving("HTTPRoute", "vllm")
    paths = {(m["path"]["type"], m["path"]["value"]) for rule in route["spec"]["rules"] for m in rule["matches"]}
    assert paths == {("Exact", "/v1/chat/completions"), ("Exact", "/v1/completions"), ("Exact", "/v1/models")}
    for admin in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
        assert not any(admin == v or (t == "PathPrefix" and admin.startswith(v.rstrip("/") + "/"))
                       for t, v in paths), admin


def test_cluster_example_secrets_are_required(compiled, example_config):
    assert example_config.argo.secret_env and not any(s.optional for s in example_config.argo.secret_env)
    for template in _pod_templates(compiled.template):
        for env in (template.get("script") or template["container"]).get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref.get("optional", False) is False, (template["name"], env["name"])


def test_images_are_pinned_by_digest_when_one_is_known(example_config):
    assert Images(tag="1.0", digests={"cpu": DIGEST}).ref("cpu").endswith(f"/eurolora-cpu:1.0@{DIGEST}")
    assert Images(tag="1.0").ref("cpu").endswith("/eurolora-cpu:1.0")
    with pytest.raises(ValueError, match="not an image digest"):
        Images(digests={"cpu": "sha256:short"})
    argo = example_config.argo.model_copy(update={"images": Images(registry=example_config.argo.images.registry,
                                                                    digests={"cpu": DIGEST})})
    compiled = compile_pipeline(example_config.model_copy(update={"argo": argo}), fake_pipeline())
    images = {(t.get("script") or t["container"])["image"] for t in _pod_templates(compiled.template)}
    assert any(i.endswith(f"eurolora-cpu:0.1.0@{DIGEST}") for i in images)
    assert crd_errors(compiled.template) == []
