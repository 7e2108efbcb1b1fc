"""Headless Chromium from Debian's packages, as the tests drive it: no network of its own, a fresh profile."""

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get update && apt-get install -y chromium"


def chromium(tmp_path: Path, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    """Run Chromium headless with `args` (e.g. --dump-dom URL); its profile is removed afterwards."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; install it with: {INSTALL}")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout_s,
                              check=True)
    finally:
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
