"""LoRA adapters in vLLM's own server through the calls the canary and the pod's sidecar make
(`steps.canary.serving.ReplicaClient`, `pipelines.serving.adapter_sync`): loading, verifying in /v1/models,
unloading, and the adapters vLLM refuses, whose HTTP error and reason reach the caller (never a hang), and
the one it does not (another base model's adapter whose matrices fit)."""

from pathlib import Path

import httpx
import pytest

from pipelines.serving import adapter_sync
from pipelines.serving.flags import SERVER_FLAGS
from pipelines.serving.server import VllmServer
from steps.canary.adapter_set import AdapterEntry, AdapterSet
from steps.canary.serving import ReplicaClient, ServingError
from steps.common.contract import TransientError
from steps.common.residency import ResidencyPolicy
from tests.fixtures.llm_servers import make_random_lora

QUESTION = "What is the capital of France?"


def _client(server: VllmServer) -> ReplicaClient:
    return ReplicaClient(server.base_url, ResidencyPolicy(), timeout_s=120)


def _answer(server: VllmServer, model: str) -> str:
    response = httpx.post(f"{server.base_url}/chat/completions", timeout=120, trust_env=False, json={
        "model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "temperature": 0})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_load_verify_answer_and_unload(vllm_base_server: VllmServer, random_lora_adapters: tuple[Path, Path]) -> None:
    lora_a, _ = random_lora_adapters
    with _client(vllm_base_server) as client:
        assert client.load_adapter("life-v1", str(lora_a)) == "loaded"
        try:
            assert client.models()["life-v1"]["root"] == str(lora_a)
            assert client.load_adapter("life-v1", str(lora_a)) == "already_loaded"  # idempotent
            assert _answer(vllm_base_server, "life-v1") != _answer(vllm_base_server, "base")
        finally:
            assert client.unload_adapter("life-v1") == "unloaded"
        assert "life-v1" not in client.models() and client.unload_adapter("life-v1") == "not_loaded"


def test_a_loaded_name_never_gets_other_weights(vllm_base_server: VllmServer,
                                                random_lora_adapters: tuple[Path, Path]) -> None:
    lora_a, lora_b = random_lora_adapters
    with _client(vllm_base_server) as client:
        assert client.load_adapter("same-v1", str(lora_a)) == "loaded"
        try:
            with pytest.raises(ServingError, match="already serves the adapter at"):
                client.load_adapter("same-v1", str(lora_b))
            assert client.models()["same-v1"]["root"] == str(lora_a)
        finally:
            client.unload_adapter("same-v1")


@pytest.fixture(scope="module")
def odd_adapters(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path,
                 random_lora_adapters: tuple[Path, Path]) -> dict[str, Path]:
    """A rank above --max-lora-rank, adapters of other base models, one without weights, none at all."""
    root = tmp_path_factory.mktemp("refused")
    no_weights = root / "no-weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text((random_lora_adapters[0] / "adapter_config.json").read_text())
    return {
        "rank": make_random_lora(embedded_model_dir, root / "rank", seed=3, rank=2 * SERVER_FLAGS.max_lora_rank),
        "wider-base": _llama_adapter(root / "wider", hidden_size=1024),
        "narrower-base": _llama_adapter(root / "narrower", hidden_size=64),
        "other-architecture": _gpt2_adapter(root / "gpt2"),
        "no-weights": no_weights,
        "no-folder": root / "does-not-exist",
    }


def _llama_adapter(target: Path, hidden_size: int) -> Path:
    """A LoRA adapter (q/v) for a small random Llama model of another width than the embedded model's 576."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(hidden_size)
    base = LlamaForCausalLM(LlamaConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                        vocab_size=1000))
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(target)
    return target


def _gpt2_adapter(target: Path) -> Path:
    """A LoRA adapter for a GPT-2 model: its modules (`c_attn`) exist in no Llama layer."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    base = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000))
    config = LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(target)
    return target


# vLLM 0.32 (CPU) answers most refusals with HTTP 500 "Call to add_lora method failed: Worker failed with
# error '<reason>'", a missing folder with a 4xx. Either way the caller gets the status and vLLM's reason.
@pytest.mark.parametrize(("case", "status", "reason"), [
    ("rank", 500, f"greater than max_lora_rank {SERVER_FLAGS.max_lora_rank}"),
    ("wider-base", 500, "must match the size of tensor"),
    ("other-architecture", 500, "expected target modules"),
    ("no-weights", 500, "doesn't contain tensors"),
    ("no-folder", 404, "does-not-exist"),
])
def test_an_adapter_vllm_refuses_reaches_the_caller_with_vllms_status_and_reason(
        vllm_base_server: VllmServer, odd_adapters: dict[str, Path], case: str, status: int, reason: str) -> None:
    name = f"refused-{case}-v1"
    with _client(vllm_base_server) as client:
        with pytest.raises((ServingError, TransientError)) as refused:
            client.load_adapter(name, str(odd_adapters[case]))
        assert name not in client.models()
    message = str(refused.value)
    assert (f"HTTP {status})" in message or f"answered {status}:" in message), message
    assert reason in message, message
    assert _answer(vllm_base_server, "base")  # the server serves on


def test_vllm_does_not_refuse_another_bases_adapter_whose_matrices_fit(
        vllm_base_server: VllmServer, odd_adapters: dict[str, Path]) -> None:
    """vLLM copies a narrower adapter's matrices into its buffers without a word: refusing an adapter of
    another base model is the loader's job (vLLM checks neither the base model's name nor the widths)."""
    with _client(vllm_base_server) as client:
        assert client.load_adapter("narrower-v1", str(odd_adapters["narrower-base"])) == "loaded"
        try:
            assert _answer(vllm_base_server, "narrower-v1")
        finally:
            client.unload_adapter("narrower-v1")


def test_the_sidecar_loads_the_set_and_the_probe_waits_for_the_champion(
        vllm_base_server: VllmServer, random_lora_adapters: tuple[Path, Path], tmp_path: Path) -> None:
    lora_a, lora_b = random_lora_adapters
    adapters_dir = tmp_path / "adapters"  # as the sidecar links them: /adapters/<name>
    adapters_dir.mkdir()
    (adapters_dir / "sync-v1").symlink_to(lora_a)
    (adapters_dir / "sync-v2").symlink_to(lora_b)
    adapter_set = AdapterSet(family="sync", adapters=[
        AdapterEntry(name="sync-v1", uri="s3://unused/a", role="champion", version="1"),
        AdapterEntry(name="sync-v2", uri="s3://unused/b", role="challenger", version="2")])
    assert adapter_sync.ready(adapter_set, vllm_base_server.base_url) == (
        False, "champion adapters not loaded: ['sync-v1']")
    try:
        outcomes = adapter_sync.load_all(adapter_set, adapters_dir, vllm_base_server.base_url)
        assert outcomes == {"sync-v1": "loaded", "sync-v2": "loaded"}
        assert adapter_sync.ready(adapter_set, vllm_base_server.base_url) == (True, "ready")
        assert adapter_sync.load_all(adapter_set, adapters_dir, vllm_base_server.base_url) == {
            "sync-v1": "already_loaded", "sync-v2": "already_loaded"}
    finally:
        with _client(vllm_base_server) as client:
            for name in ("sync-v1", "sync-v2"):
                client.unload_adapter(name)
