"""Code versions: a content hash of the sources a step runs, so a code change invalidates its cache."""

import hashlib
from pathlib import Path

import steps

_STEPS_ROOT = Path(steps.__file__).parent


def _hash_tree(digest: "hashlib._Hash", root: Path) -> None:
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(_STEPS_ROOT.parent)).encode() + b"\0" + path.read_bytes())


def step_code_version(module: str) -> str:
    """Hash of the step's package plus the shared plumbing it stands on."""
    digest = hashlib.sha256()
    package = _STEPS_ROOT.parent.joinpath(*module.split("."))
    _hash_tree(digest, package)
    _hash_tree(digest, _STEPS_ROOT / "common")
    return digest.hexdigest()[:16]


def pipeline_code_version() -> str:
    """Hash of every step (recorded as lineage on registered adapters)."""
    digest = hashlib.sha256()
    _hash_tree(digest, _STEPS_ROOT)
    return digest.hexdigest()[:16]
