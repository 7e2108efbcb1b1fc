"""The policy's own decisions on the residency table (tests/fixtures/residency_cases.py), and on the
other shapes a config value can take: bare hosts, other URI schemes, the policy's own regions."""

import pytest
from pydantic import ValidationError

from steps.common.residency import EU_REGIONS, ResidencyError, ResidencyPolicy
from tests.fixtures.residency_cases import BARE_ENDPOINT_CASES, POLICY, REGION_CASES, URL_CASES


@pytest.mark.parametrize(("url", "allowed"), URL_CASES)
def test_endpoint_decision(url: str, allowed: bool) -> None:
    if allowed:
        POLICY.check_url(url, "k")
    else:
        with pytest.raises(ResidencyError) as refused:
            POLICY.check_url(url, "some.key")
        assert "some.key" in str(refused.value) and repr(url.strip()) in str(refused.value)


@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_region_decision(region: str, allowed: bool) -> None:
    if allowed:
        POLICY.check_region(region, "k")
    else:
        with pytest.raises(ResidencyError, match="storage.s3.region"):
            POLICY.check_region(region, "storage.s3.region")


@pytest.mark.parametrize(("value", "allowed"), BARE_ENDPOINT_CASES)
def test_a_bare_endpoint_is_checked_by_its_host(value: str, allowed: bool) -> None:
    if allowed:
        POLICY.check_endpoint(value, "k")
    else:
        with pytest.raises(ResidencyError, match="storage.s3.endpoint_url"):
            POLICY.check_endpoint(value, "storage.s3.endpoint_url")


@pytest.mark.parametrize(("uri", "reason"), [
    ("gs://bucket/corpus", "scheme 'gs'"),
    ("hf://meta-llama/Llama-3", "scheme 'hf'"),
    ("file://fileserver.example.com/share/corpus", "on another host"),
    ("postgresql+psycopg2://mlflow@db.example.us/mlflow", "'db.example.us' is not in residency.allowed_hosts"),
    ("s3://arn:aws:s3:us-east-1:123456789012:accesspoint:docs/corpus", "access point ARN"),
    ("s3://arn:aws:s3::123456789012:accesspoint:mrap.mrap/x", "access point ARN"),  # multi-region: anywhere
    ("https://[::1/v1", "not a valid URL"),
])
def test_uris_of_other_schemes_are_refused_unless_they_stay_inside(uri: str, reason: str) -> None:
    with pytest.raises(ResidencyError, match="corpus") as refused:
        POLICY.check_uri(uri, "corpus")
    assert reason in refused.value.reason


@pytest.mark.parametrize("uri", [
    "s3://eurolora-artifacts/corpora/handbook/", "file:///srv/corpus", "file://localhost/srv/corpus",
    "sqlite:////srv/mlflow.db", "postgresql://10.20.0.7:5432/mlflow",
    "s3://arn:aws:s3:eu-central-1:123456789012:accesspoint:docs/corpus",
])
def test_uris_that_stay_inside_are_accepted(uri: str) -> None:
    POLICY.check_uri(uri, "corpus")


@pytest.mark.parametrize("regions", [["us-east-1"], ["eu-central-1", "eu-west-2"], ["eu-central-1x"], [""]])
def test_the_policy_itself_only_lists_eu_regions(regions: list[str]) -> None:
    with pytest.raises(ValidationError, match="not EU/EEA regions") as refused:
        ResidencyPolicy(allowed_regions=regions)
    assert str([r for r in regions if r != "eu-central-1"]) in str(refused.value)


def test_the_policy_may_narrow_the_eu_regions() -> None:
    assert ResidencyPolicy(allowed_regions=["EU-Central-1"]).allowed_regions == ["EU-Central-1"]
    assert ResidencyPolicy().allowed_regions == list(EU_REGIONS)


def test_table_is_large_enough() -> None:
    assert len(URL_CASES) + len(REGION_CASES) >= 20
