"""Compiles the pipeline (pipelines/spec.py) into Argo objects with Hera: a versioned WorkflowTemplate,
a Workflow that references it, and a nightly CronWorkflow. Generic over the Pipeline: every node becomes
one script template run by Hera's runner on its image family, and one DAG task.

Bindings become arguments: FromConfig -> a workflow parameter (overridable at submit), FromStep -> the
upstream task's output parameter, FromRun("context") -> the RuntimeContext JSON (run id = workflow name,
scratch on an emptyDir; not a parameter, so the residency policy cannot be overridden at submit),
FromRun("code_version") -> the compiled pipeline code version. Argument names are the template's input
names, derived by Hera from each step's Input model (its Parameter annotations, else the field name).

Deterministic: the same config and code give byte-identical YAML (no timestamps, no random names).
"""

import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    NoneArchiveStrategy,
    Parameter,
    RunnerScriptConstructor,
    Script,
    Task,
    WorkflowTemplate,
)
from hera.workflows import models as m
from hera.workflows.io._io_mixins import _construct_io_from_fields
from pydantic import BaseModel

from pipelines.argo import constants as C
from pipelines.argo.settings import ArgoSettings, Resources
from pipelines.code_version import pipeline_code_version, step_code_version
from pipelines.config import PipelineConfig
from pipelines.spec import FromConfig, FromRun, FromStep, Node, Pipeline
from steps.common.contract import EXIT_TRANSIENT, RuntimeContext
from steps.common.residency import OFFLINE_ENV, ResidencyError
from steps.judge import UI_REPORT_ENV

API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "pipeline"
EXIT_DAG = "exit-handler"
EXIT_TEMPLATE = "record-exit"
REGION_LABEL = "topology.kubernetes.io/region"
RETRY_EXPRESSION = f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}'
# Argo's own name rules (workflow/validate): templates and tasks; parameters and artifacts.
TEMPLATE_NAME_RE = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
_METRIC_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")
_NUMERIC = (int, float)
RUN_ID = "{{workflow.name}}"


class CompileError(ValueError):
    """Everything that stops the pipeline from compiling for a cluster, one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot compile for Argo:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass
class StepIO:
    """A node's Argo-facing IO: Input field -> template parameter name, output parameter names and types."""

    node: Node
    task: str
    inputs: dict[str, str]
    outputs: dict[str, str]  # output field -> parameter name
    output_types: dict[str, Any]


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


# ---- names and values ------------------------------------------------------------------------------
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


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eurolora")
    except PackageNotFoundError:
        return "0.0.0"


def _when(step: str, output: str, equals: str) -> str:
    ref = f"{{{{tasks.{task_name(step)}.outputs.parameters.{output}}}}}"
    if re.fullmatch(r"[A-Za-z0-9_.-]+", equals):
        return f"{ref} == {equals}"
    return f"'{ref}' == '{equals}'"


# ---- checks ----------------------------------------------------------------------------------------
def pinned_regions(config: PipelineConfig) -> list[str]:
    allowed = [r.lower() for r in config.residency.allowed_regions]
    wanted = [r.lower() for r in config.argo.node_regions] or allowed
    return [r for r in dict.fromkeys(wanted) if r in allowed]


def s3_endpoint(config: PipelineConfig) -> str:
    s3 = config.storage.s3
    return s3.endpoint_url or f"https://s3.{s3.region}.amazonaws.com"


