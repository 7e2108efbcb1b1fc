"""What runs inside the pods, run here as the pods run it: the compiled template's own command line
(`python -m hera.workflows.runner -e steps.<step>:run`, Hera's runner) on the compiled arguments, for the
shipped check_dataset step and for tests-only steps (tests/compile/fake_steps); the memo-key code and the
exit handler against a real S3 server (moto). Fast checks, one pod at a time: the whole compiled workflow,
every shipped step from its template in DAG order, runs in tests/local/test_argo_workflow_e2e.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.argo import constants as C
from pipelines.argo.exit_handler import STATUS_FILE, ExitInputs, parse_failures, record
from pipelines.argo.graph import MUTEX_PREFIX
from pipelines.argo.memo_key import main as memo_key_main
from steps.common.contract import EXIT_TRANSIENT, RuntimeContext
from steps.common.residency import ResidencyPolicy
from steps.common.storage import S3Settings, StorageSettings
from tests.compile.conftest import REPO_ROOT


def _templates(obj):
    return {t["name"]: t for t in obj["spec"]["templates"]}


def _substitute(value: str, compiled, upstream: dict[str, str], parameters: dict[str, str] | None = None) -> str:
    value = value.replace("{{workflow.name}}", "handbook-nightly-abcde")
    for name, param in (parameters or compiled.parameters).items():
        value = value.replace(f"{{{{workflow.parameters.{name}}}}}", param)
    for ref, out in upstream.items():
        value = value.replace(f"{{{{{ref}}}}}", out)
    return value


def _run_step(args: list[dict], script_args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`python <the template's script args> <inputs file>`, as Argo runs the script template."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(args))
    outputs = tmp_path / "outputs"
    env = {**os.environ, "hera__outputs_directory": str(outputs), "PYTHONPATH": str(REPO_ROOT),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run([sys.executable, *script_args, str(inputs)],
                          check=False, capture_output=True, text=True, env=env, timeout=180, cwd=REPO_ROOT)
    return proc, outputs


def _task(compiled, step: str) -> dict:
    templates = _templates(compiled.template)
    for dag in (templates["pipeline"], *(t for n, t in templates.items() if n.startswith(MUTEX_PREFIX))):
        for task in dag["dag"]["tasks"]:
            if task["name"] == step:
                return task
    raise AssertionError(f"no task {step}")


@pytest.mark.parametrize("step", ["finetune", "judge"])
def test_hera_runner_accepts_the_compiled_arguments(fake_compiled, step, tmp_path):
    """The task's arguments, as Argo would substitute them, run a tests-only step (tests/compile/fake_steps,
    not the shipped one) through Hera's runner: every parameter name reaches its Input field (incl. the
    renamed `dataset-uri`), every output is written."""
    templates = _templates(fake_compiled.template)
    task = _task(fake_compiled, step)
    upstream = {"tasks.ingest.outputs.parameters.chunks_uri": "s3://b/runs/x/ingest/chunks",
                "tasks.finetune.outputs.parameters.adapter_uri": "s3://b/runs/x/finetune/adapter"}
    args = [{"name": p["name"], "value": _substitute(p["value"], fake_compiled, upstream)}
            for p in task["arguments"]["parameters"]]
    if "memoize" in templates[step]:
        args = [a for a in args if a["name"] != C.MEMO_KEY_PARAM] + [{"name": C.MEMO_KEY_PARAM, "value": "k"}]
    proc, outputs = _run_step(args, templates[step]["script"]["args"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for out in templates[step]["outputs"]["parameters"]:
        assert (outputs / "parameters" / out["name"]).is_file(), out["name"]
        assert out["valueFrom"]["path"] == f"{C.OUTPUTS_DIR}/parameters/{out['name']}"


def test_shipped_step_runs_from_its_compiled_template(real_compiled, tmp_path):
    """check_dataset, a real step, exactly as its pod runs it: the template's command line, the task's
    arguments with Argo's substitutions (the registry and base model overridden as `-p` at submit would:
    a SQLite registry and a local model folder stand in for the cluster's)."""

    template = _templates(real_compiled.template)["check-dataset"]
    assert template["script"]["args"] == ["-m", "hera.workflows.runner", "-e", "steps.check_dataset:run"]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    registry = json.loads(real_compiled.parameters["registry"])
    registry["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parameters = {**real_compiled.parameters, "registry": json.dumps(registry), "base-model": str(model)}
    digest = "sha256:" + "ab" * 32
    args = [{"name": p["name"], "value": _substitute(
        p["value"], real_compiled, {"tasks.generate-qa.outputs.parameters.dataset_digest": digest}, parameters)}
        for p in _task(real_compiled, "check-dataset")["arguments"]["parameters"]]
    proc, outputs = _run_step(args, template["script"]["args"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {p.name: p.read_text() for p in (outputs / "parameters").iterdir()}
    assert set(written) == {o["name"] for o in template["outputs"]["parameters"]}
    assert written["dataset_changed"] == "true" and written["reason"] == "no champion yet"
    assert written["champion_version"] == "" and written["base_model_digest"].startswith("sha256:")


@pytest.mark.parametrize(("failure", "code"), [("none", 0), ("transient", EXIT_TRANSIENT), ("bug", 1)])
def test_hera_runner_exit_codes(failure, code, tmp_path):
    """Hera's runner itself: TransientError -> 75 (steps.common.contract.transient_exit), a bug -> 1."""
    argv = ["-m", "hera.workflows.runner", "-e", "tests.compile.fake_steps.flaky:run"]
    proc, outputs = _run_step([{"name": "failure", "value": failure}], argv, tmp_path)
    assert proc.returncode == code, proc.stderr
    answer = outputs / "parameters" / "answer"
    if failure == "transient":  # SystemExit passes Hera's placeholder writer: valueFrom.default covers it
        assert not answer.exists()
        assert "transient failure, exit 75" in proc.stderr and "TransientError: endpoint unreachable" in proc.stderr
    else:
        assert answer.is_file()  # the value, or Hera's placeholder when the step raised


def _context(bucket: str, endpoint: str, run_id: str) -> RuntimeContext:
    return RuntimeContext(
        run_id=run_id, scratch_dir="/scratch",
        storage=StorageSettings(artifact_root=f"s3://{bucket}/eurolora",
                                s3=S3Settings(endpoint_url=endpoint, region="eu-central-1")),
        residency=ResidencyPolicy())


def _memo_key(tmp_path: Path, context: RuntimeContext, corpus: str, settings: str = '{"a": 1}') -> str:
    params = [{"name": "context", "value": context.model_dump_json()}, {"name": "settings", "value": settings},
              {"name": "corpus_uri", "value": corpus}, {"name": C.MEMO_KEY_PARAM, "value": ""}]
    inputs, out = tmp_path / "in.json", tmp_path / "key"
    inputs.write_text(json.dumps(params))
    assert memo_key_main(["--step", "ingest", "--code-version", "c0de", "--context-param", "context",
                          "--out", str(out), str(inputs)]) == 0
    return out.read_text()


def test_memo_key_follows_content_not_run(moto_server, s3_bucket, tmp_path):
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    client.put_object(Bucket=s3_bucket, Key="corpus/a.txt", Body=b"first")
    corpus = f"s3://{s3_bucket}/corpus/"
    first = _memo_key(tmp_path, _context(s3_bucket, moto_server, "run-1"), corpus)
    assert len(first) == 32
    assert _memo_key(tmp_path, _context(s3_bucket, moto_server, "run-2"), corpus) == first  # run id ignored
    assert _memo_key(tmp_path, _context(s3_bucket, moto_server, "run-2"), corpus, '{"a": 2}') != first
    client.put_object(Bucket=s3_bucket, Key="corpus/a.txt", Body=b"changed")
    assert _memo_key(tmp_path, _context(s3_bucket, moto_server, "run-3"), corpus) != first  # content counts


def test_memo_key_refuses_a_non_eu_endpoint(tmp_path):
    context = _context("b", "https://s3.us-east-1.amazonaws.com", "run-1")
    params = [{"name": "context", "value": context.model_dump_json()},
              {"name": "corpus_uri", "value": "s3://b/corpus/"}]
    inputs = tmp_path / "in.json"
    inputs.write_text(json.dumps(params))
    code = memo_key_main(["--step", "x", "--code-version", "c", "--context-param", "context",
                          "--out", str(tmp_path / "k"), str(inputs)])
    assert code == 1  # a residency violation is not retried


def test_exit_handler_records_failures(moto_server, s3_bucket, capsys):
    import boto3

    failures = json.dumps([{"displayName": "finetune", "templateName": "finetune", "phase": "Failed",
                            "message": "Error (exit code 1)", "podName": "wf-finetune-1", "finishedAt": "t",
                            "extra": "dropped"}])
    context = _context(s3_bucket, moto_server, "handbook-nightly-abcde")
    record(ExitInputs(context=context, status="Failed", failures=json.dumps(failures), duration="12.34"))
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    body = client.get_object(Bucket=s3_bucket, Key=f"eurolora/runs/handbook-nightly-abcde/{STATUS_FILE}")["Body"]
    status = json.loads(body.read())
    assert status["status"] == "Failed" and status["duration_s"] == 12.3
    assert status["failures"] == [{"displayName": "finetune", "templateName": "finetune", "phase": "Failed",
                                   "message": "Error (exit code 1)", "podName": "wf-finetune-1", "finishedAt": "t"}]
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == status


@pytest.mark.parametrize(("raw", "expected"), [("null", []), ("", []), ("[]", []), ('"[]"', []),
                                               ("not json", [{"message": "not json"}])])
def test_exit_handler_parses_what_argo_sends(raw, expected):
    assert parse_failures(raw) == expected
