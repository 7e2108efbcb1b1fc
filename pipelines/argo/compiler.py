"""Compiles the pipeline (pipelines/spec.py) into Argo objects with Hera: a versioned WorkflowTemplate,
a Workflow that references it, and a nightly CronWorkflow. Generic over the Pipeline: every node becomes
one script template run by Hera's runner (`python -m hera.workflows.runner -e steps.<step>:run`) on its
image family, and one DAG task. Nodes that share a mutex (promote and canary) become one sub-DAG template
that holds the mutex while all of them run, so no other run can slip in between them.

Bindings become arguments: FromConfig -> a workflow parameter (overridable at submit), FromStep -> the
upstream task's output parameter, FromRun("context") -> the RuntimeContext JSON (run id = workflow name,
scratch on an emptyDir; not a parameter, so the residency policy cannot be overridden at submit),
FromRun("code_version") -> the compiled pipeline code version. Argument names are the template's input
names, derived from each step's Input model as Hera derives them (pipelines/argo/stepio.py).

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

from pipelines.argo import constants as C
from pipelines.argo.checks import CompileError, cluster_problems, pinned_regions
from pipelines.argo.settings import ArgoSettings, Resources
from pipelines.argo.stepio import (
    TEMPLATE_NAME_RE,
    StepIO,
    parameter_name,
    serialize_value,
    step_io,
    task_name,
)
from pipelines.cache_key import pipeline_code_version, step_code_version
from pipelines.config import PipelineConfig
from pipelines.spec import FromConfig, FromRun, FromStep, Node, Pipeline
from steps.common.argo_ui import UI_REPORT_ENV
from steps.common.contract import EXIT_TRANSIENT, RuntimeContext
from steps.common.residency import OFFLINE_ENV

API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "pipeline"
EXIT_DAG = "exit-handler"
EXIT_TEMPLATE = "record-exit"
MUTEX_PREFIX = "mutex-"  # the sub-DAG holding a mutex for its steps: mutex-<name>
REGION_LABEL = "topology.kubernetes.io/region"
RETRY_EXPRESSION = f'lastRetry.status == "Error" || asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}'
MAX_METRICS = 100  # the CRD's maxItems for a template's metrics.prometheus
_METRIC_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")
_NUMERIC = (int, float)
RUN_ID = "{{workflow.name}}"


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


@dataclass
class MutexGroup:
    """The nodes sharing one mutex: compiled into one sub-DAG that holds it while they all run."""

    mutex: str
    nodes: list[Node]

    @property
    def name(self) -> str:
        return MUTEX_PREFIX + task_name(self.mutex)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eurolora")
    except PackageNotFoundError:
        return "0.0.0"


def _when(ref: str, equals: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]+", equals):
        return f"{ref} == {equals}"
    return f"'{ref}' == '{equals}'"


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
            if node.mutex:  # the sub-DAG of the mutex shares the template namespace with the steps
                group = MUTEX_PREFIX + task_name(node.mutex)
                owner = tasks.setdefault(group, f"mutex {node.mutex}")
                if owner != f"mutex {node.mutex}":
                    problems.append(f"mutex {node.mutex!r}: its sub-DAG name {group!r} is taken by step {owner}")
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
            mutexes = {self.pipeline.node(up).mutex or "" for up in node.upstream} - {"", node.mutex or ""}
            for mutex in sorted(mutexes):
                problems.append(f"step {node.name} follows a step of mutex {mutex!r}, whose steps run inside one "
                                "sub-DAG: only steps of the same mutex may follow them")
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
        requests, limits = dict(res.requests), dict(res.limits)
        if res.gpu:  # extended resources need requests == limits; both written, nothing left to defaulting
            requests[self.argo.gpu_resource] = limits[self.argo.gpu_resource] = str(res.gpu)
        return m.ResourceRequirements(requests=requests or None, limits=limits or None)

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
                                 run_as_non_root=True, capabilities=m.Capabilities(drop=["ALL"]))

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
        # Every numeric output (the judge's gate rates, counts, losses) as a gauge of the last run, and
        # every boolean (the gate's verdict) as a 0/1 gauge: one definition per value, picked by `when`
        # (Argo's gauges take a number, the parameter holds "true"/"false").
        pipeline = [m.MetricLabel(key="pipeline", value=self.config.name)]
        for fld, name in sio.outputs.items():
            typ = sio.output_types.get(fld)
            if not isinstance(typ, type) or not issubclass(typ, _NUMERIC):
                continue
            metric = _METRIC_NAME_RE.sub("_", f"eurolora_{sio.node.name}_{fld}").lower()
            ref = f"{{{{outputs.parameters.{name}}}}}"
            if issubclass(typ, bool):
                metrics += [m.Prometheus(
                    name=metric, help=f"Output {fld} of step {sio.node.name} (last successful run), 1 = true",
                    labels=pipeline, when=f"{{{{status}}}} == Succeeded && {ref} == {text}",
                    gauge=m.Gauge(value=value, realtime=False)) for text, value in (("true", "1"), ("false", "0"))]
            else:
                metrics.append(m.Prometheus(
                    name=metric, help=f"Output {fld} of step {sio.node.name} (last successful run)",
                    labels=pipeline, when="{{status}} == Succeeded", gauge=m.Gauge(value=ref, realtime=False)))
        if len(metrics) > MAX_METRICS:
            raise CompileError([(f"step {sio.node.name}: {len(metrics)} Prometheus metrics, Argo allows at most "
                                f"{MAX_METRICS} per template; the step has too many numeric outputs")])
        return m.Metrics(prometheus=metrics)

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
        annotations = {f"{C.LABEL_PREFIX}/step": node.name, f"{C.LABEL_PREFIX}/image-family": node.image,
                       f"{C.LABEL_PREFIX}/code-version": step_code_version(node.module)}
        if node.reports_progress:
            # Argo's controller sets ARGO_PROGRESS_FILE in every main container (progress ticks on, the
            # default); steps.common.progress writes N/M there and the UI shows it on the node.
            annotations[f"{C.LABEL_PREFIX}/reports-progress"] = "true"
        return Script(
            name=sio.task, source=run, constructor=RunnerWithOutputDefaults(outputs_directory=C.OUTPUTS_DIR),
            inputs=extra_inputs, outputs=outputs, memoize=memoize,
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
            outputs=[Parameter(name="key", value_from=m.ValueFrom(path=C.MEMO_KEY_PATH, default=""))],
            annotations={f"{C.LABEL_PREFIX}/step": node.name}, **kwargs,
        )

    def _control_resources(self) -> Resources:
        return Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})

    def _exit_templates(self) -> list[Any]:
        from pipelines.argo import exit_handler

        kwargs = self._pod_template_kwargs("cpu", self._control_resources(), gpu=False, timeout_s=900)
        record = Script(name=EXIT_TEMPLATE, source=exit_handler.record,
                        constructor=RunnerWithOutputDefaults(outputs_directory=C.OUTPUTS_DIR), **kwargs)
        with DAG(name=EXIT_DAG) as dag:
            Task(name="record", template=EXIT_TEMPLATE, arguments={
                "context": self.context_json, "status": "{{workflow.status}}",
                "failures": "{{workflow.failures}}", "duration": "{{workflow.duration}}"})
        return [record, dag]

    # -- the DAG: one task per node (plus its memo-key task), mutex groups as sub-DAG tasks
    def _mutex_groups(self) -> list[MutexGroup]:
        groups: dict[str, MutexGroup] = {}
        for node in self.nodes:
            if node.mutex:
                groups.setdefault(node.mutex, MutexGroup(node.mutex, [])).nodes.append(node)
        return list(groups.values())

    def _output_ref(self, step: str, output: str, group: MutexGroup | None, group_inputs: dict[str, str]) -> str:
        """`{{tasks...}}` of an upstream output; inside a sub-DAG, an outside step's output arrives as one
        of the sub-DAG's inputs (a sub-DAG's tasks cannot see the outer DAG's tasks)."""
        up = self.io[step]
        ref = f"{{{{tasks.{up.task}.outputs.parameters.{up.outputs[output]}}}}}"
        if group is None or step in {n.name for n in group.nodes}:
            return ref
        name = f"{up.task}-{up.outputs[output]}"
        group_inputs[name] = ref
        return f"{{{{inputs.parameters.{name}}}}}"

    def _argument(self, sio: StepIO, fld: str, group: MutexGroup | None, group_inputs: dict[str, str]) -> str:
        binding = sio.node.bindings[fld]
        if isinstance(binding, FromConfig):
            return f"{{{{workflow.parameters.{parameter_name(binding.path)}}}}}"
        if isinstance(binding, FromStep):
            return self._output_ref(binding.step, binding.output, group, group_inputs)
        if binding.name == "context":
            return self.context_json
        return self.code_version

    def _node_tasks(self, node: Node, group: MutexGroup | None, group_inputs: dict[str, str]) -> None:
        """The node's task (and its memo-key task) in the DAG being built; `depends` only on upstream
        nodes in the same DAG (the sub-DAG task itself depends on the outside ones)."""
        sio = self.io[node.name]
        args = {sio.inputs[f]: self._argument(sio, f, group, group_inputs) for f in node.bindings}
        inside = {n.name for n in group.nodes} if group else {n.name for n in self.nodes}
        upstream = [f"{task_name(u)}.Succeeded" for u in node.upstream if u in inside]
        when = None
        if node.when:
            when = _when(self._output_ref(node.when.step, node.when.output, group, group_inputs), node.when.equals)
        if node.memoize:
            key_task = f"{sio.task}-memo-key"
            Task(name=key_task, template=key_task, arguments=dict(args), depends=" && ".join(upstream) or None,
                 when=when)
            args[C.MEMO_KEY_PARAM] = f"{{{{tasks.{key_task}.outputs.parameters.key}}}}"
            upstream = [*upstream, f"{key_task}.Succeeded"]
        Task(name=sio.task, template=sio.task, arguments=args, depends=" && ".join(upstream) or None, when=when)

    def _group_dag(self, group: MutexGroup) -> dict[str, str]:
        """The sub-DAG template of a mutex group; returns its inputs (name -> outer reference)."""
        group_inputs: dict[str, str] = {}
        with DAG(name=group.name, synchronization=m.Synchronization(mutexes=[m.Mutex(name=group.mutex)]),
                 annotations={f"{C.LABEL_PREFIX}/mutex": group.mutex}) as dag:
            for node in group.nodes:
                self._node_tasks(node, group, group_inputs)
        dag.inputs = [Parameter(name=name) for name in group_inputs]
        return group_inputs

    def _dags(self) -> None:
        groups = self._mutex_groups()
        group_inputs = {g.mutex: self._group_dag(g) for g in groups}
        with DAG(name=ENTRYPOINT):
            for node in self.nodes:
                if not node.mutex:
                    self._node_tasks(node, None, {})
            for group in groups:
                inside = {n.name for n in group.nodes}
                outside = sorted({u for n in group.nodes for u in n.upstream} - inside)
                Task(name=group.name, template=group.name, arguments=group_inputs[group.mutex] or None,
                     depends=" && ".join(f"{task_name(u)}.Succeeded" for u in outside) or None)

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
            self._dags()
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
