"""Restore a registered adapter from its locked backup (`eurolora restore`).

The index and the files are read by their recorded VersionIds, so a newer object put on the same key
(tampering, an accidental overwrite) or a delete marker does not matter: the locked version is what
comes back, and it is checked against the digests before it is republished as a new registry version.
"""

import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from steps.common.backup_records import BackupRecord, backup_ref
from steps.common.backup_store import MISSING_CODES, BackupStore
from steps.common.promotion_lock import PromotionLock
from steps.common.storage import (
    ArtifactNotFound,
    ArtifactStore,
    CorruptArtifact,
    join_uri,
)
from steps.common.tags import (
    ADAPTER_DIGEST_TAG,
    ADAPTER_URI_TAG,
    BACKUP_ERROR_TAG,
    BACKUP_TAG,
    BACKUP_URI_TAG,
    DECISION_TAG,
    PREFIX,
    REASON_TAG,
    RESTORED_FROM_TAG,
    RESTORED_TO_TAG,
    STEP_TAG,
)

log = logging.getLogger(__name__)


class RestoreError(RuntimeError):
    """A restore could not be done; the message says why and what to check."""


class RestoreResult(BaseModel):
    outcome: Literal["intact", "restored"]
    version: str  # the version that was checked
    adapter_uri: str
    digest: str
    problem: str = ""  # why the artifact was not intact
    new_version: str = ""
    new_adapter_uri: str = ""
    backup_uri: str = ""
    moved_aliases: list[str] = Field(default_factory=list)
    skipped_aliases: dict[str, str] = Field(default_factory=dict)  # alias -> why it was not moved


def artifact_problem(store: ArtifactStore, uri: str, expected_digest: str, scratch: Path) -> str | None:
    """None if the artifact at `uri` is published, complete and matches `expected_digest`; else why not."""
    from botocore.exceptions import ClientError
    from pydantic import ValidationError

    try:
        manifest = store.read_manifest(uri)
        if expected_digest and manifest.digest != expected_digest:
            return (f"its manifest describes digest {manifest.digest}, not the registered "
                    f"{expected_digest} (replaced)")
        # A fresh cache: materialize would trust an earlier verified download with the same digest.
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="restore-check-", dir=scratch) as tmp:
            store.materialize(uri, Path(tmp))
    except (ArtifactNotFound, CorruptArtifact) as exc:
        return str(exc)
    except ClientError as exc:  # a file listed in the manifest is gone from S3
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            return f"{uri}: a file listed in its manifest is missing ({exc})"
        raise
    except ValidationError as exc:  # an unreadable manifest
        return f"{uri}: unreadable manifest ({exc})"
    return None


