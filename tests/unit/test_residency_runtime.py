"""The whole residency table at run time: every client the steps build checks its endpoint before it makes
a connection, and the S3 client checks what boto3 resolved (the environment, ~/.aws/config, access point
ARNs), not only what the config says. No server is needed: a refused client never connects."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipelines.argo.client import SERVER_URL_ENV, server_url
from steps.canary.kube import KubeClient
from steps.canary.prometheus import PrometheusClient
from steps.canary.serving import ReplicaClient
from steps.canary.settings import KubernetesSettings, MetricsSettings
from steps.common.backup_store import BackupStore
from steps.common.engines.base import OpenAISettings
from steps.common.engines.openai_engine import OpenAIEngine
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError
from steps.common.storage import ArtifactStore, S3Settings, StorageError, StorageSettings
from tests.fixtures.residency_cases import POLICY, REGION_CASES, URL_CASES


def _store(**s3: Any) -> ArtifactStore:
    return ArtifactStore(StorageSettings(artifact_root="s3://artifacts/eurolora", s3=S3Settings(**s3)), POLICY)


# The key each client names in its refusal, and how the step code builds it.
CLIENTS: dict[str, Callable[[str], Any]] = {
    "storage.s3.endpoint_url": lambda url: _store(endpoint_url=url).s3_client(),
    "registry.tracking_uri": lambda url: Registry(RegistrySettings(tracking_uri=url), POLICY),
    "openai.base_url": lambda url: OpenAIEngine(OpenAISettings(base_url=url), POLICY),
    "canary.replicas": lambda url: ReplicaClient(url, POLICY),
    "canary.metrics.prometheus_url": lambda url: PrometheusClient(MetricsSettings(prometheus_url=url), POLICY),
    "canary.kubernetes.api_url": lambda url: KubeClient(KubernetesSettings(api_url=url), POLICY),
    "argo.server_url": lambda url: server_url(url, POLICY),
}


@pytest.fixture(autouse=True)
def _no_aws_or_argo_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
                 SERVER_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _close(client: Any) -> None:
    if hasattr(client, "close"):
        client.close()


@pytest.mark.parametrize("key", CLIENTS)
@pytest.mark.parametrize(("url", "allowed"), URL_CASES)
def test_every_client_decides_the_table(key: str, url: str, allowed: bool) -> None:
    if allowed:
        _close(CLIENTS[key](url))
        return
    with pytest.raises(ResidencyError) as refused:
        CLIENTS[key](url)
    assert refused.value.key == key and refused.value.value == url


@pytest.mark.parametrize(("url", "allowed"), URL_CASES)
def test_the_s3_endpoint_boto3_takes_from_the_environment_is_checked(
        monkeypatch: pytest.MonkeyPatch, url: str, allowed: bool) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)  # storage.s3.endpoint_url unset: boto3 would talk there
    if allowed:
        client = _store().s3_client()
        assert client.meta.endpoint_url == url
        client.close()
        return
    with pytest.raises((ResidencyError, StorageError)) as refused:
        _store().s3_client()
    assert url in str(refused.value)
    if isinstance(refused.value, ResidencyError):
        assert refused.value.key == "S3 endpoint from the AWS environment (storage.s3.endpoint_url unset)"
    else:  # boto3 itself refuses it as an endpoint before any check could run
        assert "Invalid endpoint" in str(refused.value)


def test_the_s3_endpoint_from_the_aws_config_file_is_checked(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[default]\nendpoint_url = https://s3.us-east-1.amazonaws.com\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the file is read when boto3's session is made
    with pytest.raises(ResidencyError, match="'https://s3.us-east-1.amazonaws.com' refused"):
        _store().s3_client()
    # An endpoint in the config wins over the file, and is what gets checked.
    _store(endpoint_url="http://127.0.0.1:9000").s3_client().close()


def test_the_backup_store_uses_the_same_checked_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.us-east-1.amazonaws.com")
    with pytest.raises(ResidencyError, match="AWS environment"):
        BackupStore(S3Settings(), POLICY)._client()


@pytest.mark.parametrize(("region", "allowed"), REGION_CASES)
def test_the_s3_client_region(region: str, allowed: bool) -> None:
    store = _store(endpoint_url="http://127.0.0.1:9000", region=region)
    if allowed:
        assert store.s3_client().meta.region_name == region
        return
    with pytest.raises(ResidencyError) as refused:
        store.s3_client()
    assert refused.value.key == "storage.s3.region" and refused.value.value == region


class _Sent(Exception):
    """Raised by a test hook that runs after the residency hook: the request would have been sent."""


def _request_host(uri: str) -> str:
    """The host an S3 GET of `uri` goes to, with the default AWS endpoint (virtual-hosted style)."""
    store = _store(region="eu-central-1")
    client = store.s3_client()

    def sent(request: Any, **_: Any) -> None:
        raise _Sent(request.url)

    client.meta.events.register("before-send.s3", sent)
    try:
        store.read_bytes(uri)
    except _Sent as exc:
        return str(exc.args[0])
    raise AssertionError("no request was prepared")


def test_a_bucket_request_goes_to_the_checked_endpoint() -> None:
    assert _request_host("s3://artifacts/eurolora/x") == "https://artifacts.s3.eu-central-1.amazonaws.com/eurolora/x"


@pytest.mark.parametrize("uri", [
    "s3://arn:aws:s3:us-east-1:123456789012:accesspoint:docs/x",  # boto3 routes it to us-east-1
    "s3://arn:aws:s3:eu-west-2:123456789012:accesspoint:docs/x",
])
def test_an_access_point_arn_cannot_route_around_the_checked_endpoint(uri: str) -> None:
    with pytest.raises(ResidencyError, match="S3 request host='docs-123456789012.s3-accesspoint"):
        _request_host(uri)
