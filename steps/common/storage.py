"""One place that reads and writes artifacts at `file://` and `s3://` URIs.

Publishing is atomic: files are staged under a temporary name/key, then made visible, and a
`MANIFEST.json` with the sha256 of every file is written last. Readers only accept an artifact whose
manifest exists and whose files match it, so a step that crashed mid-write is never read by the next.
"""

import functools
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, ValidationError

from steps.common.errors import TransientError
from steps.common.manifest import MANIFEST_NAME, Manifest, build_manifest, sha256_file
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.retention import RETENTION_TAG, retention_class


class StorageError(RuntimeError):
    """An artifact could not be read or written."""


class ArtifactNotFound(StorageError):
    """No published artifact (no manifest) at the URI."""


class CorruptArtifact(StorageError):
    """A file does not match the digest its manifest recorded."""


class S3Credentials(BaseModel):
    """Names of environment variables holding the credentials: never the secrets themselves."""

    model_config = {"extra": "forbid"}
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"


class S3Settings(BaseModel):
    model_config = {"extra": "forbid"}
    endpoint_url: str | None = None
    region: str = "eu-central-1"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    credentials: S3Credentials = Field(default_factory=S3Credentials)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    multipart_threshold_mb: int = Field(64, ge=5)
    # A customer-managed KMS key (its key ARN, in an allowed region): every write asks for SSE-KMS with it
    # and every read of an artifact checks that S3 stored the object with it. None: the bucket's default.
    kms_key_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")


