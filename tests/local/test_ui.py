"""`eurolora ui` serves MLflow's own UI on the local registry, and a real browser finds there what users look
for: the registered adapter version, its aliases, the lineage tags, and the judge's metrics and report."""

import sys
from pathlib import Path

import yaml

from pipelines.local.processes import free_port, server_process
from pipelines.ui_command import mlflow_ui_argv
from steps.common.contract import RuntimeContext
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.promote import run as promote
from tests.fixtures.mlflow import (
    MLFLOW_TEST_ENV,
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)
from tests.support.chromium import chromium


def _page(tmp_path: Path, url: str) -> str:
    # MLflow's UI renders from its own API calls: give its scripts virtual time to fetch and render.
    return chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", url, timeout_s=180).stdout


def test_mlflow_ui_shows_the_promoted_adapter_with_aliases_lineage_and_judge_metrics(
        tmp_path: Path, mlflow_sqlite_uri: str, mlflow_model: str) -> None:
    storage = StorageSettings(artifact_root=(tmp_path / "art").as_uri())
    context = RuntimeContext(run_id="nightly-7", storage=storage, residency=ResidencyPolicy(),
                             scratch_dir=str(tmp_path / "scratch"))
    run_id = make_finetune_run(mlflow_sqlite_uri, "eurolora", tmp_path / "mlartifacts")
    report_uri = publish_report(context, "report", passed=True)
    adapter_uri = publish_adapter(context, "adapter", seed="v1")
    out = promote(promote_inputs(context, mlflow_sqlite_uri, mlflow_model, run_id=run_id, gate_passed=True,
                                 report_uri=report_uri, adapter_uri=adapter_uri, lock={"settle_s": 0.05}))
    assert out.decision == "promoted"
    (tmp_path / "corpus").mkdir()
    config = tmp_path / "ui.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ui-test", "corpus": str(tmp_path / "corpus"),
        "storage": {"artifact_root": storage.artifact_root},
        "registry": {"tracking_uri": mlflow_sqlite_uri, "model_name": mlflow_model}}))

    port = free_port()
    argv = [sys.executable, "-m", "pipelines.cli", "ui", str(config), "--port", str(port)]
    with server_process(argv, f"http://127.0.0.1:{port}/health", tmp_path / "ui.log", timeout_s=180,
                        env=MLFLOW_TEST_ENV):
        root = f"http://127.0.0.1:{port}"
        version_page = _page(tmp_path, f"{root}/#/models/{mlflow_model}/versions/{out.model_version}")
        experiment = mlflow_client(mlflow_sqlite_uri).get_run(run_id).info.experiment_id
        run_page = _page(tmp_path, f"{root}/#/experiments/{experiment}/runs/{run_id}")

    assert f"Version {out.model_version}" in version_page
    assert "champion" in version_page and "challenger" in version_page  # the aliases
    for key in ("eurolora.dataset_digest", "eurolora.base_model_digest", "eurolora.judge_model",
                "eurolora.adapter_uri", "eurolora.gate.passed", "eurolora.report_uri"):
        assert key in version_page, key  # the lineage tags, the report's location among them
    assert report_uri in version_page
    # The judge's metrics, on the page of the run that trained the version.
    assert "judge.gate.n" in run_page and "judge.gate.a_rate_difference.value" in run_page


def test_the_ui_binds_loopback_only() -> None:
    argv = mlflow_ui_argv("sqlite:////tmp/x.db", "", 5000)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
