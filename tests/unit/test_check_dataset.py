"""check_dataset against a real (SQLite) MLflow registry."""

from pathlib import Path

import pytest

from steps.check_dataset import CheckDatasetInputs, run
from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.contract import RuntimeContext
from steps.common.registry import CHAMPION, Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings


@pytest.fixture
def context(tmp_path: Path) -> RuntimeContext:
    return RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                          residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))


def _inputs(context: RuntimeContext, registry: RegistrySettings, digest: str, model: Path, skip: bool = True
            ) -> CheckDatasetInputs:
    return CheckDatasetInputs(context=context, settings=CheckDatasetSettings(skip_unchanged=skip),
                              registry=registry, dataset_digest=digest, base_model=str(model))


def test_changed_unless_champion_trained_on_the_same_dataset(context: RuntimeContext, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    registry = RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="m")
    first = run(_inputs(context, registry, "d1", model))
    assert first.dataset_changed and first.reason == "no champion yet"
    assert first.base_model_digest.startswith("sha256:")

    reg = Registry(registry, ResidencyPolicy())
    reg.ensure_model()
    version = reg.create_version("file:///x", None, {"eurolora.dataset_digest": "d1"})
    reg.set_alias(CHAMPION, version.version)
    same = run(_inputs(context, registry, "d1", model))
    assert not same.dataset_changed and "identical" in same.reason
    assert run(_inputs(context, registry, "d2", model)).dataset_changed
    assert run(_inputs(context, registry, "d1", model, skip=False)).dataset_changed
    (model / "config.json").write_text('{"changed": 1}')
    assert run(_inputs(context, registry, "d1", model)).base_model_digest != first.base_model_digest
