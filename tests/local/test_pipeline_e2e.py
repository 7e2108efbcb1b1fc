"""The whole local pipeline end to end on the embedded model with tiny budgets, run once (as a user would: the
real CLI in a subprocess) inside a network namespace with no network at all, then checked for what it
produced, what it tried (no network call by any Python process, recorded by an audit hook), what it leaked
(no planted secret, no document text outside the artifacts meant to hold it), caching, and resuming after a
SIGKILL inside a publish.

The test hooks (tests/fixtures/hooks.py) ride on PYTHONPATH into the CLI, every step process and the canary's
vLLM server. Prometheus, the one process that is not Python, is covered by the namespace alone (its
config scrapes 127.0.0.1 only).
"""

import errno
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steps.common.residency import ResidencyPolicy
from steps.common.storage import MANIFEST_NAME, ArtifactNotFound, ArtifactStore, StorageSettings
from tests.fixtures.hooks import Pause, hooked_env, read_jsonl
from tests.fixtures.leaks import PLANTED_SECRETS, files_under, leaked_secrets
from tests.fixtures.offline import offline_prefix
from tests.fixtures.tiny_budget import TINY_OVERRIDES, set_arguments
from tests.support.processes import command_lines

REPO = Path(__file__).resolve().parents[2]
STEPS = ("ingest", "generate_qa", "check_dataset", "finetune", "judge", "promote", "canary")
TINY = set_arguments(TINY_OVERRIDES)  # the budget the compiled Argo workflow runs with too
# The published artifacts whose purpose is to hold document text (paths under artifacts/runs/<run id>/).
# Everything else the run writes (logs, records, metrics, other artifacts, the registry) must not.
TEXT_ARTIFACTS = {
    "ingest/chunks/chunks.parquet": "the chunks themselves",
    "generate_qa/qa/qa_train.jsonl": "QA pairs with the chunk they were generated from",
    "generate_qa/qa/qa_val.jsonl": "QA pairs with the chunk they were generated from",
    "generate_qa/qa/qa_test.jsonl": "QA pairs with the chunk they were generated from",
    "generate_qa/qa/qa_rejected.jsonl": "rejected pairs with their reason, for review",
    "judge/report/items.jsonl": "each held-out item with both answers and verdicts",
    "judge/report/items.csv": "the same as a table",
    "judge/report/report.html": "the report shows examples of wins and losses",
}
WINDOW = 8  # words: a fragment this long of a chunk found anywhere else is document text
_WORD = re.compile(r"\w+")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|[nrt])")


def _env() -> dict[str, str]:
    return {**os.environ, **PLANTED_SECRETS}


def _eurolora(args: list[str], cwd: Path, env: dict[str, str] | None = None, offline: bool = False
              ) -> subprocess.CompletedProcess:
    argv = [*(offline_prefix() if offline else []), sys.executable, "-m", "pipelines.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=env or _env(), capture_output=True, text=True, check=False,
                          timeout=1800)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path) -> dict:
    """One full run with no network at all; the embedded model was converted beforehand (fixture)."""
    work, hooks = tmp_path_factory.mktemp("e2e"), tmp_path_factory.mktemp("e2e-hooks")
    network, processes = hooks / "network.jsonl", hooks / "processes.jsonl"
    started = time.monotonic()
    result = _eurolora(["run", *TINY], cwd=work, offline=True,
                       env=hooked_env(_env(), net_audit=network, process_log=processes))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = next((work / "runs").glob("2*"))
    return {"work": work, "run_dir": run_dir, "stdout": result.stdout, "stderr": result.stderr,
            "elapsed": elapsed, "network": network, "processes": processes,
            "summary": json.loads((run_dir / "summary.json").read_text())}


@pytest.mark.slow
def test_full_pipeline_runs_offline(offline_run: dict) -> None:
    summary = offline_run["summary"]
    statuses = {s["name"]: s["status"] for s in summary["steps"]}
    assert statuses == {name: "succeeded" for name in STEPS}
    outputs = {s["name"]: s["outputs"] for s in summary["steps"]}
    assert outputs["promote"]["model_version"] == "1" and outputs["promote"]["decision"] == "promoted"
    report = Path(outputs["judge"]["report_uri"].removeprefix("file://")) / "report.html"
    assert report.is_file() and "<svg" in report.read_text()
    for label in ("training loss", "gate decision", "held-out evaluation"):  # the summary tables
        assert label in offline_run["stdout"]
    assert re.search(r"registry version\W+1 \(promoted", offline_run["stdout"])


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
    assert re.search(rf"canary\W+{canary['decision']}:", offline_run["stdout"])
    # Both processes were stopped with the step (they ran in the offline namespace: look for them by argv).
    serve_port = inputs["replicas"][0].removeprefix("http://127.0.0.1:").removesuffix("/v1")
    assert (canary_dir / "vllm.log").is_file() and (canary_dir / "prometheus" / "prometheus.yml").is_file()
    assert command_lines(str(canary_dir)) == {}
    assert command_lines(f"--host=127.0.0.1 --port={serve_port}") == {}


