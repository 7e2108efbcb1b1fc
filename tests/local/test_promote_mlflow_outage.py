"""The MLflow server dies in the middle of promote, at the two points that matter: right after the new model
version was created, and right after the promotion lock was taken. Each time the step exits 75
(TransientError, retried), no alias moves (read from the server's SQLite database), and a retry against the
restarted server finishes the promotion, reusing the version and breaking the dead attempt's expired lock.

promote runs as the local runner runs it (`python -m pipelines.step_process`); a test hook
(tests/fixtures/hooks.py) pauses it at the point, the real `mlflow server` process group is SIGKILLed, and
the step goes on into the outage. The client sends a planted MLFLOW_TRACKING_TOKEN with every request: it
appears in no output of the step and no file of the server.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local.processes import free_port
from steps.common.contract import EXIT_TRANSIENT, RuntimeContext
from steps.common.promotion_lock import LOCK_SUFFIX, LeaseSettings
from steps.common.residency import ResidencyPolicy
from steps.common.storage import StorageSettings
from steps.common.tags import LOCK_EXPIRES_TAG
from steps.promote import PromoteInputs, run
from tests.fixtures.hooks import Pause, hooked_env
from tests.fixtures.leaks import PLANTED_SECRETS, files_under, leaked_secrets
from tests.fixtures.mlflow import (
    MLFLOW_TEST_ENV,
    db_aliases,
    db_model_exists,
    db_versions,
    make_finetune_run,
    promote_inputs,
    publish_adapter,
    publish_report,
    running_mlflow_server,
)

pytestmark = pytest.mark.slow
DOOMED_TTL_S = 8.0  # the killed attempt's lock: the smallest its 2 s, no-retry registry calls allow


def _promote_killed_at(pause: Pause, inputs: PromoteInputs, server: subprocess.Popen, work: Path
                       ) -> subprocess.CompletedProcess:
    """Run promote until it reaches `pause`, SIGKILL the MLflow server's process group there, let promote go on."""
    work.mkdir()
    (work / "inputs.json").write_text(inputs.model_dump_json())
    env = hooked_env({**os.environ, **MLFLOW_TEST_ENV,
                      "MLFLOW_TRACKING_TOKEN": PLANTED_SECRETS["MLFLOW_TRACKING_TOKEN"]}, pause=pause)
    argv = [sys.executable, "-m", "pipelines.step_process", "steps.promote:run", str(work / "inputs.json"),
            str(work / "outputs.json")]
    step = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pause.wait_reached(timeout_s=120)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        pause.go_on()
        output, _ = step.communicate(timeout=120)
    finally:
        if step.poll() is None:
            step.kill()
    return subprocess.CompletedProcess(argv, step.returncode, output, "")


def _lock_expiry(db_path: Path, model: str) -> float | None:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT value FROM registered_model_tags WHERE name = ? AND key = ?",
                         (model + LOCK_SUFFIX, LOCK_EXPIRES_TAG)).fetchone()
    return float(row[0]) if row else None


def test_mlflow_killed_mid_promote_moves_no_alias_and_the_retry_completes(
        tmp_path: Path, mlflow_env: None, mlflow_model: str) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    context = RuntimeContext(run_id="outage", storage=StorageSettings(artifact_root=(tmp_path / "a").as_uri()),
                             residency=ResidencyPolicy(), scratch_dir=str(tmp_path / "scratch"))

    def inputs_for(name: str, run_id: str, expected: str = "") -> PromoteInputs:
        return promote_inputs(context, uri, mlflow_model, adapter_uri=publish_adapter(context, name, seed=name),
                              run_id=run_id, report_uri=publish_report(context, f"report-{name}", passed=True),
                              gate_passed=True, expected=expected)

    mlflow_root = tmp_path / "mlflow"
    db = mlflow_root / "mlflow.db"
    # 1. The server dies right after the new version was created, before the challenger alias moves.
    with running_mlflow_server(mlflow_root, port, log_name="server-1.log") as (_, server):
        champion = run(inputs_for("first", make_finetune_run(uri, f"exp-{mlflow_model}")))
        candidate = inputs_for("second", make_finetune_run(uri, f"exp-{mlflow_model}"),
                               expected=champion.model_version)
        before = db_aliases(db, mlflow_model)
        assert before == {"champion": champion.model_version, "challenger": champion.model_version}
        # Short registry calls and lock: the dead attempt's lock expires before the last retry starts.
        doomed = candidate.model_copy(update={
            "registry": candidate.registry.model_copy(update={"timeout_s": 2, "max_retries": 0}),
            "settings": candidate.settings.model_copy(update={"lock": LeaseSettings(ttl_s=DOOMED_TTL_S)})})
        pause = Pause("steps.common.registry:Registry.create_version", after=True,
                      marker=tmp_path / "created.paused", release=tmp_path / "created.go-on")
        created = _promote_killed_at(pause, doomed, server, tmp_path / "created")
    assert created.returncode == EXIT_TRANSIENT, created.stdout[-3000:]
    assert f"TransientError: MLflow registry at {uri} unreachable during set alias challenger" in created.stdout
    assert db_aliases(db, mlflow_model) == before
    versions = db_versions(db, mlflow_model)
    assert len(versions) == 2  # the new version exists, unaliased; the retry reuses it

    # 2. The retry dies right after it took the promotion lock, before champion or previous move. (It moved
    # the challenger alias to the new version before taking the lock: challenger is the latest candidate.)
    with running_mlflow_server(mlflow_root, port, log_name="server-2.log") as (_, server):
        pause = Pause("steps.common.promotion_lock:PromotionLock._acquire", after=True,
                      marker=tmp_path / "locked.paused", release=tmp_path / "locked.go-on")
        locked = _promote_killed_at(pause, doomed, server, tmp_path / "locked")
    assert locked.returncode == EXIT_TRANSIENT, locked.stdout[-3000:]
    assert f"TransientError: MLflow registry at {uri} unreachable during read alias champion" in locked.stdout
    assert "could not release promotion lock" in locked.stdout  # the server is gone: the lock must expire
    assert db_aliases(db, mlflow_model) == {**before, "challenger": versions[1]}
    assert db_versions(db, mlflow_model) == versions
    assert _lock_expiry(db, mlflow_model) is not None  # left behind, with the expiry its dead holder wrote

    # 3. The retry against the restarted server (normal settings) breaks the expired lock and promotes.
    with running_mlflow_server(mlflow_root, port, log_name="server-3.log"):
        retried = run(candidate)
    assert (retried.decision, retried.model_version) == ("promoted", versions[1])
    assert db_aliases(db, mlflow_model) == {"champion": versions[1], "challenger": versions[1],
                                            "previous": champion.model_version}
    assert db_versions(db, mlflow_model) == versions
    assert not db_model_exists(db, mlflow_model + LOCK_SUFFIX)

    outputs = {"step output, killed after create_version": created.stdout,
               "step output, killed after the lock": locked.stdout}
    assert leaked_secrets(files_under(tmp_path), outputs) == []
