"""`eurolora serve --registry`: the champion and challenger of a real (SQLite) MLflow registry, resolved to
their published adapter folders under the canary's names, and the command's refusals. No model is loaded."""

import argparse
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.serve.command import handle, register
from pipelines.serve.registry_adapters import RegistryAdaptersError, registry_adapters
from steps.common.contract import RuntimeContext, publishing
from steps.common.registry import Registry
from steps.common.residency import ResidencyPolicy
from steps.common.storage import local_path
from steps.common.tags import ADAPTER_URI_TAG


def _config(tmp_path: Path, tracking_uri: str, model_name: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: serve-test\nadapter_family: handbook\ncorpus: {tmp_path}\n"
                    f"storage: {{artifact_root: {tmp_path / 'artifacts'}}}\n"
                    f"registry: {{tracking_uri: '{tracking_uri}', model_name: {model_name}}}\n")
    return path


def _publish(context: RuntimeContext, name: str, weights: bytes) -> str:
    with publishing(context, "finetune", name) as (out, uri):
        (out / "adapter_config.json").write_text("{}")
        (out / "adapter_model.safetensors").write_bytes(weights)
    return uri


def test_champion_and_challenger_are_served_as_family_v_n(tmp_path: Path, mlflow_sqlite_uri: str,
                                                          mlflow_model: str) -> None:
    config = load_config(_config(tmp_path, mlflow_sqlite_uri, mlflow_model))
    context = RuntimeContext(run_id="t", storage=config.storage, residency=ResidencyPolicy(),
                             scratch_dir=str(tmp_path / "scratch"))
    registry = Registry(config.registry, config.residency)
    uris = [_publish(context, f"adapter-{i}", bytes([i]) * 64) for i in (1, 2)]
    for uri in uris:
        registry.create_version(uri, None, {ADAPTER_URI_TAG: uri})
    cache = tmp_path / "cache"
    assert registry_adapters(config, cache) == {}  # nothing in service yet: the base model only

    registry.set_alias("champion", "1")
    registry.set_alias("challenger", "2")
    assert registry_adapters(config, cache) == {"handbook-v1": str(local_path(uris[0]).resolve()),
                                                "handbook-v2": str(local_path(uris[1]).resolve())}
    registry.set_alias("challenger", "1")  # right after a promotion both name one version
    assert list(registry_adapters(config, cache)) == ["handbook-v1"]

    registry.create_version(uris[1], None, {})  # version 3, registered without its adapter
    registry.set_alias("champion", "3")
    with pytest.raises(RegistryAdaptersError, match="version 3 .* has no eurolora.adapter_uri tag"):
        registry_adapters(config, cache)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_the_command_reads_the_registry_of_a_config_and_refuses_a_missing_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _args().registry is None and _args("--registry").registry == ""  # "": the shipped local config
    missing = tmp_path / "nowhere" / "mlflow.db"
    config = _config(tmp_path, f"sqlite:///{missing}", "handbook-adapter")
    assert handle(_args("--registry", str(config))) == 2
    assert "no such database here" in capsys.readouterr().err
    assert not missing.exists()  # reading a registry never creates one
    assert handle(_args("--registry", str(tmp_path / "no-such.yaml"))) == 2
    assert "--registry" in capsys.readouterr().err
