"""Compiled YAML against the golden files (manifests/argo, manifests/cluster, tests/compile/golden/fake),
regenerated only on request, all three sets at once, and never under CI:

    make compile-golden     (EUROLORA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/compile/test_golden.py)

Code versions (hashes of steps/, which changes with every step edit) are normalised before comparing,
so the golden files pin the structure; everything else must match byte for byte.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.argo.cluster import SECRETS_TEMPLATE, cluster_manifests, secrets_template_text
from pipelines.argo.commands import MANIFEST_FILES
from pipelines.argo.compiler import compile_pipeline, to_yaml
from tests.compile.conftest import REGENERATE, REPO_ROOT, fake_pipeline

ARGO_GOLDEN = REPO_ROOT / "manifests" / "argo"
CLUSTER_GOLDEN = REPO_ROOT / "manifests" / "cluster"
FAKE_GOLDEN = Path(__file__).parent / "golden" / "fake"
_HOW = "regenerate with `make compile-golden` and review the diff"


def normalise(text: str, json_values: bool = False) -> str:
    """Code versions -> placeholders; with json_values, also every JSON-object parameter value (the fake
    pipeline's golden files pin the structure, not the real steps' settings, which change under them)."""
    text = re.sub(r"(-v[0-9a-z-]+?-)[0-9a-f]{10}\b", r"\1<hash>", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "<code-version>", text)
    if json_values:
        text = re.sub(r"^(\s*(?:- )?value: )'\{.*\}'$", r"\1<json>", text, flags=re.MULTILINE)
    return text


def _check(expected: dict[str, str], golden_dir: Path, normalised: bool = True, json_values: bool = False) -> None:
    if REGENERATE:
        golden_dir.mkdir(parents=True, exist_ok=True)
        for name, text in expected.items():
            (golden_dir / name).write_text(text)
        return
    for name, text in expected.items():
        path = golden_dir / name
        assert path.is_file(), f"golden file {path} is missing: {_HOW}"
        golden = path.read_text()
        if normalised:
            golden, text = normalise(golden, json_values), normalise(text, json_values)
        assert text == golden, f"{path} differs from the compiled output: {_HOW}"


def _argo_texts(compiled) -> dict[str, str]:
    return {filename: to_yaml(getattr(compiled, attr)) for attr, filename in MANIFEST_FILES.items()}


def test_fake_pipeline_matches_golden(fake_compiled):
    _check(_argo_texts(fake_compiled), FAKE_GOLDEN, json_values=True)


def test_shipped_pipeline_matches_golden(real_compiled):
    _check(_argo_texts(real_compiled), ARGO_GOLDEN)


def test_cluster_manifests_match_golden(example_config):
    manifests = cluster_manifests(example_config)
    texts = {name: yaml.safe_dump_all(docs, sort_keys=False, width=4096) for name, docs in manifests.files.items()}
    texts[SECRETS_TEMPLATE] = secrets_template_text(example_config, manifests.secrets)
    _check(texts, CLUSTER_GOLDEN, normalised=False)


def test_compile_is_deterministic(example_config):
    first = compile_pipeline(example_config, fake_pipeline())
    again = compile_pipeline(example_config, fake_pipeline())
    assert _argo_texts(again) == _argo_texts(first)
    assert again.template_name == first.template_name


def test_normalise_only_touches_code_versions():
    text = ("name: handbook-nightly-v0-1-0-0123456789\ncode: 0123456789abcdef\nother: 0123456789abcdeff\n"
            "  - value: '{\"a\": 1}'\n    value: s3://b/x\n")
    assert normalise(text) == ("name: handbook-nightly-v0-1-0-<hash>\ncode: <code-version>\n"
                               "other: 0123456789abcdeff\n  - value: '{\"a\": 1}'\n    value: s3://b/x\n")
    assert normalise(text, json_values=True).endswith("  - value: <json>\n    value: s3://b/x\n")


@pytest.mark.parametrize("attr", list(MANIFEST_FILES))
def test_no_timestamps(fake_compiled, attr):
    text = to_yaml(getattr(fake_compiled, attr))
    assert "creationTimestamp" not in text
    assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text)


def test_regeneration_is_refused_under_ci():
    env = {**os.environ, "CI": "true", "EUROLORA_REGENERATE_GOLDEN": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{__file__}::test_normalise_only_touches_code_versions"],
                          check=False, capture_output=True, text=True, env=env, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode != 0
    assert "EUROLORA_REGENERATE_GOLDEN is refused under CI" in proc.stdout + proc.stderr
