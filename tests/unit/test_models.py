"""Model sources: content digests (memoised on file stat) and the models a step's settings load."""

from pathlib import Path

import pytest

from steps.common.engines.base import EngineSettings
from steps.common.models import file_sha256, in_process_models
from steps.common.manifest import sha256_file
from steps.generate_qa.settings import GenerateQASettings
from steps.judge.settings import JudgeSettings


def test_file_digest_is_memoised_and_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EUROLORA_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"a" * 1000)
    first = file_sha256(weights)
    assert first == sha256_file(weights)
    [memo] = (tmp_path / "cache" / "sha256-memo").iterdir()
    memo.write_text("f" * 64)  # what the memo says is what a second call returns: the file is not re-read
    assert file_sha256(weights) == "f" * 64
    weights.write_bytes(b"b" * 1000)  # same size, new content: a new stat, so hashed again
    assert file_sha256(weights) == sha256_file(weights) != first


def test_in_process_models_are_the_transformers_and_vllm_engines_models() -> None:
    judge = JudgeSettings(judge_engine=EngineSettings(model="/models/judge"))
    assert sorted(in_process_models(judge)) == ["/models/judge", "embedded"]
    vllm = JudgeSettings(engine=EngineSettings(kind="vllm", model="/models/base"))
    assert sorted(in_process_models(vllm)) == ["/models/base", "embedded"]
    served = GenerateQASettings(engine=EngineSettings(kind="openai", model="/ignored"))
    assert in_process_models(served) == []
