"""The S3 server stops in the middle of a step: the step is retried with growing backoff, then fails naming
the endpoint; what earlier steps published stays intact; once the server is back, `--resume` completes.

moto's S3 server runs in this process on a thread (ThreadedMotoServer: real HTTP on 127.0.0.1), so its
buckets survive a stop and a start on the same port. The step processes carry the test hooks
(tests/fixtures/hooks.py): the `summarise` step pauses right after it has read its input's manifest from S3,
the server is stopped while it waits, and its download meets the outage. The AWS credentials are planted
values that boto3 signs every request with: no file of the run and no stored object may contain them.
"""

import os
import threading
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pipelines.config import load_config
from pipelines.local.display import LineDisplay
from pipelines.local.processes import free_port
from pipelines.local.runner import LocalRunner, StepFailed
from steps.common.storage import ArtifactStore
from tests.fixtures.hooks import Pause, hooked_env, read_jsonl
from tests.fixtures.leaks import PLANTED_SECRETS, files_under, leaked_secrets
from tests.unit.test_local_runner import TOY

BUCKET = "runs-bucket-outage"


class MotoThread:
    """moto's S3 server on a thread of this process; the buckets live in the process, so it can come back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server._server.server_close()  # stop() leaves it listening: clients would hang, not be refused
            self._server = None


def test_s3_outage_mid_step_is_retried_with_backoff_then_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("a")
    overrides = [f"corpus={corpus.as_uri()}", f"storage.artifact_root=s3://{BUCKET}/eurolora",
                 f"storage.s3.endpoint_url={endpoint}", "storage.s3.addressing_style=path",
                 "storage.s3.connect_timeout_s=0.5", "storage.s3.read_timeout_s=1", "storage.s3.max_attempts=2",
                 "local.transient_retries=2"]
    config = load_config(overrides=overrides, cwd=tmp_path)
    pause = Pause("steps.common.storage:ArtifactStore.read_manifest", match="/count/counts", after=True,
                  marker=tmp_path / "paused", release=tmp_path / "go-on", timeout_s=60)
    processes = tmp_path / "processes.jsonl"
    planted = {key: PLANTED_SECRETS[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    for key, value in hooked_env({**os.environ, **planted}, process_log=processes, pause=pause).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)  # the step processes inherit it
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1")
    server = MotoThread(port)

    def stop_the_server_once_paused() -> None:
        pause.wait_reached(timeout_s=120)
        server.stop()
        pause.go_on()

    server.start()
    try:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        stopper = threading.Thread(target=stop_the_server_once_paused, daemon=True)
        stopper.start()
        with pytest.raises(StepFailed) as failed:
            LocalRunner(config, TOY, LineDisplay()).run()
        stopper.join(timeout=10)
    finally:
        server.stop()

    record, summary = failed.value.record, failed.value.summary
    assert record.name == "summarise" and record.attempts == 3  # the first try and two retries
    assert record.error == "exit code 75"
    log = Path(record.log).read_text()
    assert log.count("--- attempt") == 3
    assert log.count(f"{endpoint} unreachable after 2 attempts") >= 3  # every attempt names the endpoint
    # Backoff: the wait between one attempt's exit and the next one's start grows (2 s, then 4 s).
    attempts = [r for r in read_jsonl(processes) if "tests.toy_steps.summarise:run" in r["argv"]]
    starts = [r["time"] for r in attempts if r["event"] == "start"]
    exits = [r["time"] for r in attempts if r["event"] == "exit"]
    assert len(starts) == len(exits) == 3
    gaps = [start - end for end, start in zip(exits, starts[1:], strict=False)]
    assert 2 <= gaps[0] < gaps[1] and gaps[1] >= 4, gaps
    # While the server is down, a resume fails before any step starts, with the same clear reason.
    with pytest.raises(StepFailed, match=f"{endpoint} unreachable after 2 attempts"):
        LocalRunner(config, TOY, LineDisplay()).run(resume=summary.run_id)

    counts_uri = summary.step("count").outputs["counts_uri"]
    server.start()
    try:
        # What `count` published before the outage is intact: every file matches its manifest's digest.
        local = ArtifactStore(config.storage, config.residency).materialize(counts_uri, tmp_path / "verify")
        assert (local / "count.txt").read_text() == "local-demo:1"
        resumed = LocalRunner(config, TOY, LineDisplay()).run(resume=summary.run_id)
        objects = {item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                   for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    finally:
        server.stop()
    assert [s.status for s in resumed.steps] == ["cached", "succeeded", "skipped"]
    assert resumed.steps[0].outputs == summary.step("count").outputs
    assert resumed.steps[1].outputs["text"] == "local-demo:1"
    assert objects
    texts = {f"s3://{BUCKET}/{key}": data.decode(errors="replace") for key, data in objects.items()}
    assert leaked_secrets(files_under(Path(config.local.runs_dir)), texts) == []
