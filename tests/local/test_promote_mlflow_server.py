"""promote through `run()` against a real `mlflow server` process over HTTP (proxied artifacts)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.local.processes import free_port
from steps.common.contract import RuntimeContext, TransientError
from steps.promote import run
from tests.fixtures.mlflow import (
    MlflowServer,
    db_aliases,
    db_versions,
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _inputs(context: RuntimeContext, server: MlflowServer, model: str, name: str, *, passed: bool = True,
            expected: str = "", tracking_uri: str | None = None) -> object:
    run_id = make_finetune_run(server.uri, f"exp-{model}")
    return promote_inputs(context, tracking_uri or server.uri, model,
                          adapter_uri=publish_adapter(context, f"adapter-{name}", seed=name), run_id=run_id,
                          report_uri=publish_report(context, f"report-{name}", passed=passed),
                          gate_passed=passed, expected=expected)


def test_promote_end_to_end_through_the_server(context: RuntimeContext, mlflow_server: MlflowServer,
                                               mlflow_model: str) -> None:
    first_inputs = _inputs(context, mlflow_server, mlflow_model, "a")
    first = run(first_inputs)
    second = run(_inputs(context, mlflow_server, mlflow_model, "b", expected=first.model_version))
    rejected = run(_inputs(context, mlflow_server, mlflow_model, "c", passed=False,
                           expected=second.model_version))

    assert (first.decision, second.decision, rejected.decision) == ("promoted", "promoted", "rejected")
    # What the server's database really holds.
    assert db_aliases(mlflow_server.db_path, mlflow_model) == {
        "champion": second.model_version, "previous": first.model_version,
        "challenger": rejected.model_version}
    assert db_versions(mlflow_server.db_path, mlflow_model) == [first.model_version, second.model_version,
                                                               rejected.model_version]
    mv = mlflow_client(mlflow_server.uri).get_model_version(mlflow_model, first.model_version)
    assert mv.source.startswith("mlflow-artifacts:/") and mv.source.endswith("/artifacts/adapter")
    assert mv.tags["eurolora.adapter_uri"] == first_inputs.adapter_uri
    assert mv.tags["eurolora.decision"] == "promoted"
    assert mv.tags["eurolora.metrics.candidate.stop_rate.value"] == "1.0"  # the judge's gate numbers
    assert mv.tags["eurolora.metrics.gate.n"] == "24" and mv.tags["eurolora.gate.passed"] == "true"
    # The server proxied the adapter into its artifacts destination, byte for byte.
    stored = list(mlflow_server.artifacts_dir.rglob(f"{first_inputs.mlflow_run_id}/artifacts/adapter/*"))
    published = context.store().materialize(first_inputs.adapter_uri, context.scratch() / "check")
    assert {p.name for p in stored} >= {"adapter_model.safetensors", "adapter_config.json", "README.md"}
    for path in stored:
        assert path.read_bytes() == (published / path.name).read_bytes()
    lock = f"name = '{mlflow_model}.promotion-lock'"
    assert not mlflow_client(mlflow_server.uri).search_registered_models(lock)


def test_registry_down_fails_transiently_and_moves_no_alias(context: RuntimeContext,
                                                            mlflow_server: MlflowServer,
                                                            mlflow_model: str) -> None:
    champion = run(_inputs(context, mlflow_server, mlflow_model, "a"))
    def state() -> tuple[dict[str, str], list[str]]:
        db = mlflow_server.db_path
        return db_aliases(db, mlflow_model), db_versions(db, mlflow_model)

    before = state()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    inputs = _inputs(context, mlflow_server, mlflow_model, "b", expected=champion.model_version,
                     tracking_uri=closed)
    inputs = inputs.model_copy(update={"registry": inputs.registry.model_copy(update={"timeout_s": 2})})

    started = time.monotonic()
    with pytest.raises(TransientError, match=rf"MLflow registry at {closed} unreachable during .*Connection"):
        run.__wrapped__(inputs)  # the step itself, without transient_exit's exit-75 mapping
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"an unreachable registry took {elapsed:.1f}s to fail"
    assert state() == before


def _step_runner(inputs: object, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run promote as its pod does: Hera's runner, inputs as parameters."""
    args = [{"name": name, "value": value if isinstance(value, str) else json.dumps(value)}
            for name, value in inputs.model_dump(mode="json").items()]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inputs.json").write_text(json.dumps(args))
    outputs = tmp_path / "outputs"
    env = {**os.environ, "hera__outputs_directory": str(outputs), "PYTHONPATH": str(REPO_ROOT),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run([sys.executable, "-m", "hera.workflows.runner", "-e", "steps.promote:run",
                           str(tmp_path / "inputs.json")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT, check=False)
    return proc, outputs / "parameters"


def test_promote_through_hera_runner_and_transient_exit_code(context: RuntimeContext,
                                                             mlflow_server: MlflowServer,
                                                             mlflow_model: str, tmp_path: Path) -> None:
    from steps.common.contract import EXIT_TRANSIENT

    inputs = _inputs(context, mlflow_server, mlflow_model, "a")
    proc, params = _step_runner(inputs, tmp_path / "ok")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (params / "decision").read_text() == "promoted"
    assert (params / "promoted").read_text() == "true"
    version = (params / "model_version").read_text()
    assert db_aliases(mlflow_server.db_path, mlflow_model) == {"champion": version, "challenger": version}

    down = inputs.model_copy(update={"registry": inputs.registry.model_copy(
        update={"tracking_uri": f"http://127.0.0.1:{free_port()}", "timeout_s": 2})})
    proc, _ = _step_runner(down, tmp_path / "down")
    assert proc.returncode == EXIT_TRANSIENT, proc.stderr[-3000:]
    assert "TransientError: MLflow registry at http://127.0.0.1:" in proc.stderr
    assert db_aliases(mlflow_server.db_path, mlflow_model) == {"champion": version, "challenger": version}
