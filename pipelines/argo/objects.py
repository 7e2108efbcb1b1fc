"""The Argo objects of one compilation: the versioned WorkflowTemplate (its pod templates and DAGs), and
the Workflow, CronWorkflow and inline Workflow that run it, with their labels, titles and parameters."""

import hashlib
import json
import re
from typing import Any

from hera.workflows import Parameter, WorkflowTemplate
from hera.workflows import models as m

from pipelines.argo import constants as C
from pipelines.argo.dag import ENTRYPOINT, pipeline_dags
from pipelines.argo.graph import Build
from pipelines.argo.metrics import workflow_metrics
from pipelines.argo.pods import ARTIFACT_GC_POD_PATCH, labels
from pipelines.argo.settings import ArgoSettings
from pipelines.argo.templates import EXIT_DAG, exit_templates, memo_key_template, step_template
from steps.common.retention import RetentionSettings

API_VERSION = "argoproj.io/v1alpha1"
DAY_S = 24 * 3600


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eurolora")
    except PackageNotFoundError:
        return "0.0.0"


def workflow_template(build: Build) -> dict[str, Any]:
    """The WorkflowTemplate, named after its content (template_name)."""
    argo = build.argo
    with WorkflowTemplate(
        name="PLACEHOLDER", namespace=argo.namespace, labels=labels(build),
        entrypoint=ENTRYPOINT, on_exit=EXIT_DAG, service_account_name=argo.service_account,
        arguments=[Parameter(name=name, value=value, description=f"config: {path}")
                   for name, (path, value) in build.parameters.items()],
        active_deadline_seconds=argo.workflow_timeout_s,
        automount_service_account_token=False,
        executor=m.ExecutorConfig(service_account_name=argo.executor_service_account),
        pod_gc=m.PodGC(strategy=argo.pod_gc_strategy, delete_delay_duration=argo.pod_gc_delete_delay),
        ttl_strategy=ttl_strategy(build.config.retention),
        artifact_gc=artifact_gc(argo),
        artifact_repository_ref=m.ArtifactRepositoryRef(config_map=argo.artifact_repository_configmap,
                                                        key=argo.artifact_repository_key),
        pod_metadata=m.Metadata(labels=labels(build)),
        workflow_metadata=m.WorkflowMetadata(labels=labels(build)),
        security_context=m.PodSecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001,
                                              fs_group=10001, seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        image_pull_secrets=[m.LocalObjectReference(name=argo.images.pull_secret)] if argo.images.pull_secret else None,
        metrics=workflow_metrics(build.config.name),
    ) as wt:
        for node in build.nodes:
            sio = build.io[node.name]
            if node.memoize:
                memo_key_template(build, sio)
            step_template(build, sio)
        exit_templates(build)
        pipeline_dags(build)
    spec = wt.to_dict()
    spec["metadata"]["name"] = template_name(build, spec)
    spec["metadata"]["annotations"] = {
        f"{C.LABEL_PREFIX}/code-version": build.code_version,
        f"{C.LABEL_PREFIX}/package-version": package_version(),
        C.DESCRIPTION_ANNOTATION: _description(build, None),
    }
    return spec


def ttl_strategy(retention: RetentionSettings) -> m.TTLStrategy:
    """A finished workflow is deleted after the shorter of the log and report retention: it holds the step
    logs and its deletion takes Argo's own artifacts (the judge's report) with it (artifact_gc)."""
    return m.TTLStrategy(seconds_after_completion=min(retention.logs_days, retention.reports_days) * DAY_S)


def artifact_gc(argo: ArgoSettings) -> m.WorkflowLevelArtifactGC:
    """Deleting the workflow (its TTL, or by hand) deletes the artifacts it stored in the repository."""
    return m.WorkflowLevelArtifactGC(strategy="OnWorkflowDeletion",
                                     service_account_name=argo.artifact_gc_service_account,
                                     pod_spec_patch=ARTIFACT_GC_POD_PATCH)


