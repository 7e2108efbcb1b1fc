"""vLLM's own server started by `pipelines.serving.server.vllm_server`: it fails loudly, naming its log, and
never outlives the block or the process that started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.local.processes import ServerStartError
from pipelines.serving.server import vllm_server
from tests.support.processes import command_lines, is_alive


def test_a_server_that_does_not_answer_in_time_is_stopped_and_named(tmp_path: Path,
                                                                     embedded_model_dir: Path) -> None:
    log = tmp_path / "vllm.log"
    with pytest.raises(ServerStartError, match="did not answer") as info, \
            vllm_server(embedded_model_dir, log, timeout_s=1):
        pytest.fail("a vLLM server does not answer within a second")
    assert str(log) in str(info.value) and "/v1/models" in str(info.value)
    assert not command_lines(f"--port={_port(info.value)}"), "the server outlived its failed start"


def test_a_server_that_exits_quotes_vllms_reason(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    log = tmp_path / "vllm.log"
    with pytest.raises(ServerStartError, match="exited with") as info, vllm_server(not_a_model, log, timeout_s=300):
        pytest.fail("vLLM cannot serve an empty folder")
    message = str(info.value)
    assert str(log) in message
    tail = message.split("ends:\n", 1)[1]
    assert tail and tail in log.read_text(errors="replace")
    assert str(not_a_model) in tail  # vLLM's own error names the folder it could not load


def _port(error: ServerStartError) -> str:
    return str(error).split("127.0.0.1:", 1)[1].split("/", 1)[0]


PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipelines.serving.server import vllm_server
    with vllm_server(Path(sys.argv[1]), Path(sys.argv[2]), timeout_s=600):
        time.sleep(600)
""")


def test_the_server_and_its_engine_die_with_a_killed_parent(tmp_path: Path, embedded_model_dir: Path) -> None:
    """SIGKILL leaves the parent no `finally`: the kernel's parent-death signal reaches the group guard, which
    stops vLLM's API server and engine process (the engine does not watch its parent)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(embedded_model_dir), str(tmp_path / "vllm.log")])
    try:
        guard = _wait_for(lambda: _children(parent.pid), 60, "the server's group guard")[0]
        _wait_for(lambda: [p for p in _group(guard) if "VLLM::EngineCore" in command_lines("VLLM::").get(p, "")],
                  300, "vLLM's engine process")
        group = _group(guard)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        _wait_for(lambda: not any(is_alive(pid) for pid in group), 30, f"the server's processes {group} to stop")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if is_alive(int(p))]
    except OSError:
        return []


def _group(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    members = []
    for pid in (int(p.name) for p in Path("/proc").glob("[0-9]*")):
        try:
            if os.getpgid(pid) == pgid and is_alive(pid):
                members.append(pid)
        except ProcessLookupError:
            continue
    return members


def _wait_for(probe, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"gave up waiting {timeout_s:g} s for {what}")
