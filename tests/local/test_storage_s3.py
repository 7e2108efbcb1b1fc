"""The S3 path against moto's server process over HTTP with real boto3."""

from pathlib import Path

import boto3
import pytest

from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.storage import (
    ArtifactNotFound,
    ArtifactStore,
    CorruptArtifact,
    S3Settings,
    StorageError,
    StorageSettings,
)


def _store(endpoint: str, bucket: str, threshold_mb: int = 5, kms_key_arn: str | None = None) -> ArtifactStore:
    settings = StorageSettings(
        artifact_root=f"s3://{bucket}/eurolora",
        s3=S3Settings(endpoint_url=endpoint, region="eu-central-1", addressing_style="path",
                      multipart_threshold_mb=threshold_mb, kms_key_arn=kms_key_arn),
    )
    return ArtifactStore(settings, ResidencyPolicy())


def test_a_killed_publishs_staging_objects_are_removed_by_the_next_publish(moto_server: str, s3_bucket: str,
                                                                          tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    prefix = "eurolora/runs/r1/generate_qa/qa/"
    # A publish SIGKILLed after uploading to staging leaves these; a neighbour's staging is not ours.
    client.put_object(Bucket=s3_bucket, Key=prefix + ".staging-dead/qa_train.jsonl", Body=b"half")
    client.put_object(Bucket=s3_bucket, Key="eurolora/runs/r1/ingest/chunks/.staging-beef/c", Body=b"x")
    src = tmp_path / "src"
    src.mkdir()
    (src / "qa_train.jsonl").write_text("{}")
    _store(moto_server, s3_bucket).publish_dir(src, f"s3://{s3_bucket}/{prefix}")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["eurolora/runs/r1/generate_qa/qa/MANIFEST.json", "eurolora/runs/r1/generate_qa/qa/qa_train.jsonl",
                    "eurolora/runs/r1/ingest/chunks/.staging-beef/c"]


def test_s3_publish_materialize_with_multipart(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = bytes(range(256)) * (6 * 1024 * 1024 // 256 + 7)  # > 5 MiB threshold: multipart upload
    (src / "big.bin").write_bytes(big)
    (src / "small.json").write_text('{"a": 1}')
    store = _store(moto_server, s3_bucket)
    uri = f"s3://{s3_bucket}/eurolora/runs/r1/ingest/chunks"
    manifest = store.publish_dir(src, uri)
    local = store.materialize(uri, tmp_path / "cache")
    assert (local / "big.bin").read_bytes() == big
    assert manifest.files["big.bin"]["size"] == len(big)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert not [k for k in keys if ".staging-" in k]  # staging keys are cleaned up after publishing
    # The published objects themselves: the big one in two 5 MiB parts (S3 says so in its ETag, "<md5>-<parts>",
    # and in the parts count of a part's HEAD), the small one in a single PUT.
    prefix = "eurolora/runs/r1/ingest/chunks/"
    assert client.head_object(Bucket=s3_bucket, Key=prefix + "big.bin")["ETag"].strip('"').endswith("-2")
    assert client.head_object(Bucket=s3_bucket, Key=prefix + "big.bin", PartNumber=1)["PartsCount"] == 2
    small = client.head_object(Bucket=s3_bucket, Key=prefix + "small.json")
    assert "-" not in small["ETag"] and "PartsCount" not in small


def test_s3_without_manifest_is_invisible(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    client.put_object(Bucket=s3_bucket, Key="eurolora/half/part.bin", Body=b"partial")
    with pytest.raises(ArtifactNotFound):
        _store(moto_server, s3_bucket).materialize(f"s3://{s3_bucket}/eurolora/half", tmp_path)


def test_s3_corrupted_object_detected(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.txt").write_text("good")
    store = _store(moto_server, s3_bucket)
    uri = f"s3://{s3_bucket}/eurolora/art"
    store.publish_dir(src, uri)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    client.put_object(Bucket=s3_bucket, Key="eurolora/art/x.txt", Body=b"evil")
    with pytest.raises(CorruptArtifact):
        store.materialize(uri, tmp_path / "cache")


def test_s3_corpus_prefix_download_and_digest(moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    client.put_object(Bucket=s3_bucket, Key="corpus/a.md", Body=b"# A")
    client.put_object(Bucket=s3_bucket, Key="corpus/sub/b.txt", Body=b"B")
    store = _store(moto_server, s3_bucket)
    files = store.download_prefix(f"s3://{s3_bucket}/corpus", tmp_path / "dl")
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in files) == ["a.md", "sub/b.txt"]
    digest = store.tree_digest(f"s3://{s3_bucket}/corpus")
    client.put_object(Bucket=s3_bucket, Key="corpus/a.md", Body=b"# A changed")
    assert store.tree_digest(f"s3://{s3_bucket}/corpus") != digest


def test_non_eu_endpoint_refused_before_any_call(tmp_path: Path) -> None:
    settings = StorageSettings(
        artifact_root="s3://b/x",
        s3=S3Settings(endpoint_url="https://s3.us-east-1.amazonaws.com", region="us-east-1"),
    )
    with pytest.raises(ResidencyError, match="us-east-1"):
        ArtifactStore(settings, ResidencyPolicy()).exists("s3://b/x/y")


def test_s3_outage_becomes_transient_error_after_bounded_retries(tmp_path: Path, s3_env: None) -> None:
    from pipelines.local.processes import free_port
    from steps.common.errors import TransientError

    settings = StorageSettings(
        artifact_root="s3://gone/x",
        s3=S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", region="eu-central-1",
                      connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=2),
    )
    with pytest.raises(TransientError, match="unreachable after 2 attempts"):
        ArtifactStore(settings, ResidencyPolicy()).read_manifest("s3://gone/x/a")


def test_every_write_asks_for_sse_kms_with_the_configured_key_and_reads_check_it(
        moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    kms = boto3.client("kms", endpoint_url=moto_server, region_name="eu-central-1")
    key_arn = kms.create_key(Description="eurolora artifacts")["KeyMetadata"]["Arn"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(b"\1" * (5 * 1024 * 1024 + 1))  # multipart upload, then a multipart copy
    (src / "small.json").write_text("{}")
    store = _store(moto_server, s3_bucket, kms_key_arn=key_arn)
    uri = f"s3://{s3_bucket}/eurolora/runs/r1/judge/report"
    store.publish_dir(src, uri)
    store.write_bytes(f"{uri}-notes.txt", b"notes")
    client = boto3.client("s3", endpoint_url=moto_server, region_name="eu-central-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 4
    for key in keys:
        head = client.head_object(Bucket=s3_bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn), key
    assert (store.materialize(uri, tmp_path / "cache") / "small.json").read_text() == "{}"

    # An object rewritten by something that did not ask for the key (same bytes, same digest) is refused.
    client.put_object(Bucket=s3_bucket, Key="eurolora/runs/r1/judge/report/small.json", Body=b"{}")
    with pytest.raises(StorageError, match="small.json is not encrypted with the configured KMS key"):
        store.materialize(uri, tmp_path / "cache2")
    other_key = kms.create_key(Description="someone else's")["KeyMetadata"]["Arn"]
    client.put_object(Bucket=s3_bucket, Key="eurolora/runs/r1/judge/report/MANIFEST.json", Body=b"{}",
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=other_key)
    with pytest.raises(StorageError, match="MANIFEST.json is not encrypted with the configured KMS key"):
        store.read_manifest(uri)


def test_a_kms_key_outside_the_allowed_regions_is_refused_before_any_request(
        moto_server: str, s3_bucket: str, tmp_path: Path) -> None:
    store = _store(moto_server, s3_bucket,
                   kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    with pytest.raises(ResidencyError, match="storage.s3.kms_key_arn"):
        store.exists(f"s3://{s3_bucket}/eurolora/runs/r1/judge/report")