def template_name(build: Build, template: dict[str, Any]) -> str:
    """`<config name>-v<package version>-<hash>`: the hash covers the pipeline code and the compiled
    template without its parameter values, so an identical name means an identical template."""
    skeleton = json.loads(json.dumps(template["spec"]))
    for param in skeleton.get("arguments", {}).get("parameters", []):
        param.pop("value", None)
    digest = hashlib.sha256((build.code_version + json.dumps(skeleton, sort_keys=True)).encode()).hexdigest()
    version = "v" + re.sub(r"[^a-z0-9]+", "-", package_version().lower()).strip("-")
    prefix = build.config.name[: 63 - len(version) - 12]
    return f"{prefix.rstrip('-')}-{version}-{digest[:10]}"


def _description(build: Build, trigger: str | None) -> str:
    config = build.config
    text = f"config {config.name}, base model {config.base_model}, adapter family {config.adapter_family}"
    return f"{text}, trigger {trigger}" if trigger else text


def _run_metadata(build: Build, trigger: str) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations of a run: the trigger, and the title and description the Argo UI lists."""
    run_labels = {**labels(build), f"{C.LABEL_PREFIX}/trigger": trigger}
    annotations = {
        C.TITLE_ANNOTATION: f"{build.config.name} ({build.config.adapter_family}, {trigger})",
        C.DESCRIPTION_ANNOTATION: _description(build, trigger),
    }
    return run_labels, annotations


def _template_run_spec(build: Build, template_name: str) -> m.WorkflowSpec:
    return m.WorkflowSpec(workflow_template_ref=m.WorkflowTemplateRef(name=template_name),
                          arguments=m.Arguments(parameters=[m.Parameter(name=name, value=value)
                                                            for name, (_, value) in build.parameters.items()]))


def workflow(build: Build, template_name: str) -> dict[str, Any]:
    """A manual run of the template."""
    run_labels, annotations = _run_metadata(build, "manual")
    return _dump(m.Workflow(
        api_version=API_VERSION, kind="Workflow",
        metadata=m.ObjectMeta(generate_name=f"{build.config.name}-", namespace=build.argo.namespace,
                              labels=run_labels, annotations=annotations),
        spec=_template_run_spec(build, template_name),
    ))


def cron(build: Build, template_name: str) -> dict[str, Any]:
    """The nightly runs of the template (never two at once)."""
    run_labels, annotations = _run_metadata(build, "nightly")
    sched = build.argo.schedule
    return _dump(m.CronWorkflow(
        api_version=API_VERSION, kind="CronWorkflow",
        metadata=m.ObjectMeta(name=f"{build.config.name}-nightly", namespace=build.argo.namespace,
                              labels=run_labels,
                              annotations={C.DESCRIPTION_ANNOTATION: annotations[C.DESCRIPTION_ANNOTATION]}),
        spec=m.CronWorkflowSpec(
            schedules=list(sched.schedules), timezone=sched.timezone, concurrency_policy="Forbid",
            starting_deadline_seconds=sched.starting_deadline_s,
            successful_jobs_history_limit=sched.successful_jobs_history_limit,
            failed_jobs_history_limit=sched.failed_jobs_history_limit,
            suspend=sched.suspend or None,
            workflow_metadata=m.ObjectMeta(labels=run_labels, annotations=annotations),
            workflow_spec=_template_run_spec(build, template_name),
        ),
    ))


def inline_workflow(build: Build, template: dict[str, Any]) -> dict[str, Any]:
    """A manual run with the template's spec inline (needs no template on the cluster)."""
    run_labels, annotations = _run_metadata(build, "manual")
    spec = json.loads(json.dumps(template["spec"]))
    spec.pop("workflowMetadata", None)
    for param in spec.get("arguments", {}).get("parameters", []):
        param.pop("description", None)
    return {
        "apiVersion": API_VERSION, "kind": "Workflow",
        "metadata": {"generateName": f"{build.config.name}-", "namespace": build.argo.namespace,
                     "labels": {**run_labels, f"{C.LABEL_PREFIX}/template": template["metadata"]["name"]},
                     "annotations": annotations},
        "spec": spec,
    }


def _dump(model: Any) -> dict[str, Any]:
    return json.loads(model.model_dump_json(exclude_none=True, by_alias=True))
