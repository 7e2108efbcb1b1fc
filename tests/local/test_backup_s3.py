"""Locked backups against moto's S3 server process (real boto3 over HTTP), and promote with backups on."""

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from steps.common.backup_records import INDEX_NAME, BackupError, BackupSettings, backup_ref
from steps.common.backup_store import BackupStore
from steps.common.contract import RuntimeContext
from steps.common.promotion_lock import PromotionLock
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.storage import MANIFEST_NAME, S3Settings, StorageSettings, join_uri
from steps.common.tags import BACKUP_ERROR_TAG, BACKUP_INDEX_VERSION_TAG, BACKUP_TAG, BACKUP_URI_TAG
from steps.promote import run
from tests.fixtures.mlflow import (
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)

REGION = "eu-central-1"


def _client(endpoint: str, region: str = REGION) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


def _bucket(endpoint: str, *, lock: bool = True, region: str = REGION) -> str:
    name = f"bk-{'locked' if lock else 'plain'}-{uuid.uuid4().hex[:10]}"
    kwargs: dict[str, Any] = {"CreateBucketConfiguration": {"LocationConstraint": region}}
    if lock:
        kwargs["ObjectLockEnabledForBucket"] = True
    _client(endpoint, region).create_bucket(Bucket=name, **kwargs)
    return name


def _s3(endpoint: str) -> S3Settings:
    return S3Settings(endpoint_url=endpoint, region=REGION, addressing_style="path", max_attempts=2)


def _versions(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    return _client(endpoint).list_object_versions(Bucket=bucket).get("Versions", [])


@pytest.fixture
def context(moto_server: str, s3_env: None, tmp_path: Path) -> RuntimeContext:
    """Artifacts in a plain (unlocked) EU bucket of the moto server, like a real run's artifact root."""
    bucket = _bucket(moto_server, lock=False)
    return RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=f"s3://{bucket}/eurolora",
                                                              s3=_s3(moto_server)),
                          residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"))


def _backup(context: RuntimeContext, bucket: str, tmp_path: Path) -> tuple[BackupStore, Any, str]:
    store = context.store()
    uri = publish_adapter(context, f"adapter-{uuid.uuid4().hex[:6]}", seed="weights")
    local = store.materialize(uri, tmp_path / "cache")
    manifest_bytes = store.read_bytes(join_uri(uri, MANIFEST_NAME))
    backups = BackupStore(context.storage.s3, context.residency, retention_days=1)
    record = backups.backup(local, manifest_bytes, uri=f"s3://{bucket}/backups/m/v1", model_name="m",
                            model_version="1", source_uri=uri)
    return backups, record, uri


def test_backup_writes_compliance_locked_versions_that_cannot_be_deleted(
        moto_server: str, context: RuntimeContext, tmp_path: Path) -> None:
    bucket = _bucket(moto_server)
    before = dt.datetime.now(dt.UTC)
    backups, record, source = _backup(context, bucket, tmp_path)
    backups.verify(record, deep=True)

    client = _client(moto_server)
    keys = {v["Key"] for v in _versions(moto_server, bucket)}
    names = ("adapter_config.json", "adapter_model.safetensors", "README.md", MANIFEST_NAME, INDEX_NAME)
    assert keys == {f"backups/m/v1/{name}" for name in names}
    objects = [(f"backups/m/v1/{rel}", meta.version_id) for rel, meta in record.files.items()]
    objects += [(f"backups/m/v1/{MANIFEST_NAME}", record.manifest_version_id),
                (f"backups/m/v1/{INDEX_NAME}", record.index_version_id)]
    for key, version_id in objects:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        assert before + dt.timedelta(days=1) - dt.timedelta(seconds=5) <= until \
            <= dt.datetime.now(dt.UTC) + dt.timedelta(days=1, seconds=5)
        with pytest.raises(ClientError) as err:
            client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    # The backup is the artifact, byte for byte: same manifest, same digests.
    assert record.digest == context.store().read_manifest(source).digest
    assert client.get_object(Bucket=bucket, Key=f"backups/m/v1/{MANIFEST_NAME}",
                             VersionId=record.manifest_version_id)["Body"].read() == \
        context.store().read_bytes(join_uri(source, MANIFEST_NAME))


def test_restore_reads_the_locked_versions_despite_overwrites_and_delete_markers(
        moto_server: str, context: RuntimeContext, tmp_path: Path) -> None:
    bucket = _bucket(moto_server)
    _, record, source = _backup(context, bucket, tmp_path)
    client = _client(moto_server)
    prefix = "backups/m/v1/"
    client.put_object(Bucket=bucket, Key=prefix + "adapter_model.safetensors", Body=b"tampered weights")
    client.put_object(Bucket=bucket, Key=prefix + INDEX_NAME, Body=b'{"files": {}}')
    client.delete_object(Bucket=bucket, Key=prefix + MANIFEST_NAME)  # a delete marker on top
    client.delete_object(Bucket=bucket, Key=prefix + "README.md")

    fresh = BackupStore(context.storage.s3, context.residency)
    again = fresh.read_record(backup_ref(record.tags()))
    manifest = fresh.restore_to(again, tmp_path / "restored")
    original = context.store().materialize(source, tmp_path / "orig")
    for rel in manifest.files:
        assert (tmp_path / "restored" / rel).read_bytes() == (original / rel).read_bytes()
    assert manifest.digest == record.digest
    # Pointed at the live (tampered) version instead, verification fails.
    live = client.head_object(Bucket=bucket, Key=prefix + "adapter_model.safetensors")["VersionId"]
    files = dict(again.files)
    weights = "adapter_model.safetensors"
    files[weights] = files[weights].model_copy(update={"version_id": live})
    with pytest.raises(BackupError, match="does not match"):
        fresh.verify(again.model_copy(update={"files": files}))


