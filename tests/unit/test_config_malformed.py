"""A malformed value for every kind of field the config model has, through load_config and through
`eurolora run --set`: each is refused with its key, all at once, exit code 2, and nothing runs."""

import os
from pathlib import Path

import pytest

from pipelines.argo.commands import MANIFEST_FILES
from pipelines.cli import main
from pipelines.config import ConfigError, load_config
from steps.common.language import SUPPORTED_LANGUAGES
from tests.compile.conftest import EXAMPLE_CONFIG

# (field type, override, the key its one problem names). Keys are distinct, and none is inside another, so
# that all of them can be given at once.
MALFORMED = [
    ("int", "local.transient_retries=many", "local.transient_retries"),
    ("int out of range", "generate_qa.pairs_per_chunk=21", "generate_qa.pairs_per_chunk"),
    ("float", "finetune.learning_rate=fast", "finetune.learning_rate"),
    ("float out of range", "judge.gate.confidence=1.5", "judge.gate.confidence"),
    ("float nan", "canary.metrics.scrape_settle_s=.nan", "canary.metrics.scrape_settle_s"),
    ("float inf", "local.step_timeout_s=inf", "local.step_timeout_s"),
    ("float overflow", "ingest.max_document_mb=1e999", "ingest.max_document_mb"),
    ("optional float inf", "canary.slo.max_ttft_p95_s=.inf", "canary.slo.max_ttft_p95_s"),
    ("bool", "canary.enabled=maybe", "canary.enabled"),
    ("str pattern", "name=Not A Valid Name", "name"),
    ("Literal", "finetune.quantization=int8", "finetune.quantization"),
    ("list given a scalar", "generate_qa.question_types=factual", "generate_qa.question_types"),
    ("list item", "argo.ui_report_steps=[judge, 5]", "argo.ui_report_steps[1]"),
    ("list too short", "canary.load.prompts=[]", "canary.load.prompts"),
    ("dict given a list", "argo.gpu_node_selector=[a, b]", "argo.gpu_node_selector"),
    ("dict value", "argo.step_timeouts_s={finetune: soon}", "argo.step_timeouts_s.finetune"),
    ("dict with Literal keys", "argo.resources={gpux: {gpu: 1}}", "argo.resources.gpux[key]"),
    ("optional int", "generate_qa.max_chunks=0", "generate_qa.max_chunks"),
    ("nested model given a scalar", "local.serving=5", "local.serving"),
    ("model cross-field rule", "generate_qa.split={train: 0.5, val: 0.1, test: 0.1}", "generate_qa.split"),
    ("unknown key", "finetune.max_stepz=3", "finetune.max_stepz"),
    ("language code", "ingest.languages=[en, xx]", "ingest.languages"),
    ("URL", "argo.server_url=https://api.openai.com", "argo.server_url"),
    ("region", "storage.s3.region=us-east-1", "storage.s3.region"),
    ("local model path", "base_model=/nonexistent/model", "base_model"),
    ("local engine model path", "judge.judge_engine.model=./no-judge", "judge.judge_engine.model"),
    ("corpus path", "corpus=/nonexistent/corpus", "corpus"),
    ("override syntax", "finetune.max_steps", "--set 'finetune.max_steps'"),
]


def _problems(tmp_path: Path, *overrides: str, local_run: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_config(overrides=list(overrides), cwd=tmp_path, local_run=local_run)
    return refused.value.problems


def _names(problem: str, key: str) -> bool:
    return problem.startswith((f"{key}:", f"{key}=", f"residency: {key}="))


@pytest.mark.parametrize(("kind", "override", "key"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_load_config_refuses_it_naming_the_key(tmp_path: Path, kind: str, override: str, key: str) -> None:
    [problem] = _problems(tmp_path, override)
    assert _names(problem, key), problem


@pytest.mark.parametrize(("kind", "override", "key"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_eurolora_run_refuses_it_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], kind: str, override: str,
                                                 key: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--set", override])
    assert exited.value.code == 2
    assert key in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # no run directory, no artifacts: nothing ran


def test_every_problem_is_listed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [override for _, override, _ in MALFORMED]
    problems = _problems(tmp_path, *overrides)
    assert len(problems) == len(MALFORMED), problems
    for _, _, key in MALFORMED:
        assert any(_names(p, key) for p in problems), key
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["run", *(arg for o in overrides for arg in ("--set", o))])
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("\n  - ") == len(MALFORMED)


@pytest.mark.parametrize("override", [
    "canary.load.prompts=[inf, nan]",  # strings that read as numbers are left alone in string fields
    "name=inf",
    "ingest.languages=[EN, zh-cn, sv]",
    "canary.slo.max_ttft_p95_s=2.5",
])
def test_values_of_the_right_type_load(tmp_path: Path, override: str) -> None:
    load_config(overrides=[override], cwd=tmp_path, local_run=True)


def test_local_paths_are_checked_only_for_a_run_on_this_machine(tmp_path: Path) -> None:
    """A cluster config names paths inside its pods; `eurolora compile` must not look for them here."""
    override = "judge.judge_engine.model=/models/judge"
    expected = "model '{}': expected an HF model folder with config.json, an s3:// URI, or 'embedded'"
    assert _problems(tmp_path, override, "base_model=/models/base") == [
        "base_model: " + expected.format("/models/base"), "judge.judge_engine.model: " + expected.format("/models/judge")]
    in_pod = [override, "judge.judge_engine.kind=transformers"]
    assert load_config(EXAMPLE_CONFIG, in_pod, cwd=tmp_path).judge.judge_engine.model == "/models/judge"
    out = tmp_path / "argo"
    assert main(["compile", str(EXAMPLE_CONFIG), "--out", str(out), *(a for o in in_pod for a in ("--set", o))]) == 0
    assert "/models/judge" in (out / MANIFEST_FILES["template"]).read_text()


def test_local_models_that_exist_or_are_not_local_paths_pass(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    load_config(overrides=[f"base_model={model}", f"generate_qa.engine.model={model.as_uri()}",
                           "judge.judge_engine.model=s3://models-eu/judge"], cwd=tmp_path, local_run=True)
    # An openai engine's `model` is the served name on its server, not a path.
    load_config(overrides=["generate_qa.engine.kind=openai", "generate_qa.engine.model=./served-name"],
                cwd=tmp_path, local_run=True)


def test_the_supported_languages_are_those_language_detection_knows() -> None:
    from langdetect.detector_factory import PROFILES_DIRECTORY

    assert set(os.listdir(PROFILES_DIRECTORY)) == SUPPORTED_LANGUAGES
