"""Stopping `eurolora run` (SIGTERM, Ctrl-C) stops the step it is running: no orphan keeps computing."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _step_processes(marker: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended while we looked
        if "pipelines.step_process" in argv and marker in argv:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_runner_stops_its_step(tmp_path: Path, embedded_model_dir: Path, signum: int) -> None:
    runner = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--until", "ingest"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (steps := _step_processes(str(tmp_path))):
        assert runner.poll() is None and time.monotonic() < deadline, "the ingest step never started"
        time.sleep(0.05)
    runner.send_signal(signum)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == (143 if signum == signal.SIGTERM else 130), err[-2000:]
    time.sleep(0.5)
    assert _step_processes(str(tmp_path)) == [], f"step process {steps} outlived the runner"
