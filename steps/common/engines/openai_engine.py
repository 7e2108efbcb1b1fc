"""The `openai` engine: any OpenAI-compatible chat-completions server inside the EU (vLLM, llama.cpp).

- The endpoint is checked against the residency policy before anything is sent; redirects are never
  followed and proxy variables from the environment are ignored (both would reach unchecked hosts).
- `settings.concurrency` requests are in flight at once (a thread pool over one pooled httpx client),
  the public API stays synchronous.
- Every attempt has `settings.timeout_s` per network phase and as a total deadline on the body.
- Connect errors, timeouts, dropped connections, 408, 429 and 5xx are retried with exponential
  backoff and jitter (429's Retry-After is honoured); other 4xx are not retried.
- One failed or malformed answer becomes `GenerationResult(finish_reason="error", error=...)`;
  if the endpoint answered none of the requests (connection refused, timeouts), `TransientError`.
- Logs carry counts, timings and status codes, never prompt or output text, never the API key.
"""

import json
import logging
import os
import random
import re
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self

import httpx

from steps.common.contract import TransientError
from steps.common.engines.base import GenerationRequest, GenerationResult, OpenAISettings
from steps.common.residency import ResidencyPolicy

log = logging.getLogger(__name__)

RESPONSE_FORMAT_STYLES: tuple[str, ...] = ("json_schema", "json_object")

MAX_BACKOFF_S = 60.0  # one wait between attempts never exceeds this, whatever Retry-After says
MAX_BODY_BYTES = 16 * 1024 * 1024  # a misbehaving server cannot exhaust memory
_RETRY_STATUSES = frozenset({408, 429})
_IDENT = re.compile(r"^[A-Za-z0-9_.\-]{1,48}$")

# Failure kinds. The transport kinds mean "no HTTP answer at all"; all requests failing that way
# means the endpoint is down or unresponsive, which is transient for the step as a whole.
CONNECT, TIMEOUT, NETWORK = "connect", "timeout", "network"
TRANSPORT_KINDS = frozenset({CONNECT, TIMEOUT, NETWORK})


class _DeadlineExceeded(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


@dataclass
class _Outcome:
    result: GenerationResult | None  # None: aborted because the endpoint is down
    attempts: int = 0
    kind: str = "ok"  # "ok", a transport kind, "http", "malformed", "internal", "aborted"
    statuses: list[int] = field(default_factory=list)


def chat_completions_url(base_url: str) -> str:
    """`{base_url}/chat/completions`, keeping any path prefix (`https://h/prefix/v1` stays under /prefix)."""
    return base_url.strip().rstrip("/") + "/chat/completions"


def response_format(schema: dict[str, Any], style: str) -> dict[str, Any]:
    """The `response_format` that constrains output to `schema` on the given server family."""
    if style == "json_schema":  # OpenAI and vLLM
        return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    if style == "json_object":  # llama.cpp (llama-cpp-python's server rejects json_schema with HTTP 500)
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"openai.response_format_style={style!r}: expected one of {RESPONSE_FORMAT_STYLES}")


def build_payload(
    request: GenerationRequest, *, model: str, temperature: float, seed: int | None, style: str
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": request.adapter or model,  # vLLM serves each LoRA adapter under its own model name
        "messages": request.messages,
        "max_tokens": request.max_new_tokens,
        "temperature": temperature,
    }
    if seed is not None:
        payload["seed"] = seed
    if request.json_schema is not None:
        payload["response_format"] = response_format(request.json_schema, style)
    return payload


def parse_completion(body: bytes) -> GenerationResult:
    """A chat-completions body -> result; anything unexpected -> an error result, never an exception."""

    def bad(reason: str, text: str = "") -> GenerationResult:
        return GenerationResult(text=text, finish_reason="error", error=f"malformed response: {reason}")

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return bad(f"body is not valid JSON ({len(body)} bytes)")
    if not isinstance(data, dict):
        return bad(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return bad("no choices[0] object")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), str):
        return bad("choices[0].message.content is not a string")
    text: str = message["content"]
    usage = data.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else 0
    finish = choice.get("finish_reason")
    if finish in ("stop", "length"):
        return GenerationResult(text=text, finish_reason=finish, completion_tokens=tokens)
    shown = finish if isinstance(finish, str) and _IDENT.match(finish) else type(finish).__name__
    return GenerationResult(
        text=text, finish_reason="error", completion_tokens=tokens, error=f"unexpected finish_reason {shown}"
    )


