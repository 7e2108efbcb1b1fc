"""A child started by process_in_own_session never outlives its block, even when a stop signal lands mid-start."""

import os
import signal
import subprocess
import sys

import pytest

from pipelines.local import processes
from pipelines.local.processes import process_in_own_session
from tests.support.processes import is_alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def sigterm_exits(monkeypatch: pytest.MonkeyPatch):
    """SIGTERM raises SystemExit, as `eurolora run` arranges it."""
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_while_popen_runs_still_stops_the_child(monkeypatch: pytest.MonkeyPatch, sigterm_exits) -> None:
    """The signal arrives after the fork, before Popen returned: the moment nobody holds the child's pid."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen_then_signalled(*args, **kwargs) -> subprocess.Popen:
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGTERM)
        return proc

    monkeypatch.setattr(processes.subprocess, "Popen", popen_then_signalled)
    with pytest.raises(SystemExit) as stopped, process_in_own_session(SLEEPER):
        pytest.fail("the block must not start once the runner was told to stop")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert started and not is_alive(started[0].pid), "the child outlived the signal that stopped its parent"
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # our handler is back in place


def test_an_error_in_the_block_stops_the_child() -> None:
    with pytest.raises(RuntimeError), process_in_own_session(SLEEPER) as proc:
        raise RuntimeError("the step's watcher failed")
    assert not is_alive(proc.pid)


def test_the_child_runs_in_a_session_of_its_own() -> None:
    with process_in_own_session(SLEEPER) as proc:
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