def cluster_problems(config: PipelineConfig) -> list[str]:
    """What a cluster run needs beyond a valid config: EU regions and endpoints, shared storage."""
    policy, argo = config.residency, config.argo
    problems: list[str] = []

    def check(fn: Any, value: str, key: str) -> None:
        try:
            fn(value, key)
        except ResidencyError as exc:
            problems.append(str(exc))

    for i, region in enumerate(argo.node_regions):
        check(policy.check_region, region, f"argo.node_regions[{i}]")
    if not pinned_regions(config):
        problems.append("argo.node_regions: no region left that residency.allowed_regions allows; pods could "
                        "not be pinned to the EU")
    check(policy.check_region, config.storage.s3.region, "storage.s3.region")
    check(policy.check_url, s3_endpoint(config), "storage.s3.endpoint_url")
    check(policy.check_url, f"https://{argo.images.registry_host}/", "argo.images.registry")
    if argo.server_url:
        check(policy.check_url, argo.server_url, "argo.server_url")
    if not config.storage.artifact_root.startswith("s3://"):
        problems.append(f"storage.artifact_root={config.storage.artifact_root!r}: pods share no file system; "
                        "use an s3:// URI in the EU bucket")
    if not config.corpus.startswith("s3://"):
        problems.append(f"corpus={config.corpus!r}: pods cannot read this machine's files; upload the corpus "
                        "and use its s3:// prefix")
    uri = config.registry.tracking_uri
    if not uri.startswith(("http://", "https://")):
        problems.append(f"registry.tracking_uri={uri!r}: pods need an MLflow server (http(s)://...)")
    else:
        check(policy.check_url, uri, "registry.tracking_uri")
    if config.base_model == "embedded":
        problems.append("base_model='embedded': the embedded model is only installed for local runs; use the "
                        "s3:// URI of the base model in the EU bucket")
    return problems


def step_io(node: Node) -> StepIO:
    """Map the node's Input/Output models to Argo parameter names (what Hera's runner reads and writes)."""
    problems = []
    inputs: dict[str, str] = {}
    model = node.inputs_model()
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    for fld, _, io in _construct_io_from_fields(model):
        if isinstance(io, Artifact):
            problems.append(f"step {node.name}: input {fld} is an Argo artifact; steps exchange URIs (str)")
        else:
            inputs[fld] = io.name
    for fld in node.bindings:
        if fld not in inputs:
            problems.append(f"step {node.name}: binding {fld!r} is not a field of {model.__name__} "
                            f"(fields: {sorted(inputs)})")
    for fld in sorted(required - set(node.bindings)):
        problems.append(f"step {node.name}: required input {fld!r} of {model.__name__} has no binding")
    outputs: dict[str, str] = {}
    output_types: dict[str, Any] = {}
    out_model = node.outputs_model()
    for fld, info, io in _construct_io_from_fields(out_model):
        if fld in ("exit_code", "result"):
            continue
        if isinstance(io, Artifact):
            problems.append(f"step {node.name}: output {fld} is an Argo artifact; publish it and return its URI")
            continue
        outputs[fld] = io.name
        output_types[fld] = info.annotation
    for name in [*inputs.values(), *outputs.values()]:
        if not PARAM_NAME_RE.match(name):
            problems.append(f"step {node.name}: parameter name {name!r} is not valid in Argo")
    if problems:
        raise CompileError(problems)
    return StepIO(node, task_name(node.name), inputs, outputs, output_types)


