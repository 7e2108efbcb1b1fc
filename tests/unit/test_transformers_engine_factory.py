"""make_engine picks the engine from settings; importing the engines (or generate_qa) never imports torch."""

import subprocess
import sys
from pathlib import Path

import pytest

from steps.common.contract import RuntimeContext
from steps.common.engines import make_engine
from steps.common.engines.base import EngineSettings
from steps.common.residency import ResidencyError


def test_openai_engine_gets_the_residency_policy(context: RuntimeContext) -> None:
    from steps.common.engines.openai_engine import OpenAIEngine

    engine = make_engine(EngineSettings(kind="openai"), context)
    try:
        assert isinstance(engine, OpenAIEngine)
    finally:
        engine.close()
    outside = EngineSettings.model_validate({"kind": "openai", "openai": {"base_url": "https://llm.example.com/v1"}})
    with pytest.raises(ResidencyError):
        make_engine(outside, context)


def test_unknown_engine_kind_is_refused_at_config_time() -> None:
    with pytest.raises(ValueError, match="kind"):
        EngineSettings.model_validate({"kind": "vllm"})


def test_transformers_engine_needs_a_model_folder(context: RuntimeContext, tmp_path: Path) -> None:
    from steps.common.models import ModelSourceError

    with pytest.raises(ModelSourceError, match="config.json"):
        make_engine(EngineSettings(model=str(tmp_path / "no-model")), context)


def test_imports_stay_light() -> None:
    code = ("import sys, steps.common.engines, steps.common.engines.transformers_engine, steps.generate_qa, "
            "steps.generate_qa.generate, steps.generate_qa.artifact; "
            "print(sorted(m for m in ('torch', 'transformers', 'xgrammar', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
