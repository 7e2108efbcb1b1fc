"""The retention policy on one machine: delete what a file:// artifact root and the runs folder keep too long.

Artifacts: `<root>/runs/<run id>/<step>/<name>/`, aged by their manifest's `created_at` (the publish time),
classed by step (`steps.common.retention`). Logs: `<runs dir>/<run id>/`, aged by the newest file in it.
What is outside `<root>/runs/` (promoted adapters under `models/`, restored adapters) is never touched."""

import json
import shutil
import time
from pathlib import Path

from steps.common.manifest import MANIFEST_NAME
from steps.common.retention import RUNS_PREFIX, RetentionSettings, retention_class

_DAY_S = 86400.0


def collect_garbage(artifact_root: Path | None, runs_dir: Path, settings: RetentionSettings, *,
                    older_than_days: float | None = None, dry_run: bool = False,
                    now: float | None = None) -> list[tuple[Path, str, float]]:
    """Delete (or with `dry_run` only list) what is older than its class allows: (path, class, age in days)."""
    now = time.time() if now is None else now
    expired = []
    for path, cls, created in [*_artifacts(artifact_root), *_run_logs(runs_dir)]:
        age_days = (now - created) / _DAY_S
        limit = settings.days(cls) if older_than_days is None else older_than_days
        if age_days >= limit:
            expired.append((path, cls, age_days))
    if not dry_run:
        for path, _, _ in expired:
            shutil.rmtree(path, ignore_errors=True)
        if artifact_root is not None:
            _remove_empty_run_folders(artifact_root / RUNS_PREFIX)
    return expired


def _artifacts(root: Path | None) -> list[tuple[Path, str, float]]:
    if root is None or not (root / RUNS_PREFIX).is_dir():
        return []
    found = []
    for artifact in sorted((root / RUNS_PREFIX).glob("*/*/*")):
        cls = retention_class(artifact.relative_to(root).as_posix())
        if artifact.is_dir() and cls is not None:
            found.append((artifact, cls, _created_at(artifact)))
    return found


def _created_at(artifact: Path) -> float:
    try:
        return float(json.loads((artifact / MANIFEST_NAME).read_text())["created_at"])
    except (OSError, ValueError, KeyError):  # unpublished (a killed step's leftovers): its files' age
        return max((p.stat().st_mtime for p in artifact.rglob("*")), default=artifact.stat().st_mtime)


def _run_logs(runs_dir: Path) -> list[tuple[Path, str, float]]:
    if not runs_dir.is_dir():
        return []
    found = []
    for run in sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / "steps").is_dir()):
        newest = max((p.stat().st_mtime for p in run.rglob("*") if p.is_file()), default=run.stat().st_mtime)
        found.append((run, "logs", newest))
    return found


def _remove_empty_run_folders(runs: Path) -> None:
    for folder in sorted(runs.glob("*/*"), reverse=True) + sorted(runs.glob("*")):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
