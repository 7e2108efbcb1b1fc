"""The whole local pipeline end to end on the embedded model with tiny budgets, run once (as a user
would: the real CLI in a subprocess) inside a network namespace with no network at all, then checked
for what it produced, what it leaked (nothing: no secrets, no document text in logs), caching and
resuming after a SIGKILL."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import command_lines

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "pipelines" / "corpus" / "demo"
TINY = [
    "--set", "generate_qa.max_chunks=6", "--set", "generate_qa.pairs_per_chunk=2",
    "--set", "finetune.max_steps=2", "--set", "finetune.batch_size=2",
    "--set", "judge.max_items=4", "--set", "judge.max_new_tokens=24", "--set", "judge.judge_max_new_tokens=64",
    "--set", "judge.gate.bootstrap_samples=200",
    # A gate that passes whatever two training steps produce, so promote moves the champion and the canary
    # runs against the `eurolora serve` and Prometheus the runner starts (the gate itself is unit-tested).
    "--set", "judge.gate.min_items=1", "--set", "judge.gate.min_stop_rate=0", "--set", "judge.gate.min_refusal_rate=0",
    "--set", "judge.gate.a_rate_tolerance=1", "--set", "judge.gate.c_rate_tolerance=1",
    "--set", "canary.analysis_interval_s=4", "--set", "canary.intervals=1", "--set", "canary.drain_s=0.5",
    "--set", "canary.load.requests_per_interval=8", "--set", "canary.slo.min_samples=2",
    "--set", "canary.shadow.size=2", "--set", "canary.shadow.min_items=2", "--set", "canary.shadow.max_new_tokens=16",
]
# Planted: none of these may appear in any file the run writes.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-9f8e7d6c5b4a",
    "EUROLORA_LLM_API_KEY": "planted-llm-key-1a2b3c4d5e6f",
    "MLFLOW_TRACKING_TOKEN": "planted-mlflow-token-0a9b8c7d",
    "ARGO_TOKEN": "planted-argo-token-5e4d3c2b1a",
}


def _offline_prefix() -> list[str]:
    """`unshare -n`: a fresh network namespace whose only interface is loopback (the canary's local
    server and Prometheus listen on 127.0.0.1): nothing beyond this machine can be reached."""
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "offline"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False, timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"unshare -n is not permitted here ({probe.stderr.decode().strip()}); "
                    "the offline proof needs CAP_SYS_ADMIN (root in CI)")
    return prefix


def _eurolora(args: list[str], cwd: Path, offline: bool = False, **kw: object) -> subprocess.CompletedProcess:
    env = {**os.environ, **SECRETS, "EUROLORA_CACHE_DIR": os.environ.get("EUROLORA_CACHE_DIR", "")}
    env = {k: v for k, v in env.items() if v}
    argv = [*(_offline_prefix() if offline else []), sys.executable, "-m", "pipelines.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800, **kw)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> dict:
    """One full run with no network at all; the embedded model was converted beforehand (fixture)."""
    work = tmp_path_factory.mktemp("e2e")
    started = time.monotonic()
    result = _eurolora(["run", *TINY], cwd=work, offline=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = next((work / "runs").glob("2*"))
    return {"work": work, "run_dir": run_dir, "stdout": result.stdout, "elapsed": elapsed,
            "summary": json.loads((run_dir / "summary.json").read_text())}


@pytest.mark.slow
def test_full_pipeline_runs_offline(offline_run: dict) -> None:
    summary = offline_run["summary"]
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses == {name: "succeeded" for name in
                        ("ingest", "generate_qa", "check_dataset", "finetune", "judge", "promote", "canary")}
    outputs = {s["name"]: s["outputs"] for s in summary["steps"]}
    assert outputs["promote"]["model_version"] == "1" and outputs["promote"]["decision"] == "promoted"
    report = Path(outputs["judge"]["report_uri"].removeprefix("file://")) / "report.html"
    assert report.is_file() and "<svg" in report.read_text()
    for expected in ("training loss", "gate decision", "registry version", "aliases", "held-out evaluation",
                     "judge report"):
        assert expected in offline_run["stdout"]


@pytest.mark.slow
def test_canary_ran_against_the_local_server_and_prometheus(offline_run: dict) -> None:
    canary_dir = offline_run["run_dir"] / "steps" / "canary"
    canary = next(s for s in offline_run["summary"]["steps"] if s["name"] == "canary")["outputs"]
    report = json.loads((Path(canary["report_uri"].removeprefix("file://")) / "canary_report.json").read_text())
    # The first adapter of the family is compared with the base model, on the server the runner started.
    assert (report["challenger"], report["champion"]) == ("handbook-v1", "base")
    inputs = json.loads((canary_dir / "inputs.json").read_text())["settings"]
    assert inputs["replicas"][0].startswith("http://127.0.0.1:") and inputs["metrics"]["prometheus_url"].startswith(
        "http://127.0.0.1:")
    [interval] = report["intervals"]
    assert interval["challenger"]["requests"] >= 2 and interval["champion"]["requests"] >= 2  # read from Prometheus
    # The decision stands in the registry: champion kept (promoted) or removed again (rolled back).
    assert canary["decision"] in ("promoted", "rolled_back")
    assert canary["champion_version"] == ("1" if canary["decision"] == "promoted" else "")
    assert f"canary: {canary['decision']}" in offline_run["stdout"]
    # Both processes were stopped with the step (they ran in the offline namespace: look for them by argv).
    serve_port = inputs["replicas"][0].removeprefix("http://127.0.0.1:").removesuffix("/v1")
    assert (canary_dir / "serve.log").is_file() and (canary_dir / "prometheus" / "prometheus.yml").is_file()
    assert command_lines(str(canary_dir)) == {}
    assert command_lines(f"pipelines.cli serve --host 127.0.0.1 --port {serve_port} ") == {}


@pytest.mark.slow
def test_no_planted_secret_in_any_output(offline_run: dict, tmp_path: Path) -> None:
    compiled = tmp_path / "argo"
    result = _eurolora(["compile", str(REPO / "pipelines/configs/cluster-example.yaml"), "--out", str(compiled)],
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scanned = 0
    for root in (offline_run["work"], compiled):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                scanned += 1
                for name, secret in SECRETS.items():
                    assert secret.encode() not in data, f"{name} leaked into {path}"
    assert scanned > 50


def _corpus_sentences() -> list[str]:
    text = " ".join(p.read_text(errors="ignore") for p in CORPUS.glob("*") if p.suffix in (".md", ".txt"))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text))]
    return [s for s in sentences if len(s.split()) >= 8 and not s.startswith(("#", "|", "-"))]


@pytest.mark.slow
def test_logs_carry_no_document_text(offline_run: dict) -> None:
    sentences = _corpus_sentences()
    assert len(sentences) > 20
    logs = [p.read_text(errors="ignore") for p in offline_run["run_dir"].rglob("log.txt")]
    assert len(logs) >= 6
    for sentence in sentences:
        fragment = " ".join(sentence.split()[:8])  # any 8 consecutive words of a sentence
        assert not any(fragment in log for log in logs), f"document text in a log: {fragment!r}"


@pytest.mark.slow
def test_second_identical_run_is_served_from_cache(offline_run: dict) -> None:
    started = time.monotonic()
    result = _eurolora(["run", *TINY], cwd=offline_run["work"])
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted((offline_run["work"] / "runs").glob("2*"))
    summary = json.loads((runs[-1] / "summary.json").read_text())
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert set(statuses.values()) == {"cached"}
    assert elapsed < offline_run["elapsed"] * 0.25  # the benchmark reports the real ratio


@pytest.mark.slow
def test_sigkill_while_writing_outputs_then_resume(tmp_path: Path, embedded_model_dir: Path) -> None:
    """Kill the ingest step process while it writes its outputs: nothing half-published is visible,
    and --resume completes with the same content as an uninterrupted run."""
    argv = [sys.executable, "-m", "pipelines.cli", "run", "--until", "ingest"]
    # The write lasts milliseconds: on a loaded machine the poll can miss it; try again on a fresh directory.
    for _attempt in range(4):
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = _kill_step_when_writing(tmp_path / "runs", "ingest-chunks-", proc)
        _, err = proc.communicate(timeout=300)
        if killed:
            break
    assert killed, "the step finished before it could be killed mid-write, 4 times"
    assert proc.returncode == 1 and "step 'ingest' failed" in err
    run_dir = next((tmp_path / "runs").glob("2*"))
    artifact = tmp_path / "runs" / "artifacts" / "runs" / run_dir.name / "ingest" / "chunks"
    # Whatever instant the kill hit: either nothing is visible, or a complete artifact that verifies.
    if (artifact / "MANIFEST.json").exists():
        from steps.common.residency import ResidencyPolicy
        from steps.common.storage import ArtifactStore, StorageSettings

        store = ArtifactStore(StorageSettings(artifact_root=artifact.as_uri()), ResidencyPolicy())
        store.materialize(artifact.as_uri(), tmp_path / "verify")
    else:
        assert not artifact.exists()  # staged under a hidden name, renamed into place only when complete
    resumed = subprocess.run([*argv, "--resume", run_dir.name], cwd=tmp_path, capture_output=True, text=True,
                             check=False, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    digest = summary["steps"][0]["outputs"]["chunks_digest"]
    clean = tmp_path / "clean"
    clean.mkdir()
    fresh = subprocess.run([*argv, "--no-cache"], cwd=clean, capture_output=True, text=True, check=False,
                           timeout=600)
    assert fresh.returncode == 0
    fresh_summary = json.loads(next((clean / "runs").glob("2*/summary.json")).read_text())
    assert fresh_summary["steps"][0]["outputs"]["chunks_digest"] == digest


def _kill_step_when_writing(runs: Path, staging_prefix: str, runner: subprocess.Popen) -> bool:
    """SIGKILL the step process once its output staging directory has files in it."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and runner.poll() is None:
        for staging in runs.glob(f"2*/scratch/{staging_prefix}*"):
            if any(staging.iterdir()):
                step_pid = _child_step_pid(runner.pid)
                if step_pid:
                    os.kill(step_pid, signal.SIGKILL)
                    return True
        time.sleep(0.005)
    return False


def _child_step_pid(runner_pid: int) -> int | None:
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                stat = (proc_dir / "stat").read_text().split()
                cmdline = (proc_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[3]) == runner_pid and b"pipelines.step_process" in cmdline:
                return int(proc_dir.name)
    return None
