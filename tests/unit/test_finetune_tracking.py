"""The finetune MLflow run against a local SQLite registry: params, status on failure, residency."""

from pathlib import Path

import pytest

from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.finetune.settings import FinetuneSettings
from steps.finetune.tracking import flatten, tracked_run


def test_settings_flatten_to_mlflow_params() -> None:
    params = flatten("", FinetuneSettings(lora="all-linear").model_dump())
    assert params["lora.r"] == 16 and params["lora.target_modules"].startswith("q_proj,k_proj")
    assert params["quantization"] == "auto" and params["max_steps"] == 40


def test_a_failed_block_marks_the_run_failed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="ft-unit")
    tags = {"eurolora.pipeline_run_id": "p1"}
    with pytest.raises(RuntimeError, match="boom"), tracked_run(settings, ResidencyPolicy(), "r", tags,
                                                                {"lr": 0.1}) as run:
        run_id = run.run_id
        raise RuntimeError("boom")
    recorded = MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id)
    assert recorded.info.status == "FAILED"
    assert recorded.data.params == {"lr": "0.1"} and recorded.data.tags["eurolora.pipeline_run_id"] == "p1"


def test_tracking_server_outside_the_residency_policy_is_refused() -> None:
    settings = RegistrySettings(tracking_uri="https://mlflow.example.com")
    with pytest.raises(ResidencyError, match="registry.tracking_uri"), tracked_run(
            settings, ResidencyPolicy(), "r", {}, {}):
        pass
