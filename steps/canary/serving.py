"""Talk to one vLLM replica: runtime LoRA loading (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`,
verified in `/v1/models`), plain and timed (streamed) chat requests.

Every call is bounded by a timeout; the URL is checked against the residency policy first; redirects
and proxy variables are ignored (both could reach an unchecked host). A replica that cannot be reached
(or a proxy in front of it answering 502/503/504) raises `TransientError` (the step is idempotent, so
Argo or the local runner may retry it).

An adapter vLLM refuses raises `ServingError` with vLLM's own reason, never retried: a rank above
`--max-lora-rank` or target modules the base model lacks (vLLM answers 500 with its error body), files
that are missing (404). A served name never changes weights: vLLM lists only the path and refuses a second
load under a name, so a name it already lists is accepted only with the same path, which the adapter-sync
sidecar never re-points to other weights (`pipelines.serving.adapter_sync`). Unloading a name that is not
loaded is a no-op.
"""

import json
import logging
import os
import socket
import time
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from steps.canary.client_stats import RequestSample
from steps.common.contract import TransientError
from steps.common.residency import ResidencyPolicy

log = logging.getLogger(__name__)


class ServingError(RuntimeError):
    """A replica refused a request (an adapter it cannot load, a name taken by other weights)."""


class AdapterConflict(ServingError):
    """The name already serves other weights on a replica: never retried, never overwritten."""


def adapter_name(family: str, version: str) -> str:
    """Served name of registry version `version` of `family`: `<family>-v<N>` (never reused for other weights)."""
    return f"{family}-v{version}"


def root_url(base_url: str) -> str:
    """`http://h:8000/v1` -> `http://h:8000` (the adapter endpoints live under /v1 too)."""
    base = base_url.strip().rstrip("/")
    return base.removesuffix("/v1")


def discover_replicas(dns: str, residency: ResidencyPolicy) -> list[str]:
    """Per-pod base URLs behind a headless Service `host:port`: `http://<a-b-c-d>.<host>:<port>/v1`.

    Kubernetes DNS gives every ready pod behind a Service the name `<ip with dashes>.<service host>`, so the
    URLs keep a DNS name the residency policy can check (IP literals would need listing one by one)."""
    host, _, port = dns.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"canary.replica_dns={dns!r}: expected host:port of a headless Service")
    residency.check_url(f"http://{host}:{port}", "canary.replica_dns")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"canary.replica_dns {host}: cannot resolve ({exc})") from exc
    ips = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    if not ips:
        raise TransientError(f"canary.replica_dns {host}: no ready replica (no A record)")
    return [f"http://{ip.replace('.', '-')}.{host}:{port}/v1" for ip in ips]


