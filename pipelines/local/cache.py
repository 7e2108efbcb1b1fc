"""The local runner's step cache: step outputs stored under the key pipelines/cache_key.py computes."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.cache_key import URI_PREFIXES
from pipelines.local.records import write_json_atomic
from steps.common.storage import ArtifactStore, StorageError


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
            if isinstance(value, str) and value.startswith(URI_PREFIXES):
                try:
                    self.store.read_manifest(value)
                except StorageError:
                    return None
        return CacheHit(entry["outputs"], entry["run_id"], entry["log"])

    def save(self, step: str, key: str, outputs: dict[str, Any], run_id: str, log: str) -> None:
        write_json_atomic(self._path(step, key), {"outputs": outputs, "run_id": run_id, "log": log})
