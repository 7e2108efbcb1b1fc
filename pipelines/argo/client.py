"""A small client of the Argo Server REST API (httpx; every call has a timeout).

The base URL keeps its path prefix (`https://host/argo` -> `https://host/argo/api/v1/...`; Hera's
WorkflowsService joins with urljoin and drops it without a trailing slash). The host is checked against
the residency policy before any call. The bearer token comes only from an environment variable
(populated from a Kubernetes Secret), never from the config file; it is never printed.
"""

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from steps.common.residency import ResidencyPolicy

SERVER_URL_ENV = "EUROLORA_ARGO_SERVER_URL"  # overrides argo.server_url (e.g. a port-forward)
FINISHED = ("Succeeded", "Failed", "Error")


class ArgoError(RuntimeError):
    """The Argo Server refused or failed a request; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def normalise_base_url(url: str) -> str:
    """`https://h/argo` and `https://h/argo/` both become `https://h/argo/` (the prefix survives)."""
    url = url.strip()
    return url if url.endswith("/") else url + "/"


def server_url(configured: str | None, policy: ResidencyPolicy) -> str:
    url = os.environ.get(SERVER_URL_ENV) or configured
    if not url:
        raise ArgoError(f"no Argo Server URL: set argo.server_url in the config or ${SERVER_URL_ENV}")
    key = f"${SERVER_URL_ENV}" if os.environ.get(SERVER_URL_ENV) else "argo.server_url"
    policy.check_url(url, key)  # raises ResidencyError naming the key and the value
    return normalise_base_url(url)


def token_from_env(env_name: str) -> str | None:
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return None
    return raw if raw.lower().startswith("bearer ") else f"Bearer {raw}"


class ArgoClient:
    def __init__(self, base_url: str, namespace: str, token: str | None = None, verify: bool = True,
                 timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = normalise_base_url(base_url)
        self.namespace = namespace
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = token
        self._http = httpx.Client(headers=headers, verify=verify, timeout=httpx.Timeout(timeout_s),
                                  transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ArgoClient":  # noqa: PYI034
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def ui_link(self, name: str) -> str:
        return self.url(f"workflows/{self.namespace}/{name}")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 params: dict[str, str] | None = None) -> httpx.Response:
        try:
            resp = self._http.request(method, self.url(path), json=body, params=params)
        except httpx.TimeoutException as exc:
            raise ArgoError(f"{method} {self.url(path)}: timed out ({exc})") from None
        except httpx.HTTPError as exc:
            raise ArgoError(f"{method} {self.url(path)}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise ArgoError(f"{method} {self.url(path)}: HTTP {resp.status_code}: {_message(resp)}",
                            status=resp.status_code)
        return resp

    # ---- API ----------------------------------------------------------------------------------------
    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        body = {"namespace": self.namespace, "workflow": workflow}
        return self._request("POST", f"api/v1/workflows/{self.namespace}", body).json()

    def ensure_workflow_template(self, template: dict[str, Any]) -> bool:
        """Create the (versioned, immutable) template; False when it already exists under that name."""
        body = {"namespace": self.namespace, "template": template}
        try:
            self._request("POST", f"api/v1/workflow-templates/{self.namespace}", body)
        except ArgoError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def get_workflow(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"api/v1/workflows/{self.namespace}/{quote(name)}").json()

    def logs(self, name: str, container: str = "main") -> Iterator[tuple[str, str]]:
        """(pod name, line) of every step pod's log, as the Argo Server streams them (not followed)."""
        params = {"logOptions.container": container, "logOptions.follow": "false"}
        resp = self._request("GET", f"api/v1/workflows/{self.namespace}/{quote(name)}/log", params=params)
        for raw in resp.text.splitlines():
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if entry.get("error"):
                raise ArgoError(f"logs of {name}: {entry['error'].get('message', entry['error'])}")
            result = entry.get("result") or {}
            yield result.get("podName", ""), result.get("content", "")

    def wait(self, name: str, timeout_s: float, poll_s: float = 5.0,
             on_update: Callable[[dict[str, Any]], None] | None = None,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
             ) -> dict[str, Any]:
        """Poll until the workflow finished; calls `on_update` with each state; raises on timeout."""
        deadline = clock() + timeout_s
        while True:
            workflow = self.get_workflow(name)
            if on_update:
                on_update(workflow)
            if workflow.get("status", {}).get("phase") in FINISHED:
                return workflow
            if clock() + poll_s > deadline:
                raise ArgoError(f"workflow {name} still running after {timeout_s:.0f}s "
                                f"(see: eurolora status {name})")
            sleep(poll_s)


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    return str(body.get("message") or body)[:300] if isinstance(body, dict) else str(body)[:300]


# ---- presentation --------------------------------------------------------------------------------
def step_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """Pod nodes (one per step attempt) in start order."""
    nodes = (workflow.get("status") or {}).get("nodes") or {}
    pods = [n for n in nodes.values() if n.get("type") == "Pod"]
    return sorted(pods, key=lambda n: (n.get("startedAt") or "", n.get("displayName") or ""))


def progress_line(workflow: dict[str, Any]) -> str:
    status = workflow.get("status") or {}
    running = [f"{n.get('displayName')}" + (f" ({n['progress']})" if n.get("progress") else "")
               for n in step_nodes(workflow) if n.get("phase") == "Running"]
    line = f"{status.get('phase', 'Pending')} {status.get('progress', '0/0')}"
    return line + (f"  running: {', '.join(running)}" if running else "")


def status_table(workflow: dict[str, Any]) -> str:
    meta, status = workflow.get("metadata") or {}, workflow.get("status") or {}
    lines = [f"workflow  {meta.get('name')}  {status.get('phase', 'Pending')}  progress {status.get('progress', '')}",
             f"started   {status.get('startedAt', '-')}  finished {status.get('finishedAt') or '-'}"]
    if status.get("message"):
        lines.append(f"message   {status['message']}")
    rows = [("STEP", "PHASE", "PROGRESS", "MESSAGE")]
    nodes = (status.get("nodes") or {}).values()
    for node in sorted(nodes, key=lambda n: (n.get("startedAt") or "~", n.get("displayName") or "")):
        if node.get("type") != "Pod" and node.get("phase") not in ("Skipped", "Omitted"):
            continue
        rows.append((str(node.get("displayName", "")), str(node.get("phase", "")),
                     str(node.get("progress", "")), str(node.get("message", ""))[:80]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines += ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    return "\n".join(line.rstrip() for line in lines)
