"""The records of a locked backup: where backups go (settings), the `BACKUP.json` index, and the registry
tags that point at it. Written by steps/common/backup_store.py, read back by the restore."""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator

from steps.common.storage import S3Settings, join_uri
from steps.common.tags import (
    BACKUP_DIGEST_TAG,
    BACKUP_INDEX_VERSION_TAG,
    BACKUP_MODE_TAG,
    BACKUP_RETAIN_UNTIL_TAG,
    BACKUP_TAG,
    BACKUP_URI_TAG,
)

INDEX_NAME = "BACKUP.json"


class BackupError(RuntimeError):
    """A backup could not be written, verified or read back (not worth retrying as is)."""


class BackupSettings(BaseModel):
    """Where promoted adapters are backed up (promote.backup). Off by default: Object Lock needs S3."""

    model_config = {"extra": "forbid"}
    enabled: bool = False
    # s3://bucket/prefix in a bucket created with Object Lock enabled (versioning is implied).
    uri: str = ""
    retention_days: int = Field(365, ge=1, le=36500)
    # COMPLIANCE: nobody, not even the root account, can delete a version before retain-until.
    # GOVERNANCE: principals with s3:BypassGovernanceRetention can (use only if you need that escape).
    mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    # The backup bucket's endpoint/region/credentials; None: the same as storage.s3.
    s3: S3Settings | None = None

    @model_validator(mode="after")
    def _needs_s3_when_enabled(self) -> "BackupSettings":
        if self.enabled:
            parts = urlsplit(self.uri)
            if parts.scheme != "s3" or not parts.netloc:
                raise ValueError(f"backup.uri must be s3://bucket/prefix when backup.enabled is true "
                                 f"(got {self.uri!r}): Object Lock needs S3; set backup.enabled=false for "
                                 "a local file:// setup")
        return self


class BackupFile(BaseModel):
    sha256: str
    size: int
    version_id: str


class BackupRecord(BaseModel):
    """The `BACKUP.json` index written (locked) last in a backup."""

    format: int = 1
    uri: str  # s3://bucket/prefix/<model>/v<version>
    model_name: str
    model_version: str
    source_uri: str  # the artifact that was backed up
    digest: str  # Manifest.digest of the adapter
    mode: str
    retain_until: str  # ISO 8601, UTC
    created_at: str
    manifest_version_id: str
    manifest_sha256: str
    files: dict[str, BackupFile]
    # The index's own VersionId (known only after its PUT; kept in the registry, not in the JSON).
    index_version_id: str = Field("", exclude=True)

    def tags(self) -> dict[str, str]:
        """The registry version tags that point at this backup."""
        return {BACKUP_TAG: "ok", BACKUP_URI_TAG: self.uri, BACKUP_INDEX_VERSION_TAG: self.index_version_id,
                BACKUP_DIGEST_TAG: self.digest, BACKUP_MODE_TAG: self.mode,
                BACKUP_RETAIN_UNTIL_TAG: self.retain_until}


class BackupRef(BaseModel):
    """Where a version's backup is, as recorded in its registry tags."""

    uri: str
    index_version_id: str
    digest: str = ""


def backup_ref(tags: dict[str, str]) -> BackupRef | None:
    """The backup a version's tags record, or None (no backup, or the last attempt failed)."""
    if tags.get(BACKUP_TAG) != "ok" or not tags.get(BACKUP_URI_TAG) or not tags.get(BACKUP_INDEX_VERSION_TAG):
        return None
    return BackupRef(uri=tags[BACKUP_URI_TAG], index_version_id=tags[BACKUP_INDEX_VERSION_TAG],
                     digest=tags.get(BACKUP_DIGEST_TAG, ""))


def backup_location(settings: BackupSettings, model_name: str, version: str) -> str:
    return join_uri(settings.uri, model_name.replace("/", "_"), f"v{version}")