# A control for the audit hook: a connect that fails (no route) and a hub call whose error is swallowed.
NETWORK_CONTROL = """
import socket, urllib.request
print("8.8.8.8:53 ->", socket.socket().connect_ex(("8.8.8.8", 53)))
try:
    urllib.request.urlopen("https://huggingface.co/api/models", timeout=2)
except OSError as exc:
    print("hub ->", type(exc).__name__)
"""


@pytest.mark.slow
def test_no_process_of_the_run_tried_to_reach_the_network(offline_run: dict, tmp_path: Path) -> None:
    assert read_jsonl(offline_run["network"]) == []
    # The hook was loaded by every Python process of the run: the CLI, each step, the canary's server.
    started = [" ".join(r["argv"]) for r in read_jsonl(offline_run["processes"]) if r["event"] == "start"]
    assert any("pipelines.cli run" in argv for argv in started)
    for step in STEPS:
        assert any(f"steps.{step}:run" in argv for argv in started), f"no hooked process ran {step}"
    assert any("-m vllm.entrypoints.openai.api_server" in argv for argv in started)  # the canary's vLLM server
    # Negative control, in the same kind of namespace with the same hooks: attempts are recorded even when
    # they fail quietly.
    control = tmp_path / "control.jsonl"
    result = subprocess.run([*offline_prefix(), sys.executable, "-c", NETWORK_CONTROL],
                            env=hooked_env(_env(), net_audit=control), capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"8.8.8.8:53 -> {errno.ENETUNREACH}" in result.stdout  # the namespace has no route out
    assert "hub -> URLError" in result.stdout
    assert {(r["event"], r["host"], r["port"]) for r in read_jsonl(control)} == {
        ("socket.connect", "8.8.8.8", 53), ("socket.getaddrinfo", "huggingface.co", 443)}


@pytest.mark.slow
def test_no_planted_secret_in_any_output(offline_run: dict, tmp_path: Path) -> None:
    argo, cluster = tmp_path / "argo", tmp_path / "cluster"
    compiled = _eurolora(["compile", str(REPO / "pipelines/configs/cluster-example.yaml"), "--out", str(argo),
                          "--cluster-out", str(cluster)], cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    manifests = list(files_under(argo, cluster))
    assert any(p.is_relative_to(argo) for p in manifests) and any(p.is_relative_to(cluster) for p in manifests)
    files = [*files_under(offline_run["work"]), *manifests]
    assert len(files) > 50
    outputs = {"run stdout": offline_run["stdout"], "run stderr": offline_run["stderr"],
               "compile stdout": compiled.stdout, "compile stderr": compiled.stderr}
    assert leaked_secrets(files, outputs) == []


def _words(text: str) -> list[str]:
    """Lower-case words, JSON and repr escapes (\\n, \\u00e9, \\xe9) undone first: escaped text matches too."""
    unescaped = _ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)) if (m[1] or m[2]) else " ", text)
    return _WORD.findall(unescaped.lower())


def _windows(words: list[str]) -> set[str]:
    return {" ".join(words[i:i + WINDOW]) for i in range(len(words) - WINDOW + 1)}


def _document_text_in(text: str, windows: set[str], first_words: set[str]) -> str | None:
    """The first WINDOW-word fragment of a document found in `text`."""
    words = _words(text)
    for i in range(len(words) - WINDOW + 1):
        if words[i] in first_words and (fragment := " ".join(words[i:i + WINDOW])) in windows:
            return fragment
    return None


def _registry_rows(db: Path) -> dict[str, str]:
    """Every row of every table of the registry (params, tags, metrics, model versions, ...) as text."""
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: "\n".join(" ".join(map(str, row)) for row in conn.execute(f'SELECT * FROM "{table}"'))
                for table in tables}


def _files_of_the_run(work: Path, run_id: str) -> list[Path]:
    """Every file under runs/ but other runs' directories and artifacts (later tests add runs)."""
    runs = work / "runs"
    others = {p.name for p in runs.glob("2*") if p.is_dir()} - {run_id}
    return [p for p in files_under(runs)
            if p.relative_to(runs).parts[0] not in others
            and not (p.relative_to(runs).parts[:2] == ("artifacts", "runs") and p.relative_to(runs).parts[2] in others)]