class StorageSettings(BaseModel):
    model_config = {"extra": "forbid"}
    artifact_root: str = Field(..., description="file:///abs/path or s3://bucket/prefix")
    s3: S3Settings = Field(default_factory=S3Settings)


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI (or a plain path), percent-decoded."""
    if "://" not in uri:
        return Path(uri)
    parts = urlsplit(uri)
    path = unquote(parts.path)
    return Path(parts.netloc + path) if parts.netloc not in ("", "localhost") else Path(path)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _outage_is_transient(method: Callable) -> Callable:
    """An unreachable S3 endpoint (after botocore's own retries) becomes a TransientError, so the step
    exits 75 and the runner (or Argo's retryStrategy) retries it with backoff."""

    @functools.wraps(method)
    def wrapper(self: "ArtifactStore", *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import ReadTimeoutError

        try:
            return method(self, *args, **kwargs)
        except (BotoConnectionError, ReadTimeoutError) as exc:
            endpoint = self.settings.s3.endpoint_url or f"S3 ({self.settings.s3.region})"
            raise TransientError(
                f"{endpoint} unreachable after {self.settings.s3.max_attempts} attempts: {type(exc).__name__}"
            ) from exc

    return wrapper


class ArtifactStore:
    """Reads and publishes artifacts; checks every S3 endpoint against the residency policy first."""

    def __init__(self, settings: StorageSettings, residency: ResidencyPolicy) -> None:
        self.settings = settings
        self.residency = residency
        self._client: Any = None

    # ---- public API -------------------------------------------------------------------------
    @_outage_is_transient
    def publish_dir(self, local_dir: Path, uri: str) -> Manifest:
        """Publish every file under `local_dir` at `uri`; the manifest is written last."""
        manifest = build_manifest(local_dir)
        if uri.startswith("s3://"):
            self._publish_s3(local_dir, uri, manifest)
        else:
            self._publish_file(local_dir, local_path(uri), manifest)
        return manifest

    @_outage_is_transient
    def read_manifest(self, uri: str) -> Manifest:
        raw = self._read_object(join_uri(uri, MANIFEST_NAME))
        if raw is None:
            raise ArtifactNotFound(f"no published artifact at {uri} (no {MANIFEST_NAME}: never published, "
                                   "or its step failed before publishing)")
        try:
            return Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise CorruptArtifact(f"{uri}: {MANIFEST_NAME} is not a valid manifest: {exc}") from None

    def exists(self, uri: str) -> bool:
        try:
            self.read_manifest(uri)
        except ArtifactNotFound:
            return False
        return True

    @_outage_is_transient
    def materialize(self, uri: str, cache_dir: Path) -> Path:
        """A local directory holding the verified artifact (in place for file://, downloaded for s3://)."""
        manifest = self.read_manifest(uri)
        if uri.startswith("s3://"):
            local = cache_dir / manifest.digest
            if not (local / MANIFEST_NAME).exists():
                staging = cache_dir / f".{manifest.digest}.tmp-{uuid.uuid4().hex}"
                for rel in manifest.files:
                    self._download(join_uri(uri, rel), staging / rel)
                _verify(staging, manifest, uri)
                _atomic_write_bytes(staging / MANIFEST_NAME, manifest.model_dump_json().encode())
                if local.exists():  # another process won the race with identical content
                    shutil.rmtree(staging)
                else:
                    os.replace(staging, local)
            return local
        local = local_path(uri)
        _verify(local, manifest, uri)
        return local

    @_outage_is_transient
    def download_prefix(self, uri: str, dest: Path) -> list[Path]:
        """Copy raw files (e.g. a document corpus with no manifest) under a prefix to `dest`."""
        dest.mkdir(parents=True, exist_ok=True)
        if not uri.startswith("s3://"):
            source = local_path(uri)
            if not source.is_dir():
                raise StorageError(f"corpus {uri} is not a directory")
            return sorted(p for p in source.rglob("*") if p.is_file())
        bucket, prefix = _split_s3(uri.rstrip("/") + "/")
        paths = []
        for key in self._list_keys(bucket, prefix):
            target = dest / key[len(prefix):]
            self._download(f"s3://{bucket}/{key}", target, ours=False)
            paths.append(target)
        return sorted(paths)

    @_outage_is_transient
    def read_bytes(self, uri: str) -> bytes:
        data = self._read_object(uri)
        if data is None:
            raise StorageError(f"object not found: {uri}")
        return data

    @_outage_is_transient
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write one small object atomically (temporary name, then rename; S3 PUT is atomic)."""
        if uri.startswith("s3://"):
            bucket, key = _split_s3(uri)
            self._s3().put_object(Bucket=bucket, Key=key, Body=data, **self.write_args(uri))
        else:
            _atomic_write_bytes(local_path(uri), data)

    @_outage_is_transient
    def tree_digest(self, uri: str) -> str:
        """Digest of a raw prefix's listing and contents (used to key caches on a corpus)."""
        digest = hashlib.sha256()
        if uri.startswith("s3://"):
            bucket, prefix = _split_s3(uri.rstrip("/") + "/")
            for key, etag in self._list_keys_with_etags(bucket, prefix):
                digest.update(f"{key[len(prefix):]}\0{etag}\n".encode())
        else:
            root = local_path(uri)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                digest.update(f"{path.relative_to(root)}\0{sha256_file(path)}\n".encode())
        return digest.hexdigest()

    # ---- file backend ---------------------------------------------------------------------------
    @staticmethod
    def _publish_file(local_dir: Path, target: Path, manifest: Manifest) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # An artifact's place belongs to one step execution of one run: what staging it finds there was left
        # by an earlier attempt that was killed mid-publish, never by a publish still running.
        for leftover in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
        shutil.copytree(local_dir, staging, ignore=shutil.ignore_patterns(MANIFEST_NAME))
        _atomic_write_bytes(staging / MANIFEST_NAME, manifest.model_dump_json(indent=1).encode())
        if target.exists():  # re-publishing: move the old one aside first so the swap stays atomic
            trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
            os.replace(target, trash)
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)

    # ---- s3 backend -----------------------------------------------------------------------------
    def s3_client(self) -> Any:
        """The boto3 client (timeouts, retries, residency-checked endpoint) for other S3 features."""
        return self._s3()

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            s3 = self.settings.s3
            self.residency.check_region(s3.region, "storage.s3.region")
            if s3.endpoint_url:
                self.residency.check_url(s3.endpoint_url, "storage.s3.endpoint_url")
            if s3.kms_key_arn:
                self.residency.check_arn(s3.kms_key_arn, "storage.s3.kms_key_arn")
            config = Config(
                region_name=s3.region,
                connect_timeout=s3.connect_timeout_s,
                read_timeout=s3.read_timeout_s,
                retries={"max_attempts": s3.max_attempts, "mode": "standard"},
                s3={"addressing_style": s3.addressing_style},
            )
            try:
                client = boto3.client(
                    "s3",
                    endpoint_url=s3.endpoint_url,
                    aws_access_key_id=os.environ.get(s3.credentials.access_key_id_env),
                    aws_secret_access_key=os.environ.get(s3.credentials.secret_access_key_env),
                    config=config,
                )
            except ValueError as exc:  # e.g. AWS_ENDPOINT_URL=https:// ("Invalid endpoint")
                raise StorageError(f"cannot build the S3 client: {exc}") from None
            self._client = self._checked(client)
        return self._client

    def _checked(self, client: Any) -> Any:
        """What boto3 resolved, not only what the config says: AWS_ENDPOINT_URL(_S3), AWS_REGION and
        ~/.aws/config can all redirect a client whose endpoint is not configured here."""
        key = ("storage.s3.endpoint_url" if self.settings.s3.endpoint_url
               else "S3 endpoint from the AWS environment (storage.s3.endpoint_url unset)")
        self.residency.check_region(client.meta.region_name or "", "storage.s3.region")
        self.residency.check_url(client.meta.endpoint_url, key)
        host = (urlsplit(client.meta.endpoint_url).hostname or "").lower()

        def same_endpoint(request: Any, **_: Any) -> None:
            # A bucket given as an access point ARN routes a request to the ARN's region, whatever the
            # endpoint: every request must go to the checked host (or a bucket subdomain of it).
            target = (urlsplit(request.url).hostname or "").lower()
            if target != host and not target.endswith("." + host):
                raise ResidencyError("S3 request host", target, f"not the checked S3 endpoint {host!r} "
                                     "(an access point ARN, or another region's endpoint)")

        client.meta.events.register("before-send.s3", same_endpoint)
        return client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        threshold = self.settings.s3.multipart_threshold_mb * 1024 * 1024
        return TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold)

    def _publish_s3(self, local_dir: Path, uri: str, manifest: Manifest) -> None:
        bucket, prefix = _split_s3(uri.rstrip("/") + "/")
        client = self._s3()
        staging = f"{prefix}.staging-{uuid.uuid4().hex}/"
        # Hide any earlier version first: without its manifest it is no longer readable.
        client.delete_object(Bucket=bucket, Key=prefix + MANIFEST_NAME)
        self._delete_killed_staging(bucket, prefix)
        try:
            for rel in manifest.files:
                client.upload_file(str(local_dir / rel), bucket, staging + rel, ExtraArgs=self.write_args(uri),
                                   Config=self._transfer_config())
            for rel in manifest.files:
                client.copy({"Bucket": bucket, "Key": staging + rel}, bucket, prefix + rel,
                            ExtraArgs={**self.write_args(uri), "TaggingDirective": "REPLACE"},
                            Config=self._transfer_config())
            client.put_object(Bucket=bucket, Key=prefix + MANIFEST_NAME,
                              Body=manifest.model_dump_json(indent=1).encode(), **self.write_args(uri))
        finally:
            for rel in manifest.files:
                client.delete_object(Bucket=bucket, Key=staging + rel)

    def _delete_killed_staging(self, bucket: str, prefix: str) -> None:
        """Staging objects under this artifact's prefix: left by an earlier attempt killed mid-publish (the
        artifact's place belongs to one step execution of one run, so no publish of it is still running)."""
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}.staging-"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._s3().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    def write_args(self, uri: str) -> dict[str, str]:
        """What every PUT, upload and copy under `uri` adds: SSE-KMS with the configured key, and the
        retention class of a run's artifact as a tag (lifecycle rules filter on it)."""
        args: dict[str, str] = {}
        if key := self.settings.s3.kms_key_arn:
            args.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=key)
        root = self.settings.artifact_root.rstrip("/") + "/"
        if uri.startswith(root) and (cls := retention_class(uri[len(root):])):
            args["Tagging"] = f"{RETENTION_TAG}={cls}"
        return args

    def check_encryption(self, response: dict[str, Any], uri: str) -> None:
        """Refuse an object that S3 did not store under the configured KMS key (a HEAD or GET response)."""
        key = self.settings.s3.kms_key_arn
        if key and (response.get("ServerSideEncryption") != "aws:kms" or response.get("SSEKMSKeyId") != key):
            raise StorageError(f"{uri} is not encrypted with the configured KMS key {key} (S3 reports "
                               f"{response.get('ServerSideEncryption')!r} with key {response.get('SSEKMSKeyId')!r})")

    def _download(self, uri: str, target: Path, *, ours: bool = True) -> None:
        bucket, key = _split_s3(uri)
        if ours:  # an artifact we wrote; a corpus is the user's upload, under whatever key they chose
            self.check_encryption(self._s3().head_object(Bucket=bucket, Key=key), uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._s3().download_file(bucket, key, str(target), Config=self._transfer_config())

    def _list_keys_with_etags(self, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if "/.staging-" not in item["Key"]:
                    yield item["Key"], item["ETag"]

    def _list_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        return (key for key, _ in self._list_keys_with_etags(bucket, prefix))

    def _read_object(self, uri: str) -> bytes | None:
        if uri.startswith("s3://"):
            from botocore.exceptions import ClientError

            bucket, key = _split_s3(uri)
            try:
                response = self._s3().get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            self.check_encryption(response, uri)
            return response["Body"].read()
        path = local_path(uri)
        return path.read_bytes() if path.is_file() else None


def _verify(local_dir: Path, manifest: Manifest, uri: str) -> None:
    for rel, meta in manifest.files.items():
        path = local_dir / rel
        if not path.is_file():
            raise CorruptArtifact(f"{uri}: {rel} is listed in the manifest but missing")
        if sha256_file(path) != meta["sha256"]:
            raise CorruptArtifact(f"{uri}: {rel} does not match its sha256 in the manifest")
