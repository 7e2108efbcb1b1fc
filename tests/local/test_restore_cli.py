"""`eurolora restore` as a real CLI process: moto's S3 server (artifacts + an Object Lock backup bucket)
and a SQLite MLflow registry. The champion is promoted (with its locked backup) in-process first."""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from steps.common.backup_records import INDEX_NAME
from steps.common.contract import RuntimeContext
from steps.common.residency import ResidencyPolicy
from steps.common.storage import MANIFEST_NAME, S3Settings, StorageSettings
from steps.common.tags import ADAPTER_URI_TAG, RESTORED_FROM_TAG, RESTORED_TO_TAG
from steps.promote import run
from tests.fixtures.mlflow import (
    MLFLOW_TEST_ENV,
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
)

REGION = "eu-central-1"
# The installed `eurolora` console script does exactly this.
CLI = [sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main())"]


def _client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


def _bucket(endpoint: str, lock: bool) -> str:
    name = f"rs-{'locked' if lock else 'art'}-{uuid.uuid4().hex[:10]}"
    extra = {"ObjectLockEnabledForBucket": True} if lock else {}
    _client(endpoint).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION},
                                    **extra)
    return name


class Setup:
    def __init__(self, endpoint: str, tmp_path: Path, tracking_uri: str, model: str, backup: bool) -> None:
        self.endpoint, self.tmp_path, self.tracking_uri, self.model = endpoint, tmp_path, tracking_uri, model
        self.artifacts, self.locked = _bucket(endpoint, lock=False), _bucket(endpoint, lock=True)
        s3 = {"endpoint_url": endpoint, "region": REGION, "addressing_style": "path", "max_attempts": 2}
        self.context = RuntimeContext(
            run_id="nightly-1", residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"),
            storage=StorageSettings(artifact_root=f"s3://{self.artifacts}/eurolora", s3=S3Settings(**s3)))
        backup_settings = {"enabled": backup, "uri": f"s3://{self.locked}/backups", "retention_days": 1}
        run_id = make_finetune_run(tracking_uri, "eurolora", tmp_path / "mlartifacts")
        adapter = publish_adapter(self.context, "adapter", seed="champion-weights")
        report = publish_report(self.context, "report", passed=True)
        self.inputs = promote_inputs(self.context, tracking_uri, model, adapter_uri=adapter, run_id=run_id,
                                     report_uri=report, gate_passed=True, lock={"settle_s": 0.05},
                                     backup=backup_settings)
        self.out = run(self.inputs)
        assert self.out.decision == "promoted"
        self.manifest = self.context.store().read_manifest(adapter)
        (tmp_path / "corpus").mkdir(exist_ok=True)
        self.config = tmp_path / "restore.yaml"
        self.config.write_text("# Run with: eurolora restore restore.yaml\n" + yaml.safe_dump({
            "name": "restore-test", "corpus": str(tmp_path / "corpus"),
            "storage": {"artifact_root": self.context.storage.artifact_root, "s3": s3},
            "registry": {"tracking_uri": tracking_uri, "model_name": model, "timeout_s": 10},
            "promote": {"lock": {"settle_s": 0.05}, "backup": backup_settings},
        }))

    @property
    def adapter_prefix(self) -> str:
        return self.inputs.adapter_uri.removeprefix(f"s3://{self.artifacts}/") + "/"

    def delete_live_adapter(self) -> None:
        client = _client(self.endpoint)
        for item in client.list_objects_v2(Bucket=self.artifacts, Prefix=self.adapter_prefix)["Contents"]:
            client.delete_object(Bucket=self.artifacts, Key=item["Key"])

    def eurolora(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], cwd=self.tmp_path, capture_output=True, text=True, timeout=300,
                              check=False, env={**os.environ, **MLFLOW_TEST_ENV})


