"""`eurolora serve`: the vLLM command line it builds (the Deployment's flags, the local overrides, adapters
from the command line and from a real SQLite MLflow registry) and its refusals. vLLM is not started here
(tests/local/test_vllm_adapters.py runs it)."""

import argparse
from pathlib import Path

import pytest

from pipelines.cli import COMMAND_MODULES
from pipelines.config import load_config
from pipelines.serving.command import handle, register, vllm_command
from pipelines.serving.flags import SERVER_ENV, SERVER_FLAGS, SERVER_MODULE
from pipelines.serving.registry_adapters import RegistryAdaptersError, registry_adapters
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


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return model


def test_serve_is_registered_in_the_cli() -> None:
    assert "pipelines.serving.command" in COMMAND_MODULES


def test_vllm_gets_the_deployments_flags_with_the_local_overrides(tmp_path: Path) -> None:
    model = _model(tmp_path)
    argv, env = vllm_command(_args("--model", str(model), "--port", "8123", "--threads", "2"))
    assert argv[1:3] == ["-m", SERVER_MODULE] and f"--model={model.resolve()}" in argv
    shared = [a for a in SERVER_FLAGS.args() if not a.startswith("--max-model-len=")]
    assert argv[4:4 + len(shared)] == shared  # the Deployment's flags, in its order
    assert "--max-model-len=2048" in argv and argv[-2:] == ["--host=127.0.0.1", "--port=8123"]
    assert env.items() >= SERVER_ENV.items()
    assert env["OMP_NUM_THREADS"] == "2" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_adapters_are_loaded_at_start_and_the_api_key_stays_off_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    monkeypatch.setenv("MY_KEY", "s3cret-key")
    argv, env = vllm_command(_args("--model", str(_model(tmp_path)), "--adapter", f"hb-v1={adapter}",
                                   "--api-key-env", "MY_KEY"))
    assert argv[argv.index("--lora-modules") + 1] == f"hb-v1={adapter.resolve()}"
    assert env["VLLM_API_KEY"] == "s3cret-key" and "s3cret-key" not in " ".join(argv)


@pytest.mark.parametrize(("argv", "message"), [
    (["--host", "0.0.0.0"], "--allow-remote"),
    (["--adapter", "no-equals-sign"], "expected NAME=PATH"),
    (["--adapter", "x=/nonexistent"], "no adapter_config.json"),
    (["--model", "/nonexistent"], "HF model folder"),
    (["--api-key-env", "EUROLORA_UNSET_VAR"], "empty or not set"),
    (["--threads", "0"], "at least 1"),
])
def test_bad_arguments_are_refused_before_vllm_starts(argv: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert handle(_args(*argv)) == 2
    assert message in capsys.readouterr().err


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
    argv, _ = vllm_command(_args("--model", str(_model(tmp_path)), "--registry", str(tmp_path / "pipeline.yaml")))
    loaded = argv[argv.index("--lora-modules") + 1:]
    assert loaded == [f"handbook-v1={local_path(uris[0]).resolve()}", f"handbook-v2={local_path(uris[1]).resolve()}"]
    registry.set_alias("challenger", "1")  # right after a promotion both name one version
    assert list(registry_adapters(config, cache)) == ["handbook-v1"]

    registry.create_version(uris[1], None, {})  # version 3, registered without its adapter
    registry.set_alias("champion", "3")
    with pytest.raises(RegistryAdaptersError, match="version 3 .* has no eurolora.adapter_uri tag"):
        registry_adapters(config, cache)


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