def _clip(text: str, limit: int = 600) -> str:
    """vLLM's reasons can list every module of the model: keep the start, which names the cause."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ReplicaClient:
    """One replica. Use as a context manager or call `close()`."""

    def __init__(self, base_url: str, residency: ResidencyPolicy, *, timeout_s: float = 60.0,
                 api_key_env: str = "", transport: httpx.BaseTransport | None = None) -> None:
        residency.check_url(base_url, "canary.replicas")
        self.base_url = base_url.rstrip("/")
        self.name = urlsplit(self.base_url).netloc
        self._timeout_s = timeout_s
        headers = {"Accept": "application/json"}
        key = os.environ.get(api_key_env, "").strip() if api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=root_url(self.base_url), headers=headers, timeout=timeout_s,
                                    follow_redirects=False, trust_env=False, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"replica {self.name}: {method} {path} failed ({type(exc).__name__}); "
                                 "is it up? The canary step is safe to retry") from exc

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return _clip(response.text)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return _clip(str(error.get("message", "")))
        if isinstance(body, dict) and "message" in body:
            return _clip(str(body["message"]))
        return _clip(response.text)

    # -- models and adapters ---------------------------------------------------------------------
    def models(self) -> dict[str, dict[str, Any]]:
        """Served model id -> its /v1/models entry (base model and every loaded adapter)."""
        response = self._request("GET", "/v1/models")
        if response.status_code >= 500:
            raise TransientError(f"replica {self.name}: /v1/models answered {response.status_code}")
        if response.status_code != 200:
            raise ServingError(f"replica {self.name}: /v1/models answered {response.status_code}: "
                               f"{self._detail(response)}")
        return {str(entry.get("id")): entry for entry in response.json().get("data", [])}

    def healthy(self) -> bool:
        try:
            return self._client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def load_adapter(self, name: str, path: str) -> str:
        """Load `path` as `name` (idempotent); "loaded" or "already_loaded", verified in /v1/models.

        AdapterConflict when `name` already serves another path; ServingError with vLLM's reason when
        vLLM refuses the adapter."""
        before = self.models().get(name)
        if before is not None:
            if before.get("root") in (path, None):
                return "already_loaded"
            raise AdapterConflict(f"replica {self.name}: {name} already serves the adapter at {before.get('root')}, "
                                  f"not {path}: a served name never changes weights; load them under a new "
                                  "versioned name")
        response = self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code >= 500 and not _vllm_error(response):
            raise TransientError(f"replica {self.name}: loading {name} answered {response.status_code}: "
                                 f"{self._detail(response)}")
        listed = self.models().get(name)
        if response.status_code == 200 and listed is not None:
            return "loaded"
        if listed is not None and listed.get("root") in (path, None):
            return "already_loaded"  # loaded by the sidecar meanwhile (vLLM refuses a second load with 400)
        raise ServingError(f"replica {self.name}: vLLM refused adapter {name} from {path} "
                           f"(HTTP {response.status_code}): {self._detail(response)}")

    def unload_adapter(self, name: str) -> str:
        """Unload `name`; returns "unloaded" or "not_loaded". Routes must not point at it any more."""
        if name not in self.models():
            return "not_loaded"
        response = self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code >= 500:
            raise TransientError(f"replica {self.name}: unloading {name} answered {response.status_code}")
        if name not in self.models():
            return "unloaded"
        raise ServingError(f"replica {self.name}: unloading adapter {name} failed (HTTP "
                           f"{response.status_code}): {self._detail(response)}")

    # -- plain requests ----------------------------------------------------------------------------
    def chat(self, model: str, content: str, max_tokens: int) -> tuple[int, str, float]:
        """(HTTP status, the model that served, seconds) of one small chat request; never raises for HTTP."""
        started = time.perf_counter()
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "temperature": 0}
        try:
            response = self._client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            log.info("replica %s: request to %s failed: %s", self.name, model, type(exc).__name__)
            return 0, "", time.perf_counter() - started
        served = ""
        if response.status_code == 200:
            try:
                served = str(response.json().get("model", ""))
            except ValueError:
                served = ""
        return response.status_code, served, time.perf_counter() - started

    def timed_chat(self, model: str, content: str, max_tokens: int) -> RequestSample:
        """One streamed chat request, timed to its first generated text and to its end; never raises.

        The whole request, not only each read, ends at the client's timeout (status 0 past it)."""
        started = time.perf_counter()
        deadline = started + self._timeout_s
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True}
        ttft, served = None, ""
        try:
            with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    return RequestSample(status=response.status_code, e2e_s=time.perf_counter() - started)
                for line in response.iter_lines():
                    if time.perf_counter() > deadline:
                        log.info("replica %s: request to %s passed its %ss deadline", self.name, model,
                                 self._timeout_s)
                        return RequestSample(status=0, e2e_s=time.perf_counter() - started)
                    if ttft is None and _first_text(line):
                        ttft = time.perf_counter() - started
                    if not served and line.startswith("data: {"):
                        served = str(json.loads(line[5:]).get("model", ""))
        except (httpx.HTTPError, ValueError) as exc:
            log.info("replica %s: request to %s failed: %s", self.name, model, type(exc).__name__)
            return RequestSample(status=0, e2e_s=time.perf_counter() - started)
        e2e = time.perf_counter() - started
        return RequestSample(status=200, served=served, ttft_s=ttft if ttft is not None else e2e, e2e_s=e2e)


def _first_text(line: str) -> bool:
    """Whether one server-sent event line is a chunk carrying generated text."""
    if not line.startswith("data:") or line.strip() == "data: [DONE]":
        return False
    try:
        chunk = json.loads(line[5:])
    except ValueError:
        return False
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or [])


def _vllm_error(response: httpx.Response) -> bool:
    """vLLM's own error body (`{"error": {"message", "type", "code"}}`), not a proxy's error page."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and "message" in error
