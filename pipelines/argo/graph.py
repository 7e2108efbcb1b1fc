"""What every part of the compiler reads: the pipeline checked against its steps' models and the config,
the workflow parameters its FromConfig bindings become, and the RuntimeContext every pod receives."""

from dataclasses import dataclass, field

from pipelines.argo import constants as C
from pipelines.argo.checks import CompileError, pinned_regions
from pipelines.argo.settings import ArgoSettings
from pipelines.argo.stepio import (
    TEMPLATE_NAME_RE,
    StepIO,
    parameter_name,
    serialize_value,
    step_io,
    task_name,
)
from pipelines.cache_key import pipeline_code_version
from pipelines.config import PipelineConfig
from pipelines.spec import FromConfig, FromStep, Node, Pipeline
from steps.common.contract import RuntimeContext

MUTEX_PREFIX = "mutex-"  # the sub-DAG holding a mutex for its steps: mutex-<name>
RUN_ID = "{{workflow.name}}"


@dataclass(frozen=True)
class Build:
    """One compilation's inputs, checked: the config, the nodes in order and their Argo names."""

    config: PipelineConfig
    pipeline: Pipeline
    nodes: list[Node]
    io: dict[str, StepIO]
    regions: list[str]
    parameters: dict[str, tuple[str, str]]  # workflow parameter -> (config path, compiled value)
    context_json: str
    code_version: str
    warnings: list[str] = field(default_factory=list)

    @property
    def argo(self) -> ArgoSettings:
        return self.config.argo


def new_build(config: PipelineConfig, pipeline: Pipeline) -> Build:
    """The checked Build of `pipeline` for `config`; raises CompileError listing every problem."""
    nodes = pipeline.ordered()
    io = {n.name: step_io(n) for n in nodes}
    owners: dict[str, str] = {}  # Argo name -> the step or mutex that takes it
    problems = [p for node in nodes
                for p in [*_name_problems(node, owners), *_binding_problems(config, pipeline, io, node)]]
    if problems:
        raise CompileError(problems)
    context = RuntimeContext(run_id=RUN_ID, storage=config.storage, residency=config.residency,
                             scratch_dir=C.SCRATCH_DIR)
    return Build(config=config, pipeline=pipeline, nodes=nodes, io=io, regions=pinned_regions(config),
                 parameters=workflow_parameters(config, nodes), context_json=context.model_dump_json(),
                 code_version=pipeline_code_version(), warnings=_settings_warnings(config, nodes))


def _binding_problems(config: PipelineConfig, pipeline: Pipeline, io: dict[str, StepIO], node: Node) -> list[str]:
    """A binding or `when` of the node that reads nothing, or a mutex it follows from outside."""
    problems = []
    for fld, binding in node.bindings.items():
        if isinstance(binding, FromStep) and binding.output not in io[binding.step].outputs:
            problems.append(f"step {node.name}: input {fld} reads {binding.step}.{binding.output}, which is not "
                            f"an output of {binding.step} (outputs: {sorted(io[binding.step].outputs)})")
        elif isinstance(binding, FromConfig):
            try:
                config.get(binding.path)
            except AttributeError:
                problems.append(f"step {node.name}: input {fld} reads config path {binding.path!r}, "
                                "which does not exist")
    if node.when and node.when.output not in io[node.when.step].outputs:
        problems.append(f"step {node.name}: `when` reads {node.when.step}.{node.when.output}, which is "
                        "not an output of that step")
    mutexes = {pipeline.node(up).mutex or "" for up in node.upstream} - {"", node.mutex or ""}
    problems += [f"step {node.name} follows a step of mutex {mutex!r}, whose steps run inside one sub-DAG: only "
                 "steps of the same mutex may follow them" for mutex in sorted(mutexes)]
    return problems


def _name_problems(node: Node, owners: dict[str, str]) -> list[str]:
    """The node's Argo names, invalid or already taken (steps, their memo-key templates and the mutex
    sub-DAGs share one template namespace); records the names it takes in `owners`."""
    problems = []
    task = task_name(node.name)
    if not TEMPLATE_NAME_RE.match(task) or len(task) > 100:
        problems.append(f"step {node.name}: {task!r} is not a valid Argo task/template name")
    if task in owners or f"{task}-memo-key" in owners:
        problems.append(f"steps {owners.get(task)} and {node.name} map to the same Argo name {task!r}")
    owners[task] = node.name
    if node.memoize:
        owners[f"{task}-memo-key"] = node.name
    if node.mutex:
        group = MUTEX_PREFIX + task_name(node.mutex)
        owner = owners.setdefault(group, f"mutex {node.mutex}")
        if owner != f"mutex {node.mutex}":
            problems.append(f"mutex {node.mutex!r}: its sub-DAG name {group!r} is taken by step {owner}")
    return problems


def _settings_warnings(config: PipelineConfig, nodes: list[Node]) -> list[str]:
    names = {n.name for n in nodes}
    argo = config.argo
    warnings = [f"argo: settings for step {step!r}, which is not in the pipeline"
                for step in [*argo.step_resources, *argo.step_timeouts_s] if step not in names]
    warnings += [f"argo.ui_report_steps: {step!r} is not in the pipeline (yet); no report"
                 for step in argo.ui_report_steps if step not in names]
    return warnings


def workflow_parameters(config: PipelineConfig, nodes: list[Node]) -> dict[str, tuple[str, str]]:
    """Workflow parameter name -> (config path, value) for every FromConfig binding."""
    params: dict[str, tuple[str, str]] = {}
    for node in nodes:
        for binding in node.bindings.values():
            if isinstance(binding, FromConfig):
                name = parameter_name(binding.path)
                if name in params and params[name][0] != binding.path:
                    raise CompileError([(f"config paths {params[name][0]!r} and {binding.path!r} map to the "
                                        f"same workflow parameter {name!r}")])
                params[name] = (binding.path, serialize_value(config.get(binding.path)))
    return params
