"""The DAG: one task per node (plus its memo-key task), `depends` on the upstream tasks, `when` from an
upstream output. Nodes that share a mutex (promote and canary) become one sub-DAG template that holds the
mutex while all of them run, so no other run can slip in between them."""

import re
from dataclasses import dataclass

from hera.workflows import DAG, Parameter, Task
from hera.workflows import models as m

from pipelines.argo import constants as C
from pipelines.argo.graph import MUTEX_PREFIX, Build
from pipelines.argo.stepio import StepIO, parameter_name, task_name
from pipelines.spec import FromConfig, FromStep, Node

ENTRYPOINT = "pipeline"


@dataclass
class MutexGroup:
    """The nodes sharing one mutex: compiled into one sub-DAG that holds it while they all run."""

    mutex: str
    nodes: list[Node]

    @property
    def name(self) -> str:
        return MUTEX_PREFIX + task_name(self.mutex)


def mutex_groups(nodes: list[Node]) -> list[MutexGroup]:
    groups: dict[str, MutexGroup] = {}
    for node in nodes:
        if node.mutex:
            groups.setdefault(node.mutex, MutexGroup(node.mutex, [])).nodes.append(node)
    return list(groups.values())


def when_expression(ref: str, equals: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]+", equals):
        return f"{ref} == {equals}"
    return f"'{ref}' == '{equals}'"


def output_ref(build: Build, step: str, output: str, group: MutexGroup | None, group_inputs: dict[str, str]) -> str:
    """`{{tasks...}}` of an upstream output; inside a sub-DAG, an outside step's output arrives as one
    of the sub-DAG's inputs (a sub-DAG's tasks cannot see the outer DAG's tasks)."""
    up = build.io[step]
    ref = f"{{{{tasks.{up.task}.outputs.parameters.{up.outputs[output]}}}}}"
    if group is None or step in {n.name for n in group.nodes}:
        return ref
    name = f"{up.task}-{up.outputs[output]}"
    group_inputs[name] = ref
    return f"{{{{inputs.parameters.{name}}}}}"


def argument(build: Build, sio: StepIO, fld: str, group: MutexGroup | None, group_inputs: dict[str, str]) -> str:
    binding = sio.node.bindings[fld]
    if isinstance(binding, FromConfig):
        return f"{{{{workflow.parameters.{parameter_name(binding.path)}}}}}"
    if isinstance(binding, FromStep):
        return output_ref(build, binding.step, binding.output, group, group_inputs)
    if binding.name == "context":
        return build.context_json
    return build.code_version


def node_tasks(build: Build, node: Node, group: MutexGroup | None, group_inputs: dict[str, str]) -> None:
    """The node's task (and its memo-key task) in the DAG being built; `depends` only on upstream
    nodes in the same DAG (the sub-DAG task itself depends on the outside ones)."""
    sio = build.io[node.name]
    args = {sio.inputs[f]: argument(build, sio, f, group, group_inputs) for f in node.bindings}
    inside = {n.name for n in group.nodes} if group else {n.name for n in build.nodes}
    upstream = [f"{task_name(u)}.Succeeded" for u in node.upstream if u in inside]
    when = None
    if node.when:
        ref = output_ref(build, node.when.step, node.when.output, group, group_inputs)
        when = when_expression(ref, node.when.equals)
    if node.memoize:
        key_task = f"{sio.task}-memo-key"
        Task(name=key_task, template=key_task, arguments=dict(args), depends=" && ".join(upstream) or None,
             when=when)
        args[C.MEMO_KEY_PARAM] = f"{{{{tasks.{key_task}.outputs.parameters.key}}}}"
        upstream = [*upstream, f"{key_task}.Succeeded"]
    Task(name=sio.task, template=sio.task, arguments=args, depends=" && ".join(upstream) or None, when=when)


def group_dag(build: Build, group: MutexGroup) -> dict[str, str]:
    """The sub-DAG template of a mutex group; returns its inputs (name -> outer reference)."""
    group_inputs: dict[str, str] = {}
    with DAG(name=group.name, synchronization=m.Synchronization(mutexes=[m.Mutex(name=group.mutex)]),
             annotations={f"{C.LABEL_PREFIX}/mutex": group.mutex}) as dag:
        for node in group.nodes:
            node_tasks(build, node, group, group_inputs)
    dag.inputs = [Parameter(name=name) for name in group_inputs]
    return group_inputs


def pipeline_dags(build: Build) -> None:
    """The mutex sub-DAGs, then the entrypoint DAG over the other nodes and those sub-DAGs."""
    groups = mutex_groups(build.nodes)
    group_inputs = {g.mutex: group_dag(build, g) for g in groups}
    with DAG(name=ENTRYPOINT):
        for node in build.nodes:
            if not node.mutex:
                node_tasks(build, node, None, {})
        for group in groups:
            inside = {n.name for n in group.nodes}
            outside = sorted({u for n in group.nodes for u in n.upstream} - inside)
            Task(name=group.name, template=group.name, arguments=group_inputs[group.mutex] or None,
                 depends=" && ".join(f"{task_name(u)}.Succeeded" for u in outside) or None)
