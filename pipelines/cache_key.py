"""A step's cache key and code version: the one definition both backends use.

The local runner keys its step cache on `cache_key`; Argo's memo pod (pipelines/argo/memo_key.py)
computes the same key before a memoized step runs, and the compiler records `step_code_version` on each
template. The code version hashes the step's package plus every module inside steps/ that it imports,
found by following its import statements (transitively), so a change to anything the step runs (a
grading rule in steps/common, say) invalidates its cache. Artifact URIs in the inputs are replaced by
their manifest digests, so a step whose upstream re-ran with identical results is still a cache hit; the
run id never enters the key. Model sources (`embedded`, a local folder) are names, not content: their
content digests enter the key beside them.
"""

import ast
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import steps
from steps.common.storage import ArtifactNotFound, ArtifactStore

_STEPS_ROOT = Path(steps.__file__).parent
URI_PREFIXES = ("file://", "s3://")


def _module_file(module: str, root: Path) -> Path | None:
    """The source of `module` (dotted) under `root`'s parent: a module file or a package's __init__.py."""
    base = root.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, root: Path) -> set[str]:
    """Dotted names inside `root`'s package that `path` imports, anywhere in it (functions included)."""
    package = root.name
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from steps.common import tags` imports the module steps.common.tags
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == package or name.startswith(package + ".")}


def _with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def step_sources(module: str, root: Path = _STEPS_ROOT) -> list[Path]:
    """Every source file the step `module` (a package under `root`) can run, sorted."""
    package_dir = root.parent.joinpath(*module.split("."))
    pending = sorted(package_dir.rglob("*.py"))
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path, root):
            for parent in _with_parents(name):
                found = _module_file(parent, root)
                if found is not None and found not in seen:
                    pending.append(found)
    return sorted(seen)


def _hash_files(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def step_code_version(module: str, root: Path = _STEPS_ROOT) -> str:
    """Hash of the step's package plus every module inside steps/ it imports."""
    return _hash_files(step_sources(module, root), root)


def pipeline_code_version(root: Path = _STEPS_ROOT) -> str:
    """Hash of every step (recorded as lineage on registered adapters)."""
    return _hash_files(sorted(root.rglob("*.py")), root)


def _content_identity(value: Any, store: ArtifactStore) -> Any:
    """Replace artifact URIs by what they contain (a manifest digest, or a raw tree digest)."""
    if not (isinstance(value, str) and value.startswith(URI_PREFIXES)):
        return value
    try:
        return {"artifact": store.read_manifest(value).digest}
    except ArtifactNotFound:
        return {"tree": store.tree_digest(value)}


def cache_key(step: str, code_version: str, inputs: dict[str, Any], store: ArtifactStore,
              model_digests: Mapping[str, str] | None = None) -> str:
    """`model_digests`: the content digest of each model source the step loads (steps.common.models). The
    local runner passes them; Argo's memo pod has none to pass, its models being s3:// URIs, which are
    keyed on their manifest digest like any artifact input."""
    identity = {name: _content_identity(value, store) for name, value in inputs.items()}
    context = identity.get("context")
    if isinstance(context, dict):  # the run id and scratch space do not change what a step computes
        identity["context"] = {k: v for k, v in context.items() if k not in ("run_id", "scratch_dir")}
    canonical = json.dumps({"step": step, "code": code_version, "inputs": identity, "models": dict(model_digests or {})},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
