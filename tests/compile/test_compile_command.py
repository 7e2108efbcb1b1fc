"""`eurolora compile` as a user runs it: files written, non-EU settings refused with a clear message,
and never an import of torch (or any other heavy library)."""

import json
import subprocess
import sys

import pytest
import yaml

from pipelines.argo.checks import CompileError
from pipelines.argo.commands import MANIFEST_FILES
from pipelines.argo.compiler import compile_pipeline, to_yaml
from pipelines.spec import FromConfig, FromStep, Node, Pipeline
from tests.compile.conftest import EXAMPLE_CONFIG, REPO_ROOT, RUN_CLI_FAKE, cli_argv, fake_pipeline

HEAVY = ("torch", "transformers", "vllm", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "mlflow")


def _compile(tmp_path, *extra: str, fake: bool = True) -> subprocess.CompletedProcess:
    argv = cli_argv("compile", str(EXAMPLE_CONFIG), "--out", str(tmp_path / "argo"), *extra, fake=fake)
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)


def test_compile_writes_the_three_manifests_and_the_cluster_ones(tmp_path, fake_compiled):
    proc = _compile(tmp_path, "--cluster-out", str(tmp_path / "cluster"))
    assert proc.returncode == 0, proc.stderr
    for attr, filename in MANIFEST_FILES.items():
        text = (tmp_path / "argo" / filename).read_text()
        assert yaml.safe_load(text)["kind"] == getattr(fake_compiled, attr)["kind"]
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == [
        "00-namespace.yaml", "10-rbac.yaml", "20-network-policy.yaml", "30-artifact-repository.yaml",
        "40-memoization-cache.yaml", "secrets.template"]
    assert "template handbook-nightly-v" in proc.stderr


@pytest.mark.parametrize(("override", "key", "value"), [
    ("storage.s3.region=us-east-1", "storage.s3.region", "us-east-1"),
    ("argo.node_regions=[eu-west-2]", "argo.node_regions[0]", "eu-west-2"),
    ("storage.s3.endpoint_url=https://s3.us-east-1.amazonaws.com", "storage.s3.endpoint_url",
     "s3.us-east-1.amazonaws.com"),
    ("argo.server_url=https://argo.example.us", "argo.server_url", "argo.example.us"),
])
def test_non_eu_settings_fail_with_a_clear_message(tmp_path, override, key, value):
    proc = _compile(tmp_path, "--set", override)
    assert proc.returncode == 2
    assert key in proc.stderr and value in proc.stderr and "refused" in proc.stderr
    assert not (tmp_path / "argo").exists()  # nothing half-written


def test_compiler_checks_residency_itself(example_config):
    """A config built in code (not through load_config) is still checked at compile time."""
    config = example_config.model_copy(deep=True)
    config.argo.node_regions = ["us-east-1"]
    config.storage.s3.region = "eu-west-2"
    with pytest.raises(CompileError) as exc:
        compile_pipeline(config, fake_pipeline())
    text = str(exc.value)
    assert "argo.node_regions[0]='us-east-1' refused" in text and "storage.s3.region='eu-west-2'" in text
    assert "no region left" in text


def test_local_only_settings_are_refused_for_a_cluster(example_config):
    config = example_config.model_copy(deep=True)
    config.corpus = "file:///home/me/corpus"
    config.storage.artifact_root = "file:///tmp/runs"
    config.registry.tracking_uri = "sqlite:///mlflow.db"
    config.base_model = "embedded"
    with pytest.raises(CompileError) as exc:
        compile_pipeline(config, fake_pipeline())
    for key in ("corpus=", "storage.artifact_root=", "registry.tracking_uri=", "base_model='embedded'"):
        assert key in str(exc.value)


@pytest.mark.parametrize(("key", "value"), [
    ("canary.metrics.prometheus_url", "http://127.0.0.1:9090"),
    ("canary.replicas", ["http://localhost:8000/v1"]),
    ("registry.tracking_uri", "http://127.0.0.2:5000"),
    ("judge.judge_engine.openai.base_url", "http://[::1]:8000/v1"),
])
def test_loopback_endpoints_are_refused_for_a_cluster(example_config, key, value):
    """127.0.0.1 in a pod is the pod itself: a config that points there would compile into a workflow that
    cannot reach its endpoint; the message names the key and the value."""
    config = example_config.model_copy(deep=True)
    config.residency.allowed_hosts += ["127.0.0.1", "127.0.0.2", "localhost", "::1"]
    config.residency.plain_http_hosts += ["127.0.0.1", "127.0.0.2", "localhost", "::1"]
    *parents, leaf = key.split(".")
    target = config
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)
    with pytest.raises(CompileError) as exc:
        compile_pipeline(config, fake_pipeline())
    shown = value[0] if isinstance(value, list) else value
    shown_key = f"{key}[0]" if isinstance(value, list) else key
    assert f"{shown_key}={shown!r}: a loopback address is the pod itself" in str(exc.value)


