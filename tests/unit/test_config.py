from pathlib import Path

import pytest

from pipelines.config import DEFAULT_CONFIG, ConfigError, load_config


def test_shipped_configs_open_with_the_command_that_runs_them() -> None:
    for path in DEFAULT_CONFIG.parent.glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Run with:") and "eurolora" in first, path


def test_default_config_resolves_local_paths(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path)
    assert config.corpus.startswith("file://") and config.corpus.endswith("/corpus/demo")
    assert config.storage.artifact_root == (tmp_path / "runs" / "artifacts").as_uri()
    assert config.registry.tracking_uri == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert config.local.runs_dir == str(tmp_path / "runs")


def test_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    config = load_config(overrides=["local.transient_retries=3", "name=nightly-eu"], cwd=tmp_path)
    assert config.local.transient_retries == 3 and config.name == "nightly-eu"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[
            "local.transient_retries=many",
            "name=Not A Valid Name",
            "storage.s3.region=us-east-1",
            "registry.tracking_uri=https://mlflow.example.com",
            "unknown_section.x=1",
            "broken",
        ], cwd=tmp_path)
    text = str(err.value)
    for expected in ("local.transient_retries", "name:", "storage.s3.region='us-east-1'",
                     "registry.tracking_uri='https://mlflow.example.com'", "unknown_section",
                     "--set 'broken'"):
        assert expected in text, expected
    assert len(err.value.problems) == 6


def test_unreadable_yaml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read YAML"):
        load_config(bad, cwd=tmp_path)
    with pytest.raises(ConfigError, match="cannot read YAML"):
        load_config(tmp_path / "missing.yaml", cwd=tmp_path)


def test_residency_policy_in_the_config_is_the_one_enforced(tmp_path: Path) -> None:
    config = load_config(overrides=[
        "residency.allowed_hosts=[mlflow.internal.eu]",
        "residency.plain_http_hosts=[]",
        "registry.tracking_uri=https://mlflow.internal.eu",
    ], cwd=tmp_path)
    assert config.registry.tracking_uri == "https://mlflow.internal.eu"
    with pytest.raises(ConfigError, match="plain http"):
        load_config(overrides=["residency.allowed_hosts=[mlflow.internal.eu]", "residency.plain_http_hosts=[]",
                               "registry.tracking_uri=http://mlflow.internal.eu"], cwd=tmp_path)