# ---- the compiler ----------------------------------------------------------------------------------
class _Compiler:
    def __init__(self, config: PipelineConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.argo: ArgoSettings = config.argo
        self.pipeline = pipeline
        self.code_version = pipeline_code_version()
        self.warnings: list[str] = []
        self.nodes = pipeline.ordered()
        self.io = {n.name: step_io(n) for n in self.nodes}
        self._check_graph()
        self.regions = pinned_regions(config)
        self.parameters = self._workflow_parameters()
        self.context_json = RuntimeContext(
            run_id=RUN_ID, storage=config.storage, residency=config.residency, scratch_dir=C.SCRATCH_DIR,
        ).model_dump_json()

    # -- validation of the graph against the step models
    def _check_graph(self) -> None:
        problems = []
        tasks: dict[str, str] = {}
        for node in self.nodes:
            task = task_name(node.name)
            if not TEMPLATE_NAME_RE.match(task) or len(task) > 100:
                problems.append(f"step {node.name}: {task!r} is not a valid Argo task/template name")
            if task in tasks or f"{task}-memo-key" in tasks:
                problems.append(f"steps {tasks.get(task)} and {node.name} map to the same Argo name {task!r}")
            tasks[task] = node.name
            if node.memoize:
                tasks[f"{task}-memo-key"] = node.name
            for fld, binding in node.bindings.items():
                if isinstance(binding, FromStep):
                    up = self.io[binding.step]
                    if binding.output not in up.outputs:
                        problems.append(f"step {node.name}: input {fld} reads {binding.step}.{binding.output}, "
                                        f"which is not an output of {binding.step} (outputs: {sorted(up.outputs)})")
                elif isinstance(binding, FromConfig):
                    try:
                        self.config.get(binding.path)
                    except AttributeError:
                        problems.append(f"step {node.name}: input {fld} reads config path {binding.path!r}, "
                                        "which does not exist")
            if node.when and node.when.output not in self.io[node.when.step].outputs:
                problems.append(f"step {node.name}: `when` reads {node.when.step}.{node.when.output}, which is "
                                "not an output of that step")
        for step in [*self.argo.step_resources, *self.argo.step_timeouts_s]:
            if step not in {n.name for n in self.nodes}:
                self.warnings.append(f"argo: settings for step {step!r}, which is not in the pipeline")
        for step in self.argo.ui_report_steps:
            if step not in {n.name for n in self.nodes}:
                self.warnings.append(f"argo.ui_report_steps: {step!r} is not in the pipeline (yet); no report")
        if problems:
            raise CompileError(problems)

    def _workflow_parameters(self) -> dict[str, tuple[str, str]]:
        """Workflow parameter name -> (config path, value) for every FromConfig binding."""
        params: dict[str, tuple[str, str]] = {}
        for node in self.nodes:
            for binding in node.bindings.values():
                if isinstance(binding, FromConfig):
                    name = parameter_name(binding.path)
                    if name in params and params[name][0] != binding.path:
                        raise CompileError([(f"config paths {params[name][0]!r} and {binding.path!r} map to the "
                                            f"same workflow parameter {name!r}")])
                    params[name] = (binding.path, serialize_value(self.config.get(binding.path)))
        return params

    # -- pod plumbing shared by every pod template
    def _labels(self) -> dict[str, str]:
        return {
            f"{C.LABEL_PREFIX}/pipeline": self.config.name,
            f"{C.LABEL_PREFIX}/adapter-family": self.config.adapter_family,
            C.PART_OF_LABEL: C.PART_OF,
        }

    def _affinity(self) -> Any:
        return m.Affinity(node_affinity=m.NodeAffinity(
            required_during_scheduling_ignored_during_execution=m.NodeSelector(node_selector_terms=[
                m.NodeSelectorTerm(match_expressions=[
                    m.NodeSelectorRequirement(key=REGION_LABEL, operator="In", values=self.regions)])])))

    def _env(self, extra: dict[str, str] | None = None) -> list[Any]:
        plain = {**OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                 "HOME": f"{C.SCRATCH_DIR}/home", "XDG_CACHE_HOME": f"{C.SCRATCH_DIR}/cache",
                 "HF_HOME": f"{C.SCRATCH_DIR}/hf", "TMPDIR": "/tmp", **(extra or {})}
        env = [m.EnvVar(name=k, value=v) for k, v in plain.items()]
        for secret in self._secret_env():
            env.append(m.EnvVar(name=secret["env"], value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(
                name=secret["secret"], key=secret["key"], optional=secret["optional"] or None))))
        return env

    def _secret_env(self) -> list[dict[str, Any]]:
        creds, s3 = self.config.storage.s3.credentials, self.argo.s3_secret
        items = [
            {"env": creds.access_key_id_env, "secret": s3.name, "key": s3.access_key_id_key, "optional": False},
            {"env": creds.secret_access_key_env, "secret": s3.name, "key": s3.secret_access_key_key,
             "optional": False},
        ]
        items += [s.model_dump() for s in self.argo.secret_env]
        return items

    def _resources(self, res: Resources) -> Any:
        limits = dict(res.limits)
        if res.gpu:
            limits[self.argo.gpu_resource] = str(res.gpu)
        return m.ResourceRequirements(requests=dict(res.requests) or None, limits=limits or None)

    def _volumes(self, gpu: bool) -> tuple[list[Any], list[Any]]:
        vols = [("scratch", C.SCRATCH_DIR, self.argo.scratch_size, None), ("tmp", "/tmp", "8Gi", None)]
        if gpu:
            vols.append(("dshm", "/dev/shm", self.argo.shm_size, "Memory"))
        volumes = [m.Volume(name=n, empty_dir=m.EmptyDirVolumeSource(size_limit=size, medium=medium))
                   for n, _, size, medium in vols]
        mounts = [m.VolumeMount(name=n, mount_path=path) for n, path, _, _ in vols]
        return volumes, mounts

    def _container_security(self) -> Any:
        return m.SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                 capabilities=m.Capabilities(drop=["ALL"]))

    def _retry(self) -> Any:
        r = self.argo.retry
        return m.RetryStrategy(
            limit=str(r.limit), retry_policy="Always", expression=RETRY_EXPRESSION,
            backoff=m.Backoff(duration=r.backoff_duration, factor=str(r.backoff_factor),
                              max_duration=r.backoff_max_duration))

    def _step_metrics(self, sio: StepIO) -> Any:
        labels = [m.MetricLabel(key="pipeline", value=self.config.name), m.MetricLabel(key="step", value=sio.node.name)]
        metrics = [
            m.Prometheus(name="eurolora_step_duration_seconds", help="Duration of a eurolora step pod (seconds)",
                         labels=labels, gauge=m.Gauge(value="{{duration}}", realtime=False)),
            m.Prometheus(name="eurolora_step_runs_total", help="Finished eurolora step pods, by status",
                         labels=[*labels, m.MetricLabel(key="status", value="{{status}}")],
                         counter=m.Counter(value="1")),
            m.Prometheus(name="eurolora_step_failures_total", help="Failed eurolora step pods",
                         labels=labels, when="{{status}} == Failed", counter=m.Counter(value="1")),
        ]
        # Every numeric output (the judge's gate rates, counts, losses) as a gauge of the last run.
        for fld, name in sio.outputs.items():
            typ = sio.output_types.get(fld)
            if isinstance(typ, type) and issubclass(typ, _NUMERIC) and not issubclass(typ, bool):
                metric = _METRIC_NAME_RE.sub("_", f"eurolora_{sio.node.name}_{fld}").lower()
                metrics.append(m.Prometheus(
                    name=metric, help=f"Output {fld} of step {sio.node.name} (last successful run)",
                    labels=[m.MetricLabel(key="pipeline", value=self.config.name)],
                    when="{{status}} == Succeeded",
                    gauge=m.Gauge(value=f"{{{{outputs.parameters.{name}}}}}", realtime=False)))
        return m.Metrics(prometheus=metrics[:100])

    def _pod_template_kwargs(self, family: str, res: Resources, gpu: bool, timeout_s: int,
                             extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        volumes, mounts = self._volumes(gpu)
        kwargs: dict[str, Any] = {
            "image": self.argo.images.ref(family), "image_pull_policy": self.argo.images.pull_policy,
            "command": ["python"], "env": self._env(extra_env), "resources": self._resources(res),
            "affinity": self._affinity(), "volumes": volumes, "volume_mounts": mounts,
            "security_context": self._container_security(), "active_deadline_seconds": str(timeout_s),
            "retry_strategy": self._retry(),
        }
        if gpu:
            kwargs["tolerations"] = [m.Toleration(key=self.argo.gpu_toleration_key, operator="Exists",
                                                  effect="NoSchedule")]
            if self.argo.gpu_node_selector:
                kwargs["node_selector"] = dict(self.argo.gpu_node_selector)
        return kwargs

    # -- templates
    def _step_template(self, sio: StepIO) -> Any:
        node = sio.node
        run = importlib.import_module(node.module).run
        res = self.argo.resources_for(node.name, node.image)
        if node.gpu and res.gpu < 1:
            raise CompileError([f"step {node.name} needs a GPU but its resources request gpu={res.gpu}"])
        report = node.name in self.argo.ui_report_steps
        kwargs = self._pod_template_kwargs(node.image, res, gpu=res.gpu > 0, timeout_s=self.argo.timeout_for(node.name),
                                           extra_env={UI_REPORT_ENV: C.UI_REPORT_PATH} if report else None)
        extra_inputs = [Parameter(name=C.MEMO_KEY_PARAM)] if node.memoize else None
        outputs = [Artifact(name=C.UI_REPORT_ARTIFACT, path=C.UI_REPORT_PATH, optional=True,
                            archive=NoneArchiveStrategy())] if report else None
        memoize = m.Memoize(
            key=f"{{{{inputs.parameters.{C.MEMO_KEY_PARAM}}}}}", max_age=self.argo.memoize_max_age,
            cache=m.Cache(config_map=m.LocalObjectReference(name=self.argo.memoize_configmap)),
        ) if node.memoize else None
        sync = m.Synchronization(mutexes=[m.Mutex(name=node.mutex)]) if node.mutex else None
        annotations = {f"{C.LABEL_PREFIX}/step": node.name, f"{C.LABEL_PREFIX}/image-family": node.image,
                       f"{C.LABEL_PREFIX}/code-version": step_code_version(node.module)}
        if node.reports_progress:
            # Argo's controller sets ARGO_PROGRESS_FILE in every main container (progress ticks on, the
            # default); steps.common.progress writes N/M there and the UI shows it on the node.
            annotations[f"{C.LABEL_PREFIX}/reports-progress"] = "true"
        return Script(
            name=sio.task, source=run,
            constructor=StepRunnerConstructor(entrypoint=node.entrypoint, outputs_directory=C.OUTPUTS_DIR),
            inputs=extra_inputs, outputs=outputs, memoize=memoize, synchronization=sync,
            metrics=self._step_metrics(sio), annotations=annotations, **kwargs,
        )

    def _memo_key_template(self, sio: StepIO) -> Any:
        node = sio.node
        context_params = [sio.inputs[f] for f, b in node.bindings.items() if b == FromRun("context")]
        if len(context_params) != 1:
            raise CompileError([(f"step {node.name} is memoized but has no FromRun('context') input "
                                "(the memo key pod reads the artifact store through it)")])
        kwargs = self._pod_template_kwargs("cpu", self._control_resources(), gpu=False, timeout_s=1800)
        return Script(
            name=f"{sio.task}-memo-key", source="{{inputs.parameters}}",
            args=["-m", "pipelines.argo.memo_key", "--step", node.name,
                  "--code-version", step_code_version(node.module), "--context-param", context_params[0]],
            inputs=[Parameter(name=sio.inputs[f]) for f in node.bindings],
            outputs=[Parameter(name="key", value_from=m.ValueFrom(path=C.MEMO_KEY_PATH))],
            annotations={f"{C.LABEL_PREFIX}/step": node.name}, **kwargs,
        )

    def _control_resources(self) -> Resources:
        return Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})

    def _exit_templates(self) -> list[Any]:
        from pipelines.argo import exit_handler

        kwargs = self._pod_template_kwargs("cpu", self._control_resources(), gpu=False, timeout_s=900)
        record = Script(
            name=EXIT_TEMPLATE, source=exit_handler.record,
            constructor=StepRunnerConstructor(entrypoint="pipelines.argo.exit_handler:record",
                                               outputs_directory=C.OUTPUTS_DIR),
            **kwargs,
        )
        with DAG(name=EXIT_DAG) as dag:
            Task(name="record", template=EXIT_TEMPLATE, arguments={
                "context": self.context_json, "status": "{{workflow.status}}",
                "failures": "{{workflow.failures}}", "duration": "{{workflow.duration}}"})
        return [record, dag]

    def _argument(self, sio: StepIO, fld: str) -> str:
        binding = sio.node.bindings[fld]
        if isinstance(binding, FromConfig):
            return f"{{{{workflow.parameters.{parameter_name(binding.path)}}}}}"
        if isinstance(binding, FromStep):
            up = self.io[binding.step]
            return f"{{{{tasks.{up.task}.outputs.parameters.{up.outputs[binding.output]}}}}}"
        if binding.name == "context":
            return self.context_json
        return self.code_version

    def _dag(self) -> Any:
        with DAG(name=ENTRYPOINT) as dag:
            for node in self.nodes:
                sio = self.io[node.name]
                args = {sio.inputs[f]: self._argument(sio, f) for f in node.bindings}
                upstream = [f"{task_name(u)}.Succeeded" for u in node.upstream]
                when = _when(node.when.step, node.when.output, node.when.equals) if node.when else None
                if node.memoize:
                    key_task = f"{sio.task}-memo-key"
                    Task(name=key_task, template=key_task, arguments=dict(args),
                         depends=" && ".join(upstream) or None, when=when)
                    args[C.MEMO_KEY_PARAM] = f"{{{{tasks.{key_task}.outputs.parameters.key}}}}"
                    upstream = [*upstream, f"{key_task}.Succeeded"]
                Task(name=sio.task, template=sio.task, arguments=args, depends=" && ".join(upstream) or None,
                     when=when)
        return dag

    def _workflow_metrics(self) -> Any:
        labels = [m.MetricLabel(key="pipeline", value=self.config.name)]
        return m.Metrics(prometheus=[
            m.Prometheus(name="eurolora_workflow_duration_seconds", help="Duration of a eurolora workflow (seconds)",
                         labels=[*labels, m.MetricLabel(key="status", value="{{workflow.status}}")],
                         gauge=m.Gauge(value="{{workflow.duration}}", realtime=False)),
            m.Prometheus(name="eurolora_workflow_failures_total", help="Failed eurolora workflows",
                         labels=labels, when="{{workflow.status}} == Failed", counter=m.Counter(value="1")),
        ])

    def _parameters(self, with_descriptions: bool) -> list[Any]:
        return [Parameter(name=name, value=value, description=f"config: {path}" if with_descriptions else None)
                for name, (path, value) in self.parameters.items()]

    def template(self) -> dict[str, Any]:
        argo = self.argo
        with WorkflowTemplate(
            name="PLACEHOLDER", namespace=argo.namespace, labels=self._labels(),
            entrypoint=ENTRYPOINT, on_exit=EXIT_DAG, service_account_name=argo.service_account,
            arguments=self._parameters(with_descriptions=True),
            active_deadline_seconds=argo.workflow_timeout_s,
            pod_gc=m.PodGC(strategy=argo.pod_gc_strategy, delete_delay_duration=argo.pod_gc_delete_delay),
            ttl_strategy=m.TTLStrategy(seconds_after_success=argo.ttl_after_success_s,
                                       seconds_after_failure=argo.ttl_after_failure_s),
            artifact_repository_ref=m.ArtifactRepositoryRef(config_map=argo.artifact_repository_configmap,
                                                            key=argo.artifact_repository_key),
            pod_metadata=m.Metadata(labels=self._labels()),
            workflow_metadata=m.WorkflowMetadata(labels=self._labels()),
            security_context=m.PodSecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001,
                                                  fs_group=10001,
                                                  seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
            image_pull_secrets=[m.LocalObjectReference(name=argo.images.pull_secret)]
            if argo.images.pull_secret else None,
            metrics=self._workflow_metrics(),
        ) as wt:
            for node in self.nodes:
                sio = self.io[node.name]
                if node.memoize:
                    self._memo_key_template(sio)
                self._step_template(sio)
            self._exit_templates()
            self._dag()
        spec = wt.to_dict()
        name = self._template_name(spec)
        spec["metadata"]["name"] = name
        spec["metadata"]["annotations"] = {
            f"{C.LABEL_PREFIX}/code-version": self.code_version,
            f"{C.LABEL_PREFIX}/package-version": package_version(),
            C.DESCRIPTION_ANNOTATION: self._description(None),
        }
        return spec

    def _template_name(self, template: dict[str, Any]) -> str:
        """`<config name>-v<package version>-<hash>`: the hash covers the pipeline code and the compiled
        template without its parameter values, so an identical name means an identical template."""
        skeleton = json.loads(json.dumps(template["spec"]))
        for param in skeleton.get("arguments", {}).get("parameters", []):
            param.pop("value", None)
        digest = hashlib.sha256((self.code_version + json.dumps(skeleton, sort_keys=True)).encode()).hexdigest()
        version = "v" + re.sub(r"[^a-z0-9]+", "-", package_version().lower()).strip("-")
        prefix = self.config.name[: 63 - len(version) - 12]
        return f"{prefix.rstrip('-')}-{version}-{digest[:10]}"

    def _description(self, trigger: str | None) -> str:
        text = (f"config {self.config.name}, base model {self.config.base_model}, adapter family "
                f"{self.config.adapter_family}")
        return f"{text}, trigger {trigger}" if trigger else text

    def _metadata(self, trigger: str) -> tuple[dict[str, str], dict[str, str]]:
        labels = {**self._labels(), f"{C.LABEL_PREFIX}/trigger": trigger}
        annotations = {
            C.TITLE_ANNOTATION: f"{self.config.name} ({self.config.adapter_family}, {trigger})",
            C.DESCRIPTION_ANNOTATION: self._description(trigger),
        }
        return labels, annotations

    def workflow(self, template_name: str) -> dict[str, Any]:
        labels, annotations = self._metadata("manual")
        wf = m.Workflow(
            api_version=API_VERSION, kind="Workflow",
            metadata=m.ObjectMeta(generate_name=f"{self.config.name}-", namespace=self.argo.namespace,
                                  labels=labels, annotations=annotations),
            spec=m.WorkflowSpec(workflow_template_ref=m.WorkflowTemplateRef(name=template_name),
                                arguments=m.Arguments(parameters=self._model_parameters())),
        )
        return _dump(wf)

    def _model_parameters(self) -> list[Any]:
        return [m.Parameter(name=name, value=value) for name, (_, value) in self.parameters.items()]

    def cron(self, template_name: str) -> dict[str, Any]:
        labels, annotations = self._metadata("nightly")
        sched = self.argo.schedule
        cron = m.CronWorkflow(
            api_version=API_VERSION, kind="CronWorkflow",
            metadata=m.ObjectMeta(name=f"{self.config.name}-nightly", namespace=self.argo.namespace,
                                  labels=labels, annotations={C.DESCRIPTION_ANNOTATION: annotations[
                                      C.DESCRIPTION_ANNOTATION]}),
            spec=m.CronWorkflowSpec(
                schedules=list(sched.schedules), timezone=sched.timezone, concurrency_policy="Forbid",
                starting_deadline_seconds=sched.starting_deadline_s,
                successful_jobs_history_limit=sched.successful_jobs_history_limit,
                failed_jobs_history_limit=sched.failed_jobs_history_limit,
                suspend=sched.suspend or None,
                workflow_metadata=m.ObjectMeta(labels=labels, annotations=annotations),
                workflow_spec=m.WorkflowSpec(workflow_template_ref=m.WorkflowTemplateRef(name=template_name),
                                             arguments=m.Arguments(parameters=self._model_parameters())),
            ),
        )
        return _dump(cron)

    def inline_workflow(self, template: dict[str, Any]) -> dict[str, Any]:
        labels, annotations = self._metadata("manual")
        spec = json.loads(json.dumps(template["spec"]))
        spec.pop("workflowMetadata", None)
        for param in spec.get("arguments", {}).get("parameters", []):
            param.pop("description", None)
        return {
            "apiVersion": API_VERSION, "kind": "Workflow",
            "metadata": {"generateName": f"{self.config.name}-", "namespace": self.argo.namespace,
                         "labels": {**labels, f"{C.LABEL_PREFIX}/template": template["metadata"]["name"]},
                         "annotations": annotations},
            "spec": spec,
        }