def test_a_bucket_without_object_lock_is_refused_before_writing(
        moto_server: str, context: RuntimeContext, tmp_path: Path) -> None:
    bucket = _bucket(moto_server, lock=False)
    with pytest.raises(BackupError, match=f"backup bucket '{bucket}' does not have Object Lock enabled"):
        _backup(context, bucket, tmp_path)
    assert _versions(moto_server, bucket) == []


def test_a_backup_bucket_outside_the_eu_is_refused_before_writing(
        moto_server: str, context: RuntimeContext, tmp_path: Path) -> None:
    bucket = _bucket(moto_server, region="us-west-2")
    with pytest.raises(ResidencyError, match=f"backup bucket '{bucket}' location='us-west-2' refused"):
        _backup(context, bucket, tmp_path)
    assert _versions(moto_server, bucket) == []


# ---- promote with backups on --------------------------------------------------------------------
def _inputs(context: RuntimeContext, uri: str, model: str, tmp_path: Path, bucket: str, name: str,
            expected: str = "") -> Any:
    run_id = make_finetune_run(uri, "eurolora", tmp_path / "mlartifacts")
    adapter = publish_adapter(context, f"adapter-{name}", seed=name)
    report = publish_report(context, f"report-{name}", passed=True)
    return promote_inputs(context, uri, model, adapter_uri=adapter, run_id=run_id, report_uri=report,
                          gate_passed=True, expected=expected, lock={"settle_s": 0.05},
                          backup={"enabled": True, "uri": f"s3://{bucket}/backups", "retention_days": 1})


def test_promote_writes_the_locked_backup_before_moving_the_champion(
        moto_server: str, context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = _bucket(moto_server)
    seen: list[tuple[dict[str, str], Any]] = []
    original_cas = PromotionLock.compare_and_set_champion

    def cas_checking_backup(self: PromotionLock, new_version: str, *args: Any, **kwargs: Any) -> Any:
        tags = self.registry.get_version(new_version).tags  # what the registry holds as the alias moves
        seen.append((tags, self.registry.alias_version("champion")))
        BackupStore(context.storage.s3, context.residency).verify(
            BackupStore(context.storage.s3, context.residency).read_record(backup_ref(tags)), deep=True)
        return original_cas(self, new_version, *args, **kwargs)

    monkeypatch.setattr(PromotionLock, "compare_and_set_champion", cas_checking_backup)
    inputs = _inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, bucket, "a")
    out = run(inputs)

    assert out.decision == "promoted" and len(seen) == 1
    assert seen[0][1] is None  # the backup was complete and verified while there was no champion yet
    tags = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version).tags
    assert tags[BACKUP_TAG] == "ok"
    assert tags[BACKUP_URI_TAG] == f"s3://{bucket}/backups/{mlflow_model}/v{out.model_version}"
    index_versions = [v for v in _versions(moto_server, bucket) if v["Key"].endswith(INDEX_NAME)]
    assert [v["VersionId"] for v in index_versions] == [tags[BACKUP_INDEX_VERSION_TAG]]

    # A retried step reuses the recorded backup: no second set of locked objects.
    count = len(_versions(moto_server, bucket))
    again = run(inputs)
    assert again.decision == "promoted" and "already the champion" in again.reason and len(seen) == 2
    assert len(_versions(moto_server, bucket)) == count


def test_a_failed_backup_leaves_the_champion_where_it_was(
        moto_server: str, context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str,
        tmp_path: Path) -> None:
    locked, plain = _bucket(moto_server), _bucket(moto_server, lock=False)
    first = run(_inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, locked, "a"))
    inputs = _inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, plain, "b",
                     expected=first.model_version)
    with pytest.raises(BackupError, match="does not have Object Lock"):
        run(inputs)
    client = mlflow_client(mlflow_sqlite_uri)
    aliases = {k: str(v) for k, v in client.get_registered_model(mlflow_model).aliases.items()}
    assert aliases["champion"] == first.model_version and "previous" not in aliases
    failed = client.get_model_version(mlflow_model, aliases["challenger"])
    assert failed.version != first.model_version
    assert failed.tags[BACKUP_TAG] == "failed" and "Object Lock" in failed.tags[BACKUP_ERROR_TAG]
    assert _versions(moto_server, plain) == []


def test_no_backup_is_written_when_the_champion_already_moved(
        moto_server: str, context: RuntimeContext, mlflow_sqlite_uri: str, mlflow_model: str,
        tmp_path: Path) -> None:
    bucket = _bucket(moto_server)
    v1 = run(_inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, bucket, "a"))
    late = _inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, bucket, "c", expected=v1.model_version)
    run(_inputs(context, mlflow_sqlite_uri, mlflow_model, tmp_path, bucket, "b", expected=v1.model_version))
    count = len(_versions(moto_server, bucket))
    out = run(late)
    assert out.decision == "refused_race"
    assert len(_versions(moto_server, bucket)) == count  # locked copies cannot be deleted: none wasted
    tags = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version).tags
    assert BACKUP_TAG not in tags


def test_backup_settings_default_to_the_storage_endpoint(context: RuntimeContext) -> None:
    settings = BackupSettings(enabled=True, uri="s3://locked/backups")
    assert BackupStore.from_settings(settings, context.storage, context.residency).s3 == context.storage.s3
