"""What the schemas do not check: names passed between tasks and templates, every `{{...}}` reference,
the DAG, the pinning and sovereignty settings of every pod, and references into the cluster manifests."""

import json
import re
from typing import Any

import pytest

from pipelines.argo import constants as C
from pipelines.argo.checks import pinned_regions
from pipelines.argo.cluster import cluster_manifests
from pipelines.argo.dag import ENTRYPOINT
from pipelines.argo.graph import MUTEX_PREFIX
from pipelines.argo.pods import REGION_LABEL
from pipelines.argo.stepio import PARAM_NAME_RE, TEMPLATE_NAME_RE, parameter_name, step_io, task_name
from pipelines.argo.templates import EXIT_DAG
from pipelines.spec import FromConfig, FromRun, FromStep
from steps.common.argo_ui import UI_REPORT_ENV
from steps.common.contract import EXIT_TRANSIENT
from steps.common.residency import EU_REGIONS, OFFLINE_ENV
from tests.compile.conftest import REPO_ROOT

_REF = re.compile(r"\{\{([^{}]*)\}\}")
_RUN_GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid"}
_EXIT_GLOBALS = {"workflow.status", "workflow.failures", "workflow.duration"}
_WORKFLOW_METRIC_GLOBALS = {"workflow.status", "workflow.duration"}  # what Argo offers workflow-level metrics


def _templates(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in obj["spec"]["templates"]}


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in obj["spec"]["templates"] if "script" in t or "container" in t]


def _inputs(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in template.get("inputs", {}).get("parameters", [])}


def _outputs(template: dict[str, Any]) -> set[str]:
    return {p["name"] for p in template.get("outputs", {}).get("parameters", [])}


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


def _depends(task: dict[str, Any]) -> set[str]:
    expr = task.get("depends") or ""
    names = set()
    for term in filter(None, (t.strip() for t in expr.split("&&"))):
        match = re.fullmatch(r"([a-zA-Z0-9-]+)\.(Succeeded|Failed|Errored|Skipped|Omitted|Daemoned|AnySucceeded"
                             r"|AllFailed)", term)
        assert match, f"task {task['name']}: cannot read depends term {term!r}"
        names.add(match.group(1))
    return names | set(task.get("dependencies") or [])


