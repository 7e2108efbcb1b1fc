"""The Makefile's torch-cpu target: the local wheel folder first (asking no host), PyTorch's CPU index only
when pip finds no such wheel; run with a recording stand-in for pip, so no package is installed."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _torch_cpu(tmp_path: Path, wheel_is_local: bool) -> list[list[str]]:
    calls = tmp_path / "calls"
    pip = tmp_path / "pip"
    fail = "" if wheel_is_local else 'case "$*" in *--no-index*) exit 1;; esac'
    pip.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n{fail}\nexit 0\n')
    pip.chmod(0o755)
    subprocess.run(["make", "-s", "-C", str(REPO), "torch-cpu", f"PIP={pip}"], check=True, capture_output=True,
                   timeout=60)
    return [line.split() for line in calls.read_text().splitlines()]


@pytest.mark.parametrize("wheel_is_local", [True, False])
def test_torch_cpu_comes_from_the_local_folder_else_from_pytorchs_cpu_index(tmp_path: Path,
                                                                            wheel_is_local: bool) -> None:
    calls = _torch_cpu(tmp_path, wheel_is_local)
    assert calls[0] == ["install", "--no-index", "--no-deps", "torch==2.13.0+cpu"]
    index = ["install", "--no-deps", "--index-url", "https://download.pytorch.org/whl/cpu", "torch==2.13.0+cpu"]
    assert calls[1:] == ([] if wheel_is_local else [index]) + [["install", "torch==2.13.0+cpu"]]
