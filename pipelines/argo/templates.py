"""The pod templates: one script template per step (Hera's runner calls the step's `run`), the memo-key
template in front of each memoized step, and the exit handler that records how the run ended."""

import importlib

from hera.workflows import DAG, Artifact, NoneArchiveStrategy, Parameter, Script, Task
from hera.workflows import models as m

from pipelines.argo import constants as C
from pipelines.argo.checks import CompileError
from pipelines.argo.graph import Build
from pipelines.argo.metrics import step_metrics
from pipelines.argo.pods import CONTROL_RESOURCES, RunnerWithOutputDefaults, pod_settings
from pipelines.argo.stepio import StepIO
from pipelines.cache_key import step_code_version
from pipelines.spec import FromRun
from steps.common.argo_ui import UI_REPORT_ENV

EXIT_DAG = "exit-handler"
EXIT_TEMPLATE = "record-exit"


def step_template(build: Build, sio: StepIO) -> Script:
    node, argo = sio.node, build.argo
    run = importlib.import_module(node.module).run
    res = argo.resources_for(node.name, node.image)
    if node.gpu and res.gpu < 1:
        raise CompileError([f"step {node.name} needs a GPU but its resources request gpu={res.gpu}"])
    report = node.name in argo.ui_report_steps
    settings = pod_settings(build, node.image, res, timeout_s=argo.timeout_for(node.name),
                            extra_env={UI_REPORT_ENV: C.UI_REPORT_PATH} if report else None)
    if account := argo.step_service_accounts.get(node.name):  # it calls the Kubernetes API itself
        settings.update(service_account_name=account, automount_service_account_token=True)
    extra_inputs = [Parameter(name=C.MEMO_KEY_PARAM)] if node.memoize else None
    outputs = [Artifact(name=C.UI_REPORT_ARTIFACT, path=C.UI_REPORT_PATH, optional=True,
                        archive=NoneArchiveStrategy())] if report else None
    memoize = m.Memoize(
        key=f"{{{{inputs.parameters.{C.MEMO_KEY_PARAM}}}}}", max_age=argo.memoize_max_age,
        cache=m.Cache(config_map=m.LocalObjectReference(name=argo.memoize_configmap)),
    ) if node.memoize else None
    annotations = {f"{C.LABEL_PREFIX}/step": node.name, f"{C.LABEL_PREFIX}/image-family": node.image,
                   f"{C.LABEL_PREFIX}/code-version": step_code_version(node.module)}
    if node.reports_progress:
        # Argo's controller sets ARGO_PROGRESS_FILE in every main container (progress ticks on, the
        # default); steps.common.progress writes N/M there and the UI shows it on the node.
        annotations[f"{C.LABEL_PREFIX}/reports-progress"] = "true"
    return Script(
        name=sio.task, source=run, constructor=RunnerWithOutputDefaults(outputs_directory=C.OUTPUTS_DIR),
        inputs=extra_inputs, outputs=outputs, memoize=memoize,
        metrics=step_metrics(build.config.name, sio), annotations=annotations, **settings,
    )


def memo_key_template(build: Build, sio: StepIO) -> Script:
    """`<task>-memo-key`: computes the step's cache key from its inputs' content (pipelines/argo/memo_key.py)."""
    node = sio.node
    context_params = [sio.inputs[f] for f, b in node.bindings.items() if b == FromRun("context")]
    if len(context_params) != 1:
        raise CompileError([(f"step {node.name} is memoized but has no FromRun('context') input "
                            "(the memo key pod reads the artifact store through it)")])
    return Script(
        name=f"{sio.task}-memo-key", source="{{inputs.parameters}}",
        args=["-m", "pipelines.argo.memo_key", "--step", node.name,
              "--code-version", step_code_version(node.module), "--context-param", context_params[0],
              "--out", C.MEMO_KEY_PATH],  # named where the output parameter reads it, not only as a default
        inputs=[Parameter(name=sio.inputs[f]) for f in node.bindings],
        outputs=[Parameter(name="key", value_from=m.ValueFrom(path=C.MEMO_KEY_PATH, default=""))],
        annotations={f"{C.LABEL_PREFIX}/step": node.name},
        **pod_settings(build, "cpu", CONTROL_RESOURCES, timeout_s=1800),
    )


def exit_templates(build: Build) -> tuple[Script, DAG]:
    """The `record-exit` pod and the exit-handler DAG that runs it with the workflow's final status."""
    from pipelines.argo import exit_handler

    record = Script(name=EXIT_TEMPLATE, source=exit_handler.record,
                    constructor=RunnerWithOutputDefaults(outputs_directory=C.OUTPUTS_DIR),
                    **pod_settings(build, "cpu", CONTROL_RESOURCES, timeout_s=900))
    with DAG(name=EXIT_DAG) as dag:
        Task(name="record", template=EXIT_TEMPLATE, arguments={
            "context": build.context_json, "status": "{{workflow.status}}",
            "failures": "{{workflow.failures}}", "duration": "{{workflow.duration}}"})
    return record, dag
