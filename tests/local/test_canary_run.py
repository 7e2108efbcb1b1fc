"""The canary step end to end against TWO REAL `eurolora serve` replicas (fault injection on) scraped by a REAL
Prometheus every second, with an SQLite MLflow registry. Every adapter is loaded on both replicas and checked
in each one's /v1/models; the route, faults and load cover both.

- rollback: latency and HTTP 500s injected on the challenger, the shadow set on with a judge slowed to 10 s
  per verdict -> rolled back in the first interval (within one interval of the breach), not after the judge;
- rollback on latency alone; a breach that starts mid-canary (injected after interval 1 passed) rolled back
  within one interval of it;
- promote: no fault -> 100% challenger, old adapter unloaded after the drain period, aliases final,
  shadow set judged by the server's base model through the openai engine;
- crash and re-run: crashes during the analysis, during finalization and during a rollback; re-runs converge.

Short intervals (3 s), tiny budgets (max_tokens 2-8), one torch thread. The module's replica and Prometheus
are shared by the module, the second replica is the session's `eurolora_server`; each test uses its own
adapter family, registry and artifact root, and clears the faults it set.
"""

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.local.processes import free_port, server_process
from pipelines.local.prometheus_process import PrometheusServer, prometheus_process
from steps.canary import CanaryInputs, CanaryOutputs, run
from steps.canary.flow import Canary
from steps.canary.report import HTML_FILE, JSON_FILE, MD_FILE
from steps.canary.settings import CanarySettings
from steps.canary.state import load_state
from steps.common.contract import RuntimeContext, publishing
from steps.common.engines.base import EngineSettings, OpenAISettings
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings, local_path
from steps.common.tags import ADAPTER_URI_TAG
from tests.fixtures.serve import ServeServer

INTERVAL_S = 3.0
SETTLE_S = 1.5
# Paths that must promote: on a shared 2-core machine a request queued behind a judge batch or another
# process can take seconds, for either adapter; only a gross slowdown counts (a fault test uses 1.5 s).
NOISE_TOLERANT = {"max_ttft_p95_ratio": 5.0, "max_e2e_p95_ratio": 5.0, "min_latency_increase_s": 5.0}

QA_ITEMS = [
    {"question": "What colour is the sky on a clear day?", "answer": "Blue.", "context": "On a clear day the sky is blue."},
    {"question": "How many legs does a cat have?", "answer": "Four.", "context": "A cat has four legs."},
    {"question": "What do bees make?", "answer": "Honey.", "context": "Bees make honey from nectar."},
]


@dataclass(frozen=True)
class Env:
    server: ServeServer  # the first replica: shadow answers and the judge go here
    replicas: tuple[ServeServer, ...]
    prometheus: PrometheusServer

    def on_each(self, path: str, body: dict) -> None:
        for replica in self.replicas:
            response = replica.post(path, body)
            assert response.status_code == 200, (replica.root, response.text)


@pytest.fixture(scope="module")
def canary_env(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path,
               eurolora_server: ServeServer) -> Iterator[Env]:
    """`eurolora serve` with fault injection and no small prompt limit (the judge's rubric is long), the
    session's server as the second replica, and a Prometheus scraping both every second."""
    root_dir = tmp_path_factory.mktemp("canary-env")
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "pipelines.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--model", str(embedded_model_dir), "--max-batch", "8", "--batch-window-ms", "20", "--threads", "1",
            "--enable-fault-injection", "--log-level", "warning"]
    targets = [f"127.0.0.1:{port}", eurolora_server.root.removeprefix("http://")]
    with server_process(argv, f"{root}/health", root_dir / "server.log", timeout_s=180), \
            prometheus_process(targets, root_dir / "prometheus") as prom:
        first = ServeServer(root=root, base_url=f"{root}/v1", log=root_dir / "server.log")
        yield Env(server=first, replicas=(first, eurolora_server), prometheus=prom)


@pytest.fixture(autouse=True)
def _no_faults_left(canary_env: Env) -> Iterator[None]:
    yield
    for replica in canary_env.replicas:
        with replica.client() as client:
            client.delete("/v1/faults")


@dataclass
class World:
    context: RuntimeContext
    registry: Registry
    registry_settings: RegistrySettings
    family: str
    qa_uri: str
    paths: dict[str, str]  # version -> local adapter folder (what the canary passes to the server)