def _dump(model: Any) -> dict[str, Any]:
    return json.loads(model.model_dump_json(exclude_none=True, by_alias=True))


@dataclass(kw_only=True)
class StepRunnerConstructor(RunnerScriptConstructor):
    """Hera's runner constructor, run through pipelines.argo.step_runner (TransientError -> exit 75)."""

    entrypoint: str = ""

    def transform_values(self, script: Script) -> None:
        script.args = ["-m", C.STEP_RUNNER_MODULE, "-e", self.entrypoint]


def compile_pipeline(config: PipelineConfig, pipeline: Pipeline | None = None) -> CompiledPipeline:
    """The Argo objects for `config`; raises CompileError listing every problem."""
    from pipelines.spec import build_pipeline

    problems = cluster_problems(config)
    if problems:
        raise CompileError(problems)
    pipeline = pipeline or build_pipeline()
    compiler = _Compiler(config, pipeline)
    template = compiler.template()
    name = template["metadata"]["name"]
    return CompiledPipeline(
        template=template, workflow=compiler.workflow(name), cron=compiler.cron(name),
        inline_workflow=compiler.inline_workflow(template), template_name=name,
        code_version=compiler.code_version,
        parameters={k: v for k, (_, v) in compiler.parameters.items()}, pipeline=pipeline,
        warnings=compiler.warnings,
    )


def to_yaml(obj: dict[str, Any]) -> str:
    """Block-style YAML in field order; libyaml's emitter when present (same text, ~3x faster)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(obj, Dumper=dumper, sort_keys=False, width=4096, allow_unicode=True)
