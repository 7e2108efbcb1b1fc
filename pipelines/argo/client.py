"""The Argo Server REST API through Hera's WorkflowsService, with a timeout on every request.

- The base URL keeps its path prefix: Hera joins paths with urljoin, so `https://host/argo` would lose
  `/argo`; the host is normalised to end in '/' first.
- Hera's requests carry no timeout: the service gets a requests.Session that applies one to each call.
- Hera's models are Argo v4.0.5's and drop unknown fields silently: the compile tests check that the body
  Hera sends holds every field of the compiled object.
- The host is checked against the residency policy before any call. The bearer token goes only into the
  Authorization header; it is never printed.
- Logs: Argo streams them as one JSON object per line, which Hera's `workflow_logs` (one JSON document)
  cannot parse; they are read from the same URL through the same session, streamed.
"""

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import requests

from steps.common.residency import ResidencyPolicy

SERVER_URL_ENV = "EUROLORA_ARGO_SERVER_URL"  # overrides argo.server_url (e.g. a port-forward)
FINISHED = ("Succeeded", "Failed", "Error")


class ArgoError(RuntimeError):
    """The Argo Server refused or failed a request; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TimeoutSession(requests.Session):
    """A session that bounds every request Hera makes through it (Hera passes no timeout)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        kwargs.setdefault("allow_redirects", False)  # a redirect could leave the checked host
        return super().request(method, url, *args, **kwargs)


def normalise_base_url(url: str) -> str:
    """`https://h/argo` and `https://h/argo/` both become `https://h/argo/` (the prefix survives urljoin)."""
    url = url.strip()
    return url if url.endswith("/") else url + "/"


def server_url(configured: str | None, policy: ResidencyPolicy) -> str:
    url = os.environ.get(SERVER_URL_ENV) or configured
    if not url:
        raise ArgoError(f"no Argo Server URL: set argo.server_url in the config or ${SERVER_URL_ENV}")
    key = f"${SERVER_URL_ENV}" if os.environ.get(SERVER_URL_ENV) else "argo.server_url"
    policy.check_url(url, key)  # raises ResidencyError naming the key and the value
    return normalise_base_url(url)


def resolve_token(env_name: str, token_file: Path | None, token: Any | None) -> str | None:
    """The bearer token: $env_name when set, else the first line of token_file, else the config's
    SecretStr. Hera adds the `Bearer ` prefix when the value has none."""
    if os.environ.get(env_name, "").strip():
        return os.environ[env_name].strip()
    if token_file is not None:
        try:
            text = token_file.expanduser().read_text().strip()
        except OSError as exc:
            raise ArgoError(f"argo.token_file={str(token_file)!r}: cannot read it ({exc.strerror})") from None
        if not text:
            raise ArgoError(f"argo.token_file={str(token_file)!r} is empty")
        return text
    if token is not None and token.get_secret_value().strip():
        return token.get_secret_value().strip()
    return None


