"""A very small Kubernetes API client: GET and JSON merge-patch of namespaced objects, nothing else.

In-cluster credentials (the pod's service-account token and CA, read per request, as they rotate); every
request has a timeout; the API URL is checked against the residency policy. Deliberately not the
`kubernetes` package: two verbs on two objects do not justify a dependency in every image.
"""

import json
import logging
from pathlib import Path
from typing import Any

import httpx

from steps.canary.settings import IN_CLUSTER_API_URL, KubernetesSettings
from steps.common.contract import TransientError
from steps.common.residency import ResidencyPolicy

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """The API server refused a request (not found, forbidden, invalid)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def object_path(api_version: str, plural: str, namespace: str, name: str) -> str:
    """`/api/v1/...` for the core group, `/apis/<group>/<version>/...` otherwise."""
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}/{name}"


class KubeClient:
    def __init__(self, settings: KubernetesSettings, residency: ResidencyPolicy,
                 transport: httpx.BaseTransport | None = None) -> None:
        api_url = settings.api_url or IN_CLUSTER_API_URL
        residency.check_url(api_url, "canary.kubernetes.api_url")
        self.settings = settings
        self.api_url = api_url
        ca = Path(settings.ca_path)
        verify: Any = str(ca) if ca.is_file() else True
        self._client = httpx.Client(base_url=api_url.rstrip("/"), timeout=settings.timeout_s,
                                    follow_redirects=False, trust_env=False, verify=verify, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = Path(self.settings.token_path)
        if token.is_file():
            headers["Authorization"] = f"Bearer {token.read_text().strip()}"
        return headers

    def _send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = self._headers()
        content = None
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH
            content = json.dumps(body).encode()
        try:
            response = self._client.request(method, path, headers=headers, content=content)
        except httpx.HTTPError as exc:
            raise TransientError(f"Kubernetes API {self.api_url}: {method} {path} failed "
                                 f"({type(exc).__name__})") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"Kubernetes API: {method} {path} answered {response.status_code}")
        if response.status_code >= 300:
            try:
                message = response.json().get("message", "")
            except ValueError:
                message = response.text[:300]
            raise KubeError(f"Kubernetes API refused {method} {path} (HTTP {response.status_code}): {message}",
                            response.status_code)
        return response.json()

    def get(self, path: str) -> dict[str, Any]:
        return self._send("GET", path)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7396): lists are replaced whole, so a patch sets them absolutely.

        With `metadata.resourceVersion` in the patch the API server applies it only to that version
        (HTTP 409 otherwise): a compare-and-set for read-modify-write updates."""
        log.info("kubernetes: merge-patch %s", path)
        return self._send("PATCH", path, patch)
