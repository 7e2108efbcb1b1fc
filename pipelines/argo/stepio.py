"""Argo names of a pipeline node: its task/template name and the parameter names of its Input and
Output fields, derived exactly as Hera's runner derives them (a `Parameter(name=...)` annotation, else
the Python field name), so a task passes `dataset-uri` where the template declares `dataset-uri`.

Only pydantic's public field API and Hera's public Parameter/Artifact classes are used; the compile
tests compare these names with the template inputs and outputs Hera itself builds from the same models.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from hera.workflows import Artifact, Parameter
from pydantic import BaseModel

from pipelines.argo.checks import CompileError
from pipelines.spec import Node

# Argo's own name rules (workflow/validate): templates and tasks; parameters and artifacts.
TEMPLATE_NAME_RE = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
# Fields every Hera Output has; they are the script's exit code and stdout, not output parameters.
HERA_OUTPUT_FIELDS = ("exit_code", "result")


@dataclass
class StepIO:
    """A node's Argo-facing IO: Input field -> template parameter name, output parameter names and types."""

    node: Node
    task: str
    inputs: dict[str, str]
    outputs: dict[str, str]  # output field -> parameter name
    output_types: dict[str, Any]


def task_name(step: str) -> str:
    return step.replace("_", "-")


def parameter_name(config_path: str) -> str:
    """Workflow parameter of a FromConfig binding: `judge.judge_engine` -> `judge-judge-engine`."""
    return re.sub(r"[._]", "-", config_path)


def serialize_value(value: Any) -> str:
    """How Hera's runner expects a parameter: strings raw, models and everything else as JSON."""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _argo_fields(model: type[BaseModel]) -> list[tuple[str, Any, Parameter | Artifact]]:
    """(field, annotation, Hera IO annotation) of each field; a plain field is a Parameter of its name."""
    fields = []
    for name, info in model.model_fields.items():
        io = next((m for m in info.metadata if isinstance(m, (Parameter, Artifact))), None)
        fields.append((name, info.annotation, io if io is not None else Parameter(name=name)))
    return fields


def _argo_name(field: str, io: Parameter | Artifact) -> str:
    return io.name or field


def step_io(node: Node) -> StepIO:
    """Map the node's Input/Output models to Argo parameter names (what Hera's runner reads and writes)."""
    problems = []
    inputs: dict[str, str] = {}
    model = node.inputs_model()
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    for fld, _, io in _argo_fields(model):
        if isinstance(io, Artifact):
            problems.append(f"step {node.name}: input {fld} is an Argo artifact; steps exchange URIs (str)")
        else:
            inputs[fld] = _argo_name(fld, io)
    for fld in node.bindings:
        if fld not in inputs:
            problems.append(f"step {node.name}: binding {fld!r} is not a field of {model.__name__} "
                            f"(fields: {sorted(inputs)})")
    for fld in sorted(required - set(node.bindings)):
        problems.append(f"step {node.name}: required input {fld!r} of {model.__name__} has no binding")
    outputs: dict[str, str] = {}
    output_types: dict[str, Any] = {}
    for fld, annotation, io in _argo_fields(node.outputs_model()):
        if fld in HERA_OUTPUT_FIELDS:
            continue
        if isinstance(io, Artifact):
            problems.append(f"step {node.name}: output {fld} is an Argo artifact; publish it and return its URI")
            continue
        outputs[fld] = _argo_name(fld, io)
        output_types[fld] = annotation
    for name in [*inputs.values(), *outputs.values()]:
        if not PARAM_NAME_RE.match(name):
            problems.append(f"step {node.name}: parameter name {name!r} is not valid in Argo")
    if problems:
        raise CompileError(problems)
    return StepIO(node, task_name(node.name), inputs, outputs, output_types)
