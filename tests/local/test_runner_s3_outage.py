"""The S3 server stops in the middle of a run: the step retries with backoff, then fails clearly,
and the run record keeps what had already succeeded."""

import sys
from pathlib import Path

import boto3
import pytest

from pipelines.config import load_config
from pipelines.local.display import LineDisplay
from pipelines.local.processes import free_port, server_process
from pipelines.local.runner import LocalRunner, StepFailed
from tests.unit.test_local_runner import TOY


def test_s3_outage_mid_run_is_retried_then_fails_clearly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: None) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("a")
    overrides = [f"corpus={corpus.as_uri()}", "storage.artifact_root=s3://runs-bucket/eurolora",
                 f"storage.s3.endpoint_url={endpoint}", "storage.s3.addressing_style=path",
                 "storage.s3.connect_timeout_s=0.5", "storage.s3.read_timeout_s=1", "storage.s3.max_attempts=2",
                 "local.transient_retries=2"]
    config = load_config(overrides=overrides, cwd=tmp_path)
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with server_process(argv, f"{endpoint}/moto-api/", tmp_path / "moto.log", timeout_s=30):
        boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1").create_bucket(
            Bucket="runs-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        first = LocalRunner(config, TOY, LineDisplay()).run(until="count")
        assert first.steps[0].status == "succeeded"
    # The S3 server is gone now. Without the cache, the step itself meets the outage: exit 75, retried
    # with backoff, then a clear failure.
    with pytest.raises(StepFailed) as failed:
        LocalRunner(config, TOY, LineDisplay(), use_cache=False).run(resume=first.run_id)
    record = failed.value.record
    assert record.name == "count" and record.attempts == 3  # the first try and two retries
    assert record.error == "exit code 75"
    log = Path(record.log).read_text()
    assert log.count("--- attempt") == 3 + 1  # plus the first, successful run's attempt
    assert f"{endpoint} unreachable after 2 attempts" in log
    # With the cache the runner needs the store to read digests: it fails the step with the same clear reason.
    with pytest.raises(StepFailed, match=f"{endpoint} unreachable after 2 attempts"):
        LocalRunner(config, TOY, LineDisplay()).run(resume=first.run_id)
