"""The whole residency table at config load, in every kind of field that carries an endpoint or a region,
and through `eurolora compile` (which loads the config the same way and exits 2 before writing anything)."""

from pathlib import Path

import pytest

from pipelines.argo.commands import MANIFEST_FILES
from pipelines.cli import main
from pipelines.config import ConfigError, load_config
from tests.compile.conftest import EXAMPLE_CONFIG
from tests.fixtures.residency_cases import (
    BARE_ENDPOINT_CASES,
    REGION_CASES,
    URL_CASES,
    policy_override,
    yaml_value,
)

# Every config field that holds one URL; each is checked wherever it sits, by what its value is.
URL_FIELDS = [
    "storage.s3.endpoint_url",
    "registry.tracking_uri",
    "generate_qa.engine.openai.base_url",
    "judge.judge_engine.openai.base_url",
    "canary.metrics.prometheus_url",
    "canary.load.target_url",
    "canary.kubernetes.api_url",
    "promote.backup.uri",
    "promote.backup.s3.endpoint_url",
    "argo.server_url",
]


def _load(tmp_path: Path, *overrides: str, config: Path | None = None) -> list[str]:
    """The problems load_config reports under the table's policy ([] when it loads)."""
    try:
        load_config(config, [policy_override(), *overrides], cwd=tmp_path)
    except ConfigError as exc:
        return exc.problems
    return []


def _assert_decision(problems: list[str], key: str, value: str, allowed: bool) -> None:
    if allowed:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert f"{key}={value!r} refused" in problems[0]


# (field, value, allowed): every URL field with every URL case, every region field with every region case.
SCALAR_CASES = [(field, url, allowed) for field in URL_FIELDS for url, allowed in URL_CASES] + [
    (field, region, allowed) for field in ("storage.s3.region", "promote.backup.s3.region")
    for region, allowed in REGION_CASES]
# (list field, an allowed first element, the value checked as the second, allowed).
LIST_CASES = [("canary.replicas", "http://127.0.0.1:8001/v1", url, allowed) for url, allowed in URL_CASES] + [
    ("argo.node_regions", "eu-central-1", region, allowed) for region, allowed in REGION_CASES]


@pytest.mark.parametrize(("field", "value", "allowed"), SCALAR_CASES)
def test_a_url_or_region_field(tmp_path: Path, field: str, value: str, allowed: bool) -> None:
    _assert_decision(_load(tmp_path, f"{field}={yaml_value(value)}"), field, value, allowed)


@pytest.mark.parametrize(("field", "first", "value", "allowed"), LIST_CASES)
def test_a_list_of_urls_or_regions(tmp_path: Path, field: str, first: str, value: str, allowed: bool) -> None:
    _assert_decision(_load(tmp_path, f"{field}={yaml_value([first, value])}"), f"{field}[1]", value, allowed)


@pytest.mark.parametrize(("value", "allowed"), BARE_ENDPOINT_CASES)
@pytest.mark.parametrize("field", ["storage.s3.endpoint_url", "canary.replica_dns", "argo.server_url"])
def test_an_endpoint_without_a_scheme_is_checked_by_its_host(
        tmp_path: Path, field: str, value: str, allowed: bool) -> None:
    _assert_decision(_load(tmp_path, f"{field}={yaml_value(value)}"), field, value, allowed)


@pytest.mark.parametrize("label", ["topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region"])
@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_a_node_selector_region_label(tmp_path: Path, label: str, region: str, allowed: bool) -> None:
    selector = {"nvidia.com/gpu.product": "H100", label: region}
    problems = _load(tmp_path, f"argo.gpu_node_selector={yaml_value(selector)}")
    _assert_decision(problems, f'argo.gpu_node_selector["{label}"]', region, allowed)


@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_the_policy_regions(tmp_path: Path, region: str, allowed: bool) -> None:
    problems = _load(tmp_path, f"residency.allowed_regions={yaml_value([region])}")
    if allowed:
        assert problems == []
    else:
        [problem] = problems
        assert problem.startswith("residency.allowed_regions:") and f"not EU/EEA regions: [{region!r}]" in problem


@pytest.mark.parametrize(("arn", "allowed"), [
    ("arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
    ("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", False),
    ("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", False),  # London
])
def test_the_kms_key_is_checked_by_its_region(tmp_path: Path, arn: str, allowed: bool) -> None:
    _assert_decision(_load(tmp_path, f"storage.s3.kms_key_arn={arn}"), "storage.s3.kms_key_arn", arn, allowed)


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    problems = _load(
        tmp_path,
        f"canary.replicas={yaml_value(['https://api.openai.com/v1'])}",
        f"argo.gpu_node_selector={yaml_value({'topology.kubernetes.io/region': 'us-east-1'})}",
        "storage.s3.endpoint_url=s3.us-east-1.amazonaws.com",
        "registry.tracking_uri=https://mlflow.example.com",
        "corpus=gs://bucket/docs",
    )
    keys = ['canary.replicas[0]', 'argo.gpu_node_selector["topology.kubernetes.io/region"]',
            "storage.s3.endpoint_url", "registry.tracking_uri", "corpus"]
    assert sorted(p.split("=", 1)[0].removeprefix("residency: ") for p in problems) == sorted(keys)


def test_strings_that_are_not_endpoints_are_left_alone(tmp_path: Path) -> None:
    # A prompt mentioning a URL, a selector with a region-like value, a relative path in a *_uri field.
    assert _load(tmp_path, f"canary.load.prompts={yaml_value(['Summarise https://api.openai.com/v1'])}",
                 """canary.metrics.selector=instance="us-east-1" """, "registry.artifact_location=mlruns") == []


# -- compile time ---------------------------------------------------------------------------------------------
def _compile(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str) -> tuple[int, str]:
    out = tmp_path / "argo"
    try:
        code = main(["compile", str(EXAMPLE_CONFIG), "--out", str(out), "--set", policy_override(),
                     "--set", override])
    except SystemExit as exc:
        code = int(exc.code or 0)
    stderr = capsys.readouterr().err
    assert (code == 0) == out.is_dir(), stderr  # nothing written when refused
    return code, stderr


def _assert_compile_decision(code: int, stderr: str, key: str, value: str, allowed: bool) -> None:
    if allowed:
        assert code == 0, stderr
    else:
        assert code == 2
        assert "invalid configuration" in stderr and f"{key}={value!r} refused" in stderr


@pytest.mark.parametrize(("url", "allowed"), URL_CASES)
def test_compile_decides_the_argo_server_url(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str,
                                             allowed: bool) -> None:
    code, stderr = _compile(tmp_path, capsys, f"argo.server_url={yaml_value(url)}")
    _assert_compile_decision(code, stderr, "argo.server_url", url, allowed)


@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_compile_decides_the_node_regions(tmp_path: Path, capsys: pytest.CaptureFixture[str], region: str,
                                          allowed: bool) -> None:
    code, stderr = _compile(tmp_path, capsys, f"argo.node_regions={yaml_value([region])}")
    _assert_compile_decision(code, stderr, "argo.node_regions[0]", region, allowed)
    if allowed:
        assert region.lower() in (tmp_path / "argo" / MANIFEST_FILES["template"]).read_text()
