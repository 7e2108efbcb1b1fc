"""Fixtures of the compile tests: the shipped cluster config, the shipped pipeline and a fake pipeline of
tests-only steps (tests/compile/fake_steps) with the same shapes (a renamed parameter, a flaky step)."""

import os
import sys
from pathlib import Path

import pytest

from pipelines.spec import FromConfig, FromRun, FromStep, Node, Pipeline, When, build_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO_ROOT / "pipelines" / "configs" / "cluster-example.yaml"
REGENERATE = os.environ.get("EUROLORA_REGENERATE_GOLDEN") == "1"
_CTX = FromRun("context")
_FAKE = "tests.compile.fake_steps."
# The CLI with the fake pipeline in place of build_pipeline() (same code path, tests-only steps).
RUN_CLI_FAKE = ("import sys; import pipelines.spec as s; from tests.compile.conftest import fake_pipeline; "
                "s.build_pipeline = fake_pipeline; from pipelines.cli import main; sys.exit(main(sys.argv[1:]))")


def pytest_configure(config: pytest.Config) -> None:
    if REGENERATE and os.environ.get("CI"):
        raise pytest.UsageError("EUROLORA_REGENERATE_GOLDEN is refused under CI: golden files are regenerated "
                                "by a person (make compile-golden), reviewed and committed")


def cli_argv(*args: str, fake: bool = False) -> list[str]:
    if fake:
        return [sys.executable, "-c", RUN_CLI_FAKE, *args]
    return [sys.executable, "-m", "pipelines.cli", *args]


def fake_pipeline() -> Pipeline:
    return Pipeline((
        Node("ingest", _FAKE + "ingest", "cpu", {
            "context": _CTX, "settings": FromConfig("ingest"), "corpus_uri": FromConfig("corpus"),
            "tokenizer_model": FromConfig("base_model"),
        }, memoize=True, reports_progress=True),
        Node("check_dataset", _FAKE + "check_dataset", "cpu", {
            "context": _CTX, "chunks_uri": FromStep("ingest", "chunks_uri"),
        }),
        Node("finetune", _FAKE + "finetune", "train-gpu", {
            "context": _CTX, "settings": FromConfig("finetune"), "dataset_uri": FromStep("ingest", "chunks_uri"),
            "base_model": FromConfig("base_model"), "code_version": FromRun("code_version"),
        }, gpu=True, reports_progress=True, when=When("check_dataset", "dataset_changed", "true")),
        Node("judge", _FAKE + "judge", "infer-gpu", {
            "context": _CTX, "settings": FromConfig("judge"), "adapter_uri": FromStep("finetune", "adapter_uri"),
            "base_model": FromConfig("base_model"),
        }, gpu=True, memoize=True),
        Node("promote", _FAKE + "promote", "cpu", {
            "context": _CTX, "settings": FromConfig("promote"), "adapter_uri": FromStep("finetune", "adapter_uri"),
            "passed": FromStep("judge", "passed"), "code_version": FromRun("code_version"),
        }, mutex="promote"),
    ))


@pytest.fixture(scope="session")
def example_config():
    from pipelines.config import load_config

    return load_config(EXAMPLE_CONFIG)


@pytest.fixture(scope="session")
def fake_compiled(example_config):
    from pipelines.argo.compiler import compile_pipeline

    return compile_pipeline(example_config, fake_pipeline())


@pytest.fixture(scope="session")
def real_compiled(example_config):
    """The shipped pipeline; any step that cannot be imported fails the tests here, never skips them."""
    from pipelines.argo.compiler import compile_pipeline

    return compile_pipeline(example_config, build_pipeline())


@pytest.fixture(scope="session", params=["fake", "real"])
def compiled(request):
    """Every check runs on the fake pipeline and on the shipped one."""
    return request.getfixturevalue(f"{request.param}_compiled")
