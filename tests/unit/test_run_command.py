"""`eurolora run` refuses to start when the canary's local serving stack cannot run, before any work."""

import os
import subprocess
import sys
from pathlib import Path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # PATH without Prometheus: only the interpreter's own directory.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
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
