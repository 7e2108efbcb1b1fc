"""`eurolora run` as a user meets it: refusals before any work, failure messages, resuming a failed run."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from pipelines.local.processes import free_port

# Dummy credentials: the S3 client refuses to start without any (the endpoints here are never reached).
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # PATH without Prometheus: only the interpreter's own directory.
    env = {**os.environ, **(env or {}), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=120)


def test_missing_prometheus_is_refused_before_any_step_runs(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert result.returncode == 2
    assert "the canary step needs Prometheus locally" in result.stderr
    assert "apt-get install -y prometheus" in result.stderr and "canary.enabled=false" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing started


def test_prometheus_is_not_needed_when_the_canary_does_not_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty-corpus"
    empty.mkdir()
    # Both get past the check and start the run (which then fails fast: there is nothing to ingest).
    for args in (["--until", "ingest"], ["--set", "canary.enabled=false"]):
        result = _run(tmp_path, "--corpus", str(empty), *args)
        assert result.returncode == 1 and "step 'ingest' failed" in result.stderr, result.stderr
        assert "Prometheus" not in result.stderr


def _hinted_resume(stderr: str) -> list[str]:
    """The arguments of the `resume with: eurolora run ...` line the failure message prints."""
    [line] = [line for line in stderr.splitlines() if "resume with:" in line]
    argv = shlex.split(line.split("resume with:")[1])
    assert argv[:2] == ["eurolora", "run"]
    return argv[2:]


def _s3_down(endpoint: str) -> list[str]:
    """A corpus on an S3 endpoint nobody listens on: ingest's cache key cannot be computed, so the step fails
    before its process starts (config validation cannot know an endpoint is down)."""
    return ["--set", "corpus=s3://docs/corpus", f"storage.s3.endpoint_url={endpoint}", "storage.s3.max_attempts=1",
            "storage.s3.connect_timeout_s=0.2"]


def test_a_step_failing_before_its_process_starts_names_its_log_and_the_resume(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = _run(tmp_path, "--until", "ingest", *_s3_down(endpoint), env=S3_ENV)
    assert result.returncode == 1, result.stderr
    assert f"step 'ingest' failed: before the step started: {endpoint} unreachable" in result.stderr
    [log] = [line.split("log: ")[1] for line in result.stderr.splitlines() if line.startswith("  log: ")]
    assert f"{endpoint} unreachable" in Path(log).read_text()
    resume = _hinted_resume(result.stderr)
    assert resume == ["--resume", Path(log).parents[2].name, "--until", "ingest"]  # under ./runs: no --run-dir
    # The hint works as printed, with the run's recorded config (its S3 corpus), not the shipped default's.
    again = _run(tmp_path, *resume, env=S3_ENV)
    assert again.returncode == 1 and f"{endpoint} unreachable" in again.stderr, again.stderr


def test_a_run_in_its_own_directory_is_resumed_there_with_its_config_and_new_overrides(tmp_path: Path) -> None:
    run_dir = tmp_path / "elsewhere" / "nightly run"
    first, second = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    result = _run(tmp_path, "--until", "ingest", "--run-dir", str(run_dir), *_s3_down(first), env=S3_ENV)
    assert result.returncode == 1 and f"log: {run_dir}/steps/ingest/log.txt" in result.stderr, result.stderr
    resume = _hinted_resume(result.stderr)
    assert resume == ["--resume", "nightly run", "--run-dir", str(run_dir), "--until", "ingest"]
    # --set applies on top of the recorded config: the corpus stays the recorded one.
    again = _run(tmp_path, *resume, "--set", f"storage.s3.endpoint_url={second}", env=S3_ENV)
    assert again.returncode == 1 and f"{second} unreachable" in again.stderr, again.stderr
    recorded = json.loads((run_dir / "config.json").read_text())
    assert (recorded["corpus"], recorded["storage"]["s3"]["endpoint_url"]) == ("s3://docs/corpus", second)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"][0]["status"] == "failed"


def test_resume_of_an_unknown_run_says_what_is_missing(tmp_path: Path) -> None:
    result = _run(tmp_path, "--resume", "20990101-000000-abcdef")
    assert result.returncode == 2
    assert "--resume 20990101-000000-abcdef: no recorded config" in result.stderr
    assert "no such run directory" in result.stderr