def restore_version(*, registry: Any, store: ArtifactStore, backup: BackupStore, version: str,
                    experiment: str, lock: Any, scratch: Path) -> RestoreResult:
    """Check version `version`'s adapter; if missing or corrupt, restore it from its locked backup.

    The restored copy is republished at `<artifact_root>/restored/<model>/v<version>`, verified, logged
    to a new MLflow run and registered as a NEW model version (lineage and backup tags copied,
    `eurolora.restored_from=v<version>`). Every alias that pointed at `version` when we started and
    still does under the registry's promotion lock is moved to the new version; an alias that moved
    meanwhile is left alone and reported in `skipped_aliases`.
    """

    info = registry.get_version(version)
    aliases_before = sorted(a for a, v in registry.aliases().items() if v == info.version)
    adapter_uri = info.tags.get(ADAPTER_URI_TAG, "")
    digest = info.tags.get(ADAPTER_DIGEST_TAG, "")
    if not adapter_uri:
        raise RestoreError(f"version {info.version} has no {ADAPTER_URI_TAG} tag: it was not registered by "
                           "promote, so there is nothing to check or restore")
    scratch.mkdir(parents=True, exist_ok=True)
    problem = artifact_problem(store, adapter_uri, digest, scratch)
    if problem is None:
        return RestoreResult(outcome="intact", version=info.version, adapter_uri=adapter_uri, digest=digest)
    log.info("restore: version %s adapter %s is not intact: %s", info.version, adapter_uri, problem)

    ref = backup_ref(info.tags)
    if ref is None:
        state = info.tags.get(BACKUP_TAG, "absent")
        raise RestoreError(f"version {info.version}'s adapter {adapter_uri} is not intact ({problem}) and "
                           f"the version records no usable backup ({BACKUP_TAG}={state}"
                           f"{': ' + info.tags[BACKUP_ERROR_TAG] if BACKUP_ERROR_TAG in info.tags else ''})")
    record = backup.read_record(ref)
    if digest and record.digest != digest:
        raise RestoreError(f"the backup {record.uri} holds digest {record.digest}, but version "
                           f"{info.version} registered {digest}: refusing to restore a different adapter")
    target = join_uri(store.settings.artifact_root, "restored", registry.model_name.replace("/", "_"),
                      f"v{info.version}")
    with tempfile.TemporaryDirectory(prefix="restore-", dir=scratch) as tmp_name:
        tmp = Path(tmp_name)
        backup.restore_to(record, tmp / "adapter")
        published = store.publish_dir(tmp / "adapter", target)
        if published.digest != record.digest:
            raise RestoreError(f"republished {target} has digest {published.digest}, expected "
                               f"{record.digest}")
        check = artifact_problem(store, target, record.digest, tmp)
        if check is not None:
            raise RestoreError(f"the republished adapter {target} does not verify: {check}")
        run_id = _start_restore_run(registry, experiment, info.version, record)
        source = registry.log_adapter(run_id, tmp / "adapter")
        registry.call("set_terminated", lambda c: c.set_terminated(run_id))
    # Lineage and backup tags carry over: the new version holds the same bytes, so the locked backup
    # of `version` is its backup too (no second locked copy).
    tags = {k: v for k, v in info.tags.items() if k.startswith(PREFIX) and k != RESTORED_TO_TAG}
    tags.update({ADAPTER_URI_TAG: target, RESTORED_FROM_TAG: f"v{info.version}",
                 DECISION_TAG: "restored",
                 REASON_TAG: (f"restored from the locked backup {record.uri} of version "
                                     f"{info.version}: {problem}")[:4000]})
    new = registry.create_version(source, run_id, tags)
    registry.tag_version(info.version, {RESTORED_TO_TAG: f"v{new.version}"})
    result = RestoreResult(outcome="restored", version=info.version, adapter_uri=adapter_uri,
                           digest=record.digest, problem=problem, new_version=new.version,
                           new_adapter_uri=target, backup_uri=record.uri)
    if aliases_before:
        promotion = PromotionLock(registry)
        with promotion.lock(lock, purpose="restore") as held:
            current = registry.aliases()
            for alias in aliases_before:
                now = current.get(alias)
                if now != info.version:
                    result.skipped_aliases[alias] = (f"moved to version {now} during the restore" if now
                                                     else "deleted during the restore")
                    continue
                promotion.confirm(held)
                registry.set_alias(alias, new.version)
                result.moved_aliases.append(alias)
    return result


def _start_restore_run(registry: Any, experiment: str, version: str, record: BackupRecord) -> str:
    """An MLflow run to log the restored adapter to (the new version's source points there)."""
    from mlflow.exceptions import MlflowException

    try:
        found = registry.call("get_experiment_by_name", lambda c: c.get_experiment_by_name(experiment))
        if found is not None:
            experiment_id = found.experiment_id
        else:
            try:
                experiment_id = registry.call("create_experiment", lambda c: c.create_experiment(experiment))
            except MlflowException:  # created concurrently
                experiment_id = registry.call("get_experiment_by_name",
                                              lambda c: c.get_experiment_by_name(experiment)).experiment_id
        run = registry.call("create_run", lambda c: c.create_run(
            experiment_id, run_name=f"restore-v{version}-{uuid.uuid4().hex[:6]}",
            tags={STEP_TAG: "restore", RESTORED_FROM_TAG: f"v{version}", BACKUP_URI_TAG: record.uri}))
    except MlflowException as exc:
        raise RestoreError(f"MLflow refused creating the restore run in experiment {experiment!r}: "
                           f"{exc}") from exc
    return str(run.info.run_id)
