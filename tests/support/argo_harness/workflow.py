"""A compiled WorkflowTemplate (its YAML, read back) walked as Argo's controller walks it, one pod at a time.

From the YAML alone: the entrypoint DAG and the DAG templates it calls (the sub-DAG that holds the promote
mutex is one), each task decided by its `depends` once the tasks it names are complete (not run:
Omitted) and by its `when` (false: Skipped), its arguments filled the way Argo fills them
(`{{workflow.name}}`, `{{workflow.parameters.*}}` from the template's arguments overridden by the
submitted ones, `{{inputs.parameters.*}}` of the calling DAG, `{{tasks.*.outputs.parameters.*}}`, input
defaults), every pod template run by `pod.run_pod`, and then the `onExit` template with
`{{workflow.status}}`, `{{workflow.failures}}` and `{{workflow.duration}}`.

Not reproduced (README, "What is verified by execution"): the controller's retries (each pod runs once),
the memoization store (the memo-key pods run and their key reaches the step; nothing is looked up),
mutexes and other synchronization (one pod runs at a time, so nothing competes), parallelism among ready
tasks, pods themselves (scheduling, images, resources, node affinity, tolerations), volumes beyond a
folder per mount, the security context, metrics, pod GC and TTLs.
"""

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.argo.memo_key import decode_parameter  # how a pod reads a parameter: JSON objects decoded
from tests.support.argo_harness.expressions import (
    COMPLETED,
    depends_holds,
    depends_tasks,
    substitute,
    when_holds,
)
from tests.support.argo_harness.pod import PodResult, run_pod

# What runs beside a pod (the serving stack beside the canary): given the pod's input parameters decoded
# (JSON objects as dicts) and a folder, start it, yield the inputs pointed at it, stop it afterwards. The
# same shape as the local runner's StepService, so the same code (pipelines/local/serving_stack.py) serves.
PodService = Callable[[dict[str, Any], Path], AbstractContextManager[dict[str, Any]]]


@dataclass
class NodeRecord:
    """One node of the run: a task (path `dag/task`) with its phase and, for pods, what the pod did."""

    path: str
    template: str
    phase: str
    message: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    pod: PodResult | None = None

    @property
    def outputs(self) -> dict[str, str]:
        return self.pod.outputs if self.pod else {}


@dataclass
class WorkflowResult:
    name: str
    phase: str
    nodes: list[NodeRecord]
    exit_handler: list[NodeRecord]

    def node(self, task: str) -> NodeRecord:
        """The node of `task` (its last path component), wherever it ran."""
        matches = [n for n in self.nodes + self.exit_handler if n.path.rsplit("/", 1)[-1] == task]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} nodes named {task!r}: {[n.path for n in self.nodes]}")
        return matches[0]


