"""Data-residency policy: which regions and endpoint hosts a run may touch.

One policy object is checked at config load, at compile time and at run time (every storage, registry
and LLM client checks the URL it is about to call). A violation names the offending key and value.
"""

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, Field, field_validator

# EU/EEA regions of the providers our users run on. London (eu-west-2) and Zurich (eu-central-2) are
# deliberately absent: neither is in the EU/EEA. A config's policy can only narrow this list; widening it
# is a reviewed code change here.
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

_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_LOCAL_SCHEMES = ("file", "sqlite")
_DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql")  # MLflow backends reached directly


class ResidencyError(ValueError):
    """A region or endpoint outside the residency policy."""

    def __init__(self, key: str, value: str, reason: str) -> None:
        super().__init__(f"residency: {key}={value!r} refused: {reason}")
        self.key, self.value, self.reason = key, value, reason


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


# A DNS label (letters, digits, hyphens inside; 1-63 characters) as resolvers and HTTP clients agree on it.
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def is_dns_name(host: str) -> bool:
    """Every label a valid DNS label: no backslash, percent sign, underscore or space that one URL parser
    keeps in the host while another (WHATWG: browsers, some HTTP clients) splits the URL there."""
    return all(_DNS_LABEL.match(label) for label in _normalise_host(host).split("."))


def host_matches(host: str, pattern: str) -> bool:
    """Exact host, or `*.suffix` matching whole DNS labels (`*.example.eu` matches `a.example.eu`)."""
    host, pattern = _normalise_host(host), _normalise_host(pattern)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1 and is_dns_name(host)
    return host == pattern


class ResidencyPolicy(BaseModel):
    """Allowed regions and endpoint hosts. Hosts are an allow-list: anything not listed is refused."""

    model_config = {"extra": "forbid"}

    allowed_regions: list[str] = Field(default_factory=lambda: list(EU_REGIONS))
    allowed_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))
    # Plain http is refused except for these hosts (loopback, in-cluster service DNS).
    plain_http_hosts: list[str] = Field(default_factory=lambda: list(LOOPBACK_HOSTS))

    @field_validator("allowed_regions")
    @classmethod
    def _only_eu_regions(cls, regions: list[str]) -> list[str]:
        # The policy may narrow the EU/EEA list, never widen it: a typo or a copied US region must not
        # silently become an allowed place for data.
        eu = {r.lower() for r in EU_REGIONS}
        outside = [r for r in regions if r.strip().lower() not in eu]
        if outside:
            raise ValueError(f"not EU/EEA regions: {outside}; the policy may only list regions of "
                             f"steps.common.residency.EU_REGIONS")
        return regions

    def check_region(self, region: str, key: str) -> None:
        if not self._region_allowed(region):
            raise ResidencyError(key, region, "region is not in residency.allowed_regions (EU/EEA by default)")

    def _region_allowed(self, region: str) -> bool:
        return region.strip().lower() in {r.lower() for r in self.allowed_regions}

    def check_arn(self, arn: str, key: str) -> None:
        """An AWS resource name that lives in a region (a KMS key, an access point) must live in an allowed
        one: data encrypted with a key in us-east-1 depends on a service outside the EU for every read."""
        fields = arn.strip().split(":", 5)
        if len(fields) < 6 or fields[0].lower() != "arn":
            raise ResidencyError(key, arn, "not an ARN (arn:partition:service:region:account:resource)")
        service, region = fields[2].lower(), fields[3]
        if (region or service == "kms") and not self._region_allowed(region):
            raise ResidencyError(key, arn, f"a {service} resource outside residency.allowed_regions")

    def check_url(self, url: str, key: str) -> None:
        """Refuse any http(s) URL whose host is not allowed, whatever tricks the string plays."""
        parts = _split(url, key)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ResidencyError(key, url, "only http(s) endpoints are allowed")
        host = self._check_netloc(parts, key, url)
        if scheme == "http" and not any(host_matches(host, p) for p in self.plain_http_hosts):
            raise ResidencyError(key, url, "plain http is only allowed for residency.plain_http_hosts")

    def check_endpoint(self, value: str, key: str) -> None:
        """A value that names an endpoint: a URL, or a bare `host[:port][/path]` (what boto3 or a DNS
        field would connect to), checked by its host."""
        if has_scheme(value):
            self.check_uri(value, key)
        else:
            self._check_netloc(_split("//" + value.strip(), key, value), key, value)

    def check_uri(self, uri: str, key: str) -> None:
        """A URI of any scheme: endpoints are checked by host, local files must stay local, and a scheme
        the pipeline does not speak is refused rather than passed through unchecked."""
        parts = _split(uri, key)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            self.check_url(uri, key)
        elif scheme == "s3":
            # A bucket, not a host (the S3 endpoint and the bucket's location are checked where used), but
            # an access point ARN sends requests to its own region: arn:aws:s3:<region>:<account>:accesspoint...
            fields = parts.netloc.split(":")
            if fields[0].lower() == "arn" and not self._region_allowed(fields[3] if len(fields) > 3 else ""):
                raise ResidencyError(key, uri, "an S3 access point ARN outside residency.allowed_regions")
        elif scheme in _LOCAL_SCHEMES:
            if _normalise_host(parts.netloc) not in ("", "localhost"):
                raise ResidencyError(key, uri, f"a {scheme} URI on another host ({parts.netloc!r})")
        elif scheme.split("+")[0] in _DATABASE_SCHEMES:
            self._check_host(_normalise_host(parts.hostname or ""), key, uri)
        else:
            raise ResidencyError(key, uri, f"scheme {scheme!r} is not one the pipeline uses "
                                           "(http(s), s3, file, sqlite, or a database on an allowed host)")

    def _check_netloc(self, parts: SplitResult, key: str, value: str) -> str:
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ResidencyError(key, value, f"not a valid URL ({exc})") from None
        if "@" in parts.netloc:
            raise ResidencyError(key, value, "credentials or userinfo in the URL are not allowed")
        host = _normalise_host(parts.hostname or "")
        self._check_host(host, key, value)
        return host

    def _check_host(self, host: str, key: str, value: str) -> None:
        if not host:
            raise ResidencyError(key, value, "the URL has no host")
        if not (_is_ip(host) or is_dns_name(host)):
            raise ResidencyError(key, value, f"host {host!r} has characters no DNS name allows")
        if not any(host_matches(host, pattern) for pattern in self.allowed_hosts):
            raise ResidencyError(key, value, f"host {host!r} is not in residency.allowed_hosts")
        if _is_ip(host) and not any(_normalise_host(p) == host for p in self.allowed_hosts):
            raise ResidencyError(key, value, "IP literals must be listed exactly in residency.allowed_hosts")


def has_scheme(value: str) -> bool:
    """`scheme://...`: a URI to check by its scheme (bare names and paths have none)."""
    return bool(_SCHEME.match(value))


def _split(text: str, key: str, value: str | None = None) -> SplitResult:
    try:
        return urlsplit(text.strip())
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ResidencyError(key, text if value is None else value, f"not a valid URL ({exc})") from None


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
    # vLLM finds "its" address by connecting a UDP socket to 8.8.8.8 unless told: a step's engine processes
    # talk to each other inside one pod (one machine), never across hosts.
    "VLLM_HOST_IP": "127.0.0.1",
}
