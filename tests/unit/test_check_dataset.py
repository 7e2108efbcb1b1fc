"""check_dataset against a real (SQLite) MLflow registry."""

from pathlib import Path

from steps.check_dataset import CheckDatasetInputs, run
from steps.check_dataset.settings import CheckDatasetSettings
from steps.common.contract import RuntimeContext
from steps.common.registry import CHAMPION, Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.tags import BASE_MODEL_DIGEST_TAG, DATASET_DIGEST_TAG


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
    version = reg.create_version("file:///x", None, {DATASET_DIGEST_TAG: "d1",
                                                     BASE_MODEL_DIGEST_TAG: first.base_model_digest})
    reg.set_alias(CHAMPION, version.version)
    same = run(_inputs(context, registry, "d1", model))
    assert not same.dataset_changed and "identical" in same.reason
    assert run(_inputs(context, registry, "d2", model)).dataset_changed
    assert run(_inputs(context, registry, "d1", model, skip=False)).dataset_changed
    (model / "config.json").write_text('{"changed": 1}')
    assert run(_inputs(context, registry, "d1", model)).base_model_digest != first.base_model_digest


def test_a_new_base_model_with_unchanged_data_retrains(context: RuntimeContext, tmp_path: Path) -> None:
    old, new = tmp_path / "old-model", tmp_path / "new-model"
    for folder, config in ((old, "{}"), (new, '{"hidden_size": 2}')):
        folder.mkdir()
        (folder / "config.json").write_text(config)
    registry = RegistrySettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="m")
    old_digest = run(_inputs(context, registry, "d1", old)).base_model_digest
    reg = Registry(registry, ResidencyPolicy())
    reg.ensure_model()
    # The champion as promote registers it: trained on dataset d1 and the old base model.
    version = reg.create_version("file:///x", None, {DATASET_DIGEST_TAG: "d1", BASE_MODEL_DIGEST_TAG: old_digest})
    reg.set_alias(CHAMPION, version.version)
    assert not run(_inputs(context, registry, "d1", old)).dataset_changed

    swapped = run(_inputs(context, registry, "d1", new))
    assert swapped.dataset_changed
    assert "base model" in swapped.reason and "differs" in swapped.reason
    assert swapped.base_model_digest != old_digest

    # A champion registered without a base-model digest proves nothing about its base: retrain.
    untagged = reg.create_version("file:///y", None, {DATASET_DIGEST_TAG: "d1"})
    reg.set_alias(CHAMPION, untagged.version)
    assert run(_inputs(context, registry, "d1", old)).dataset_changed
