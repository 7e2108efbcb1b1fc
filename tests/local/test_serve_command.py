"""`eurolora serve` for real: the CLI hands over to vLLM's server with an adapter loaded at start."""

import sys
from pathlib import Path

import httpx

from pipelines.local.processes import free_port, server_process
from pipelines.serving.flags import SERVER_MODULE
from tests.fixtures.llm_servers import VLLM_START_TIMEOUT_S
from tests.support.processes import command_lines


def test_eurolora_serve_is_vllm_with_the_adapters_loaded(tmp_path: Path,
                                                         random_lora_adapters: tuple[Path, Path]) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "pipelines.local.group_guard", "--", sys.executable, "-m", "pipelines.cli",
            "serve", "--port", str(port), "--adapter", f"hb-v1={random_lora_adapters[0]}"]
    with server_process(argv, f"{root}/v1/models", tmp_path / "serve.log", timeout_s=VLLM_START_TIMEOUT_S):
        models = {m["id"]: m for m in httpx.get(f"{root}/v1/models", timeout=30, trust_env=False).json()["data"]}
        assert set(models) == {"base", "hb-v1"} and models["hb-v1"]["owned_by"] == "vllm"
        response = httpx.post(f"{root}/v1/chat/completions", timeout=120, trust_env=False, json={
            "model": "hb-v1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        assert response.status_code == 200 and response.json()["model"] == "hb-v1"
        # The CLI replaced itself with vLLM's server (exec): its process now has vLLM's command line.
        assert any(SERVER_MODULE in line and f"--port={port}" in line
                   for line in command_lines("--lora-modules").values())
    assert not command_lines(f"--port={port}")
