"""The registry wrapper and its promotion lock against a real MLflow registry in a SQLite file."""

import os
import time
from pathlib import Path

import pytest

from steps.common.contract import TransientError
from steps.common.promotion_lock import Lease, LeaseLost, LeaseSettings, PromotionLock
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyError, ResidencyPolicy
from steps.common.tags import LOCK_EXPIRES_TAG, LOCK_OWNER_TAG
from tests.fixtures.mlflow import make_finetune_run, mlflow_client

FAST = LeaseSettings(settle_s=0.05, poll_s=0.05, wait_s=1.0)


def _registry(uri: str, model: str, **kwargs: object) -> Registry:
    settings = RegistrySettings(tracking_uri=uri, model_name=model, timeout_s=5)
    return Registry(settings, ResidencyPolicy(), **kwargs)


def _version(registry: Registry, uri: str, tmp_path: Path, tag: str) -> str:
    run_id = make_finetune_run(uri, "eurolora", tmp_path / "mlartifacts")
    return registry.create_version(f"file:///nowhere/{tag}", run_id, {"eurolora.tag": tag}).version


def test_missing_model_alias_or_version_reads_as_none(mlflow_sqlite_uri: str, mlflow_model: str,
                                                      tmp_path: Path) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model)
    assert registry.alias_version("champion") is None  # no registered model at all
    v1 = _version(registry, mlflow_sqlite_uri, tmp_path, "a")
    assert registry.alias_version("champion") is None  # model, no alias
    registry.set_alias("champion", v1)
    info = registry.alias_version("champion")
    assert info is not None and (info.version, info.tags["eurolora.tag"]) == (v1, "a")
    assert info.source == "file:///nowhere/a" and "champion" in info.aliases
    registry.delete_alias("champion")
    assert registry.alias_version("champion") is None  # deleted alias: INVALID_PARAMETER_VALUE in MLflow
    registry.delete_alias("champion")  # deleting twice is fine


def test_create_and_tag_version(mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model)
    run_id = make_finetune_run(mlflow_sqlite_uri, "eurolora", tmp_path / "mlartifacts")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    source = registry.log_adapter(run_id, adapter)
    info = registry.create_version(source, run_id, {"eurolora.adapter_uri": "file:///x"})
    registry.tag_version(info.version, {"eurolora.decision": "rejected"})
    got = registry.get_version(info.version)
    assert got.tags == {"eurolora.adapter_uri": "file:///x", "eurolora.decision": "rejected"}
    assert got.run_id == run_id and got.source == source
    assert Path(source.removeprefix("file://"), "adapter_config.json").read_text() == "{}"
    found = registry.find_versions(run_id, {"eurolora.decision": "rejected"})
    assert [v.version for v in found] == [info.version]
    assert registry.find_versions(run_id, {"eurolora.decision": "promoted"}) == []


def test_unknown_finetune_run_is_a_clear_error(mlflow_sqlite_uri: str, mlflow_model: str,
                                               tmp_path: Path) -> None:
    from steps.common.registry import RegistryError

    with pytest.raises(RegistryError, match="reading MLflow run 'deadbeef'"):
        _registry(mlflow_sqlite_uri, mlflow_model).log_adapter("deadbeef", tmp_path)


def test_cas_swaps_then_refuses_a_stale_expectation(mlflow_sqlite_uri: str, mlflow_model: str,
                                                    tmp_path: Path) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model)
    v1, v2, v3 = (_version(registry, mlflow_sqlite_uri, tmp_path, t) for t in "abc")
    first = PromotionLock(registry).compare_and_set_champion(v1, None, FAST)
    assert (first.outcome, first.champion_version, first.previous_version) == ("swapped", v1, None)
    second = PromotionLock(registry).compare_and_set_champion(v2, v1, FAST)
    assert (second.outcome, second.previous_version) == ("swapped", v1)
    stale = PromotionLock(registry).compare_and_set_champion(v3, v1, FAST)
    assert (stale.outcome, stale.promoted, stale.champion_version) == ("refused", False, v2)
    assert registry.aliases() == {"champion": v2, "previous": v1}
    again = PromotionLock(registry).compare_and_set_champion(v2, v1, FAST)
    assert again.outcome == "already_champion" and again.promoted
    assert PromotionLock(registry).read() is None  # released every time


def test_held_lock_blocks_then_times_out_as_transient(mlflow_sqlite_uri: str, mlflow_model: str,
                                                      tmp_path: Path) -> None:
    holder, other = _registry(mlflow_sqlite_uri, mlflow_model), _registry(mlflow_sqlite_uri, mlflow_model)
    v1 = _version(holder, mlflow_sqlite_uri, tmp_path, "a")
    with PromotionLock(holder).lock(FAST):
        started = time.monotonic()
        with pytest.raises(TransientError, match="promotion lock .* is held by .*gave up after 1.0s"):
            PromotionLock(other).compare_and_set_champion(v1, None, FAST)
        assert 1.0 <= time.monotonic() - started < 5
    assert other.alias_version("champion") is None
    assert PromotionLock(other).compare_and_set_champion(v1, None, FAST).outcome == "swapped"


