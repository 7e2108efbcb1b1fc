"""Backup settings, tags and restore checks that need no S3 server (moto: tests/local/test_backup_s3.py)."""

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.local.processes import free_port
from steps.common.backup_records import BackupRecord, BackupSettings, backup_location, backup_ref
from steps.common.backup_store import BackupStore, bucket_region
from steps.common.contract import RuntimeContext
from steps.common.errors import TransientError
from steps.common.promotion_lock import LeaseSettings
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.restore import RestoreError, artifact_problem, restore_version
from steps.common.storage import S3Settings
from steps.common.tags import ADAPTER_URI_TAG
from steps.common.tags import BACKUP_ERROR_TAG, BACKUP_TAG
from steps.promote import run
from steps.promote.settings import PromoteSettings
from tests.fixtures.mlflow import (
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)


def test_backup_is_off_by_default_and_needs_s3_when_on() -> None:
    assert PromoteSettings().backup.enabled is False
    assert BackupSettings(enabled=True, uri="s3://locked/backups").mode == "COMPLIANCE"
    for uri in ("", "file:///tmp/backups", "s3:///no-bucket"):
        with pytest.raises(ValidationError, match="Object Lock needs S3"):
            BackupSettings(enabled=True, uri=uri)
    with pytest.raises(ValidationError):
        BackupSettings(enabled=True, uri="s3://b/p", mode="LEGAL_HOLD")
    with pytest.raises(ValidationError):
        BackupSettings(retention_days=0)


def test_config_load_checks_the_backup_region_and_uri(tmp_path: Path) -> None:
    from pipelines.config import ConfigError, load_config

    config = tmp_path / "c.yaml"
    config.write_text("name: t\ncorpus: /tmp/corpus\nstorage: {artifact_root: /tmp/a}\n")
    loaded = load_config(config, ["promote.backup.enabled=true", "promote.backup.uri=s3://locked/bk",
                                  "promote.backup.retention_days=30"], cwd=tmp_path)
    assert (loaded.promote.backup.uri, loaded.promote.backup.retention_days) == ("s3://locked/bk", 30)
    with pytest.raises(ConfigError) as err:
        load_config(config, ["promote.backup.enabled=true", "promote.backup.uri=s3://locked/bk",
                             "promote.backup.s3.region=us-east-1"], cwd=tmp_path)
    assert "promote.backup.s3.region='us-east-1' refused" in str(err.value)
    with pytest.raises(ConfigError, match="Object Lock needs S3"):
        load_config(config, ["promote.backup.enabled=true"], cwd=tmp_path)


def test_bucket_region_names() -> None:
    assert bucket_region(None) == "us-east-1"
    assert bucket_region("") == "us-east-1"
    assert bucket_region("EU") == "eu-west-1"
    assert bucket_region("eu-central-1") == "eu-central-1"


def test_backup_location_and_tags_round_trip() -> None:
    settings = BackupSettings(enabled=True, uri="s3://locked/backups/")
    assert backup_location(settings, "handbook-adapter", "7") == "s3://locked/backups/handbook-adapter/v7"
    record = BackupRecord(uri="s3://locked/backups/m/v7", model_name="m", model_version="7",
                          source_uri="s3://a/x", digest="d" * 64, mode="COMPLIANCE",
                          retain_until="2027-01-01T00:00:00+00:00",
                          created_at="2026-01-01T00:00:00+00:00", manifest_version_id="mv",
                          manifest_sha256="e" * 64, files={}, index_version_id="iv")
    assert "index_version_id" not in record.model_dump_json()  # known only after the index's own PUT
    ref = backup_ref(record.tags())
    assert ref is not None and (ref.uri, ref.index_version_id, ref.digest) == (record.uri, "iv", "d" * 64)
    assert backup_ref({**record.tags(), BACKUP_TAG: "failed"}) is None
    assert backup_ref({}) is None


def test_a_non_eu_backup_client_is_refused_before_any_call() -> None:
    store = BackupStore(S3Settings(endpoint_url="https://s3.us-east-1.amazonaws.com", region="us-east-1"),
                        ResidencyPolicy())
    with pytest.raises(ResidencyError, match="us-east-1"):
        store.check_bucket("anything")


