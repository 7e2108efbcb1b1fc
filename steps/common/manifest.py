"""An artifact's manifest: the sha256 and size of every file, written last when the artifact is published."""

import hashlib
import json
import time
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, field_validator

MANIFEST_NAME = "MANIFEST.json"
_CHUNK = 1024 * 1024


class Manifest(BaseModel):
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256": ..., "size": ...}
    created_at: float

    @field_validator("files")
    @classmethod
    def _paths_stay_inside(cls, files: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # Readers write and read `<folder>/<name>` for every name listed: a stored manifest is input like any
        # other, and a name such as `../x` or `/etc/x` would reach outside the folder.
        for name in files:
            parts = PurePosixPath(name).parts
            if (not parts or name.startswith("/") or "\\" in name or ".." in parts or "." in parts
                    or name != str(PurePosixPath(name))):
                raise ValueError(f"file name {name!r} is outside the artifact's folder")
        return files

    @property
    def digest(self) -> str:
        """Content digest of the whole artifact (independent of where it is stored)."""
        canonical = json.dumps({k: v["sha256"] for k, v in sorted(self.files.items())}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(local_dir: Path) -> Manifest:
    files = {
        str(path.relative_to(local_dir)): {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in sorted(local_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    return Manifest(files=files, created_at=time.time())
