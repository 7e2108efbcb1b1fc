"""The compiled Argo workflow executed: `eurolora compile` writes the WorkflowTemplate YAML, and the harness
(tests/support/argo_harness) runs it from that YAML alone, walking its DAG as Argo's controller does and
running every pod's command line with its environment, ingest through canary, memo-key pods and exit
handler included, on the embedded model with the tiny budget of the local end-to-end run.

The services the pods talk to are real: moto's S3 server (artifacts, corpus) and `mlflow server` (the
registry), both reached under in-cluster names (`*.harness.svc.cluster.local`, resolved to 127.0.0.1 in the
pods: tests/support/argo_harness/pod_site), and for the canary the serving stack `eurolora run` starts
(pipelines/local/serving_stack.py). What this machine cannot give a pod is given as a submit would give it,
and named here: `-p base-model=embedded` (the compiled config names an s3:// model, as a cluster config
must; the embedded model is the one this machine converted, reached through EUROLORA_CACHE_DIR as an image
with the model inside would provide it).
"""

import json
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_config
from tests.fixtures.mlflow import MLFLOW_TEST_ENV, running_mlflow_server
from tests.fixtures.tiny_budget import TINY_OVERRIDES, set_arguments
from tests.support.argo_harness.workflow import WorkflowResult, WorkflowRun

REPO = Path(__file__).resolve().parents[2]
BUCKET = "eurolora-harness"
S3_HOST, MLFLOW_HOST = "s3.harness.svc.cluster.local", "mlflow.harness.svc.cluster.local"
CREDENTIALS = {("eurolora-s3", "access-key-id"): "harness-key", ("eurolora-s3", "secret-access-key"): "harness-secret"}
RUN_NAME = "local-demo-harness"
STEP_TASKS = ("ingest", "generate-qa", "check-dataset", "finetune", "judge", "promote", "canary")


def cluster_overrides(s3_port: int, mlflow_port: int) -> list[str]:
    """The shipped local config made a cluster config: shared storage and registry under in-cluster names,
    an s3:// corpus and base model (what `eurolora compile` requires), the residency policy allowing them."""
    hosts = json.dumps(["127.0.0.1", "localhost", "::1", "*.svc.cluster.local", "registry.invalid"])
    return [
        f"corpus=s3://{BUCKET}/corpus/", f"storage.artifact_root=s3://{BUCKET}/eurolora",
        f"storage.s3.endpoint_url=http://{S3_HOST}:{s3_port}", "storage.s3.region=eu-central-1",
        f"registry.tracking_uri=http://{MLFLOW_HOST}:{mlflow_port}", "registry.artifact_location=",
        f"base_model=s3://{BUCKET}/models/smollm2-135m-instruct",
        f"residency.allowed_hosts={hosts}", f"residency.plain_http_hosts={hosts}",
        # The canary's replicas and Prometheus: replaced by the serving stack's when the canary pod starts.
        "canary.replicas=[\"http://vllm.harness.svc.cluster.local:8000/v1\"]",
        "canary.metrics.prometheus_url=http://prometheus.harness.svc.cluster.local:9090",
    ]


def _s3(endpoint: str):
    import boto3

    (access, secret) = CREDENTIALS.values()
    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1", aws_access_key_id=access,
                        aws_secret_access_key=secret)


@pytest.fixture(scope="module")
def harness_run(request: pytest.FixtureRequest, moto_server: str, embedded_model_dir: Path) -> dict:
    from pipelines.local.processes import free_port
    from pipelines.local.serving_stack import canary_serving
    from steps.common.models import cache_root

    # A short folder: a pod's /tmp lives under it, and vLLM's engine binds a Unix socket there, whose path must
    # stay under 108 bytes (pytest's tmp_path plus the pod's folders is longer).
    work = Path(tempfile.mkdtemp(prefix="argo-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    client = _s3(moto_server)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    for document in sorted((REPO / "pipelines" / "corpus" / "demo").iterdir()):
        client.upload_file(str(document), BUCKET, f"corpus/{document.name}")
    s3_port = int(moto_server.rsplit(":", 1)[1])
    mlflow_port = free_port()
    overrides = [*TINY_OVERRIDES, *cluster_overrides(s3_port, mlflow_port)]
    compiled = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "compile", str(REPO / "pipelines/configs/local.yaml"),
         *set_arguments(overrides), "--out", str(work / "argo")],
        capture_output=True, text=True, timeout=120, check=False, cwd=work)
    assert compiled.returncode == 0, compiled.stderr
    template = yaml.safe_load((work / "argo" / "workflowtemplate.yaml").read_text())
    # What `eurolora run` would run with: the same config, the model as submitted.
    config = load_config(overrides=overrides).model_copy(update={"base_model": "embedded"})
    node_env = {"EUROLORA_HARNESS_HOST_ALIASES": json.dumps({S3_HOST: "127.0.0.1", MLFLOW_HOST: "127.0.0.1"}),
                "EUROLORA_CACHE_DIR": str(cache_root()),
                # One torch thread per pod: two OpenMP threads on 2 shared cores wait on each other at every
                # barrier (bench/generation_cpu.py); a cluster pod would get its cores from its CPU request.
                "OMP_NUM_THREADS": "1"}
    with pytest.MonkeyPatch.context() as patch:
        # The server checks the Host header (DNS rebinding protection): pods send the in-cluster name.
        patch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", f"{MLFLOW_HOST}:{mlflow_port},127.0.0.1:{mlflow_port}")
        with running_mlflow_server(work / "mlflow", mlflow_port) as (server, _):
            run = WorkflowRun(template, work, RUN_NAME, arguments={"base-model": "embedded"}, secrets=CREDENTIALS,
                              node_env={**MLFLOW_TEST_ENV, **node_env},
                              services={"canary": partial(canary_serving, config)})
            result = run.run()
    return {"result": result, "template": template, "config": config, "server": server, "s3": client,
            "endpoint": moto_server}