def _publish_adapter(context: RuntimeContext, source: Path, name: str, broken: bool = False) -> str:
    with publishing(context, "finetune", name) as (out, uri):
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(source / file, out / file)
        if broken:  # weights that do not fit the base model: the server refuses to load them
            (out / "adapter_model.safetensors").write_bytes(b"not safetensors")
    return uri


def _world(tmp_path: Path, sqlite_uri: str, model_name: str, family: str, adapters: tuple[Path, Path],
           broken_challenger: bool = False) -> World:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    settings = RegistrySettings(tracking_uri=sqlite_uri, model_name=model_name, timeout_s=10)
    registry = Registry(settings, context.residency)
    paths = {}
    for i, adapter in enumerate(adapters):
        uri = _publish_adapter(context, adapter, f"adapter-{adapter.name}", broken=broken_challenger and i == 1)
        version = registry.create_version(uri, None, {ADAPTER_URI_TAG: uri}).version
        paths[version] = str(local_path(uri).resolve())
    # What promote leaves behind: the candidate is champion and challenger, the old champion previous.
    registry.set_alias("previous", "1")
    registry.set_alias("champion", "2")
    registry.set_alias("challenger", "2")
    with publishing(context, "generate_qa", "qa") as (out, qa_uri):
        lines = [json.dumps({**item, "type": "factual", "language": "en", "chunk_id": f"c{i}", "doc_id": "d",
                             "answerable": True}) for i, item in enumerate(QA_ITEMS)]
        (out / "qa_test.jsonl").write_text("\n".join(lines) + "\n")
    return World(context, registry, settings, family, qa_uri, paths)


