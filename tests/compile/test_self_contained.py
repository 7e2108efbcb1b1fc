"""A clone is self-contained: nothing in the tests, the Makefile or the code reads a path outside the
repository (the Argo schemas once came from a folder beside the checkout, which only the development
machines have; they are in tests/data/argo now).

Proved by running the compile tests that read the Argo schemas and the golden files from a copy of the
repository's files (what `git ls-files` lists, plus new files not yet committed) in an otherwise empty
folder, with the shared interpreter: a relative read beside the repository finds nothing there and fails,
and an audit hook in every Python process of that run (tests/support/path_audit) records any file opened
or listed outside the copy, the Python installation, the system folders and the temporary folder, so an
absolute path to the original checkout or its neighbours fails the test even when the read succeeds.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from tests.compile.conftest import REPO_ROOT

# Compile tests that read tests/data/argo (the CRDs and JSON schema; the swagger lies beside them) and
# manifests/ (the golden files). test_submit reads the swagger too but runs ~30 CLI processes: left out.
SUBSET = ["tests/compile/test_schemas.py", "tests/compile/test_golden.py"]
SYSTEM_ROOTS = ["/usr", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev", "/run", "/bin", "/sbin"]
# Text that points outside the repository: the development machines' folder beside the checkout (named by a
# pattern, so this file does not itself mention a path outside), or this checkout's own parent folder written
# out (an absolute path that only exists where the repository was cloned).
OUTSIDE_MARKERS = (re.compile(r"\.\.[/\\]shared\b"), re.compile(re.escape(f"{REPO_ROOT.parent}/")))


def _repository_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True, timeout=60).stdout
    return [name for name in listed.decode().split("\0") if name and (REPO_ROOT / name).is_file()]


def _copy(files: list[str], target: Path) -> None:
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target / name, follow_symlinks=False)


def test_no_file_of_the_repository_points_outside_it():
    found = []
    for name in _repository_files():
        try:
            text = (REPO_ROOT / name).read_text()
        except UnicodeDecodeError:
            continue  # binary test data (PDFs, images)
        if name == "tests/compile/test_self_contained.py":
            continue  # this file names the markers
        found += [f"{name}: {marker.pattern}" for marker in OUTSIDE_MARKERS if marker.search(text)]
    assert found == []


def test_compile_tests_pass_from_a_copy_with_nothing_beside_it(tmp_path):
    copy = tmp_path / "clone" / "eurolora"  # its parent holds nothing else
    _copy(_repository_files(), copy)
    audit = tmp_path / "paths.jsonl"
    allowed = [str(copy), sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"], tempfile.gettempdir(),
               *SYSTEM_ROOTS]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(copy / "tests" / "support" / "path_audit"), str(copy)]),
           "EUROLORA_TEST_PATH_AUDIT": str(audit), "EUROLORA_TEST_ALLOWED_ROOTS": json.dumps(allowed),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SUBSET],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-1000:]
    outside = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
    assert outside == [], {record["real"] for record in outside}


def test_the_audit_hook_records_a_read_outside(tmp_path):
    """The control: the same environment records a read of the original checkout (this file)."""
    audit = tmp_path / "paths.jsonl"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONPATH": str(REPO_ROOT / "tests" / "support" / "path_audit"),
           "EUROLORA_TEST_PATH_AUDIT": str(audit), "EUROLORA_TEST_ALLOWED_ROOTS": json.dumps([str(tmp_path)])}
    code = f"open({str(Path(__file__))!r}).read()\ntry:\n    open('../sibling/missing.json')\nexcept OSError:\n    pass"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=60)
    read = {Path(json.loads(line)["real"]) for line in audit.read_text().splitlines()}
    assert Path(__file__).resolve() in read and (tmp_path.parent / "sibling" / "missing.json") in read
