"""`make images-check`, as the suite runs it: the cpu image's environment built from its lock the way its
Dockerfile builds it, the image's CMD and every cpu pod's entry point run inside it, and every family's
lock resolved for the images' platform. Then the third-party modules the cpu pods import at run time
(found statically, with the shipped cluster config) are imported inside the same environment."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.argo.settings import IMAGE_FAMILIES
from pipelines.config import load_config
from pipelines.spec import build_pipeline
from tests.compile.conftest import EXAMPLE_CONFIG, REPO_ROOT
from tests.compile.step_imports import node_imports, third_party_imports

MAKE_TIMEOUT_S = 1700  # measured on 2 busy cores: ~4.5 min cold (no pip cache), the dry runs ~20 s
CONTROL_PODS = ("pipelines.argo.exit_handler", "pipelines.argo.memo_key")


def _cpu_pods_third_party_imports() -> set[str]:
    config = load_config(EXAMPLE_CONFIG)
    cpu_nodes = [node for node in build_pipeline().nodes if node.image == "cpu"]
    return third_party_imports(*CONTROL_PODS).union(*(node_imports(node, config) for node in cpu_nodes))


@pytest.mark.timeout(MAKE_TIMEOUT_S + 300)
def test_images_check_builds_the_cpu_environment_and_resolves_every_lock(tmp_path):
    root = tmp_path / "cpu-image"
    try:
        _check_and_import(root, tmp_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 1.1 GB; pytest would keep it with the run's tmp_path


def _check_and_import(root: Path, tmp_path: Path) -> None:
    make = ["make", "--no-print-directory", "images-check", f"VENV={sys.prefix}", f"IMAGES_CHECK_ROOT={root}"]
    done = subprocess.run(make, cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                          timeout=MAKE_TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    assert "eurolora-cpu ok" in done.stdout  # the image's CMD
    for entry in ("steps.ingest:run", "steps.check_dataset:run", "steps.promote:run", "steps.canary:run",
                  "pipelines.argo.memo_key", "pipelines.argo.exit_handler:record"):
        assert f"images-check: {entry} imports" in done.stdout
    for family in IMAGE_FAMILIES:
        assert re.search(rf"images-check {family}: \d+ locked packages resolve together", done.stdout)

    modules = sorted(_cpu_pods_third_party_imports())
    assert {"mlflow", "pyarrow", "boto3", "hera"} <= set(modules)
    python = root / "opt" / "eurolora" / "bin" / "python"
    code = ("import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
            "print('imported', *sys.argv[1:])")
    imported = subprocess.run([str(python), "-I", "-c", code, *modules], cwd=tmp_path, capture_output=True,
                              text=True, check=False, timeout=300)
    assert imported.returncode == 0, imported.stderr[-4000:]
    assert imported.stdout.split() == ["imported", *modules]
