"""Stopping `eurolora run` (SIGTERM, Ctrl-C) stops the step it is running: no orphan keeps computing, and the
run's summary says it was interrupted and where."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import command_lines


def _steps_run_in(work: Path) -> dict[int, str]:
    return {pid: argv for pid, argv in command_lines(str(work)).items() if "pipelines.step_process" in argv}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_runner_stops_its_step(tmp_path: Path, embedded_model_dir: Path, signum: int) -> None:
    runner = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--until", "ingest"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (steps := _steps_run_in(tmp_path)):
        assert runner.poll() is None and time.monotonic() < deadline, "the ingest step never started"
        time.sleep(0.05)
    runner.send_signal(signum)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == (143 if signum == signal.SIGTERM else 130), err[-2000:]
    time.sleep(0.5)
    assert _steps_run_in(tmp_path) == {}, f"step process {steps} outlived the runner"
    [summary_path] = (tmp_path / "runs").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "interrupted" and summary["steps"][0]["status"] == "interrupted"
    assert "interrupted during step ingest" in err
    assert f"resume with: eurolora run --resume {summary['run_id']} --until ingest" in err