class ArgoClient:
    def __init__(self, base_url: str, namespace: str, token: str | None = None, verify: bool = True,
                 timeout_s: float = 30.0) -> None:
        from hera.workflows import WorkflowsService

        self.namespace = namespace
        self.service = WorkflowsService(host=normalise_base_url(base_url), token=token, verify_ssl=verify,
                                        namespace=namespace, session=TimeoutSession(timeout_s))

    def close(self) -> None:
        self.service.close()

    def __enter__(self) -> "ArgoClient":  # noqa: PYI034
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return urljoin(self.service.host, path)

    def ui_link(self, name: str) -> str:
        return self.service.get_workflow_link(name)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One Hera service call, its errors as ArgoError, its model as the JSON dict Argo sent."""
        from hera.exceptions import HeraException
        from pydantic import ValidationError

        try:
            result = fn(*args, **kwargs)
        except ValidationError as exc:
            raise ArgoError(f"{what}: the answer does not fit Hera's Argo models ({exc.error_count()} problems, "
                            f"first: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']})") from None
        except HeraException as exc:
            # Hera: "Server returned status code N with message: `...`" (a class per common status code)
            found = re.match(r"Server returned status code (\d+) with message: `(.*)`$", str(exc), re.DOTALL)
            status, message = (int(found.group(1)), found.group(2)) if found else (None, str(exc))
            raise ArgoError(f"{what}: HTTP {status}: {message[:300]}" if status else f"{what}: {message[:300]}",
                            status=status) from None
        except KeyError:  # Hera reads `message` from an error body that has none
            raise ArgoError(f"{what}: the server answered with an error but no message") from None
        except requests.Timeout as exc:
            raise ArgoError(f"{what}: timed out ({exc})") from None
        except requests.RequestException as exc:
            raise ArgoError(f"{what}: {type(exc).__name__}: {exc}") from None
        return json.loads(result.model_dump_json(by_alias=True, exclude_none=True))

    # ---- API ----------------------------------------------------------------------------------------
    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        from hera.workflows.models import Workflow, WorkflowCreateRequest

        req = WorkflowCreateRequest(namespace=self.namespace, workflow=Workflow.model_validate(workflow))
        return self._call(f"POST {self.url(f'api/v1/workflows/{self.namespace}')}", self.service.create_workflow,
                          req, namespace=self.namespace)

    def ensure_workflow_template(self, template: dict[str, Any]) -> bool:
        """Create the (versioned, immutable) template; False when it already exists under that name."""
        from hera.workflows.models import WorkflowTemplate, WorkflowTemplateCreateRequest

        req = WorkflowTemplateCreateRequest(namespace=self.namespace,
                                            template=WorkflowTemplate.model_validate(template))
        try:
            self._call(f"POST {self.url(f'api/v1/workflow-templates/{self.namespace}')}",
                       self.service.create_workflow_template, req, namespace=self.namespace)
        except ArgoError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def apply_cron_workflow(self, cron: dict[str, Any]) -> str:
        """Create the CronWorkflow, or replace the one of that name: "created" or "updated"."""
        from hera.workflows.models import CreateCronWorkflowRequest, CronWorkflow, UpdateCronWorkflowRequest

        name, path = cron["metadata"]["name"], f"api/v1/cron-workflows/{self.namespace}"
        req = CreateCronWorkflowRequest(namespace=self.namespace, cron_workflow=CronWorkflow.model_validate(cron))
        try:
            self._call(f"POST {self.url(path)}", self.service.create_cron_workflow, req, namespace=self.namespace)
            return "created"
        except ArgoError as exc:
            if exc.status != 409:
                raise
        current = self._call(f"GET {self.url(f'{path}/{name}')}", self.service.get_cron_workflow, name,
                             namespace=self.namespace)
        # Kubernetes replaces an object only at the version it was read at.
        replacement = {**cron, "metadata": {**cron["metadata"],
                                            "resourceVersion": current["metadata"].get("resourceVersion")}}
        update = UpdateCronWorkflowRequest(name=name, namespace=self.namespace,
                                           cron_workflow=CronWorkflow.model_validate(replacement))
        self._call(f"PUT {self.url(f'{path}/{name}')}", self.service.update_cron_workflow, name, update,
                   namespace=self.namespace)
        return "updated"

    def get_workflow(self, name: str) -> dict[str, Any]:
        return self._call(f"GET {self.url(f'api/v1/workflows/{self.namespace}/{quote(name)}')}",
                          self.service.get_workflow, quote(name), namespace=self.namespace)

    def logs(self, name: str, container: str = "main") -> Iterator[tuple[str, str]]:
        """(pod name, line) of every step pod's log, as the Argo Server streams them (not followed)."""
        url = self.url(f"api/v1/workflows/{self.namespace}/{quote(name)}/log")
        params = {"logOptions.container": container, "logOptions.follow": "false"}
        headers = {"Authorization": self.service.token} if self.service.token else {}
        try:
            with self.service.session.request("GET", url, params=params, headers=headers, stream=True,
                                              verify=self.service.verify_ssl) as resp:
                if not resp.ok:
                    raise ArgoError(f"GET {url}: HTTP {resp.status_code}: {_message(resp)}", status=resp.status_code)
                for raw in resp.iter_lines(decode_unicode=True):
                    entry = _log_entry(raw)
                    if entry is None:
                        continue
                    if entry.get("error"):
                        raise ArgoError(f"logs of {name}: {entry['error'].get('message', entry['error'])}")
                    result = entry.get("result") or {}
                    yield result.get("podName", ""), result.get("content", "")
        except requests.RequestException as exc:
            raise ArgoError(f"GET {url}: {type(exc).__name__}: {exc}") from None

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


def _log_entry(raw: str | None) -> dict[str, Any] | None:
    if not raw or not raw.strip():
        return None
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def _message(resp: requests.Response) -> str:
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
