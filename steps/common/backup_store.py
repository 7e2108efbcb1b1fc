"""The S3 side of locked backups of promoted adapters (S3 versioning + Object Lock): write, verify, read.

Backup (called by promote BEFORE the champion alias moves, so no champion exists without one):
every file of the adapter artifact, its original MANIFEST.json and, last, a `BACKUP.json` index are
PUT to `<backup.uri>/<model name>/v<version>/` in a bucket that has Object Lock enabled, each with
`ObjectLockMode` (COMPLIANCE by default) and `ObjectLockRetainUntilDate = now + retention_days`, and
an `x-amz-checksum-sha256` equal to the manifest's digest (S3 rejects a body that does not match it;
a locked PUT needs a Content-MD5 or checksum anyway). The index records the S3 VersionId of every
object; the index's own VersionId and the backup location are tags on the registry version. The
backup is then verified by reading every recorded version back and re-hashing it against the
manifest, and by checking the lock mode and retain-until date S3 reports for it.

Before any write the bucket is checked: its location must be allowed by the residency policy, and it
must have versioning and Object Lock enabled (`get_object_lock_configuration`); otherwise the backup is
refused with a message that says how to fix the bucket.

Restore reads the index and the files by their recorded VersionIds, so a newer object put on the same
key (tampering, an accidental overwrite) or a delete marker does not matter: the locked version is what
comes back, and it is checked against the digests before it is republished.

Errors: an S3 endpoint that cannot be reached (after botocore's bounded retries) or that keeps
answering 5xx raises `TransientError` (the step is retried); anything S3 refuses raises `BackupError`
naming the call, the bucket and what to do. boto3 is imported lazily; the client comes from
`ArtifactStore` (the same timeouts, retries and residency checks as every other S3 call).
"""

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from steps.common.backup_records import (
    INDEX_NAME,
    BackupError,
    BackupFile,
    BackupRecord,
    BackupRef,
    BackupSettings,
)
from steps.common.errors import TransientError
from steps.common.residency import ResidencyPolicy
from steps.common.storage import (
    MANIFEST_NAME,
    ArtifactStore,
    Manifest,
    S3Settings,
    StorageSettings,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_SINGLE_PUT = 5 * 1024 ** 3  # S3's limit for one PUT; LoRA adapters are far below it
_CHUNK = 1024 * 1024
# S3 error codes worth retrying once botocore's own retries are spent.
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404"}


def bucket_region(location_constraint: str | None) -> str:
    """S3's GetBucketLocation answer as a region name (empty = us-east-1, legacy "EU" = eu-west-1)."""
    if not location_constraint:
        return "us-east-1"
    return "eu-west-1" if location_constraint == "EU" else location_constraint


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class BackupStore:
    """Writes, verifies and reads locked backups in one S3 endpoint (several buckets are fine)."""

    def __init__(self, s3: S3Settings, residency: ResidencyPolicy, *,
                 mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE", retention_days: int = 365) -> None:
        self.s3 = s3
        self.residency = residency
        self.mode = mode
        self.retention_days = retention_days
        # The client comes from ArtifactStore: same timeouts, retries and residency checks (region and
        # endpoint are checked when it is created). The artifact root is only a placeholder here.
        self._store = ArtifactStore(StorageSettings(artifact_root="s3://backup", s3=s3), residency)
        self._checked_buckets: set[str] = set()
        self._regions: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: BackupSettings, storage: StorageSettings,
                      residency: ResidencyPolicy) -> "BackupStore":
        return cls(settings.s3 or storage.s3, residency, mode=settings.mode,
                   retention_days=settings.retention_days)

    # ---- plumbing -------------------------------------------------------------------------------
    def _client(self) -> Any:
        return self._store.s3_client()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """One bounded S3 call: outages become TransientError, refusals BackupError naming `what`."""
        from botocore.exceptions import ClientError, ReadTimeoutError, ResponseStreamingError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        endpoint = self.s3.endpoint_url or f"S3 ({self.s3.region})"
        try:
            return fn(self._client())
        except (BotoConnectionError, ReadTimeoutError, ResponseStreamingError) as exc:
            raise TransientError(f"backup: {endpoint} unreachable during {what} after "
                                 f"{self.s3.max_attempts} attempts: {type(exc).__name__}") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _TRANSIENT_CODES or status >= 500:
                raise TransientError(f"backup: {endpoint} failed {what} after {self.s3.max_attempts} "
                                     f"attempts: {code} {error.get('Message', '')}") from exc
            raise BackupError(f"backup: S3 refused {what}: {code or status}: "
                              f"{error.get('Message', '')}") from exc

    @staticmethod
    def _code(exc: BaseException) -> str:
        cause = exc.__cause__
        response = getattr(cause, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    # ---- bucket checks --------------------------------------------------------------------------
    def check_region(self, bucket: str) -> str:
        """The bucket's region, refused unless the residency policy allows it."""
        if bucket not in self._regions:
            response = self._call(f"GetBucketLocation on {bucket!r}",
                                  lambda c: c.get_bucket_location(Bucket=bucket))
            region = bucket_region(response.get("LocationConstraint"))
            self.residency.check_region(region, f"backup bucket {bucket!r} location")
            self._regions[bucket] = region
        return self._regions[bucket]

    def check_bucket(self, bucket: str) -> None:
        """Refuse a bucket outside the residency policy, or one without versioning and Object Lock."""
        if bucket in self._checked_buckets:
            return
        self.check_region(bucket)
        versioning = self._call(f"GetBucketVersioning on {bucket!r}",
                                lambda c: c.get_bucket_versioning(Bucket=bucket))
        try:
            lock = self._call(f"GetObjectLockConfiguration on {bucket!r}",
                              lambda c: c.get_object_lock_configuration(Bucket=bucket))
        except BackupError as exc:
            if self._code(exc) != "ObjectLockConfigurationNotFoundError":
                raise
            lock = {}
        enabled = (lock.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") == "Enabled"
        if not enabled or versioning.get("Status") != "Enabled":
            raise BackupError(
                f"backup bucket {bucket!r} does not have Object Lock enabled (versioning: "
                f"{versioning.get('Status') or 'off'}): refusing to write a backup that could be deleted. "
                f"Create the bucket with Object Lock (aws s3api create-bucket --bucket {bucket} "
                "--object-lock-enabled-for-bucket ...), or enable it on a versioned bucket "
                f"(aws s3api put-object-lock-configuration --bucket {bucket} "
                "--object-lock-configuration ObjectLockEnabled=Enabled), or point promote.backup.uri "
                "at a bucket that has it")
        self._checked_buckets.add(bucket)

    # ---- backup -----------------------------------------------------------------------------------
    def _put_locked(self, bucket: str, key: str, body: Any, sha256_hex: str,
                    retain_until: dt.datetime) -> str:
        response = self._call(f"locked PutObject s3://{bucket}/{key}", lambda c: c.put_object(
            Bucket=bucket, Key=key, Body=body, ObjectLockMode=self.mode,
            ObjectLockRetainUntilDate=retain_until,
            # Object Lock PUTs need Content-MD5 or a checksum; SHA-256 also lets S3 check the body
            # against the manifest's digest before it stores anything.
            ChecksumAlgorithm="SHA256", ChecksumSHA256=_b64(sha256_hex)))
        version_id = response.get("VersionId")
        if not version_id or version_id == "null":
            raise BackupError(f"backup: s3://{bucket}/{key} was stored without a VersionId: the bucket "
                              "is not versioned, so the object is not locked")
        return str(version_id)

    def backup(self, adapter_dir: Path, manifest_bytes: bytes, *, uri: str, model_name: str,
               model_version: str, source_uri: str) -> BackupRecord:
        """Write `adapter_dir` (a verified local copy of an artifact) and its manifest as a locked backup."""
        manifest = Manifest.model_validate_json(manifest_bytes)
        bucket, prefix = _split(uri)
        self.check_bucket(bucket)
        for rel, meta in manifest.files.items():
            if int(meta["size"]) > _MAX_SINGLE_PUT:
                raise BackupError(f"backup: {rel} is {meta['size']} bytes, over S3's 5 GiB single-PUT limit")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        retain_until = now + dt.timedelta(days=self.retention_days)
        files: dict[str, BackupFile] = {}
        for rel, meta in manifest.files.items():
            with (adapter_dir / rel).open("rb") as body:
                version_id = self._put_locked(bucket, f"{prefix}/{rel}", body, meta["sha256"], retain_until)
            files[rel] = BackupFile(sha256=meta["sha256"], size=int(meta["size"]), version_id=version_id)
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        manifest_vid = self._put_locked(bucket, f"{prefix}/{MANIFEST_NAME}", manifest_bytes, manifest_sha,
                                        retain_until)
        record = BackupRecord(uri=uri, model_name=model_name, model_version=str(model_version),
                              source_uri=source_uri, digest=manifest.digest, mode=self.mode,
                              retain_until=retain_until.isoformat(), created_at=now.isoformat(),
                              manifest_version_id=manifest_vid, manifest_sha256=manifest_sha, files=files)
        index = record.model_dump_json(indent=1).encode()
        record.index_version_id = self._put_locked(bucket, f"{prefix}/{INDEX_NAME}", index,
                                                   hashlib.sha256(index).hexdigest(), retain_until)
        log.info("backup: %s v%s -> %s (%d files, %s until %s)", model_name, model_version, uri,
                 len(files), self.mode, record.retain_until)
        return record

    # ---- reading back -----------------------------------------------------------------------------
    def _objects(self, record: BackupRecord) -> Iterator[tuple[str, str, str]]:
        """(key, version id, sha256) of every object of a backup, the index excluded."""
        _, prefix = _split(record.uri)
        for rel, meta in record.files.items():
            yield f"{prefix}/{rel}", meta.version_id, meta.sha256
        yield f"{prefix}/{MANIFEST_NAME}", record.manifest_version_id, record.manifest_sha256

    def _get(self, bucket: str, key: str, version_id: str) -> dict[str, Any]:
        try:
            return self._call(f"GetObject s3://{bucket}/{key} version {version_id}",
                              lambda c: c.get_object(Bucket=bucket, Key=key, VersionId=version_id))
        except BackupError as exc:
            if self._code(exc) in MISSING_CODES:
                raise BackupError(f"backup: s3://{bucket}/{key} version {version_id} is gone (only possible "
                                  "without a lock, or after its retention ended)") from exc
            raise

    def _stream(self, bucket: str, key: str, version_id: str, sink: Any) -> tuple[str, dict[str, Any]]:
        """Copy one object version to `sink` (or nowhere) and return its sha256 and the response."""
        response = self._get(bucket, key, version_id)
        digest = hashlib.sha256()
        body = response["Body"]
        try:
            while block := self._call(f"reading s3://{bucket}/{key}", lambda _c: body.read(_CHUNK)):
                digest.update(block)
                if sink is not None:
                    sink.write(block)
        finally:
            body.close()
        return digest.hexdigest(), response

    def _check_lock(self, record: BackupRecord, key: str, response: dict[str, Any]) -> None:
        mode = response.get("ObjectLockMode")
        until = response.get("ObjectLockRetainUntilDate")
        wanted = dt.datetime.fromisoformat(record.retain_until)
        if mode != record.mode or until is None or _utc(until) < wanted - dt.timedelta(seconds=1):
            raise BackupError(f"backup: {key} is not locked as written (mode {mode}, retain until {until}; "
                              f"expected {record.mode} until {record.retain_until})")

    def read_record(self, ref: BackupRef) -> BackupRecord:
        """The locked index of a backup (by its recorded VersionId, whatever is live at that key now)."""
        bucket, prefix = _split(ref.uri)
        self.check_region(bucket)
        response = self._get(bucket, f"{prefix}/{INDEX_NAME}", ref.index_version_id)
        try:
            raw = self._call("reading the backup index", lambda _c: response["Body"].read())
        finally:
            response["Body"].close()
        try:
            record = BackupRecord.model_validate_json(raw)
        except ValueError as exc:
            raise BackupError(f"backup: {ref.uri}/{INDEX_NAME} version {ref.index_version_id} is not a "
                              f"backup index: {exc}") from exc
        if record.uri.rstrip("/") != ref.uri.rstrip("/") or (ref.digest and record.digest != ref.digest):
            raise BackupError(f"backup: the index at {ref.uri} (version {ref.index_version_id}) describes "
                              f"{record.uri} with digest {record.digest}, not what the registry recorded")
        record.index_version_id = ref.index_version_id
        return record

    def verify(self, record: BackupRecord, *, deep: bool = True) -> None:
        """Every recorded version (the index too) exists and is locked; `deep` also re-hashes each file."""
        bucket, _ = _split(record.uri)
        for key, version_id, sha256 in self._objects(record):
            if deep:
                actual, response = self._stream(bucket, key, version_id, None)
                if actual != sha256:
                    raise BackupError(f"backup: s3://{bucket}/{key} version {version_id} does not match "
                                      "its digest in the manifest")
            else:
                response = self._call(f"HeadObject s3://{bucket}/{key}", lambda c, k=key, v=version_id:
                                      c.head_object(Bucket=bucket, Key=k, VersionId=v))
            self._check_lock(record, key, response)
        if record.index_version_id:
            key = f"{_split(record.uri)[1]}/{INDEX_NAME}"
            head = self._call(f"HeadObject s3://{bucket}/{key}", lambda c: c.head_object(
                Bucket=bucket, Key=key, VersionId=record.index_version_id))
            self._check_lock(record, key, head)

    def restore_to(self, record: BackupRecord, dest: Path) -> Manifest:
        """Download the recorded (locked) versions into `dest`, verified against the backed-up manifest."""
        bucket, prefix = _split(record.uri)
        manifest_bytes = bytearray()
        manifest_sha, _ = self._stream(bucket, f"{prefix}/{MANIFEST_NAME}", record.manifest_version_id,
                                       _Collect(manifest_bytes))
        if manifest_sha != record.manifest_sha256:
            raise BackupError(f"backup: {record.uri}/{MANIFEST_NAME} version {record.manifest_version_id} "
                              "does not match the digest in the backup index")
        manifest = Manifest.model_validate_json(bytes(manifest_bytes))
        if manifest.digest != record.digest or set(manifest.files) != set(record.files):
            raise BackupError(f"backup: the manifest in {record.uri} does not describe the files of its "
                              "index")
        for rel, meta in record.files.items():
            target = (dest / rel).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise BackupError(f"backup: {record.uri} lists a file outside the artifact: {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as sink:
                actual, _ = self._stream(bucket, f"{prefix}/{rel}", meta.version_id, sink)
            if actual != meta.sha256 or actual != manifest.files[rel]["sha256"]:
                raise BackupError(f"backup: {record.uri}/{rel} version {meta.version_id} does not match "
                                  "its digest in the manifest")
        return manifest


class _Collect:
    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer

    def write(self, block: bytes) -> None:
        self.buffer.extend(block)
