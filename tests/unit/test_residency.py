"""The residency decision table (also printed in the README): each value, accepted or refused."""

import pytest

from steps.common.residency import ResidencyError, ResidencyPolicy

POLICY = ResidencyPolicy(
    allowed_hosts=["127.0.0.1", "localhost", "s3.eu-central-1.amazonaws.com", "*.svc.cluster.local",
                   "llm.eu.example.org", "10.20.0.7"],
    plain_http_hosts=["127.0.0.1", "localhost", "*.svc.cluster.local"],
)

URL_CASES = [
    ("https://s3.eu-central-1.amazonaws.com", True),
    ("https://S3.EU-Central-1.AmazonAWS.com", True),  # hosts are case-insensitive
    ("https://s3.eu-central-1.amazonaws.com.", True),  # trailing dot is the same host
    ("http://mlflow.mlops.svc.cluster.local:5000", True),
    ("https://llm.eu.example.org/v1", True),
    ("http://127.0.0.1:8000/v1", True),
    ("https://10.20.0.7/v1", True),  # IP literal listed exactly
    ("https://s3.us-east-1.amazonaws.com", False),
    ("https://api.openai.com/v1", False),
    ("https://eu-central-1.example.attacker.com", False),
    ("https://s3.eu-central-1.amazonaws.com.evil.io", False),  # look-alike suffix
    ("https://evil-s3.eu-central-1.amazonaws.com", False),
    ("https://eu@us-east-1.amazonaws.com", False),  # userinfo trick
    ("https://s3.eu-central-1.amazonaws.com@evil.io", False),
    ("http://s3.eu-central-1.amazonaws.com", False),  # plain http to a public host
    ("http://llm.eu.example.org/v1", False),
    ("https://10.20.0.8/v1", False),  # unlisted IP literal
    ("https://[::1]:8000", False),  # not listed
    ("https://svc.cluster.local", False),  # wildcard needs a label in front
    ("ftp://s3.eu-central-1.amazonaws.com", False),
    ("https://", False),
    ("https://127.0.0.1:99999", False),  # malformed port
    ("https://llm.eu.example.org.attacker.net/v1", False),
]

REGION_CASES = [
    ("eu-central-1", True), ("EU-WEST-1", True), ("europe-west4", True), ("germanywestcentral", True),
    ("eu-west-2", False),  # London: not EU/EEA
    ("eu-central-2", False),  # Zurich: not EU/EEA
    ("us-east-1", False), ("ap-southeast-1", False), ("", False), ("eu-central-1x", False),
]


@pytest.mark.parametrize(("url", "allowed"), URL_CASES)
def test_endpoint_decision(url: str, allowed: bool) -> None:
    if allowed:
        POLICY.check_url(url, "k")
    else:
        with pytest.raises(ResidencyError) as refused:
            POLICY.check_url(url, "some.key")
        assert "some.key" in str(refused.value) and url.strip() in str(refused.value)


@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_region_decision(region: str, allowed: bool) -> None:
    if allowed:
        POLICY.check_region(region, "k")
    else:
        with pytest.raises(ResidencyError, match="storage.s3.region"):
            POLICY.check_region(region, "storage.s3.region")


def test_table_is_large_enough() -> None:
    assert len(URL_CASES) + len(REGION_CASES) >= 20
