"""promote's backup: a verified locked backup of a version before the champion alias moves to it.

See steps/common/backup_store.py for how a backup is written and verified in S3.
"""

import logging
from pathlib import Path
from typing import Any

from steps.common.backup_records import BackupError, BackupRecord, BackupSettings, backup_location, backup_ref
from steps.common.backup_store import BackupStore
from steps.common.residency import ResidencyPolicy
from steps.common.storage import Manifest, StorageSettings
from steps.common.tags import ADAPTER_DIGEST_TAG

log = logging.getLogger(__name__)


def ensure_backup(registry: Any, version: Any, *, settings: BackupSettings, storage: StorageSettings,
                  residency: ResidencyPolicy, adapter_uri: str, adapter_dir: Path,
                  manifest_bytes: bytes) -> BackupRecord:
    """A verified locked backup of `version` (a registry ModelVersionInfo) recorded in its tags.

    Idempotent: a backup the version's tags already record (a retried step) is re-checked (every
    version present and locked) and reused; otherwise a new one is written, deep-verified and tagged.
    """
    store = BackupStore.from_settings(settings, storage, residency)
    digest = Manifest.model_validate_json(manifest_bytes).digest
    registered = version.tags.get(ADAPTER_DIGEST_TAG, "")
    if registered and registered != digest:
        raise BackupError(f"backup: {adapter_uri} now has digest {digest}, but version {version.version} "
                          f"registered {registered}: the artifact changed under the promotion")
    ref = backup_ref(version.tags)
    if ref is not None:
        try:
            record = store.read_record(ref)
            if record.digest == digest:
                store.verify(record, deep=False)
                log.info("backup: reusing the backup of version %s at %s", version.version, record.uri)
                return record
        except BackupError as exc:
            log.warning("backup: the recorded backup of version %s is unusable (%s); writing a new one",
                        version.version, exc)
    record = store.backup(adapter_dir, manifest_bytes,
                          uri=backup_location(settings, registry.model_name, version.version),
                          model_name=registry.model_name, model_version=version.version,
                          source_uri=adapter_uri)
    store.verify(record, deep=True)
    registry.tag_version(version.version, record.tags())
    return record