def _settings(env: Env, **overrides: object) -> CanarySettings:
    base: dict = {
        "replicas": [r.base_url for r in env.replicas], "traffic_fraction": 0.5, "analysis_interval_s": INTERVAL_S,
        "intervals": 1, "smoke_requests": 1, "drain_s": 1.0, "request_timeout_s": 120,
        "lock_ttl_s": 120, "lock_wait_s": 30,
        "slo": {"max_error_rate": 0.2, "max_error_rate_increase": 0.2, "max_ttft_p95_ratio": 2.0,
                "max_e2e_p95_ratio": 2.0, "min_latency_increase_s": 0.5, "min_samples": 2},
        "metrics": {"prometheus_url": env.prometheus.url, "scrape_settle_s": SETTLE_S, "timeout_s": 5},
        "load": {"enabled": True, "requests_per_interval": 12, "concurrency": 4, "max_tokens": 2},
        "shadow": {"size": 0},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return CanarySettings.model_validate(base)


def _inputs(world: World, settings: CanarySettings, env: Env) -> CanaryInputs:
    judge = EngineSettings(kind="openai", openai=OpenAISettings(base_url=env.server.base_url, model="base",
                                                                concurrency=2, timeout_s=120, max_retries=1))
    return CanaryInputs(context=world.context, settings=settings, registry=world.registry_settings,
                        adapter_family=world.family, model_version="2", promoted=True, qa_uri=world.qa_uri,
                        judge_engine=judge)


def _report(outputs: CanaryOutputs) -> dict:
    return json.loads((local_path(outputs.report_uri) / JSON_FILE).read_text())


def _event(report: dict, name: str) -> dict:
    return next(e for e in report["events"] if e["event"] == name)


def _served(env: Env, family: str) -> set[str]:
    """The family's adapters and the base model as every replica lists them (fail if the replicas disagree)."""
    listed = [{m["id"] for m in r.get("/v1/models").json()["data"] if m["id"] == "base" or
               m["id"].startswith(f"{family}-v")} for r in env.replicas]
    assert all(models == listed[0] for models in listed), listed
    return listed[0]


def _route(env: Env, family: str) -> dict[str, int]:
    """The family's route, the same on every replica."""
    weights = [{r["name"]: r for r in replica.get("/v1/routes").json()["data"]}[family]["weights"]
               for replica in env.replicas]
    assert all(w == weights[0] for w in weights), weights
    return weights[0]


def _version_tags(world: World, version: str) -> dict[str, str]:
    return world.registry.get_version(version).tags


def _crash(message: str):
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(message)
    return crash


@pytest.fixture
def world_factory(tmp_path: Path, mlflow_sqlite_uri: str, mlflow_model: str,
                  random_lora_adapters: tuple[Path, Path]):
    def make(family: str, broken_challenger: bool = False) -> World:
        return _world(tmp_path, mlflow_sqlite_uri, mlflow_model, family, random_lora_adapters, broken_challenger)
    return make


def _preload_with_fault(env: Env, world: World, name: str, fault: dict) -> None:
    """Load `name` on every replica from the folder the canary uses (so its own load is a no-op), warm it
    once, then break it as `fault` says."""
    env.on_each("/v1/load_lora_adapter", {"lora_name": name, "lora_path": world.paths["2"]})
    for replica in env.replicas:
        assert replica.chat(name, "Hi", max_tokens=1).status_code == 200
    env.on_each("/v1/faults", {"model": name, "seed": 1, **fault})


def _breached(interval: dict) -> set[str]:
    return {c["name"] for c in interval["checks"] if c["status"] == "breach"}


def test_rollback_within_one_interval_on_injected_latency_and_errors_despite_a_slow_judge(
        canary_env: Env, world_factory) -> None:
    world = world_factory("canary-rb")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    _preload_with_fault(canary_env, world, challenger, {"latency_s": 1.5, "error_rate": 0.5})
    # The judge (the base model of the first replica) takes 10 s per verdict: the shadow batch of interval 1
    # is still being judged when the breach is found, and the rollback must not wait for it.
    assert canary_env.server.post("/v1/faults", {"model": "base", "latency_s": 10.0}).status_code == 200

    settings = _settings(canary_env, intervals=6, smoke_requests=0,  # a run that is not aborted lasts 18 s+
                         shadow={"size": 2, "min_items": 2, "max_new_tokens": 4, "judge_max_new_tokens": 32,
                                 "concurrency": 2})
    started = time.monotonic()
    outputs = run(_inputs(world, settings, canary_env))
    elapsed = time.monotonic() - started

    assert outputs.decision == "rolled_back", outputs
    assert outputs.champion_version == "1"
    report = _report(outputs)
    # The breach starts with the traffic shift (the fault was there before); rollback after interval 1.
    assert len(report["intervals"]) == 1 and "error_rate" in _breached(report["intervals"][0]), report["intervals"]
    shifted, rolled = _event(report, "traffic_shifted")["at"], _event(report, "route_final")["at"]
    assert rolled - shifted <= INTERVAL_S + SETTLE_S + 4.0, (rolled - shifted, report["events"])
    assert report["quality"]["items"] == 0  # the judge had not answered: the rollback did not wait for it
    assert elapsed < INTERVAL_S * settings.intervals  # aborted early, not after all intervals
    # Serving: champion only, challenger unloaded after the drain.
    assert _route(canary_env, world.family) == {champion: 1}
    served = _served(canary_env, world.family)
    assert champion in served and challenger not in served
    assert _event(report, "adapter_unloaded")["at"] - rolled >= settings.drain_s - 0.05
    # Registry: champion restored, challenger version tagged with the reason.
    aliases = world.registry.aliases()
    assert aliases.get("champion") == "1" and "challenger" not in aliases and "previous" not in aliases
    tags = _version_tags(world, "2")
    assert tags["eurolora.decision"] == "rejected"
    assert tags["eurolora.reason"].startswith("canary rolled back: SLO breach in interval 1")
    assert tags["eurolora.canary.decision"] == "rolled_back"
    assert tags["eurolora.canary.report_uri"] == outputs.report_uri
    md = (local_path(outputs.report_uri) / MD_FILE).read_text()
    assert "rolled_back" in md and "error rate" in md


def test_rollback_on_latency_alone(canary_env: Env, world_factory) -> None:
    world = world_factory("canary-lat")
    _preload_with_fault(canary_env, world, f"{world.family}-v2", {"latency_s": 2.0})
    outputs = run(_inputs(world, _settings(canary_env, intervals=3, smoke_requests=0), canary_env))
    assert outputs.decision == "rolled_back" and "SLO breach in interval 1" in outputs.reason, outputs
    (interval,) = _report(outputs)["intervals"]
    assert _breached(interval) & {"ttft_p95", "e2e_p95"} and "error_rate" not in _breached(interval), interval
    assert _route(canary_env, world.family) == {f"{world.family}-v1": 1}


def test_a_breach_that_starts_mid_canary_rolls_back_within_one_interval(canary_env: Env, world_factory,
                                                                        monkeypatch) -> None:
    world = world_factory("canary-mid")
    challenger = f"{world.family}-v2"
    injected: list[float] = []
    traffic = Canary.traffic

    def failing_from_interval_2(canary: Canary, seconds: float):
        if len(canary.state.intervals) == 1 and not injected:  # interval 1 passed: now the challenger fails
            canary_env.on_each("/v1/faults", {"model": challenger, "error_rate": 1.0, "seed": 1})
            injected.append(time.time())
        return traffic(canary, seconds)

    monkeypatch.setattr(Canary, "traffic", failing_from_interval_2)
    outputs = run(_inputs(world, _settings(canary_env, intervals=4, slo=NOISE_TOLERANT), canary_env))

    assert outputs.decision == "rolled_back" and "SLO breach in interval 2" in outputs.reason, outputs
    report = _report(outputs)
    first, second = report["intervals"]
    assert first["judged"] and not first["breaches"] and "error_rate" in _breached(second)
    rolled = _event(report, "route_final")["at"]
    # Detected at the end of the interval the breach started in: one interval, the scrape settle, a little.
    assert 0 < rolled - injected[0] <= INTERVAL_S + SETTLE_S + 1.5, (rolled - injected[0], report["events"])
    assert _route(canary_env, world.family) == {f"{world.family}-v1": 1}
    assert challenger not in _served(canary_env, world.family)


def test_promote_path_moves_all_traffic_and_unloads_the_old_adapter(canary_env: Env, world_factory) -> None:
    world = world_factory("canary-pr")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    # The quality rule is exercised (shadow items judged by the server's base model), its limits are open.
    settings = _settings(canary_env, intervals=2, drain_s=1.5, slo=NOISE_TOLERANT,
                         shadow={"size": 2, "min_items": 2, "max_new_tokens": 8, "judge_max_new_tokens": 48,
                                 "concurrency": 2, "max_c_rate_increase": 1.0, "max_a_rate_drop": 1.0,
                                 "timeout_s": 180})
    outputs = run(_inputs(world, settings, canary_env))

    assert outputs.decision == "promoted", outputs.reason
    assert outputs.champion_version == "2"
    report = _report(outputs)
    assert len(report["intervals"]) == 2 and all(i["judged"] for i in report["intervals"]), report["intervals"]
    assert report["quality"]["items"] == 2 and len(report["shadow_items"]) == 2
    # Serving: 100% challenger, the old champion unloaded only after the drain period.
    assert _route(canary_env, world.family) == {challenger: 1}
    served = _served(canary_env, world.family)
    assert challenger in served and champion not in served
    final, unloaded = _event(report, "route_final")["at"], _event(report, "adapter_unloaded")["at"]
    assert unloaded - final >= settings.drain_s - 0.05
    # Registry: champion stays, previous keeps the old champion for a later rollback, challenger alias gone.
    aliases = world.registry.aliases()
    assert aliases == {"champion": "2", "previous": "1"}
    tags = _version_tags(world, "2")
    assert tags["eurolora.canary.decision"] == "promoted" and "eurolora.decision" not in tags
    out = local_path(outputs.report_uri)
    assert {JSON_FILE, MD_FILE, HTML_FILE} <= {p.name for p in out.iterdir()}
    assert 'data-testid="decision"' in (out / HTML_FILE).read_text()


def test_rerun_after_crashes_converges_to_the_same_end_state(canary_env: Env, world_factory, monkeypatch) -> None:
    world = world_factory("canary-cr")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    settings = _settings(canary_env, intervals=1, drain_s=0.5, slo=NOISE_TOLERANT)
    inputs = _inputs(world, settings, canary_env)

    # 1) Crash in the middle of the analysis: traffic is split, no interval recorded.
    with monkeypatch.context() as patch:
        patch.setattr(Canary, "read_window", _crash("crash 1"))
        with pytest.raises(RuntimeError, match="crash 1"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and state.phase == "shifted" and not state.intervals
    assert _route(canary_env, world.family) == {champion: 1, challenger: 1}

    # 2) Crash in the middle of finalization: all traffic on the challenger, nothing unloaded, no alias moved.
    with monkeypatch.context() as patch:
        patch.setattr(Canary, "unload_everywhere", _crash("crash 2"))
        with pytest.raises(RuntimeError, match="crash 2"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and state.phase == "decided" and state.decision == "promoted", state
    assert _route(canary_env, world.family) == {challenger: 1}
    assert {champion, challenger} <= _served(canary_env, world.family)
    assert world.registry.aliases().get("challenger") == "2"

    # 3) The re-run finishes; a fourth run changes nothing and returns the same outputs.
    outputs = run(inputs)
    assert outputs.decision == "promoted" and outputs.champion_version == "2"
    again = run(inputs)
    assert again == outputs
    report = _report(outputs)
    assert report["attempts"] == 3
    assert [e["event"] for e in report["events"]].count("resumed") == 2
    assert [e["event"] for e in report["events"]].count("traffic_shifted") == 2  # re-applied absolutely
    assert _route(canary_env, world.family) == {challenger: 1}
    served = _served(canary_env, world.family)
    assert challenger in served and champion not in served
    assert world.registry.aliases() == {"champion": "2", "previous": "1"}
    assert _version_tags(world, "2")["eurolora.canary.decision"] == "promoted"


def test_a_challenger_that_cannot_be_loaded_is_rolled_back_before_any_traffic_even_across_a_crash(
        canary_env: Env, world_factory, monkeypatch) -> None:
    world = world_factory("canary-bk", broken_challenger=True)
    inputs = _inputs(world, _settings(canary_env, intervals=3), canary_env)
    # A crash in the middle of the rollback: traffic is back on the champion, the registry not yet restored.
    with monkeypatch.context() as patch:
        patch.setattr(Canary, "registry_after_rollback", _crash("crash in rollback"))
        with pytest.raises(RuntimeError, match="crash in rollback"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and (state.phase, state.decision) == ("decided", "rolled_back")
    assert _route(canary_env, world.family) == {f"{world.family}-v1": 1}
    assert world.registry.aliases().get("champion") == "2"

    outputs = run(inputs)  # the re-run finishes the rollback
    assert outputs.decision == "rolled_back" and "could not be loaded" in outputs.reason, outputs
    report = _report(outputs)
    assert report["attempts"] == 2 and not report["intervals"] and _event(report, "route_final")
    assert not any(e["event"] == "traffic_shifted" for e in report["events"])
    assert _route(canary_env, world.family) == {f"{world.family}-v1": 1}
    assert f"{world.family}-v2" not in _served(canary_env, world.family)
    assert world.registry.aliases().get("champion") == "1"
    assert _version_tags(world, "2")["eurolora.decision"] == "rejected"


def test_first_adapter_is_canaried_against_the_base_model_and_rolled_back_to_it(canary_env: Env,
                                                                                world_factory) -> None:
    world = world_factory("canary-fb")
    world.registry.delete_alias("previous")  # no champion before promote: the base model is the baseline
    challenger = f"{world.family}-v2"
    _preload_with_fault(canary_env, world, challenger, {"error_rate": 1.0})

    outputs = run(_inputs(world, _settings(canary_env, intervals=3, smoke_requests=0), canary_env))

    assert outputs.decision == "rolled_back" and "SLO breach in interval 1" in outputs.reason, outputs
    report = _report(outputs)
    assert (report["champion"], report["baseline_version"]) == ("base", None)
    assert "error_rate" in {c["name"] for c in report["intervals"][0]["checks"] if c["status"] == "breach"}
    assert report["intervals"][0]["champion"]["requests"] >= 2  # the base model's own series in Prometheus
    # Serving: the family's traffic back on the base model, which stays loaded; the adapter is gone.
    assert _route(canary_env, world.family) == {"base": 1}
    served = _served(canary_env, world.family)
    assert "base" in served and challenger not in served
    # Registry: no champion any more (there was none before promote), the version rejected with the reason.
    assert world.registry.aliases() == {}
    assert outputs.champion_version == ""
    assert _version_tags(world, "2")["eurolora.decision"] == "rejected"
