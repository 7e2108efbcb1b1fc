"""Compiles the pipeline (pipelines/spec.py) into Argo objects with Hera: a versioned WorkflowTemplate,
a Workflow that references it, and a nightly CronWorkflow. Generic over the Pipeline: every node becomes
one script template run by Hera's runner (`python -m hera.workflows.runner -e steps.<step>:run`) on its
image family, and one DAG task.

Bindings become arguments: FromConfig -> a workflow parameter (overridable at submit), FromStep -> the
upstream task's output parameter, FromRun("context") -> the RuntimeContext JSON (run id = workflow name,
scratch on an emptyDir; not a parameter, so the residency policy cannot be overridden at submit),
FromRun("code_version") -> the compiled pipeline code version. Argument names are the template's input
names, derived from each step's Input model as Hera derives them (pipelines/argo/stepio.py).

The parts, by concern: graph.py (the checked pipeline and its parameters), pods.py (what every pod
shares), metrics.py, templates.py (the pod templates), dag.py (tasks and mutex sub-DAGs), objects.py
(the Argo objects). Deterministic: the same config and code give byte-identical YAML (no timestamps, no
random names).
"""

from dataclasses import dataclass, field
from typing import Any

from pipelines.argo import objects
from pipelines.argo.checks import CompileError, cluster_problems
from pipelines.argo.graph import new_build
from pipelines.config import PipelineConfig
from pipelines.spec import Pipeline


@dataclass
class CompiledPipeline:
    template: dict[str, Any]  # WorkflowTemplate
    workflow: dict[str, Any]  # Workflow referencing the template (manual trigger)
    cron: dict[str, Any]  # CronWorkflow referencing the template (nightly trigger)
    inline_workflow: dict[str, Any]  # the same run with the template's spec inline (needs no template)
    template_name: str
    code_version: str
    parameters: dict[str, str]  # workflow parameter -> compiled value
    pipeline: Pipeline
    warnings: list[str] = field(default_factory=list)


def compile_pipeline(config: PipelineConfig, pipeline: Pipeline | None = None) -> CompiledPipeline:
    """The Argo objects for `config`; raises CompileError listing every problem."""
    from pipelines.spec import build_pipeline

    problems = cluster_problems(config)
    if problems:
        raise CompileError(problems)
    build = new_build(config, (pipeline or build_pipeline()).placed(config))
    template = objects.workflow_template(build)
    name = template["metadata"]["name"]
    return CompiledPipeline(
        template=template, workflow=objects.workflow(build, name), cron=objects.cron(build, name),
        inline_workflow=objects.inline_workflow(build, template), template_name=name,
        code_version=build.code_version, parameters={k: v for k, (_, v) in build.parameters.items()},
        pipeline=build.pipeline, warnings=build.warnings,
    )


def to_yaml(obj: dict[str, Any]) -> str:
    """Block-style YAML in field order; libyaml's emitter when present (same text, ~3x faster)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(obj, Dumper=dumper, sort_keys=False, width=4096, allow_unicode=True)