def _logs(result: WorkflowResult) -> str:
    failed = [n for n in result.nodes + result.exit_handler if n.pod and n.phase != "Succeeded"]
    return "\n".join(f"--- {n.path}: {n.message}\n{n.pod.log.read_text()[-3000:]}" for n in failed if n.pod)


@pytest.mark.slow
def test_every_step_ran_from_its_compiled_template(harness_run: dict) -> None:
    result: WorkflowResult = harness_run["result"]
    assert result.phase == "Succeeded", _logs(result)
    ran = {n.path: n.phase for n in result.nodes}
    assert ran == {
        "pipeline/ingest-memo-key": "Succeeded", "pipeline/ingest": "Succeeded",
        "pipeline/generate-qa-memo-key": "Succeeded", "pipeline/generate-qa": "Succeeded",
        "pipeline/check-dataset": "Succeeded", "pipeline/finetune": "Succeeded", "pipeline/judge": "Succeeded",
        "pipeline/mutex-promote": "Succeeded", "pipeline/mutex-promote/promote": "Succeeded",
        "pipeline/mutex-promote/canary": "Succeeded"}
    templates = {t["name"]: t for t in harness_run["template"]["spec"]["templates"]}
    for task in STEP_TASKS:
        node = result.node(task)
        assert templates[task]["script"]["args"][-1] == f"steps.{task.replace('-', '_')}:run"
        assert set(node.outputs) == {p["name"] for p in templates[task]["outputs"]["parameters"]}
    for step in ("ingest", "generate-qa"):  # the memo-key pod's key reached the step it keys
        key = result.node(f"{step}-memo-key").outputs["key"]
        assert len(key) == 32 and result.node(step).inputs["memo-key"] == key


@pytest.mark.slow
def test_published_artifacts_verify(harness_run: dict, tmp_path: Path) -> None:
    from steps.common.contract import RuntimeContext

    result: WorkflowResult = harness_run["result"]
    context = RuntimeContext.model_validate_json(result.node("ingest").inputs["context"])
    # Read with this machine's view of the store (the endpoint the pods reached as S3_HOST).
    context.storage.s3.endpoint_url = harness_run["endpoint"]
    store = context.store()
    uris = {"ingest": "chunks_uri", "generate-qa": "qa_uri", "finetune": "adapter_uri", "judge": "report_uri",
            "canary": "report_uri"}
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), CREDENTIALS.values(), strict=True):
            patch.setenv(variable, value)
        for task, output in uris.items():
            uri = result.node(task).outputs[output]
            assert uri.startswith(f"s3://{BUCKET}/eurolora/runs/{RUN_NAME}/"), uri
            store.materialize(uri, tmp_path / task)  # downloads every file and checks it against its manifest
        assert result.node("generate-qa").outputs["dataset_digest"].endswith(
            store.read_manifest(result.node("generate-qa").outputs["qa_uri"]).digest)
        status = json.loads(store.read_bytes(f"s3://{BUCKET}/eurolora/runs/{RUN_NAME}/workflow-status.json"))
    assert status["status"] == "Succeeded" and status["failures"] == []  # the exit handler's record
    [exit_node] = result.exit_handler
    assert exit_node.path == "exit-handler/record" and exit_node.phase == "Succeeded"
    report = result.node("judge").pod.artifacts["html-report"]  # the UI's output artifact, where the pod wrote it
    assert "<svg" in report.read_text()


@pytest.mark.slow
def test_registry_and_canary_decision(harness_run: dict) -> None:
    from mlflow import MlflowClient

    result: WorkflowResult = harness_run["result"]
    promote, canary = result.node("promote").outputs, result.node("canary").outputs
    assert promote["model_version"] == "1" and promote["promoted"] == "true"
    assert canary["decision"] in ("promoted", "rolled_back"), canary
    # The server stopped with the run: read the registry it wrote from its SQLite file.
    client = MlflowClient(tracking_uri=harness_run["server"].db_uri)
    name = harness_run["config"].registry.model_name
    version = client.get_model_version(name, "1")
    assert version.tags["eurolora.run_adapter_uri"] == result.node("finetune").outputs["adapter_uri"]
    assert version.tags["eurolora.adapter_uri"].endswith(f"/models/{name}/v1")  # promote's copy, out of the run
    assert version.tags["eurolora.pipeline_run_id"] == RUN_NAME  # {{workflow.name}}, filled into the context
    assert version.tags["eurolora.canary.decision"] == canary["decision"]
    # The canary settled the challenger either way: champion (promoted) or no champion (rolled back to the
    # base model, as this was the family's first version).
    aliases = {alias: str(number) for alias, number in client.get_registered_model(name).aliases.items()}
    expected = {"champion": "1"} if canary["decision"] == "promoted" else {}
    assert aliases == expected and canary["champion_version"] == expected.get("champion", "")
    settings = json.loads(result.node("canary").inputs["settings"])  # the serving stack's, as the pod got them
    assert settings["replicas"][0].startswith("http://127.0.0.1:")