def test_unused_engine_endpoint_is_not_an_endpoint(example_config):
    """The judge's candidate engine runs in-process (vllm): its openai defaults (127.0.0.1) are
    never called, so they are neither refused nor given an egress rule."""
    assert example_config.judge.engine.kind == "vllm"
    assert example_config.judge.engine.openai.base_url.startswith("http://127.0.0.1")
    compile_pipeline(example_config, fake_pipeline())


def test_a_step_after_a_mutex_group_is_refused(example_config):
    nodes = fake_pipeline().nodes
    after = Node("report", "tests.compile.fake_steps.check_dataset", "cpu", {
        "context": nodes[1].bindings["context"], "chunks_uri": FromStep("promote", "version")})
    with pytest.raises(CompileError, match="step report follows a step of mutex 'promote'"):
        compile_pipeline(example_config, Pipeline((*nodes, after)))


def test_gpu_step_without_gpu_resources_is_refused(example_config):
    config = example_config.model_copy(deep=True)
    config.argo.resources["train-gpu"].gpu = 0
    with pytest.raises(CompileError, match="finetune needs a GPU"):
        compile_pipeline(config, fake_pipeline())


def test_overrides_reach_the_workflow_parameters(tmp_path):
    proc = _compile(tmp_path, "--set", "corpus=s3://eurolora-artifacts-eu-central-1/corpora/other/")
    assert proc.returncode == 0, proc.stderr
    workflow = yaml.safe_load((tmp_path / "argo" / "workflow.yaml").read_text())
    params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["corpus"] == "s3://eurolora-artifacts-eu-central-1/corpora/other/"


def test_cli_output_equals_in_process_compile(tmp_path, fake_compiled):
    proc = _compile(tmp_path)
    assert proc.returncode == 0, proc.stderr
    # identical up to the code version (steps/ may change between the two compiles in a shared tree)
    from tests.compile.test_golden import normalise

    for attr, filename in MANIFEST_FILES.items():
        assert normalise((tmp_path / "argo" / filename).read_text()) == normalise(to_yaml(getattr(fake_compiled, attr)))


@pytest.mark.parametrize("pipeline", ["fake", "real"])
def test_compile_never_imports_heavy_libraries(tmp_path, pipeline):
    cli = RUN_CLI_FAKE if pipeline == "fake" else "import sys; from pipelines.cli import main; sys.exit(main(sys.argv[1:]))"
    script = (f"import sys, json\nCLI = {cli!r}\ntry:\n    exec(compile(CLI, 'cli', 'exec'))\n"
              "except SystemExit as exc:\n    code = exc.code\n"
              f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))\n"
              "print(json.dumps({'code': code, 'heavy': heavy}))\n")
    argv = ["compile", str(EXAMPLE_CONFIG), "--out", str(tmp_path / "argo"), "--cluster-out", str(tmp_path / "c")]
    proc = subprocess.run([sys.executable, "-c", script, *argv], check=False, capture_output=True, text=True, timeout=180,
                          cwd=REPO_ROOT)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, proc.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("argo.schedule.timezone=Europe/Berln", "'Europe/Berln' is not an IANA time zone"),
    ("argo.token_file=/run/argo-token", "argo.token and argo.token_file are both set"),
])
def test_bad_argo_settings_are_refused_at_load(tmp_path, override, message):
    extra = ("--set", "argo.token=x") if "token_file" in override else ()
    proc = _compile(tmp_path, "--set", override, *extra)
    assert proc.returncode == 2 and message in proc.stderr


def test_a_token_in_the_config_never_reaches_a_manifest(example_config):
    from pydantic import SecretStr

    from pipelines.argo.cluster import cluster_manifests

    config = example_config.model_copy(deep=True)
    config.argo.token = SecretStr("t0ken-in-the-config")
    compiled = compile_pipeline(config, fake_pipeline())
    texts = [to_yaml(getattr(compiled, attr)) for attr in (*MANIFEST_FILES, "inline_workflow")]
    texts += [json.dumps(docs) for docs in cluster_manifests(config).files.values()]
    assert not any("t0ken-in-the-config" in text for text in texts)


def test_too_many_metrics_is_an_error_not_a_cut(example_config):
    """98 numeric outputs + 3 step metrics exceed the CRD's 100: compile says so instead of dropping some."""
    wide = Node("wide", "tests.compile.fake_steps.wide", "cpu", {"label": FromConfig("name")})
    with pytest.raises(CompileError, match="step wide: 101 Prometheus metrics, Argo allows at most 100"):
        compile_pipeline(example_config, Pipeline((wide,)))
