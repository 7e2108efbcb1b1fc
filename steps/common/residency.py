"""Data-residency policy: which regions and endpoint hosts a run may touch.

One policy object is checked at config load, at compile time and at run time (every storage, registry
and LLM client checks the URL it is about to call). A violation names the offending key and value.
"""

import ipaddress
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

# EU/EEA regions of the providers our users run on. London (eu-west-2) and Zurich (eu-central-2) are
# deliberately absent: neither is in the EU/EEA. Add them to `allowed_regions` only on legal advice.
EU_REGIONS: tuple[str, ...] = (
    # AWS
    "eu-central-1", "eu-west-1", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1",
    # Google Cloud
    "europe-west1", "europe-west3", "europe-west4", "europe-west8", "europe-west9", "europe-west10",
    "europe-west12", "europe-north1", "europe-north2", "europe-central2", "europe-southwest1",
    # Azure
    "westeurope", "northeurope", "germanywestcentral", "francecentral", "swedencentral",
    "italynorth", "polandcentral", "spaincentral",
    # European providers
    "fr-par", "nl-ams", "pl-waw", "gra", "sbg", "de-fra", "de-txl", "fsn1", "nbg1", "hel1",
)

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


class ResidencyError(ValueError):
    """A region or endpoint outside the residency policy."""

    def __init__(self, key: str, value: str, reason: str) -> None:
        super().__init__(f"residency: {key}={value!r} refused: {reason}")
        self.key, self.value, self.reason = key, value, reason


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def host_matches(host: str, pattern: str) -> bool:
    """Exact host, or `*.suffix` matching whole DNS labels (`*.example.eu` matches `a.example.eu`)."""
    host, pattern = _normalise_host(host), _normalise_host(pattern)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


class ResidencyPolicy(BaseModel):
    """Allowed regions and endpoint hosts. Hosts are an allow-list: anything not listed is refused."""

    model_config = {"extra": "forbid"}

    allowed_regions: list[str] = Field(default_factory=lambda: list(EU_REGIONS))
    allowed_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))
    # Plain http is refused except for these hosts (loopback, in-cluster service DNS).
    plain_http_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))

    def check_region(self, region: str, key: str) -> None:
        normalised = region.strip().lower()
        if normalised not in {r.lower() for r in self.allowed_regions}:
            raise ResidencyError(key, region, "region is not in residency.allowed_regions (EU/EEA by default)")

    def check_url(self, url: str, key: str) -> None:
        """Refuse any URL whose host is not allowed, whatever tricks the string plays."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port  # raises on a malformed port
        except ValueError as exc:
            raise ResidencyError(key, url, f"not a valid URL ({exc})") from None
        del port
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ResidencyError(key, url, "only http(s) endpoints are allowed")
        if "@" in parts.netloc:
            raise ResidencyError(key, url, "credentials or userinfo in the URL are not allowed")
        host = _normalise_host(parts.hostname or "")
        if not host:
            raise ResidencyError(key, url, "the URL has no host")
        if not any(host_matches(host, pattern) for pattern in self.allowed_hosts):
            raise ResidencyError(key, url, f"host {host!r} is not in residency.allowed_hosts")
        if _is_ip(host) and not any(_normalise_host(p) == host for p in self.allowed_hosts):
            raise ResidencyError(key, url, "IP literals must be listed exactly in residency.allowed_hosts")
        if scheme == "http" and not any(host_matches(host, p) for p in self.plain_http_hosts):
            raise ResidencyError(key, url, "plain http is only allowed for residency.plain_http_hosts")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# Set in every step process and pod: no model-hub downloads, no telemetry from any library we use.
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow 3.x ignores DO_NOT_TRACK
}
