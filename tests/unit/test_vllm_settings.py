"""The `vllm` engine's settings are checked when the config loads, before any engine starts."""

import pytest
from pydantic import ValidationError

from pipelines.config import ConfigError, load_config
from steps.common.engines.base import VLLM_LORA_RANKS, EngineSettings, VLLMSettings


def test_defaults_merge_adapters_on_cpu_and_use_lora_on_a_gpu() -> None:
    settings = EngineSettings.model_validate({"kind": "vllm"})
    assert settings.vllm.adapter_mode == "auto"
    assert settings.vllm.resolved_adapter_mode(gpu=False) == "merged"
    assert settings.vllm.resolved_adapter_mode(gpu=True) == "lora"
    assert settings.vllm.cpu_kv_cache_gib == 1
    assert settings.vllm.max_lora_rank in VLLM_LORA_RANKS


@pytest.mark.parametrize("mode", ["lora", "merged"])
def test_an_explicit_adapter_mode_holds_on_any_device(mode: str) -> None:
    settings = VLLMSettings(adapter_mode=mode)
    assert settings.resolved_adapter_mode(gpu=False) == settings.resolved_adapter_mode(gpu=True) == mode


@pytest.mark.parametrize("rank", [1, 8, 16, 64, 512])
def test_ranks_vllm_accepts_are_accepted(rank: int) -> None:
    assert VLLMSettings(max_lora_rank=rank).max_lora_rank == rank


@pytest.mark.parametrize("field, value, message", [
    ("max_lora_rank", 12, "vLLM accepts one of [1, 8, 16, 32, 64, 128, 256, 320, 512]"),
    ("adapter_mode", "fused", "'auto', 'lora' or 'merged'"),
    ("cpu_kv_cache_gib", 0, "greater than or equal to 1"),
    ("cpu_kv_cache_gib", 1.5, "valid integer"),
    ("gpu_memory_utilization", 1.5, "less than or equal to 1"),
    ("gpu_memory_utilization", 0, "greater than 0"),
    ("max_model_len", 16, "greater than or equal to 64"),
    ("max_loras", 0, "greater than or equal to 1"),
    ("dtype", "int8", "'auto', 'float32', 'bfloat16' or 'float16'"),
    ("start_timeout", 5, "Extra inputs are not permitted"),
])
def test_bad_values_are_refused_with_the_reason(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match="vllm." + field) as exc:
        EngineSettings.model_validate({"kind": "vllm", "vllm": {field: value}})
    assert message in str(exc.value)


def test_a_bad_vllm_setting_fails_the_config_load_with_its_key() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["judge.engine.kind=vllm", "judge.engine.vllm.max_lora_rank=12",
                               "generate_qa.engine.vllm.adapter_mode=fused"])
    assert len(exc.value.problems) == 2
    joined = "\n".join(exc.value.problems)
    assert "judge.engine.vllm.max_lora_rank" in joined and "generate_qa.engine.vllm.adapter_mode" in joined


def test_a_vllm_engine_in_the_config_loads() -> None:
    config = load_config(overrides=["judge.engine.kind=vllm", "judge.engine.vllm.adapter_mode=lora",
                                    "judge.engine.vllm.max_lora_rank=32"])
    assert config.judge.engine.kind == "vllm"
    assert (config.judge.engine.vllm.adapter_mode, config.judge.engine.vllm.max_lora_rank) == ("lora", 32)
