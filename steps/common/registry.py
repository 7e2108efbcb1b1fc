"""A small typed wrapper around MLflow's model registry, shared by finetune, judge, promote and canary.

Built from `RegistrySettings` and the run's `ResidencyPolicy`: an http(s) tracking URI is checked
against the policy before any call, and every call is bounded (timeout, retries, backoff) through
MLflow's own environment variables, set only for the duration of each call (MLflow reads them per
request) and restored afterwards: nothing is configured at import time. `mlflow` is imported lazily.

Aliases on the registered model: `champion` (served), `challenger` (latest candidate), `previous`
(the champion before the last promotion, for rollback).

Errors: a registry that cannot be reached (connection refused, timeout, 5xx after retries, SQLite
locked) raises `TransientError` so that Argo and the local runner retry the step; anything else the
registry refuses raises `RegistryError` naming the call and the model.
"""

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from steps.common.contract import TransientError
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.tags import ADAPTER_URI_TAG  # noqa: F401 - pipelines/serve imports it from here
from steps.common.tags import LOCK_EXPIRES_TAG, LOCK_OWNER_TAG, LOCK_PURPOSE_TAG

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

ADAPTER_ARTIFACT_PATH = "adapter"  # where the adapter files live inside the finetune MLflow run
LOCK_SUFFIX = ".promotion-lock"

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"}
_MISSING_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
# Serialises the process-wide MLflow environment variables while a call runs (threads in one process).
_ENV_LOCK = threading.RLock()

T = TypeVar("T")


class RegistryError(RuntimeError):
    """The registry refused a call (bad name, missing run, permission): retrying will not help."""


class LeaseLost(TransientError):
    """The promotion lock is no longer ours (expired, or broken by another promoter): nothing was moved."""


class ModelVersionInfo(BaseModel):
    version: str
    source: str
    run_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)


class LeaseSettings(BaseModel):
    """How the promotion lock behaves (see `Registry.lock`)."""

    model_config = {"extra": "forbid"}
    # A crashed holder's lock is breakable after this. Must leave room for one bounded registry call
    # inside half of it (`Registry.call_bound_s`); the other half absorbs clock skew between hosts.
    ttl_s: float = Field(300.0, gt=0)
    wait_s: float = Field(60.0, ge=0)  # give up (TransientError, so the step is retried) after this
    settle_s: float = Field(0.5, ge=0)  # wait, then re-read the lock to confirm we still own it
    poll_s: float = Field(0.25, gt=0)  # how often a waiter looks again (with jitter)


class CasResult(BaseModel):
    outcome: Literal["swapped", "already_champion", "refused"]
    champion_version: str | None  # the champion after the attempt
    previous_version: str | None  # the `previous` alias after the attempt (None if not touched/unknown)
    reason: str
    lock_wait_s: float  # time spent waiting for the promotion lock (contention diagnostic)

    @property
    def promoted(self) -> bool:
        return self.outcome in ("swapped", "already_champion")


class Lease(BaseModel):
    token: str
    acquired_monotonic: float  # taken before the create request that won the lock was sent
    ttl_s: float
    call_bound_s: float  # the longest one registry call can take (timeout x attempts + backoff)
    waited_s: float

    def assert_fresh(self) -> None:
        """Refuse to start a write that could still be in flight after half the TTL.

        The lock expires after `ttl_s` by the holder's wall clock as others read it; stopping at
        `ttl_s / 2` on our monotonic clock leaves the other half for clock skew between hosts.
        """
        held = time.monotonic() - self.acquired_monotonic
        if held + self.call_bound_s > self.ttl_s / 2:
            raise LeaseLost(f"promotion lock held for {held:.1f}s; a registry call may take "
                            f"{self.call_bound_s:.0f}s more, past half its ttl of {self.ttl_s}s: stopping "
                            "before moving an alias; raise promote.lock.ttl_s if the registry is slow")


