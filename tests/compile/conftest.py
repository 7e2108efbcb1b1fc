"""Fixtures of the compile tests: the shipped cluster config, the real pipeline (when its steps exist)
and a fake pipeline of tests-only steps (tests/compile/fake_steps) with the same shapes."""

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
# Runs the CLI with the Argo commands registered (whether or not pipelines/cli.py lists them yet).
RUN_CLI = ("import sys; from pipelines import cli; m = 'pipelines.argo.commands'; "
           "cli.COMMAND_MODULES = cli.COMMAND_MODULES + ((m,) if m not in cli.COMMAND_MODULES else ()); "
           "sys.exit(cli.main(sys.argv[1:]))")


# The same, with the fake pipeline in place of build_pipeline() (for CLI tests before every step exists).
RUN_CLI_FAKE = ("import pipelines.spec as s; from tests.compile.conftest import fake_pipeline; "
                "s.build_pipeline = fake_pipeline; " + RUN_CLI)


def cli_argv(*args: str, fake: bool = False) -> list[str]:
    return [sys.executable, "-c", RUN_CLI_FAKE if fake else RUN_CLI, *args]


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


def real_pipeline_or_reason() -> tuple[Pipeline | None, str]:
    """The shipped pipeline if every step package has its `run` yet, else why not."""
    pipeline = build_pipeline()
    for node in pipeline.nodes:
        try:
            node.inputs_model()
            node.outputs_model()
        except (ImportError, AttributeError, KeyError, StopIteration) as exc:
            return None, f"step {node.name} ({node.module}) has no usable run() yet: {type(exc).__name__}: {exc}"
    return pipeline, ""


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
    from pipelines.argo.compiler import compile_pipeline

    pipeline, reason = real_pipeline_or_reason()
    if pipeline is None:
        pytest.skip(reason)
    return compile_pipeline(example_config, pipeline)


@pytest.fixture(scope="session", params=["fake", "real"])
def compiled(request):
    """Every check runs on the fake pipeline and, once its steps exist, on the real one."""
    return request.getfixturevalue(f"{request.param}_compiled")