def test_expired_lock_of_a_crashed_promoter_is_broken(mlflow_sqlite_uri: str, mlflow_model: str,
                                                      tmp_path: Path) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model)
    v1 = _version(registry, mlflow_sqlite_uri, tmp_path, "a")
    client = mlflow_client(mlflow_sqlite_uri)
    # What a promoter that crashed while holding the lock leaves behind.
    client.create_registered_model(PromotionLock(registry).name, tags={LOCK_OWNER_TAG: "crashed:1:x",
                                                            LOCK_EXPIRES_TAG: f"{time.time() - 1:.3f}"})
    result = PromotionLock(registry).compare_and_set_champion(v1, None, FAST)
    assert result.outcome == "swapped"
    assert PromotionLock(registry).read() is None


def test_a_live_lock_is_not_broken(mlflow_sqlite_uri: str, mlflow_model: str, tmp_path: Path) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model)
    v1 = _version(registry, mlflow_sqlite_uri, tmp_path, "a")
    mlflow_client(mlflow_sqlite_uri).create_registered_model(
        PromotionLock(registry).name, tags={LOCK_OWNER_TAG: "alive:1:x", LOCK_EXPIRES_TAG: f"{time.time() + 60:.3f}"})
    with pytest.raises(TransientError, match="held by alive:1:x"):
        PromotionLock(registry).compare_and_set_champion(v1, None, FAST)
    assert PromotionLock(registry).read()[LOCK_OWNER_TAG] == "alive:1:x"
    assert registry.alias_version("champion") is None


def test_a_lease_stops_writing_before_half_its_ttl() -> None:
    fresh = Lease(token="t", acquired_monotonic=time.monotonic(), ttl_s=100, call_bound_s=10, waited_s=0)
    fresh.assert_fresh()
    old = fresh.model_copy(update={"acquired_monotonic": time.monotonic() - 41})  # 41 + 10 > 100 / 2
    with pytest.raises(LeaseLost, match="past half its ttl of 100"):
        old.assert_fresh()


def test_a_ttl_too_short_for_the_call_timeout_is_refused(mlflow_sqlite_uri: str, mlflow_model: str) -> None:
    registry = _registry(mlflow_sqlite_uri, mlflow_model, max_retries=1)  # 5 s x 2 attempts + 0.5 s
    assert registry.call_bound_s == 10.5
    with pytest.raises(ValueError, match="ttl_s=20.0 is too short .* use ttl_s >= 23"), \
            PromotionLock(registry).lock(LeaseSettings(ttl_s=20, settle_s=0.0)):
        pass
    assert PromotionLock(registry).read() is None


def test_http_settings_are_scoped_to_each_call(mlflow_sqlite_uri: str, mlflow_model: str) -> None:
    os.environ.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
    settings = RegistrySettings(tracking_uri=mlflow_sqlite_uri, model_name=mlflow_model, timeout_s=2.5)
    registry = Registry(settings, ResidencyPolicy(), max_retries=1)
    seen = registry.call("probe", lambda client: (os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"],
                                                   os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"],
                                                   os.environ["MLFLOW_DISABLE_TELEMETRY"]))
    assert seen == ("3", "1", "true")  # MLflow parses the timeout as an int: rounded up, never to 0
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_closed_port_is_transient_and_fast(mlflow_model: str) -> None:
    from pipelines.local.processes import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    settings = RegistrySettings(tracking_uri=closed, model_name=mlflow_model, timeout_s=2)
    registry = Registry(settings, ResidencyPolicy(), max_retries=0)
    started = time.monotonic()
    with pytest.raises(TransientError, match="unreachable during read alias champion"):
        registry.alias_version("champion")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("uri", [
    "https://mlflow.example.com", "http://mlflow.internal.eu:5000", "postgresql://db.example.us/mlflow",
    "databricks",
])
def test_registry_outside_the_residency_policy_is_refused_before_any_call(uri: str) -> None:
    policy = ResidencyPolicy(allowed_hosts=["127.0.0.1", "mlflow.internal.eu"])
    with pytest.raises(ResidencyError, match="registry.tracking_uri"):
        Registry(RegistrySettings(tracking_uri=uri), policy)


def test_allowed_https_registry_passes_the_residency_check() -> None:
    policy = ResidencyPolicy(allowed_hosts=["mlflow.internal.eu"])
    Registry(RegistrySettings(tracking_uri="https://mlflow.internal.eu"), policy)  # no call made


@pytest.mark.parametrize(("uri", "env", "ok"), [
    ("file:///tmp/mlruns/1/abc/artifacts", None, True),
    ("mlflow-artifacts:/1/abc/artifacts", None, True),  # proxied through the (checked) tracking server
    ("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts", None, True),
    ("mlflow-artifacts://artifacts.example.com/1/abc/artifacts", None, False),
    ("s3://bucket/mlflow/1/abc/artifacts", None, False),  # boto3 would pick its own endpoint and region
    ("s3://bucket/mlflow/1/abc/artifacts", "https://s3.example.com", False),
    ("s3://bucket/mlflow/1/abc/artifacts", "http://127.0.0.1:9000", True),
    ("gs://bucket/1/abc/artifacts", None, False),
])
def test_artifact_destination_is_checked_against_the_residency_policy(
        uri: str, env: str | None, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from steps.common.registry import _check_artifact_uri

    if env:
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", env)
    else:
        monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    if ok:
        _check_artifact_uri(uri, ResidencyPolicy())
    else:
        with pytest.raises(ResidencyError):
            _check_artifact_uri(uri, ResidencyPolicy())
