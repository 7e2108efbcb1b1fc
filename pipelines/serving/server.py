"""vLLM's OpenAI-compatible server as a child process on 127.0.0.1, ready when yielded.

The API server and its engine-core process never outlive the block, nor the process that started them
(`pipelines.local.processes.server_process` and `pipelines.local.group_guard`).
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipelines.local.processes import free_port, server_process
from pipelines.serving.flags import SERVER_FLAGS, LocalOverrides, ServerFlags, local_argv, local_env


@dataclass(frozen=True)
class VllmServer:
    root: str  # http://127.0.0.1:PORT
    served_model_name: str
    log: Path

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (`.../v1`)."""
        return f"{self.root}/v1"

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return self.root.removeprefix("http://")


@contextmanager
def vllm_server(model_dir: Path, log_path: Path, *, timeout_s: float = 300.0, overrides: LocalOverrides | None = None,
                flags: ServerFlags = SERVER_FLAGS) -> Iterator[VllmServer]:
    """vLLM serving `model_dir` (an HF checkpoint folder) until the block ends.

    `ServerStartError` naming `log_path` and quoting its tail when the server exits early or `/v1/models`
    does not answer within `timeout_s` (the first start on a 2-core machine takes about a minute)."""
    overrides = overrides or LocalOverrides()
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Behind the group guard: vLLM's engine process must not outlive a server stopped while it starts.
    argv = [sys.executable, "-m", "pipelines.local.group_guard", "--", *local_argv(model_dir, port, overrides, flags)]
    with server_process(argv, f"{root}/v1/models", log_path, timeout_s=timeout_s, env=local_env(overrides),
                        name="vLLM server"):
        yield VllmServer(root=root, served_model_name=flags.served_model_name, log=log_path)
