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
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from steps.common.contract import TransientError
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.tags import ADAPTER_URI_TAG  # noqa: F401 - pipelines/serve imports it from here

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

ADAPTER_ARTIFACT_PATH = "adapter"  # where the adapter files live inside the finetune MLflow run

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED"}
MISSING = "RESOURCE_DOES_NOT_EXIST"  # the error code of a model (or version, alias) that does not exist
_MISSING_CODES = {MISSING, "INVALID_PARAMETER_VALUE"}
# Serialises the process-wide MLflow environment variables while a call runs (threads in one process).
_ENV_LOCK = threading.RLock()

T = TypeVar("T")


class RegistryError(RuntimeError):
    """The registry refused a call (bad name, missing run, permission): retrying will not help."""


class ModelVersionInfo(BaseModel):
    version: str
    source: str
    run_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)


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
                        f"{self._env['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries): {short_error(exc)}"
                    ) from exc
                raise

    def request(self, what: str, fn: Callable[[Any], T], refused: str,
                tolerate: Collection[str] = ()) -> T | None:
        """One bounded call (`call`) whose refusal by MLflow raises RegistryError naming `refused`, except
        the error codes in `tolerate` (a missing model, an alias already gone), which give None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.call(what, fn)
        except MlflowException as exc:
            if _error_code(exc) in tolerate:
                return None
            raise RegistryError(f"MLflow registry refused {refused} for model {self.model_name!r} at "
                                f"{self.settings.tracking_uri}: {short_error(exc)}") from exc

    # ---- reads ----------------------------------------------------------------------------------
    def ensure_model(self) -> None:
        """Create the registered model if it does not exist (tolerates a concurrent creator)."""
        if self.request("get_registered_model", lambda c: c.get_registered_model(self.model_name),
                        "get_registered_model", tolerate={MISSING}) is None:
            self.request("create_registered_model", lambda c: c.create_registered_model(self.model_name),
                         "create_registered_model", tolerate={"RESOURCE_ALREADY_EXISTS"})

    def alias_version(self, alias: str) -> ModelVersionInfo | None:
        """The version an alias points at; None if the alias (or the model, or the version) is missing."""
        mv = self.request(f"read alias {alias}",
                          lambda c: c.get_model_version_by_alias(self.model_name, alias),
                          f"reading alias {alias!r}", tolerate=_MISSING_CODES)
        return None if mv is None else _info(mv)

    def get_version(self, version: str) -> ModelVersionInfo:
        return _info(self.request("get_model_version",
                                  lambda c: c.get_model_version(self.model_name, str(version)),
                                  f"reading version {version}"))

    def aliases(self) -> dict[str, str]:
        """All aliases of the model (alias -> version); empty if the model does not exist."""
        model = self.request("get_registered_model", lambda c: c.get_registered_model(self.model_name),
                             "get_registered_model", tolerate={MISSING})
        return {} if model is None else {alias: str(v) for alias, v in (model.aliases or {}).items()}

    def find_versions(self, run_id: str, tags: dict[str, str]) -> list[ModelVersionInfo]:
        """Versions created from MLflow run `run_id` carrying all `tags` (to make step retries idempotent)."""
        flt = f"name = '{_quote(self.model_name)}' and run_id = '{_quote(run_id)}'"
        found = self.request("search_model_versions", lambda c: c.search_model_versions(flt),
                             "search_model_versions", tolerate={MISSING}) or []
        infos = [_info(mv) for mv in found]
        matching = [i for i in infos if all(i.tags.get(k) == v for k, v in tags.items())]
        return sorted(matching, key=lambda i: int(i.version))

    # ---- writes ---------------------------------------------------------------------------------
    def log_adapter(self, run_id: str, local_dir: Path) -> str:
        """Log `local_dir` as the `adapter` artifacts of MLflow run `run_id`; return the version source."""
        run = self.request("get_run", lambda c: c.get_run(run_id),
                           f"reading MLflow run {run_id!r} (the finetune run)")
        artifact_uri = str(run.info.artifact_uri).rstrip("/")
        _check_artifact_uri(artifact_uri, self.residency)
        self.request("log_artifacts",
                     lambda c: c.log_artifacts(run_id, str(local_dir), ADAPTER_ARTIFACT_PATH),
                     f"logging the adapter to run {run_id}")
        return f"{artifact_uri}/{ADAPTER_ARTIFACT_PATH}"

    def create_version(self, source: str, run_id: str | None, tags: dict[str, str]) -> ModelVersionInfo:
        self.ensure_model()
        return _info(self.request("create_model_version", lambda c: c.create_model_version(
            self.model_name, source=source, run_id=run_id, tags=dict(tags)), "create_model_version"))

    def set_alias(self, alias: str, version: str) -> None:
        self.request(f"set alias {alias}",
                     lambda c: c.set_registered_model_alias(self.model_name, alias, str(version)),
                     f"setting alias {alias!r} to version {version}")

    def delete_alias(self, alias: str) -> None:
        self.request(f"delete alias {alias}",
                     lambda c: c.delete_registered_model_alias(self.model_name, alias),
                     f"deleting alias {alias!r}", tolerate=_MISSING_CODES)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.request("set_model_version_tag", lambda c, k=key, v=value: c.set_model_version_tag(
                self.model_name, str(version), k, v), f"tagging version {version} with {key!r}")



def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def short_error(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."
