"""What every pod template of the pipeline shares: image, environment and secrets, resources, scratch
volumes, the EU region pin, the restricted security context and the retry policy."""

import json
from typing import Any

from hera.workflows import RunnerScriptConstructor, Script
from hera.workflows import models as m

from pipelines.argo import constants as C
from pipelines.argo.graph import Build
from pipelines.argo.settings import Resources
from steps.common.contract import EXIT_TRANSIENT
from steps.common.residency import OFFLINE_ENV

REGION_LABEL = "topology.kubernetes.io/region"
RETRY_EXPRESSION = f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}'
# The memo-key and exit-handler pods: they only read and write small records.
CONTROL_RESOURCES = Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})


def labels(build: Build) -> dict[str, str]:
    return {
        f"{C.LABEL_PREFIX}/pipeline": build.config.name,
        f"{C.LABEL_PREFIX}/adapter-family": build.config.adapter_family,
        C.PART_OF_LABEL: C.PART_OF,
    }


def region_affinity(regions: list[str]) -> m.Affinity:
    return m.Affinity(node_affinity=m.NodeAffinity(
        required_during_scheduling_ignored_during_execution=m.NodeSelector(node_selector_terms=[
            m.NodeSelectorTerm(match_expressions=[
                m.NodeSelectorRequirement(key=REGION_LABEL, operator="In", values=regions)])])))


def environment(build: Build, extra: dict[str, str] | None = None) -> list[m.EnvVar]:
    """Offline, unbuffered, caches on scratch; then every secret by reference, never by value."""
    plain = {**OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
             "HOME": f"{C.SCRATCH_DIR}/home", "XDG_CACHE_HOME": f"{C.SCRATCH_DIR}/cache",
             "HF_HOME": f"{C.SCRATCH_DIR}/hf", "TMPDIR": "/tmp", **(extra or {})}
    env = [m.EnvVar(name=k, value=v) for k, v in plain.items()]
    for secret in _secret_env(build):
        env.append(m.EnvVar(name=secret["env"], value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(
            name=secret["secret"], key=secret["key"], optional=secret["optional"] or None))))
    return env


def _secret_env(build: Build) -> list[dict[str, Any]]:
    creds, s3 = build.config.storage.s3.credentials, build.argo.s3_secret
    items = [
        {"env": creds.access_key_id_env, "secret": s3.name, "key": s3.access_key_id_key, "optional": False},
        {"env": creds.secret_access_key_env, "secret": s3.name, "key": s3.secret_access_key_key, "optional": False},
    ]
    return items + [s.model_dump() for s in build.argo.secret_env]


def resources(res: Resources, gpu_resource: str) -> m.ResourceRequirements:
    requests, limits = dict(res.requests), dict(res.limits)
    if res.gpu:  # extended resources need requests == limits; both written, nothing left to defaulting
        requests[gpu_resource] = limits[gpu_resource] = str(res.gpu)
    return m.ResourceRequirements(requests=requests or None, limits=limits or None)


def volumes(build: Build, gpu: bool) -> tuple[list[m.Volume], list[m.VolumeMount]]:
    """Scratch and /tmp on emptyDirs (the root file system is read-only); a GPU pod also gets a
    memory-backed /dev/shm for its data loaders."""
    vols = [("scratch", C.SCRATCH_DIR, build.argo.scratch_size, None), ("tmp", "/tmp", "8Gi", None)]
    if gpu:
        vols.append(("dshm", "/dev/shm", build.argo.shm_size, "Memory"))
    return ([m.Volume(name=n, empty_dir=m.EmptyDirVolumeSource(size_limit=size, medium=medium))
             for n, _, size, medium in vols],
            [m.VolumeMount(name=n, mount_path=path) for n, path, _, _ in vols])


def restricted_security() -> m.SecurityContext:
    return m.SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                             run_as_non_root=True, capabilities=m.Capabilities(drop=["ALL"]),
                             seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


# Argo creates the artifact GC pod itself; this patch makes it pass the namespace's `restricted` Pod Security.
ARTIFACT_GC_POD_PATCH = json.dumps({
    "securityContext": {"runAsNonRoot": True, "runAsUser": 8737, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "main", "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}],
})


def retry_strategy(build: Build) -> m.RetryStrategy:
    """Retry pod errors and the steps' transient exit code, never a step's own failure."""
    r = build.argo.retry
    return m.RetryStrategy(
        limit=str(r.limit), retry_policy="Always", expression=RETRY_EXPRESSION,
        backoff=m.Backoff(duration=r.backoff_duration, factor=str(r.backoff_factor),
                          max_duration=r.backoff_max_duration))


def pod_settings(build: Build, family: str, res: Resources, timeout_s: int,
                 extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of a pod's Script: everything above, plus GPU tolerations and node selector
    when `res` asks for a GPU."""
    argo, gpu = build.argo, res.gpu > 0
    pod_volumes, mounts = volumes(build, gpu)
    settings: dict[str, Any] = {
        "image": argo.images.ref(family), "image_pull_policy": argo.images.pull_policy,
        "command": ["python"], "env": environment(build, extra_env), "resources": resources(res, argo.gpu_resource),
        "affinity": region_affinity(build.regions), "volumes": pod_volumes, "volume_mounts": mounts,
        "security_context": restricted_security(), "active_deadline_seconds": str(timeout_s),
        "retry_strategy": retry_strategy(build),
    }
    if gpu:
        settings["tolerations"] = [m.Toleration(key=argo.gpu_toleration_key, operator="Exists",
                                                effect="NoSchedule")]
        if argo.gpu_node_selector:
            settings["node_selector"] = dict(argo.gpu_node_selector)
    return settings


class RunnerWithOutputDefaults(RunnerScriptConstructor):
    """Hera's runner constructor, plus `valueFrom.default: ""` on every output parameter.

    A step exiting 75 (steps.common.contract.transient_exit) leaves through SystemExit, past the handler
    in which Hera's runner writes empty placeholders for the outputs; without a default, Argo's executor
    would fail the node on the missing files and bury the step's own error under that message.
    """

    def transform_template_post_build(self, instance: Script, template: Any) -> Any:
        for param in (template.outputs.parameters if template.outputs else None) or []:
            if param.value_from is not None and param.value_from.default is None:
                param.value_from.default = ""
        return super().transform_template_post_build(instance, template)