def _fmt(version: str | None) -> str:
    return f"version {version}" if version else "no champion"


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _is_transient(exc: BaseException) -> bool:
    """Connection problems and overload, looking through MLflow's wrapping of `requests` errors."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                                requests.exceptions.RetryError, ConnectionError, TimeoutError)):
            return True
        if _error_code(current) in _TRANSIENT_CODES:
            return True
        text = str(current)
        if "database is locked" in text or ("API request to" in text and "failed with" in text):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def _scoped_env(values: dict[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in saved.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


def _check_tracking_uri(uri: str, residency: ResidencyPolicy) -> None:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        residency.check_url(uri, "registry.tracking_uri")
    elif scheme in ("sqlite", "file") or (scheme == "" and not uri.strip().lower().startswith("databricks")):
        return  # a local file (a bare path is a local file store to MLflow; bare "databricks" is not)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql") and parts.hostname:
        # A database backend reached directly: its host must be allowed like any endpoint.
        port = f":{parts.port}" if parts.port else ""
        residency.check_url(f"https://{parts.hostname}{port}", "registry.tracking_uri")
    else:
        raise ResidencyError("registry.tracking_uri", uri,
                             "only sqlite, file, http(s) and database URIs on allowed hosts are supported")


def _check_artifact_uri(uri: str, residency: ResidencyPolicy) -> None:
    """Where the MLflow client will upload the adapter: proxied by the server, local, or an allowed S3."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    key = "registry.artifact_uri"
    if scheme in ("", "file"):
        return
    if scheme in ("http", "https"):
        residency.check_url(uri, key)
    elif scheme == "mlflow-artifacts":  # proxied by the tracking server (already checked), or a named host
        if parts.hostname:
            residency.check_url(f"https://{parts.hostname}", key)
    elif scheme == "s3":  # the client talks to S3 directly: only through an endpoint the policy allows
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL", "")
        if not endpoint:
            raise ResidencyError(key, uri, "direct S3 artifact upload without MLFLOW_S3_ENDPOINT_URL: "
                                           "run the MLflow server with --artifacts-destination instead")
        residency.check_url(endpoint, "MLFLOW_S3_ENDPOINT_URL")
    else:
        raise ResidencyError(key, uri, "artifact store scheme not supported (use proxied mlflow-artifacts, "
                                       "file or s3 through an allowed endpoint)")


def _info(mv: Any) -> ModelVersionInfo:
    return ModelVersionInfo(version=str(mv.version), source=str(mv.source or ""), run_id=mv.run_id or None,
                            tags=dict(mv.tags or {}), aliases=list(getattr(mv, "aliases", None) or []))