@pytest.fixture
def setup(moto_server: str, s3_env: None, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> Setup:
    return Setup(moto_server, tmp_path, mlflow_sqlite_uri, mlflow_model, backup=True)


def test_restore_recovers_a_deleted_champion_from_its_locked_backup(setup: Setup) -> None:
    v1 = setup.out.model_version
    backup_prefix = f"backups/{setup.model}/v{v1}/"
    setup.delete_live_adapter()
    # Someone also overwrote a backed-up file with garbage and hid the index behind a delete marker.
    client = _client(setup.endpoint)
    client.put_object(Bucket=setup.locked, Key=backup_prefix + "adapter_model.safetensors", Body=b"garbage")
    client.delete_object(Bucket=setup.locked, Key=backup_prefix + INDEX_NAME)
    client.delete_object(Bucket=setup.locked, Key=backup_prefix + MANIFEST_NAME)

    done = setup.eurolora("restore", str(setup.config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"no published artifact at {setup.inputs.adapter_uri}" in done.stdout
    assert f"restored from the locked backup s3://{setup.locked}/{backup_prefix.rstrip('/')}" in done.stdout
    assert "moved alias 'champion'" in done.stdout

    mlflow = mlflow_client(setup.tracking_uri)
    aliases = {k: str(v) for k, v in mlflow.get_registered_model(setup.model).aliases.items()}
    v2 = aliases["champion"]
    assert v2 != v1 and aliases["challenger"] == v2  # every alias of the damaged version followed it
    new = mlflow.get_model_version(setup.model, v2)
    assert new.tags[RESTORED_FROM_TAG] == f"v{v1}"
    assert new.tags["eurolora.decision"] == "restored"
    old_tags = mlflow.get_model_version(setup.model, v1).tags
    for key in ("eurolora.base_model", "eurolora.dataset_digest", "eurolora.code_version",
                "eurolora.adapter_digest", "eurolora.backup_uri", "eurolora.backup.index_version_id"):
        assert new.tags[key] == old_tags[key], key  # lineage and the (same) locked backup carry over
    assert mlflow.get_model_version(setup.model, v1).tags[RESTORED_TO_TAG] == f"v{v2}"
    restored_uri = new.tags[ADAPTER_URI_TAG]
    assert restored_uri == f"{setup.context.storage.artifact_root}/restored/{setup.model}/v{v1}"
    store = setup.context.store()
    restored = store.read_manifest(restored_uri)
    assert {k: v["sha256"] for k, v in restored.files.items()} == \
        {k: v["sha256"] for k, v in setup.manifest.files.items()}
    local = store.materialize(restored_uri, setup.tmp_path / "verify")  # every digest checked again
    assert (local / "adapter_model.safetensors").read_bytes() == (b"champion-weights" * 4096)[:65536]
    assert Path(new.source.removeprefix("file://"), "adapter_model.safetensors").read_bytes() == \
        (local / "adapter_model.safetensors").read_bytes()  # the MLflow version's own copy too

    again = setup.eurolora("restore", str(setup.config))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is intact" in again.stdout
    assert len(mlflow.search_model_versions(f"name = '{setup.model}'")) == 2  # nothing registered twice


def test_restore_replaces_a_corrupted_adapter_given_by_version(setup: Setup) -> None:
    client = _client(setup.endpoint)
    client.put_object(Bucket=setup.artifacts, Key=setup.adapter_prefix + "adapter_config.json", Body=b"{}")

    done = setup.eurolora("restore", str(setup.config), "--version", setup.out.model_version)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "does not match its sha256" in done.stdout
    champion = mlflow_client(setup.tracking_uri).get_model_version_by_alias(setup.model, "champion")
    assert champion.tags[RESTORED_FROM_TAG] == f"v{setup.out.model_version}"


def test_restore_without_a_recorded_backup_fails_with_a_clear_message(
        moto_server: str, s3_env: None, mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    setup = Setup(moto_server, tmp_path, mlflow_sqlite_uri, mlflow_model, backup=False)
    setup.delete_live_adapter()
    done = setup.eurolora("restore", str(setup.config))
    assert done.returncode == 1
    assert "records no usable backup (eurolora.backup=absent)" in done.stderr
    aliases = mlflow_client(mlflow_sqlite_uri).get_registered_model(mlflow_model).aliases
    assert str(aliases["champion"]) == setup.out.model_version  # nothing moved
