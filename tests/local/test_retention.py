"""The retention policy: lifecycle rules on a bucket in moto's S3 server, objects tagged with their class when
published, and `eurolora gc` on a local artifact root and runs folder."""

import json
import os
import time
from pathlib import Path

import boto3
import pytest
import yaml

from pipelines.cli import main
from pipelines.local.gc import collect_garbage
from steps.common.residency import ResidencyPolicy
from steps.common.retention import RetentionSettings
from steps.common.storage import ArtifactStore, S3Settings, StorageSettings


def _config(tmp_path: Path, artifact_root: str, endpoint: str | None = None, **retention: int) -> Path:
    raw = {"name": "retention-test", "corpus": str(tmp_path), "storage": {"artifact_root": artifact_root},
           "local": {"runs_dir": str(tmp_path / "runs")}, "retention": retention}
    if endpoint:
        raw["storage"]["s3"] = {"endpoint_url": endpoint, "region": "eu-central-1", "addressing_style": "path"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_retention_apply_puts_the_rules_once_and_keeps_the_buckets_own(
        moto_server: str, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    theirs = {"ID": "team-archive", "Status": "Enabled", "Filter": {"Prefix": "archive/"},
              "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}]}
    client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [theirs]})
    config = _config(tmp_path, f"s3://{s3_bucket}/eurolora", moto_server, qa_datasets_days=7, reports_days=14)

    assert main(["retention", "apply", str(config)]) == 0
    assert capsys.readouterr().out.strip().endswith("lifecycle rules updated")
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert set(rules) == {"team-archive", "eurolora-run-artifacts", "eurolora-qa-datasets", "eurolora-reports",
                          "eurolora-logs", "eurolora-housekeeping"}
    qa = rules["eurolora-qa-datasets"]
    assert qa["Expiration"] == {"Days": 7} and qa["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert qa["Filter"]["And"] == {"Prefix": "eurolora/runs/",
                                   "Tags": [{"Key": "eurolora-retention", "Value": "qa-datasets"}]}
    assert rules["eurolora-reports"]["Expiration"] == {"Days": 14}
    assert rules["eurolora-run-artifacts"]["Expiration"] == {"Days": 30}
    assert rules["eurolora-logs"]["Filter"] == {"Prefix": "eurolora/argo-artifacts/"}
    assert rules["eurolora-housekeeping"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    assert main(["retention", "apply", str(config)]) == 0  # idempotent
    assert capsys.readouterr().out.strip().endswith("lifecycle rules unchanged")
    assert main(["retention", "apply", str(config), "--set", "retention.reports_days=3"]) == 0
    assert capsys.readouterr().out.strip().endswith("lifecycle rules updated")
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert rules["eurolora-reports"]["Expiration"] == {"Days": 3} and rules["team-archive"] == theirs


def test_published_objects_carry_the_retention_class_the_rules_filter_on(
        moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    store = ArtifactStore(StorageSettings(
        artifact_root=f"s3://{s3_bucket}/eurolora",
        s3=S3Settings(endpoint_url=moto_server, region="eu-central-1", addressing_style="path",
                      multipart_threshold_mb=5)), ResidencyPolicy())
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(b"\0" * (5 * 1024 * 1024 + 1))  # multipart upload and copy keep the tag
    (src / "small.json").write_text("{}")
    for step, name in (("generate_qa", "qa"), ("judge", "report"), ("finetune", "adapter")):
        store.publish_dir(src, f"s3://{s3_bucket}/eurolora/runs/r1/{step}/{name}")
    store.publish_dir(src, f"s3://{s3_bucket}/eurolora/models/handbook/v1")
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    classes = {}
    for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"]:
        tags = client.get_object_tagging(Bucket=s3_bucket, Key=item["Key"])["TagSet"]
        classes[item["Key"].removeprefix("eurolora/")] = {t["Value"] for t in tags if t["Key"] == "eurolora-retention"}
    assert classes["runs/r1/generate_qa/qa/big.bin"] == classes["runs/r1/generate_qa/qa/MANIFEST.json"] == {"qa-datasets"}
    assert classes["runs/r1/judge/report/small.json"] == {"reports"}
    assert classes["runs/r1/finetune/adapter/big.bin"] == {"run-artifacts"}
    assert classes["models/handbook/v1/big.bin"] == classes["models/handbook/v1/MANIFEST.json"] == set()


def _publish(root: Path, rel: str, age_days: float, now: float) -> Path:
    folder = root / rel
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text(rel)
    (folder / "MANIFEST.json").write_text(json.dumps({"files": {}, "created_at": now - age_days * 86400}))
    return folder


def test_gc_deletes_each_class_after_its_days_and_never_the_models(tmp_path: Path) -> None:
    now = time.time()
    root, runs = tmp_path / "artifacts", tmp_path / "runs"
    qa_old = _publish(root, "runs/r1/generate_qa/qa", 8, now)
    report_old = _publish(root, "runs/r1/judge/report", 8, now)
    adapter_old = _publish(root, "runs/r1/finetune/adapter", 8, now)
    qa_new = _publish(root, "runs/r2/generate_qa/qa", 1, now)
    champion = _publish(root, "models/handbook-adapter/v1", 400, now)
    log = runs / "r1" / "steps" / "ingest" / "step.log"
    log.parent.mkdir(parents=True)
    log.write_text("counts only")
    os.utime(log, (now - 40 * 86400, now - 40 * 86400))
    (runs / "mlflow.db").write_text("not a run")

    settings = RetentionSettings(qa_datasets_days=7, reports_days=10, run_artifacts_days=30, logs_days=30)
    deleted = collect_garbage(root, runs, settings, now=now)
    assert {(p, c) for p, c, _ in deleted} == {(qa_old, "qa-datasets"), (runs / "r1", "logs")}
    assert not qa_old.exists() and report_old.exists() and adapter_old.exists() and qa_new.exists()
    assert (runs / "mlflow.db").exists()

    listed = collect_garbage(root, runs, settings, older_than_days=0, dry_run=True, now=now)
    assert {p for p, _, _ in listed} == {report_old, adapter_old, qa_new} and qa_new.exists()  # dry run
    collect_garbage(root, runs, settings, older_than_days=0, now=now)
    assert not (root / "runs").exists() or not any((root / "runs").iterdir())
    assert (champion / "data.txt").read_text() == "models/handbook-adapter/v1"


def test_gc_command_on_a_local_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "artifacts"
    old = _publish(root, "runs/r1/judge/report", 2, time.time())
    config = _config(tmp_path, root.as_uri(), reports_days=1)
    assert main(["gc", str(config), "--dry-run"]) == 0
    assert f"would delete {old} (reports, 2.0 days old)" in capsys.readouterr().out and old.exists()
    assert main(["gc", str(config)]) == 0
    assert "deleted 1 item(s)" in capsys.readouterr().out and not old.exists()


def test_the_champion_survives_an_expiry_of_everything_older_than_zero_days(
        tmp_path: Path, mlflow_sqlite_uri: str, mlflow_model: str) -> None:
    from steps.common.contract import RuntimeContext
    from steps.common.storage import StorageSettings
    from steps.common.tags import ADAPTER_URI_TAG
    from steps.promote import run as promote
    from tests.fixtures.mlflow import (
        make_finetune_run,
        mlflow_client,
        promote_inputs,
        publish_adapter,
        publish_report,
    )

    root = tmp_path / "artifacts"
    context = RuntimeContext(run_id="nightly-1", storage=StorageSettings(artifact_root=root.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"))
    run_id = make_finetune_run(mlflow_sqlite_uri, "eurolora", tmp_path / "mlartifacts")
    adapter = publish_adapter(context, "adapter", seed="champion")
    report = publish_report(context, "report", passed=True)
    out = promote(promote_inputs(context, mlflow_sqlite_uri, mlflow_model, adapter_uri=adapter, run_id=run_id,
                                 report_uri=report, gate_passed=True, lock={"settle_s": 0.05}))
    assert out.decision == "promoted"
    digest = context.store().read_manifest(adapter).digest

    deleted = collect_garbage(root, tmp_path / "runs", RetentionSettings(), older_than_days=0)
    assert deleted and not any((root / "runs").glob("*/*/*"))  # every run artifact expired, the adapter too
    assert not context.store().exists(adapter)
    served = mlflow_client(mlflow_sqlite_uri).get_model_version(mlflow_model, out.model_version).tags[ADAPTER_URI_TAG]
    assert served.startswith(f"{root.as_uri()}/models/")
    local = context.store().materialize(served, tmp_path / "check")  # verifies every file's digest
    assert context.store().read_manifest(served).digest == digest and (local / "adapter_config.json").exists()
