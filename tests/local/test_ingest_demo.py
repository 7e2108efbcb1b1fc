"""The ingest step end to end on the shipped demo corpus (the session's run with the shipped config), a
corpus with nothing usable, and the step through Hera's own runner."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from steps.ingest import IngestInputs, IngestOutputs, NoUsableDocuments, run
from steps.ingest.settings import IngestSettings
from tests.fixtures.demo_steps import DemoIngest, step_context

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "corpus" / "demo"


def _run(tmp_path: Path, model_dir: Path, corpus: Path = DEMO, **settings: object) -> IngestOutputs:
    return run(IngestInputs(context=step_context(tmp_path), settings=IngestSettings(**settings),
                            corpus_uri=corpus.as_uri(), tokenizer_model=str(model_dir)))


def test_demo_corpus(demo_ingest: DemoIngest, embedded_model_dir: Path, tmp_path: Path) -> None:
    outputs = demo_ingest.outputs
    assert demo_ingest.config.corpus == DEMO.as_uri()
    local = demo_ingest.context.store().materialize(outputs.chunks_uri, tmp_path / "cache")
    assert sorted(p.name for p in local.iterdir()) == ["MANIFEST.json", "chunks.parquet", "quarantine.jsonl",
                                                       "stats.json"]
    table = pq.read_table(local / "chunks.parquet")
    assert table.column_names == ["doc_id", "chunk_id", "text", "language", "n_tokens", "sha256"]
    rows = table.to_pylist()
    assert len(rows) == outputs.n_chunks and outputs.n_chunks >= 20
    assert {row["language"] for row in rows} == {"en", "de", "fr"}
    assert all(row["n_tokens"] <= 512 for row in rows)
    assert len({row["chunk_id"] for row in rows}) == len(rows)
    assert [row["chunk_id"] for row in rows] == sorted(row["chunk_id"] for row in rows)

    text = "\n".join(row["text"] for row in rows)
    assert "l'école de formation interne" in text  # French apostrophe and accents survive
    assert "Sicherheitsschuhe der Schutzklasse S3" in text  # HTML main text kept ...
    assert "trackPage" not in text and "Startseite" not in text  # ... script and nav stripped
    assert "[IBAN]" in text and "DE92 2001" not in text and "katrin.albers@" not in text

    assert (local / "quarantine.jsonl").read_text() == ""
    stats = json.loads((local / "stats.json").read_text())
    assert stats["documents_by_format"] == {"markdown": 3, "text": 1, "html": 1, "pdf": 1, "jsonl": 14}
    assert stats["pii_redacted"]["email"] > 0 and stats["pii_redacted"]["phone"] > 0
    assert stats["pii_redacted"]["iban"] > 0
    assert stats["documents"] == outputs.n_documents == 20 and outputs.n_quarantined == 0
    assert stats["tokens"] == sum(row["n_tokens"] for row in rows)
    assert stats["chunks_by_language"] == dict(Counter(row["language"] for row in rows))
    assert demo_ingest.progress == "7/7"

    # Same corpus, same settings: byte-identical artifact (the digest is the manifest's content digest).
    again = _run(tmp_path, embedded_model_dir, **demo_ingest.config.ingest.model_dump())
    assert again.chunks_digest == outputs.chunks_digest


def test_no_usable_document_fails_and_publishes_nothing(tmp_path: Path, embedded_model_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "photo.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(NoUsableDocuments, match=r"no usable document in corpus .*'binary': 1, 'empty': 1"):
        _run(tmp_path, embedded_model_dir, corpus=corpus)
    context = step_context(tmp_path)
    assert not context.store().exists(context.output_uri("ingest", "chunks"))


def test_hera_runner_runs_the_step(tmp_path: Path, embedded_model_dir: Path) -> None:
    context = step_context(tmp_path)
    arguments = [
        {"name": "context", "value": context.model_dump_json()},
        {"name": "settings",
         "value": IngestSettings(chunk_tokens=256, chunk_overlap_tokens=32).model_dump_json()},
        {"name": "corpus_uri", "value": DEMO.as_uri()},
        {"name": "tokenizer_model", "value": str(embedded_model_dir)},
    ]
    args_file = tmp_path / "inputs.json"
    args_file.write_text(json.dumps(arguments))
    outputs_dir = tmp_path / "hera-outputs"
    env = {**os.environ, "hera__outputs_directory": str(outputs_dir)}
    command = [sys.executable, "-m", "hera.workflows.runner", "-e", "steps.ingest:run", str(args_file)]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    parameters = {p.name: p.read_text() for p in (outputs_dir / "parameters").iterdir()}
    assert set(parameters) == {"chunks_uri", "n_documents", "n_chunks", "n_quarantined", "chunks_digest",
                               "corpus_digest"}
    assert parameters["chunks_uri"] == context.output_uri("ingest", "chunks")
    assert int(parameters["n_chunks"]) > 30  # smaller chunks than the default: more of them
    assert context.store().read_manifest(parameters["chunks_uri"]).digest == parameters["chunks_digest"]