class WorkflowRun:
    """Submit `template` (a WorkflowTemplate as read from its YAML) with `arguments` (as `argo submit -p`)."""

    def __init__(self, template: dict[str, Any], work: Path, name: str, arguments: Mapping[str, str] | None = None,
                 secrets: Mapping[tuple[str, str], str] | None = None, node_env: Mapping[str, str] | None = None,
                 services: Mapping[str, PodService] | None = None, pod_timeout_s: float = 900.0) -> None:
        self.spec = template["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.work, self.name = work, name
        self.secrets, self.node_env = dict(secrets or {}), dict(node_env or {})
        self.services, self.pod_timeout_s = dict(services or {}), pod_timeout_s
        declared = {p["name"]: p.get("value", "") for p in self.spec.get("arguments", {}).get("parameters", [])}
        unknown = set(arguments or {}) - set(declared)
        if unknown:
            raise ValueError(f"arguments {sorted(unknown)} are not parameters of the template")
        self.parameters = {**declared, **(arguments or {})}
        self.nodes: list[NodeRecord] = []

    def run(self) -> WorkflowResult:
        started = time.monotonic()
        scope = self._workflow_scope()
        phase = self._run_dag(self.spec["entrypoint"], {}, scope, self.spec["entrypoint"])
        main_nodes, self.nodes = self.nodes, []
        failures = [{"displayName": n.path.rsplit("/", 1)[-1], "templateName": n.template, "phase": n.phase,
                     "message": n.message, "podName": f"{self.name}-{n.template}"}
                    for n in main_nodes if n.phase in ("Failed", "Error") and n.pod is not None]
        if on_exit := self.spec.get("onExit"):
            exit_scope = {**scope, "workflow.status": phase, "workflow.failures": json.dumps(failures),
                          "workflow.duration": f"{time.monotonic() - started:.6f}"}
            self._run_dag(on_exit, {}, exit_scope, on_exit)
        return WorkflowResult(self.name, phase, main_nodes, self.nodes)

    def _workflow_scope(self) -> dict[str, str]:
        scope = {"workflow.name": self.name, "workflow.namespace": self.spec.get("namespace", "default")}
        scope.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        return scope

    def _run_dag(self, template_name: str, inputs: dict[str, str], workflow_scope: dict[str, str], path: str) -> str:
        """Run a DAG template's tasks in dependency order; its phase (Succeeded unless a task failed)."""
        tasks = self.templates[template_name]["dag"]["tasks"]
        phases: dict[str, str] = {}
        outputs: dict[str, dict[str, str]] = {}
        while len(phases) < len(tasks):
            ready = [t for t in tasks if t["name"] not in phases
                     and all(phases.get(d) in COMPLETED for d in _dependencies(t))]
            if not ready:
                raise ValueError(f"DAG {template_name}: tasks {[t['name'] for t in tasks if t['name'] not in phases]} "
                                 "wait on each other or on tasks that do not exist")
            task = ready[0]  # declaration order among the ready ones; Argo would start them all at once
            scope = {**workflow_scope, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
            for done, values in outputs.items():
                scope.update({f"tasks.{done}.outputs.parameters.{k}": v for k, v in values.items()})
            scope.update({f"tasks.{done}.status": phase for done, phase in phases.items()})
            record = self._run_task(task, scope, phases, workflow_scope, f"{path}/{task['name']}")
            phases[task["name"]] = record.phase
            outputs[task["name"]] = record.outputs
        failed = [name for name, phase in phases.items() if phase in ("Failed", "Error")]
        return "Failed" if failed else "Succeeded"

    def _run_task(self, task: dict[str, Any], scope: dict[str, str], phases: dict[str, str],
                  workflow_scope: dict[str, str], path: str) -> NodeRecord:
        record = NodeRecord(path, task["template"], "Pending")
        self.nodes.append(record)
        depends = _depends_expression(task)
        if depends and not depends_holds(depends, phases):
            record.phase, record.message = "Omitted", f"depends {depends!r} is false"
            return record
        if "when" in task and not when_holds(substitute(task["when"], scope)):
            record.phase, record.message = "Skipped", f"when {task['when']!r} was false"
            return record
        given = {p["name"]: substitute(p.get("value", ""), scope)
                 for p in task.get("arguments", {}).get("parameters", [])}
        template = self.templates[task["template"]]
        record.inputs = self._template_inputs(template, given, path)
        if "dag" in template:
            record.phase = self._run_dag(template["name"], record.inputs, workflow_scope, path)
            return record
        with self._service(task["template"], record.inputs, path) as inputs:
            record.inputs = inputs
            record.pod = run_pod(template, inputs, self.work / "pods" / path, self.secrets, self.node_env,
                                 self.pod_timeout_s)
        record.phase, record.message = record.pod.phase, record.pod.message
        return record

    @staticmethod
    def _template_inputs(template: dict[str, Any], given: dict[str, str], path: str) -> dict[str, str]:
        """The template's declared inputs: the task's argument, else the declared default or value."""
        values = {}
        for param in template.get("inputs", {}).get("parameters", []):
            name = param["name"]
            value = given.get(name, param.get("value", param.get("default")))
            if value is None:
                raise ValueError(f"{path}: input parameter {name!r} of {template['name']} has no value")
            values[name] = value
        extra = set(given) - set(values)
        if extra:  # Argo ignores them; the compiler passing a name the template lacks is a bug worth failing on
            raise ValueError(f"{path}: arguments {sorted(extra)} are not inputs of template {template['name']}")
        return values

    @contextmanager
    def _service(self, template_name: str, inputs: dict[str, str], path: str) -> Iterator[dict[str, str]]:
        service = self.services.get(template_name)
        if service is None:
            yield inputs
            return
        decoded = {k: decode_parameter(v) for k, v in inputs.items()}
        folder = self.work / "services" / path
        with service(decoded, folder) as changed:
            yield {k: (v if changed[k] == decoded[k] else _encode(changed[k])) for k, v in inputs.items()}


def _depends_expression(task: dict[str, Any]) -> str:
    if "depends" in task:
        return task["depends"]
    return " && ".join(task.get("dependencies", []))  # the older list form: each one bare


def _dependencies(task: dict[str, Any]) -> set[str]:
    expression = _depends_expression(task)
    return depends_tasks(expression) if expression else set()


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