@pytest.mark.slow
def test_logs_records_and_registry_carry_no_document_text(offline_run: dict) -> None:
    import pandas as pd

    run_id = offline_run["run_dir"].name
    artifacts = offline_run["work"] / "runs" / "artifacts" / "runs" / run_id
    chunks = pd.read_parquet(artifacts / "ingest" / "chunks" / "chunks.parquet")
    # Every format of the demo corpus reached the chunks (doc ids are `<file>[:L<line>]@<hash>`).
    assert {doc.split("@")[0].split(":")[0].rsplit(".", 1)[1] for doc in chunks["doc_id"]} == {
        "md", "txt", "html", "pdf", "jsonl"}
    windows = set().union(*(_windows(_words(text)) for text in chunks["text"]))
    first_words = {window.split(" ", 1)[0] for window in windows}
    assert len(windows) > 1000
    allowed = {artifacts / rel for rel in TEXT_ARTIFACTS}
    # Positive control: the scan finds the text where it is meant to be (the test split carries its
    # chunks), and in every escaped form a log or record could hold it. The judge's items are not a
    # control: whether a generated reference repeats eight words verbatim depends on the model.
    assert _document_text_in((artifacts / "generate_qa/qa/qa_test.jsonl").read_text(), windows, first_words)
    sample = max(chunks["text"], key=lambda text: sum(not c.isascii() for c in text))
    assert any(not c.isascii() for c in sample)  # the escapes below are exercised
    for escaped in (json.dumps({"text": sample}), json.dumps({"text": sample}, ensure_ascii=False),
                    repr(sample.encode("latin-1", errors="replace"))):
        assert _document_text_in(escaped, windows, first_words), escaped[:80]

    scanned = [p for p in _files_of_the_run(offline_run["work"], run_id) if p not in allowed]
    names = {p.name for p in scanned}
    assert {"log.txt", "vllm.log", "prometheus.log", "mlflow.db", "summary.json", "outputs.json"} <= names
    sources = {str(p): p.read_bytes().decode("utf-8", errors="replace") for p in scanned}
    sources.update({"run stdout": offline_run["stdout"], "run stderr": offline_run["stderr"]})
    registry = _registry_rows(offline_run["work"] / "runs" / "mlflow.db")
    assert all(registry.get(table) for table in ("params", "tags", "metrics", "model_version_tags"))
    sources.update({f"registry table {table}": rows for table, rows in registry.items()})
    found = {where: fragment for where, text in sources.items()
             if (fragment := _document_text_in(text, windows, first_words))}
    assert found == {}


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


def _results(summary: dict, store: ArtifactStore) -> dict[str, dict]:
    """Every step's outputs, artifact URIs replaced by their content digests (URIs name the run)."""
    def value(v: object) -> object:
        return store.read_manifest(v).digest if isinstance(v, str) and v.startswith("file://") else v
    return {s["name"]: {k: value(v) for k, v in s["outputs"].items()} for s in summary["steps"]}


@pytest.mark.slow
def test_sigkill_inside_the_publish_then_resume_the_whole_run(offline_run: dict, tmp_path: Path) -> None:
    """SIGKILL the ingest step inside its publish, paused by a test hook where its chunks are staged and the
    manifest is not yet written: readers see no artifact, and the printed `eurolora run --resume` completes
    the whole run with the results of the clean run.

    Runs in the clean run's directory with the clean run's cache minus its ingest entry: ingest runs (and is
    killed, then runs again on resume), and every later step is served from the cache only if the re-run
    ingest reproduced the clean run's chunks byte for byte (the cache keys on its manifest digest).
    """
    work = offline_run["work"]
    [entry] = (work / "runs" / ".cache").glob("ingest-*.json")
    aside = tmp_path / entry.name
    shutil.move(entry, aside)
    try:
        pause = Pause("steps.common.storage:_atomic_write_bytes", match=".chunks.tmp-", marker=tmp_path / "paused",
                      release=tmp_path / "never", timeout_s=300)
        cli = [sys.executable, "-m", "pipelines.cli"]
        runner = subprocess.Popen([*cli, "run", *TINY], cwd=work, env=hooked_env(_env(), pause=pause),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            step_pid = pause.wait_reached(timeout_s=300)
            [staged] = (work / "runs" / "artifacts" / "runs").glob("*/ingest/.chunks.tmp-*")
            assert (staged / "chunks.parquet").is_file() and not (staged / MANIFEST_NAME).exists()
            os.kill(step_pid, signal.SIGKILL)
            _, err = runner.communicate(timeout=120)
        finally:
            if runner.poll() is None:
                runner.kill()
        assert runner.returncode == 1 and "step 'ingest' failed: exit code -9" in err, err[-2000:]
        chunks_uri = (staged.parent / "chunks").as_uri()
        store = ArtifactStore(StorageSettings(artifact_root=(work / "runs" / "artifacts").as_uri()), ResidencyPolicy())
        with pytest.raises(ArtifactNotFound, match="no published artifact at .*never published"):
            store.materialize(chunks_uri, tmp_path / "read")
        assert not (staged.parent / "chunks").exists()

        [resume] = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
        resumed = _eurolora([*shlex.split(resume)[1:]], cwd=work)  # as printed, `eurolora` being the CLI
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        if not any((work / "runs" / ".cache").glob("ingest-*.json")):
            shutil.move(aside, entry)
    summary = json.loads((work / "runs" / staged.parents[1].name / "summary.json").read_text())
    assert {s["name"]: s["status"] for s in summary["steps"]} == {
        "ingest": "succeeded", **{name: "cached" for name in STEPS[1:]}}
    assert _results(summary, store) == _results(offline_run["summary"], store)
