"""Step cache: keyed on (step, code version, input values, digests of input artifacts and models).

Artifact URIs in the inputs are replaced by their manifest digests, so a step whose upstream re-ran
with identical results is still a cache hit; the run id never enters the key. Model sources
(`embedded`, a local folder) are names, not content: their content digests enter the key beside them.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.local.records import write_json_atomic
from steps.common.storage import ArtifactNotFound, ArtifactStore, StorageError

_URI_PREFIXES = ("file://", "s3://")


def _content_identity(value: Any, store: ArtifactStore) -> Any:
    """Replace artifact URIs by what they contain (a manifest digest, or a raw tree digest)."""
    if not (isinstance(value, str) and value.startswith(_URI_PREFIXES)):
        return value
    try:
        return {"artifact": store.read_manifest(value).digest}
    except ArtifactNotFound:
        return {"tree": store.tree_digest(value)}


def cache_key(step: str, code_version: str, inputs: dict[str, Any], store: ArtifactStore,
              model_digests: Mapping[str, str] | None = None) -> str:
    """`model_digests`: the content digest of each model source the step loads (steps.common.models). The
    local runner passes them; Argo's memo pod (pipelines/argo/memo_key.py) has none to pass, its models
    being s3:// URIs, which are keyed on their manifest digest like any artifact input."""
    identity = {name: _content_identity(value, store) for name, value in inputs.items()}
    context = identity.get("context")
    if isinstance(context, dict):  # the run id and scratch space do not change what a step computes
        identity["context"] = {k: v for k, v in context.items() if k not in ("run_id", "scratch_dir")}
    canonical = json.dumps({"step": step, "code": code_version, "inputs": identity, "models": dict(model_digests or {})},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheHit:
    outputs: dict[str, Any]
    run_id: str  # the run that produced the outputs
    log: str  # that run's log of the step


class StepCache:
    def __init__(self, root: Path, store: ArtifactStore) -> None:
        self.root = root
        self.store = store

    def _path(self, step: str, key: str) -> Path:
        return self.root / f"{step}-{key}.json"

    def lookup(self, step: str, key: str) -> CacheHit | None:
        """The cached outputs, if every output artifact still exists."""
        path = self._path(step, key)
        if not path.is_file():
            return None
        entry = json.loads(path.read_text())
        if "log" not in entry:  # written before entries named their log: refreshed by this run
            return None
        for value in entry["outputs"].values():
            if isinstance(value, str) and value.startswith(_URI_PREFIXES):
                try:
                    self.store.read_manifest(value)
                except StorageError:
                    return None
        return CacheHit(entry["outputs"], entry["run_id"], entry["log"])

    def save(self, step: str, key: str, outputs: dict[str, Any], run_id: str, log: str) -> None:
        write_json_atomic(self._path(step, key), {"outputs": outputs, "run_id": run_id, "log": log})