def test_artifact_problem_detects_missing_corrupt_and_replaced(context: RuntimeContext,
                                                               tmp_path: Path) -> None:
    store = context.store()
    uri = publish_adapter(context, "adapter-a", seed="a")
    digest = store.read_manifest(uri).digest
    assert artifact_problem(store, uri, digest, tmp_path / "chk") is None
    assert "not the registered" in artifact_problem(store, uri, "0" * 64, tmp_path / "chk")
    local = Path(uri.removeprefix("file://"))
    (local / "README.md").write_text("tampered")
    assert "does not match its sha256" in artifact_problem(store, uri, digest, tmp_path / "chk")
    (local / "README.md").unlink()
    assert "missing" in artifact_problem(store, uri, digest, tmp_path / "chk")
    (local / "MANIFEST.json").unlink()
    assert "no published artifact" in artifact_problem(store, uri, digest, tmp_path / "chk")


def _promoted(context: RuntimeContext, uri: str, model: str, tmp_path: Path, **settings: object) -> object:
    run_id = make_finetune_run(uri, "eurolora", tmp_path / "mlartifacts")
    adapter = publish_adapter(context, "adapter-a", seed="a")
    report = publish_report(context, "report-a", passed=True)
    return promote_inputs(context, uri, model, adapter_uri=adapter, run_id=run_id, report_uri=report,
                          gate_passed=True, lock={"settle_s": 0.05}, **settings)


def test_restore_of_an_intact_version_does_nothing_and_without_backup_fails_clearly(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    inputs = _promoted(context, mlflow_sqlite_uri, mlflow_model, tmp_path)
    out = run(inputs)
    registry = Registry(RegistrySettings(tracking_uri=mlflow_sqlite_uri, model_name=mlflow_model),
                        ResidencyPolicy())
    backup = BackupStore(S3Settings(), ResidencyPolicy())  # never called: nothing to restore from S3
    kwargs = {"registry": registry, "store": context.store(), "backup": backup, "version": out.model_version,
              "experiment": "eurolora", "lock": LeaseSettings(settle_s=0.05), "scratch": tmp_path / "scratch"}
    assert restore_version(**kwargs).outcome == "intact"
    live = registry.get_version(out.model_version).tags[ADAPTER_URI_TAG]  # promote's copy under models/
    (Path(live.removeprefix("file://")) / "MANIFEST.json").unlink()
    with pytest.raises(RestoreError, match="records no usable backup"):
        restore_version(**kwargs)


def test_backup_outage_fails_promote_as_transient_and_keeps_the_champion(
        context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    inputs = _promoted(context, mlflow_sqlite_uri, mlflow_model, tmp_path, backup={
        "enabled": True, "uri": "s3://locked/backups", "retention_days": 1,
        "s3": {"endpoint_url": dead, "addressing_style": "path", "connect_timeout_s": 0.5,
               "max_attempts": 1}})
    with pytest.raises(TransientError, match="unreachable"):
        run.__wrapped__(inputs)  # the step itself, without transient_exit's exit-75 mapping
    model = mlflow_client(mlflow_sqlite_uri).get_registered_model(mlflow_model)
    assert "champion" not in model.aliases  # no champion without a backup
    version = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, model.aliases["challenger"])
    assert version.tags[BACKUP_TAG] == "failed" and "unreachable" in version.tags[BACKUP_ERROR_TAG]


def test_restore_command_registers_its_arguments() -> None:
    from pipelines import restore_command

    parser = argparse.ArgumentParser()
    restore_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["restore", "c.yaml", "--version", "3", "--set", "a.b=1"])
    assert (args.version, args.alias, args.overrides, str(args.config)) == \
        ("3", "champion", ["a.b=1"], "c.yaml")
    assert parser.parse_args(["restore"]).alias == "champion"
    with pytest.raises(SystemExit):
        parser.parse_args(["restore", "--version", "3", "--alias", "previous"])