def _task_of(obj: dict[str, Any], step: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the DAG template holding the step's task, the task): the entrypoint's, or a mutex sub-DAG's."""
    holders = [(t, task) for t in _templates(obj).values() for task in t.get("dag", {}).get("tasks", [])
               if task["name"] == task_name(step) and task["template"] == task_name(step)]
    assert len(holders) == 1, f"step {step} has {len(holders)} tasks"
    return holders[0]


def _ancestors(tasks: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(_depends(tasks[name]))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(_depends(tasks[current]))
    return seen


# ---- task arguments against template inputs --------------------------------------------------------
@pytest.mark.parametrize("attr", ["template", "inline_workflow"])
def test_task_arguments_match_template_inputs_by_name(compiled, attr):
    obj = getattr(compiled, attr)
    templates = _templates(obj)
    for dag in (t for t in templates.values() if "dag" in t):
        for task in dag["dag"]["tasks"]:
            target = templates[task["template"]]
            inputs = _inputs(target)
            args = [p["name"] for p in task.get("arguments", {}).get("parameters", [])]
            assert len(args) == len(set(args)), f"task {task['name']} passes a parameter twice"
            unknown = set(args) - set(inputs)
            assert not unknown, f"task {task['name']} passes {sorted(unknown)}, not inputs of {target['name']}"
            missing = {n for n, p in inputs.items() if "default" not in p and "value" not in p} - set(args)
            assert not missing, f"task {task['name']} does not pass required inputs {sorted(missing)}"


def test_step_templates_take_the_names_hera_derives_from_the_input_models(compiled):
    """Hera's runner maps parameters to Input fields by the Parameter annotation's name, else the field
    name: the templates (and so the tasks) must use exactly those names."""
    templates = _templates(compiled.template)
    for node in compiled.pipeline.nodes:
        model = node.inputs_model()
        sio = step_io(node)
        assert set(sio.inputs) == set(model.model_fields)
        template = templates[task_name(node.name)]
        declared = set(_inputs(template)) - {C.MEMO_KEY_PARAM}  # built by Hera from the step's `run`
        assert declared == set(sio.inputs.values())
        assert _outputs(template) == set(sio.outputs.values())
        for fld in node.bindings:
            assert sio.inputs[fld] in declared


def test_renamed_parameter_is_passed_by_its_argo_name(fake_compiled):
    task = next(t for t in _templates(fake_compiled.template)["pipeline"]["dag"]["tasks"] if t["name"] == "finetune")
    names = [p["name"] for p in task["arguments"]["parameters"]]
    assert "dataset-uri" in names and "dataset_uri" not in names


# ---- references ------------------------------------------------------------------------------------
@pytest.mark.parametrize("attr", ["template", "inline_workflow", "workflow", "cron"])
def test_every_reference_resolves(compiled, attr):
    obj = getattr(compiled, attr)
    spec = obj["spec"].get("workflowSpec", obj["spec"])
    if "workflowTemplateRef" in spec:
        # only workflow parameters are passed; they must be exactly the template's
        assert spec["workflowTemplateRef"]["name"] == compiled.template_name
        names = [p["name"] for p in spec["arguments"]["parameters"]]
        assert names == [p["name"] for p in compiled.template["spec"]["arguments"]["parameters"]]
        assert not any(_REF.search(v) for _, v in _strings(spec))
        return
    workflow_params = {p["name"] for p in spec["arguments"]["parameters"]}
    templates = _templates(obj)
    problems = []
    for path, text in _strings({k: v for k, v in spec.items() if k != "templates"}, "spec"):
        for ref in (r.strip() for r in _REF.findall(text)):
            allowed = _RUN_GLOBALS | (_WORKFLOW_METRIC_GLOBALS if path.startswith("spec.metrics.") else set())
            if ref not in allowed:
                problems.append(f"{path}: {{{{{ref}}}}}")
    for name, template in templates.items():
        tasks = {t["name"]: t for t in template.get("dag", {}).get("tasks", [])}
        for path, text in _strings(template, name):
            for ref in (r.strip() for r in _REF.findall(text)):
                parts = ref.split(".")
                ok = False
                if ref in _RUN_GLOBALS:
                    ok = True
                elif ref in _EXIT_GLOBALS:
                    ok = name == EXIT_DAG
                elif parts[:2] == ["workflow", "parameters"] and len(parts) == 3:
                    ok = parts[2] in workflow_params
                elif ref == "inputs.parameters":
                    ok = path.endswith(".script.source")
                elif parts[:2] == ["inputs", "parameters"] and len(parts) == 3:
                    ok = parts[2] in _inputs(template)
                elif parts[:2] == ["outputs", "parameters"] and len(parts) == 3:
                    ok = ".metrics." in path and parts[2] in _outputs(template)
                elif ref in ("status", "duration"):
                    ok = ".metrics." in path
                elif parts[0] == "tasks" and len(parts) == 5 and parts[2:4] == ["outputs", "parameters"]:
                    task = path.split(".dag.tasks[")[1].split("]")[0] if ".dag.tasks[" in path else None
                    owner = template["dag"]["tasks"][int(task)]["name"] if task is not None else None
                    ok = (parts[1] in tasks and parts[4] in _outputs(templates[tasks[parts[1]]["template"]])
                          and owner is not None and parts[1] in _ancestors(tasks, owner))
                if not ok:
                    problems.append(f"{path}: {{{{{ref}}}}}")
    assert problems == []


@pytest.mark.parametrize("attr", ["template", "inline_workflow"])
def test_dag_is_acyclic_and_names_are_valid(compiled, attr):
    obj = getattr(compiled, attr)
    templates = _templates(obj)
    for name, template in templates.items():
        assert TEMPLATE_NAME_RE.match(name) and len(name) <= 128, name
        for io in [*_inputs(template), *_outputs(template)]:
            assert PARAM_NAME_RE.match(io), f"{name}: parameter {io!r}"
        tasks = {t["name"]: t for t in template.get("dag", {}).get("tasks", [])}
        for task in tasks.values():
            assert TEMPLATE_NAME_RE.match(task["name"]), task["name"]
            assert task["template"] in templates
            assert _depends(task) <= set(tasks), f"{task['name']} depends on unknown tasks"
            assert task["name"] not in _ancestors(tasks, task["name"]), f"cycle through {task['name']}"
    assert obj["spec"]["entrypoint"] in templates and obj["spec"]["onExit"] in templates


def _resolve(obj: dict[str, Any], holder: dict[str, Any], value: str) -> str:
    """A sub-DAG's `{{inputs.parameters.x}}` as the entrypoint passes it to the sub-DAG's task."""
    match = re.fullmatch(r"\{\{inputs\.parameters\.([-\w]+)\}\}", value)
    if holder["name"] == ENTRYPOINT or not match:
        return value
    outer = next(t for t in _templates(obj)[ENTRYPOINT]["dag"]["tasks"] if t["template"] == holder["name"])
    return {p["name"]: p["value"] for p in outer["arguments"]["parameters"]}[match.group(1)]


def test_bindings_compile_to_the_right_arguments(compiled):
    params = {p["name"] for p in compiled.template["spec"]["arguments"]["parameters"]}
    assert "corpus" in params  # overridable at submit
    for node in compiled.pipeline.nodes:
        sio = step_io(node)
        holder, task = _task_of(compiled.template, node.name)
        args = {p["name"]: _resolve(compiled.template, holder, p["value"]) for p in task["arguments"]["parameters"]}
        for fld, binding in node.bindings.items():
            value = args[sio.inputs[fld]]
            if isinstance(binding, FromConfig):
                assert value == f"{{{{workflow.parameters.{parameter_name(binding.path)}}}}}"
            elif isinstance(binding, FromStep):
                up = step_io(compiled.pipeline.node(binding.step))
                assert value == f"{{{{tasks.{up.task}.outputs.parameters.{up.outputs[binding.output]}}}}}"
            elif binding == FromRun("context"):
                context = json.loads(value)
                assert context["run_id"] == "{{workflow.name}}" and context["scratch_dir"] == C.SCRATCH_DIR
            else:
                assert value == compiled.code_version
        if node.when:
            ref = _resolve(compiled.template, holder, task["when"].split(" == ")[0])
            assert f"{ref} == {node.when.equals}" == (f"{{{{tasks.{task_name(node.when.step)}.outputs.parameters."
                                                      f"{node.when.output}}}}} == {node.when.equals}")
        if node.memoize:
            assert args[C.MEMO_KEY_PARAM] == f"{{{{tasks.{sio.task}-memo-key.outputs.parameters.key}}}}"


# ---- every pod -------------------------------------------------------------------------------------
def test_every_pod_is_pinned_offline_retried_and_bounded(compiled, example_config):
    regions = pinned_regions(example_config)
    assert regions and set(regions) <= set(EU_REGIONS)
    pods = _pod_templates(compiled.template)
    assert pods
    for t in pods:
        terms = t["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [{"key": REGION_LABEL, "operator": "In", "values": regions}]}]
        env = {e["name"]: e for e in t["script"]["env"]}
        for key, value in OFFLINE_ENV.items():
            assert env[key] == {"name": key, "value": value}, f"{t['name']}: {key}"
        for e in env.values():  # credentials only by reference
            if re.search(r"KEY|SECRET|TOKEN\b|PASSWORD", e["name"]):
                assert "value" not in e and e["valueFrom"]["secretKeyRef"], f"{t['name']}: {e['name']} inline"
        retry = t["retryStrategy"]
        assert f"asInt(lastRetry.exitCode) == {EXIT_TRANSIENT}" in retry["expression"]
        assert retry["backoff"]["duration"] and int(retry["limit"]) >= 1
        assert int(t["activeDeadlineSeconds"]) > 0
        security = t["script"]["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True, t["name"]
        mounts = {m["mountPath"] for m in t["script"]["volumeMounts"]}
        assert {C.SCRATCH_DIR, "/tmp"} <= mounts
    spec = compiled.template["spec"]
    assert spec["podGC"]["strategy"] and spec["ttlStrategy"]["secondsAfterCompletion"] > 0
    assert spec["activeDeadlineSeconds"] > 0 and spec["securityContext"]["runAsNonRoot"] is True


def test_step_templates_follow_their_nodes(compiled, example_config):
    templates = _templates(compiled.template)
    for node in compiled.pipeline.nodes:
        t = templates[task_name(node.name)]
        assert t["script"]["args"] == ["-m", "hera.workflows.runner", "-e", node.entrypoint]  # Hera's own runner
        assert t["script"]["image"] == example_config.argo.images.ref(node.image)
        resources = t["script"]["resources"]
        if node.gpu:
            assert int(resources["requests"]["nvidia.com/gpu"]) >= 1
            assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in t["tolerations"]
        else:
            assert "nvidia.com/gpu" not in {**resources.get("requests", {}), **resources.get("limits", {})}
            assert "tolerations" not in t
        # A step exiting 75 skips Hera's output placeholders: every output has a default instead.
        for out in t.get("outputs", {}).get("parameters", []):
            assert out["valueFrom"] == {"default": "", "path": f"{C.OUTPUTS_DIR}/parameters/{out['name']}"}
        if node.memoize:
            assert t["memoize"]["key"] == f"{{{{inputs.parameters.{C.MEMO_KEY_PARAM}}}}}"
            assert t["memoize"]["maxAge"] and t["memoize"]["cache"]["configMap"]["name"]
        else:
            assert "memoize" not in t
        assert "synchronization" not in t  # mutexes are held by the sub-DAG around the steps
        names = {m["name"] for m in t["metrics"]["prometheus"]}
        assert {"eurolora_step_duration_seconds", "eurolora_step_failures_total"} <= names
        failures = next(m for m in t["metrics"]["prometheus"] if m["name"] == "eurolora_step_failures_total")
        assert failures["when"] == "{{status}} == Failed"


def test_judge_report_and_gate_metrics(fake_compiled):
    judge = _templates(fake_compiled.template)["judge"]
    artifact = judge["outputs"]["artifacts"][0]
    assert artifact == {"name": C.UI_REPORT_ARTIFACT, "path": C.UI_REPORT_PATH, "optional": True,
                        "archive": {"none": {}}}
    assert {"name": UI_REPORT_ENV, "value": C.UI_REPORT_PATH} in judge["script"]["env"]
    gauges = {m["name"]: m for m in judge["metrics"]["prometheus"] if "gauge" in m}
    rate = gauges["eurolora_judge_candidate_a_rate"]
    assert rate["gauge"]["value"] == "{{outputs.parameters.candidate_a_rate}}"
    passed = [m for m in judge["metrics"]["prometheus"] if m["name"] == "eurolora_judge_passed"]
    assert [(m["when"], m["gauge"]["value"]) for m in passed] == [  # the gate's verdict as 0/1
        ("{{status}} == Succeeded && {{outputs.parameters.passed}} == true", "1"),
        ("{{status}} == Succeeded && {{outputs.parameters.passed}} == false", "0")]
    promote = _templates(fake_compiled.template)["promote"]
    assert "artifacts" not in promote.get("outputs", {})


def test_exit_handler_records_the_run(compiled):
    templates = _templates(compiled.template)
    dag = templates[compiled.template["spec"]["onExit"]]
    task = dag["dag"]["tasks"][0]
    args = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
    assert args["status"] == "{{workflow.status}}" and args["failures"] == "{{workflow.failures}}"
    record = templates[task["template"]]
    assert record["script"]["args"][-1] == "pipelines.argo.exit_handler:record"


def test_ui_metadata(compiled, example_config):
    for obj, trigger in ((compiled.workflow["metadata"], "manual"),
                         (compiled.cron["spec"]["workflowMetadata"], "nightly")):
        assert obj["labels"][f"{C.LABEL_PREFIX}/trigger"] == trigger
        assert obj["labels"][f"{C.LABEL_PREFIX}/pipeline"] == example_config.name
        assert obj["labels"][f"{C.LABEL_PREFIX}/adapter-family"] == example_config.adapter_family
        assert trigger in obj["annotations"][C.TITLE_ANNOTATION]
        description = obj["annotations"][C.DESCRIPTION_ANNOTATION]
        for text in (example_config.name, example_config.base_model, example_config.adapter_family, trigger):
            assert text in description
    cron = compiled.cron["spec"]
    assert cron["schedules"] and "schedule" not in cron
    assert cron["timezone"] == "Europe/Berlin" and cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] > 0
    assert cron["successfulJobsHistoryLimit"] >= 1 and cron["failedJobsHistoryLimit"] >= 1


def test_template_name_is_versioned(compiled, example_config):
    name = compiled.template_name
    assert re.fullmatch(rf"{example_config.name}-v\d+-\d+-\d+[a-z0-9-]*-[0-9a-f]{{10}}", name)
    assert len(name) <= 63
    assert compiled.template["metadata"]["annotations"][f"{C.LABEL_PREFIX}/code-version"] == compiled.code_version


# ---- references into the cluster manifests and images/ ---------------------------------------------
def test_images_secrets_and_configmaps_exist(compiled, example_config):
    manifests = cluster_manifests(example_config)
    docs = [d for ds in manifests.files.values() for d in ds]
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in manifests.secrets}
    secrets.update({d["metadata"]["name"]: set() for d in docs if d["kind"] == "Secret"})
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    families = {p.name.removesuffix(".Dockerfile") for p in (REPO_ROOT / "images").glob("*.Dockerfile")}
    spec = compiled.template["spec"]
    assert spec["serviceAccountName"] in accounts
    repo = spec["artifactRepositoryRef"]
    assert repo["key"] in configmaps[repo["configMap"]]["data"]
    for t in _pod_templates(compiled.template):
        image = t["script"]["image"]
        prefix = f"{example_config.argo.images.registry}/eurolora-"
        assert image.startswith(prefix) and image.endswith(f":{example_config.argo.images.tag}")
        assert image[len(prefix):].rsplit(":", 1)[0] in families, f"no images/ Dockerfile for {image}"
        for env in t["script"]["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], set()), f"{t['name']}: secret {ref} not declared"
        if "memoize" in t:
            assert t["memoize"]["cache"]["configMap"]["name"] in configmaps
    for text in (json.dumps(compiled.template), json.dumps(compiled.inline_workflow)):
        assert example_config.argo.token_env not in text  # the Argo token never reaches a workflow


# ---- mutexes ---------------------------------------------------------------------------------------
def test_steps_sharing_a_mutex_run_inside_one_sub_dag_that_holds_it(compiled):
    """The mutex is taken once around all its steps (never released between promote and canary), and no
    other path runs those steps."""
    templates = _templates(compiled.template)
    groups: dict[str, set[str]] = {}
    for node in compiled.pipeline.nodes:
        if node.mutex:
            groups.setdefault(node.mutex, set()).add(task_name(node.name))
    assert groups
    for mutex, steps in groups.items():
        name = MUTEX_PREFIX + task_name(mutex)
        group = templates[name]
        assert group["synchronization"] == {"mutexes": [{"name": mutex}]}
        memo_keys = {f"{s}-memo-key" for s in steps if f"{s}-memo-key" in templates}
        assert {t["template"] for t in group["dag"]["tasks"]} == steps | memo_keys
        for other, template in templates.items():
            called = {t["template"] for t in template.get("dag", {}).get("tasks", [])}
            if other != name:
                assert not called & steps, f"{other} runs {sorted(called & steps)} outside the mutex"
            if other == ENTRYPOINT:
                assert name in called
            elif name in called:
                raise AssertionError(f"{other} runs the mutex sub-DAG {name} a second time")
        for step in steps:  # a nested lock of the same name would be released when the step ends
            assert "synchronization" not in templates[step]


def test_promote_and_canary_hold_the_promote_mutex_together(real_compiled):
    group = _templates(real_compiled.template)[MUTEX_PREFIX + "promote"]
    assert [t["name"] for t in group["dag"]["tasks"]] == ["promote", "canary"]
    canary = group["dag"]["tasks"][1]
    assert canary["depends"] == "promote.Succeeded"
    assert canary["when"] == "{{tasks.promote.outputs.parameters.promoted}} == true"