class Registry:
    """One registered model (`settings.model_name`) in one MLflow registry."""

    def __init__(self, settings: RegistrySettings, residency: ResidencyPolicy, *,
                 max_retries: int | None = None) -> None:
        _check_tracking_uri(settings.tracking_uri, residency)
        self.settings = settings
        self.residency = residency
        self.model_name = settings.model_name
        retries = settings.max_retries if max_retries is None else max_retries
        self._env = {
            # MLflow parses the timeout as an int: round up so a bound is never loosened to 0.
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(settings.timeout_s))),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
            # MLflow 3.x phones home with usage telemetry unless told not to (checked when mlflow is
            # first imported, which happens inside this scope). DO_NOT_TRACK=1 does NOT disable it.
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        self._client: Any = None
        # urllib3 sleeps backoff_factor * 2**(n-1) before retry n >= 2, plus up to `jitter`.
        timeout = float(self._env["MLFLOW_HTTP_REQUEST_TIMEOUT"])
        backoff = sum(2 ** (n - 1) for n in range(2, retries + 1)) + 0.5 * retries
        self.call_bound_s = timeout * (retries + 1) + backoff

    @property
    def lock_name(self) -> str:
        return self.model_name + LOCK_SUFFIX

    # ---- plumbing -------------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(mlflow_client)` as one bounded call (for tracking calls this wrapper does not cover).

        Timeout/retries apply for its duration; an unreachable registry raises TransientError naming
        `what`; MLflow's own refusals (MlflowException) pass through unchanged.
        """
        with _scoped_env(self._env):
            try:
                if self._client is None:
                    from mlflow import MlflowClient

                    uri = self.settings.tracking_uri
                    self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                return fn(self._client)
            except Exception as exc:
                if _is_transient(exc):
                    raise TransientError(
                        f"MLflow registry at {self.settings.tracking_uri} unreachable during {what} "
                        f"(timeout {self._env['MLFLOW_HTTP_REQUEST_TIMEOUT']}s, "
                        f"{self._env['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries): {_short(exc)}"
                    ) from exc
                raise


    def _refused(self, what: str, exc: BaseException) -> RegistryError:
        return RegistryError(f"MLflow registry refused {what} for model {self.model_name!r} at "
                             f"{self.settings.tracking_uri}: {_short(exc)}")

    # ---- reads ----------------------------------------------------------------------------------
    def ensure_model(self) -> None:
        """Create the registered model if it does not exist (tolerates a concurrent creator)."""
        from mlflow.exceptions import MlflowException

        try:
            self.call("get_registered_model", lambda c: c.get_registered_model(self.model_name))
            return
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise self._refused("get_registered_model", exc) from exc
        try:
            self.call("create_registered_model", lambda c: c.create_registered_model(self.model_name))
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise self._refused("create_registered_model", exc) from exc

    def alias_version(self, alias: str) -> ModelVersionInfo | None:
        """The version an alias points at; None if the alias (or the model, or the version) is missing."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.call(f"read alias {alias}",
                            lambda c: c.get_model_version_by_alias(self.model_name, alias))
        except MlflowException as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise self._refused(f"reading alias {alias!r}", exc) from exc
        return _info(mv)

    def get_version(self, version: str) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return _info(self.call("get_model_version",
                                    lambda c: c.get_model_version(self.model_name, str(version))))
        except MlflowException as exc:
            raise self._refused(f"reading version {version}", exc) from exc

    def aliases(self) -> dict[str, str]:
        """All aliases of the model (alias -> version); empty if the model does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.call("get_registered_model", lambda c: c.get_registered_model(self.model_name))
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise self._refused("get_registered_model", exc) from exc
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def find_versions(self, run_id: str, tags: dict[str, str]) -> list[ModelVersionInfo]:
        """Versions created from MLflow run `run_id` carrying all `tags` (to make step retries idempotent)."""
        from mlflow.exceptions import MlflowException

        flt = f"name = '{_quote(self.model_name)}' and run_id = '{_quote(run_id)}'"
        try:
            found = self.call("search_model_versions", lambda c: c.search_model_versions(flt))
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise self._refused("search_model_versions", exc) from exc
        infos = [_info(mv) for mv in found]
        matching = [i for i in infos if all(i.tags.get(k) == v for k, v in tags.items())]
        return sorted(matching, key=lambda i: int(i.version))

    # ---- writes ---------------------------------------------------------------------------------
    def log_adapter(self, run_id: str, local_dir: Path) -> str:
        """Log `local_dir` as the `adapter` artifacts of MLflow run `run_id`; return the version source."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.call("get_run", lambda c: c.get_run(run_id))
        except MlflowException as exc:
            raise self._refused(f"reading MLflow run {run_id!r} (the finetune run)", exc) from exc
        artifact_uri = str(run.info.artifact_uri).rstrip("/")
        _check_artifact_uri(artifact_uri, self.residency)
        try:
            self.call("log_artifacts",
                       lambda c: c.log_artifacts(run_id, str(local_dir), ADAPTER_ARTIFACT_PATH))
        except MlflowException as exc:
            raise self._refused(f"logging the adapter to run {run_id}", exc) from exc
        return f"{artifact_uri}/{ADAPTER_ARTIFACT_PATH}"

    def create_version(self, source: str, run_id: str | None, tags: dict[str, str]) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        self.ensure_model()
        try:
            mv = self.call("create_model_version", lambda c: c.create_model_version(
                self.model_name, source=source, run_id=run_id, tags=dict(tags)))
        except MlflowException as exc:
            raise self._refused("create_model_version", exc) from exc
        return _info(mv)

    def set_alias(self, alias: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.call(f"set alias {alias}", lambda c: c.set_registered_model_alias(
                self.model_name, alias, str(version)))
        except MlflowException as exc:
            raise self._refused(f"setting alias {alias!r} to version {version}", exc) from exc

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.call(f"delete alias {alias}",
                       lambda c: c.delete_registered_model_alias(self.model_name, alias))
        except MlflowException as exc:
            if _error_code(exc) not in _MISSING_CODES:
                raise self._refused(f"deleting alias {alias!r}", exc) from exc

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        from mlflow.exceptions import MlflowException

        for key, value in tags.items():
            try:
                self.call("set_model_version_tag", lambda c, k=key, v=value: c.set_model_version_tag(
                    self.model_name, str(version), k, v))
            except MlflowException as exc:
                raise self._refused(f"tagging version {version} with {key!r}", exc) from exc

    # ---- the promotion lock -----------------------------------------------------------------------
    @contextmanager
    def lock(self, lease: LeaseSettings | None = None, purpose: str = "promote") -> Iterator[Lease]:
        """Hold the registry-wide promotion lock for the block (see `compare_and_set_champion`)."""
        lease = lease or LeaseSettings()
        if lease.ttl_s / 2 - self.call_bound_s < lease.settle_s + 1:
            raise ValueError(
                f"lock ttl_s={lease.ttl_s} is too short for registry calls that may each take "
                f"{self.call_bound_s:.0f}s (timeout_s x attempts + backoff): use ttl_s >= "
                f"{2 * (self.call_bound_s + lease.settle_s + 1):.0f} or lower registry.timeout_s")
        held = self._acquire(lease, purpose)
        try:
            yield held
        finally:
            self._release(held)

    def _read_lock(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            model = self.call("read promotion lock", lambda c: c.get_registered_model(self.lock_name))
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise self._refused("reading the promotion lock", exc) from exc
        return dict(model.tags or {})

    def _delete_lock(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.call("delete promotion lock", lambda c: c.delete_registered_model(self.lock_name))
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise self._refused("deleting the promotion lock", exc) from exc

    def _acquire(self, lease: LeaseSettings, purpose: str) -> Lease:
        from mlflow.exceptions import MlflowException

        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        started = time.monotonic()
        while True:
            attempt = time.monotonic()
            tags = {LOCK_OWNER_TAG: token, LOCK_EXPIRES_TAG: f"{time.time() + lease.ttl_s:.3f}",
                    LOCK_PURPOSE_TAG: purpose}
            try:
                # Creating a registered model is atomic (primary key on its name): one creator wins.
                self.call("create promotion lock", lambda c, tags=tags: c.create_registered_model(
                    self.lock_name, tags=tags,
                    description=f"Lease held while {self.model_name}'s aliases move; "
                                "deleted on release, breakable once expired."))
            except MlflowException as exc:
                if _error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                    raise self._refused("creating the promotion lock", exc) from exc
                holder = self._read_lock()
                # Ours when an HTTP retry re-sent a create whose first reply was lost.
                if holder is None or holder.get(LOCK_OWNER_TAG) != token:
                    self._wait_for_release(holder, lease, started)
                    continue
            # Settle, then confirm: catches a breaker that deleted a lock it thought stale and made its own.
            time.sleep(lease.settle_s)
            holder = self._read_lock()
            if holder is None or holder.get(LOCK_OWNER_TAG) != token:
                log.warning("promotion lock taken over during settle by %s; retrying",
                            holder and holder.get(LOCK_OWNER_TAG))
                continue
            return Lease(token=token, acquired_monotonic=attempt, ttl_s=lease.ttl_s,
                         call_bound_s=self.call_bound_s, waited_s=attempt - started)

    def _wait_for_release(self, holder: dict[str, str] | None, lease: LeaseSettings, started: float) -> None:
        """Poll (reads only, with backoff) until the lock is gone, or break it once it has expired."""
        delay = lease.poll_s
        while holder is not None:
            if _expired(holder):
                self._break(holder)
                return
            if time.monotonic() - started > lease.wait_s:
                raise TransientError(
                    f"promotion lock {self.lock_name!r} is held by {holder.get(LOCK_OWNER_TAG)} "
                    f"(expires at {holder.get(LOCK_EXPIRES_TAG)}); gave up after {lease.wait_s}s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, lease.poll_s * 8)
            holder = self._read_lock()

    def _break(self, stale: dict[str, str]) -> None:
        """Delete an expired lock, but only if it is still the same one we judged expired."""
        current = self._read_lock()
        if current is not None and current.get(LOCK_OWNER_TAG) == stale.get(LOCK_OWNER_TAG):
            log.warning("breaking expired promotion lock %r of %s (expired at %s)", self.lock_name,
                        stale.get(LOCK_OWNER_TAG), stale.get(LOCK_EXPIRES_TAG))
            self._delete_lock()

    def confirm(self, lease: Lease) -> None:
        """Raise LeaseLost unless the lock is still ours and young enough to act on."""
        lease.assert_fresh()
        holder = self._read_lock()
        if holder is None or holder.get(LOCK_OWNER_TAG) != lease.token:
            raise LeaseLost(f"promotion lock {self.lock_name!r} is no longer ours (now held by "
                            f"{holder and holder.get(LOCK_OWNER_TAG)}): no alias was moved")

    def _release(self, lease: Lease) -> None:
        try:
            holder = self._read_lock()
            if holder is not None and holder.get(LOCK_OWNER_TAG) == lease.token:
                self._delete_lock()
        except Exception as exc:  # noqa: BLE001 -- never mask the block's own error; the lock expires
            log.warning("could not release promotion lock %r (it expires after its ttl): %s",
                        self.lock_name, _short(exc))

    # ---- compare-and-set --------------------------------------------------------------------------
    def compare_and_set_champion(self, new_version: str, expected_champion: str | None,
                                 lease: LeaseSettings | None = None) -> CasResult:
        """Make `new_version` the champion only if the champion is still `expected_champion`.

        `expected_champion` is the version the judge compared against (None: there was no champion).
        On success `previous` points at the old champion (untouched when there was none) and
        `champion` at `new_version`. If the champion moved since the judge read it, nothing moves and
        the result says why (`refused`). Calling it again after success returns `already_champion`
        (so a retried step is idempotent).

        Guarantee: promoters that all go through this method (or `lock`) are mutually excluded by a
        registry-wide lease: a registered model `<model>.promotion-lock`, created with the owner's
        random token and an expiry as tags. Creating it is atomic in MLflow's SQL backends (primary key
        on the name): of two creators exactly one succeeds, whatever the timing; a create re-sent by an
        HTTP retry after a lost reply is recognised by its token. Inside the lease the champion is
        re-read and compared with `expected_champion`, so of promotions racing from the same expected
        champion exactly one moves the aliases and the others are refused with a reason. Waiters only
        read (backing off) until the lock is gone; `lock_wait_s` reports how long they waited.

        Limits: MLflow has no conditional alias write, so the lease is advisory: anything that sets
        aliases directly (UI, scripts) bypasses it. A crashed holder blocks promotions until its
        `ttl_s` has passed (waiters give up after `wait_s` with TransientError, so the step retries);
        then the lock is broken (deleted if still the same owner) and re-created. Only breaking relies
        on timing: a holder never starts a write that could still be in flight after half its TTL
        (monotonic clock plus `call_bound_s`; the other half absorbs clock skew between hosts), and it
        re-reads the owner after a `settle_s` pause and again right before the alias writes, so two
        processes breaking the same stale lock both proceeding needs a stall longer than those windows
        between one's read and its delete. If the registry fails mid-way, `previous` may have moved
        without `champion` (harmless: the champion is unchanged and a retry completes the swap).
        """
        expected = expected_champion or None
        new_version = str(new_version)
        with self.lock(lease) as held:
            current = self.alias_version(CHAMPION)
            current_version = current.version if current else None
            if current_version == new_version:
                return CasResult(outcome="already_champion", champion_version=new_version,
                                 previous_version=self.aliases().get(PREVIOUS),
                                 reason=f"version {new_version} is already the champion (earlier attempt)",
                                 lock_wait_s=held.waited_s)
            if current_version != expected:
                return CasResult(
                    outcome="refused", champion_version=current_version, previous_version=None,
                    reason=(f"champion moved: it is {_fmt(current_version)} but the judge compared "
                            f"version {new_version} against {_fmt(expected)}; re-run the judge against "
                            "the current champion"),
                    lock_wait_s=held.waited_s)
            self.confirm(held)
            if current_version is not None:
                self.set_alias(PREVIOUS, current_version)
            held.assert_fresh()
            self.set_alias(CHAMPION, new_version)
            return CasResult(
                outcome="swapped", champion_version=new_version, previous_version=current_version,
                reason=(f"version {new_version} promoted to champion, replacing {_fmt(current_version)}"),
                lock_wait_s=held.waited_s)


def _expired(tags: dict[str, str]) -> bool:
    try:
        return time.time() > float(tags.get(LOCK_EXPIRES_TAG, "0"))
    except ValueError:  # an unreadable expiry: treat as expired rather than blocking forever
        return True


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _short(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."
