"""A real 200 MB text file in the corpus: quarantined as too_large with the default cap, and the ingest
process's peak memory stays where it is without the file (measured in a subprocess, as a pod runs it)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from steps.ingest.settings import IngestSettings
from tests.fixtures.demo_steps import step_context

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "pipelines" / "corpus" / "demo" / "01-welcome.md"
BIG_BYTES = 200 * 1024 * 1024
# Reading the file whole would add at least its 200 MB (bytes, then text); the runs differ by a few MB.
MAX_EXTRA_RSS_KB = 64 * 1024
# Runs the step through Hera's runner in a child and prints that child's peak RSS (KB, Linux).
MEASURE = """
import resource, subprocess, sys
completed = subprocess.run(sys.argv[1:], timeout=600, check=False)
print(completed.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _write_text(path: Path, size: int) -> None:
    """`size` bytes of varied plain text, every block written (not a sparse file)."""
    with path.open("w", encoding="utf-8") as handle:
        number = 0
        while handle.tell() < size:
            handle.write("".join(f"Line {number + i}: the Hamburg warehouse received {(number + i) % 97} pallets "
                                 f"on day {(number + i) % 365}, checked by team {(number + i) % 13}.\n"
                                 for i in range(10_000)))
            number += 10_000


def _ingest_peak_rss(tmp_path: Path, corpus: Path, model_dir: Path) -> tuple[int, list[dict]]:
    """(peak RSS in KB, quarantine records) of one ingest run in its own process."""
    tmp_path.mkdir()
    context = step_context(tmp_path)
    arguments = [
        {"name": "context", "value": context.model_dump_json()},
        {"name": "settings", "value": IngestSettings().model_dump_json()},
        {"name": "corpus_uri", "value": corpus.as_uri()},
        {"name": "tokenizer_model", "value": str(model_dir)},
    ]
    (tmp_path / "inputs.json").write_text(json.dumps(arguments))
    env = {**os.environ, "hera__outputs_directory": str(tmp_path / "hera-outputs")}
    step = [sys.executable, "-m", "hera.workflows.runner", "-e", "steps.ingest:run", str(tmp_path / "inputs.json")]
    completed = subprocess.run([sys.executable, "-c", MEASURE, *step], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=660, check=False)
    returncode, peak_kb = map(int, completed.stdout.split()[-2:])
    assert returncode == 0, completed.stderr[-3000:]
    published = context.store().materialize(context.output_uri("ingest", "chunks"), tmp_path / "published")
    quarantine = [json.loads(line) for line in (published / "quarantine.jsonl").read_text().splitlines()]
    return peak_kb, quarantine


def test_200_mb_text_file_is_quarantined_with_bounded_memory(tmp_path: Path, embedded_model_dir: Path) -> None:
    baseline_corpus, big_corpus = tmp_path / "baseline", tmp_path / "big"
    for corpus in (baseline_corpus, big_corpus):
        corpus.mkdir()
        shutil.copy(SMALL, corpus / SMALL.name)
    big = big_corpus / "export.txt"
    _write_text(big, BIG_BYTES)
    assert big.stat().st_size >= BIG_BYTES and big.stat().st_blocks * 512 >= BIG_BYTES  # real, not sparse

    baseline_kb, baseline_quarantine = _ingest_peak_rss(tmp_path / "run-baseline", baseline_corpus,
                                                        embedded_model_dir)
    big_kb, quarantine = _ingest_peak_rss(tmp_path / "run-big", big_corpus, embedded_model_dir)

    assert baseline_quarantine == []
    assert [(record["path"], record["reason"]) for record in quarantine] == [("export.txt", "too_large")]
    assert f"max_document_mb={IngestSettings().max_document_mb}" in quarantine[0]["detail"]
    assert big_kb - baseline_kb < MAX_EXTRA_RSS_KB, (baseline_kb, big_kb)
    print(f"\ningest peak RSS: {baseline_kb / 1024:.0f} MB without, {big_kb / 1024:.0f} MB with the 200 MB file")
