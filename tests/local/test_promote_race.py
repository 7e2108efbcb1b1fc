"""Two promotions racing from the same expected champion, as two real OS processes against a real
`mlflow server`: exactly one wins, the other is refused with a reason. Repeated over several rounds."""

import multiprocessing
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.common.contract import RuntimeContext
from steps.common.promotion_lock import PromotionLock
from steps.common.registry import Registry
from steps.common.registry_settings import RegistrySettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from tests.fixtures.mlflow import (
    MlflowServer,
    db_aliases,
    db_model_exists,
    make_finetune_run,
    mlflow_client,
    promote_inputs,
    publish_adapter,
    publish_report,
    race_worker,
)

ROUNDS = 5
WORKERS = 2
Race = Callable[[list[tuple[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def race(mlflow_server: MlflowServer) -> Iterator[Race]:
    """Two spawned worker processes (imports done once); `race(jobs)` starts one job on each at once."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(WORKERS)]
    procs = [ctx.Process(target=race_worker, args=(i, inboxes[i], results, barrier), daemon=True)
             for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        ready = [results.get(timeout=180) for _ in procs]
        assert all(r[1].get("ready") for r in ready), ready

        def start(jobs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
            for inbox, job in zip(inboxes, jobs, strict=True):
                inbox.put(job)
            try:
                got = dict(results.get(timeout=180) for _ in jobs)
            except queue.Empty:
                pytest.fail(f"a race worker did not answer; alive: {[p.is_alive() for p in procs]}")
            outs = [got[i] for i in range(len(jobs))]
            errors = [o["error"] for o in outs if "error" in o]
            assert not errors, errors
            return outs

        yield start
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _registry(server: MlflowServer, model: str) -> Registry:
    settings = RegistrySettings(tracking_uri=server.uri, model_name=model, timeout_s=10)
    return Registry(settings, ResidencyPolicy())


def test_racing_compare_and_set_has_exactly_one_winner(race: Race, mlflow_server: MlflowServer,
                                                        mlflow_model: str) -> None:
    registry = _registry(mlflow_server, mlflow_model)
    run_id = make_finetune_run(mlflow_server.uri, f"exp-{mlflow_model}")
    artifact_uri = mlflow_client(mlflow_server.uri).get_run(run_id).info.artifact_uri
    payload = {"registry": registry.settings.model_dump(), "residency": ResidencyPolicy().model_dump(),
               "lock": {}}
    contended = 0
    for round_no in range(ROUNDS):
        before = registry.alias_version("champion")
        expected = before.version if before else ""
        versions = [registry.create_version(f"{artifact_uri}/adapter-r{round_no}w{i}", run_id, {}).version
                    for i in range(WORKERS)]
        outs = race([("cas", {**payload, "version": v, "expected": expected}) for v in versions])

        winners = [i for i, o in enumerate(outs) if o["promoted"]]
        assert len(winners) == 1, f"round {round_no}: {outs}"
        winner, loser = outs[winners[0]], outs[1 - winners[0]]
        assert winner["outcome"] == "swapped" and loser["outcome"] == "refused"
        assert f"champion moved: it is version {versions[winners[0]]}" in loser["reason"]
        aliases = db_aliases(mlflow_server.db_path, mlflow_model)
        assert aliases["champion"] == versions[winners[0]]
        assert aliases.get("previous", "") == expected
        assert not db_model_exists(mlflow_server.db_path, PromotionLock(registry).name)  # released
        print(f"round {round_no}: winner waited {winner['lock_wait_s']:.2f}s for the lock, "
              f"loser {loser['lock_wait_s']:.2f}s")
        contended += loser["lock_wait_s"] > 0.2
    # Both really were inside the race: the loser had to wait for the winner's lock.
    assert contended >= 1, "the two processes never contended for the lock: the race did not happen"


def test_racing_promotions_through_run(race: Race, mlflow_server: MlflowServer, mlflow_model: str,
                                       tmp_path: Path) -> None:
    context = RuntimeContext(run_id="t", storage=StorageSettings(artifact_root=tmp_path.as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "s"))
    client = mlflow_client(mlflow_server.uri)
    for round_no in range(ROUNDS):
        before = db_aliases(mlflow_server.db_path, mlflow_model).get("champion", "")
        jobs = []
        for i in range(WORKERS):
            name = f"r{round_no}w{i}"
            inputs = promote_inputs(
                context, mlflow_server.uri, mlflow_model,
                adapter_uri=publish_adapter(context, f"adapter-{name}", seed=name),
                run_id=make_finetune_run(mlflow_server.uri, f"exp-{mlflow_model}"),
                report_uri=publish_report(context, f"report-{name}", passed=True),
                gate_passed=True, expected=before)
            jobs.append(("promote", inputs.model_dump_json()))
        outs = race(jobs)

        promoted = [o for o in outs if o["promoted"]]
        assert len(promoted) == 1, f"round {round_no}: {outs}"
        winner, loser = promoted[0], next(o for o in outs if not o["promoted"])
        assert winner["decision"] == "promoted" and loser["decision"] == "refused_race"
        assert f"champion moved: it is version {winner['model_version']}" in loser["reason"]
        assert loser["champion_version"] == winner["model_version"]
        aliases = db_aliases(mlflow_server.db_path, mlflow_model)
        assert aliases["champion"] == winner["model_version"]
        assert aliases.get("previous", "") == before
        tags = client.get_model_version(mlflow_model, loser["model_version"]).tags
        assert tags["eurolora.decision"] == "refused_race" and "champion moved" in tags["eurolora.reason"]