def _error_detail(body: bytes) -> str:
    """The error `type`/`code` of an error body, if it is a short identifier (never its free text)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    if not isinstance(data, dict):
        return ""
    for key in ("type", "code"):
        value = data.get(key)
        if isinstance(value, str) and _IDENT.match(value):
            return f" ({value})"
    return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: ignore, use our own backoff
    return max(0.0, seconds)


def _ssl_context() -> ssl.SSLContext:
    """What httpx would verify with (SSL_CERT_FILE / SSL_CERT_DIR for an in-cluster CA, else certifi),
    without the rest of `trust_env` (proxy variables, .netrc)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)


class OpenAIEngine:
    """`Engine` over an OpenAI-compatible `/chat/completions` endpoint. Use `close()` (or `with`)."""

    def __init__(
        self,
        settings: OpenAISettings,
        residency: ResidencyPolicy,
        *,
        temperature: float = 0.0,
        seed: int | None = 0,
    ) -> None:
        residency.check_url(settings.base_url, "openai.base_url")  # before any connection is made
        self._settings = settings
        self._style: str = settings.response_format_style
        self._temperature = temperature
        self._seed = seed
        self._url = chat_completions_url(settings.base_url)
        self._rng = random.Random()
        headers = {"Accept": "application/json"}
        key = os.environ.get(settings.api_key_env, "").strip() if settings.api_key_env else ""
        if key and not all(33 <= ord(ch) < 127 for ch in key):
            # Checked here: httpx/h11 would put the offending value in an exception message.
            raise ValueError(f"the API key in ${settings.api_key_env} has characters not allowed in an HTTP header")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._authenticated = bool(key)
        del key
        timeout = settings.timeout_s
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            limits=httpx.Limits(
                max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
            ),
            follow_redirects=False,  # a redirect could lead outside the residency policy
            trust_env=False,  # HTTP(S)_PROXY would send traffic to a host the policy never checked
            verify=_ssl_context(),
        )
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="openai-engine")
        self._closed = False
        log.info(
            "openai engine: %s model=%s concurrency=%d timeout=%.1fs retries=%d response_format=%s auth=%s",
            self._url, settings.model, settings.concurrency, timeout, settings.max_retries, self._style,
            "bearer" if self._authenticated else "none",
        )

    def __repr__(self) -> str:
        return f"OpenAIEngine(url={self._url!r}, model={self._settings.model!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # -- generation -------------------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self._closed:
            raise RuntimeError("OpenAIEngine.generate() after close()")
        if not requests:
            return []
        started = time.monotonic()
        abort = threading.Event()  # set when the endpoint is clearly down: stop, raise TransientError
        answered = threading.Event()  # set at the first HTTP response of any status
        futures: list[Future[_Outcome]] = [
            self._pool.submit(self._run_one, index, request, abort, answered)
            for index, request in enumerate(requests)
        ]
        try:
            outcomes = [future.result() for future in futures]
        except BaseException:
            abort.set()
            for future in futures:
                future.cancel()
            raise
        elapsed = time.monotonic() - started
        self._log_summary(outcomes, elapsed)
        kinds = Counter(outcome.kind for outcome in outcomes)
        if abort.is_set() or set(kinds) <= TRANSPORT_KINDS:
            first = next((o for o in outcomes if o.result is not None and o.result.error), None)
            reason = first.result.error if first and first.result else "connection refused"
            raise TransientError(
                f"openai engine: the endpoint {self._url} answered none of {len(requests)} requests "
                f"(last error: {reason}); is the server up and reachable? The step is safe to retry."
            )
        results = [outcome.result for outcome in outcomes]
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    def _run_one(
        self, index: int, request: GenerationRequest, abort: threading.Event, answered: threading.Event
    ) -> _Outcome:
        outcome = _Outcome(result=None)
        try:
            payload = build_payload(
                request, model=self._settings.model, temperature=self._temperature, seed=self._seed,
                style=self._style,
            )
            self._attempts(index, payload, outcome, abort, answered)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the request: report it as its error
            log.error("openai engine: request %d: internal error %s", index, type(exc).__name__)
            outcome.kind = "internal"
            outcome.result = GenerationResult(
                text="", finish_reason="error", error=f"internal error: {type(exc).__name__}"
            )
        return outcome

    def _attempts(
        self, index: int, payload: dict[str, Any], outcome: _Outcome, abort: threading.Event,
        answered: threading.Event,
    ) -> None:
        max_attempts = self._settings.max_retries + 1
        while True:
            if abort.is_set():
                outcome.kind = "aborted"
                return
            outcome.attempts += 1
            retry_after: float | None = None
            t0 = time.monotonic()
            try:
                status, body, retry_after_header = self._post(payload)
            except httpx.ConnectTimeout:
                kind, reason = CONNECT, "connect timeout"
            except httpx.ConnectError:
                kind, reason = CONNECT, "connection failed"
            except (httpx.TimeoutException, _DeadlineExceeded):
                kind, reason = TIMEOUT, f"timeout after {self._settings.timeout_s:g}s"
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                kind, reason = NETWORK, f"connection broken ({type(exc).__name__})"
            except _BodyTooLarge:
                answered.set()
                outcome.kind = "malformed"
                outcome.result = GenerationResult(
                    text="", finish_reason="error", error=f"malformed response: body over {MAX_BODY_BYTES} bytes"
                )
                return
            else:
                answered.set()
                outcome.statuses.append(status)
                if 200 <= status < 300:
                    outcome.result = parse_completion(body)
                    outcome.kind = "ok" if outcome.result.finish_reason != "error" else "malformed"
                    log.debug("openai engine: request %d: HTTP %d in %.3fs", index, status,
                              time.monotonic() - t0)
                    return
                kind, reason = "http", f"HTTP {status}{_error_detail(body)}"
                if not (status in _RETRY_STATUSES or status >= 500):
                    log.warning("openai engine: request %d: HTTP %d, not retried", index, status)
                    outcome.kind = kind
                    outcome.result = GenerationResult(text="", finish_reason="error", error=reason)
                    return
                retry_after = _retry_after(retry_after_header) if status == 429 else None
            if outcome.attempts >= max_attempts:
                log.warning("openai engine: request %d: %s, giving up after %d attempts", index, reason,
                            outcome.attempts)
                outcome.kind = kind
                outcome.result = GenerationResult(
                    text="", finish_reason="error", error=f"{reason} (after {outcome.attempts} attempts)"
                )
                if kind == CONNECT and not answered.is_set():
                    abort.set()  # never reached the server through a whole backoff window: it is down
                return
            delay = self._backoff(outcome.attempts, retry_after)
            log.info("openai engine: request %d: %s, attempt %d/%d, retrying in %.2fs", index, reason,
                     outcome.attempts, max_attempts, delay)
            if abort.wait(delay):
                outcome.kind = "aborted"
                return

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential (backoff_s * 2^(attempt-1)) with jitter in [50%, 100%], capped; honours Retry-After."""
        base = min(MAX_BACKOFF_S, self._settings.backoff_s * 2 ** (attempt - 1))
        delay = base * self._rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_BACKOFF_S))
        return delay

    def _post(self, payload: dict[str, Any]) -> tuple[int, bytes, str | None]:
        deadline = time.monotonic() + self._settings.timeout_s
        with self._client.stream("POST", self._url, json=payload) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded()
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), response.headers.get("retry-after")

    def _log_summary(self, outcomes: list[_Outcome], elapsed: float) -> None:
        kinds = Counter(outcome.kind for outcome in outcomes)
        statuses = Counter(status for outcome in outcomes for status in outcome.statuses)
        retries = sum(max(0, outcome.attempts - 1) for outcome in outcomes)
        tokens = sum(outcome.result.completion_tokens for outcome in outcomes if outcome.result)
        log.info(
            "openai engine: %d requests in %.2fs (%.2f req/s, %.1f completion tok/s): %s; HTTP statuses %s; "
            "%d retries",
            len(outcomes), elapsed, len(outcomes) / elapsed if elapsed else 0.0,
            tokens / elapsed if elapsed else 0.0, dict(sorted(kinds.items())),
            dict(sorted(statuses.items())), retries,
        )
