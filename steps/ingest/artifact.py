"""The published artifact: chunks.parquet, quarantine.jsonl and stats.json, reproducible byte for byte."""

from pathlib import Path

from steps.ingest.corpus import ChunkRow, IngestResult
from steps.ingest.quarantine import write_quarantine

CHUNKS_FILE = "chunks.parquet"
QUARANTINE_FILE = "quarantine.jsonl"
STATS_FILE = "stats.json"
COLUMNS = ("doc_id", "chunk_id", "text", "language", "n_tokens", "sha256")


def write_artifact(result: IngestResult, directory: Path) -> None:
    write_chunks(result.chunks, directory / CHUNKS_FILE)
    write_quarantine(result.quarantine, directory / QUARANTINE_FILE)
    (directory / STATS_FILE).write_text(result.stats.to_json(), encoding="utf-8")


def write_chunks(rows: list[ChunkRow], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("doc_id", pa.string()), ("chunk_id", pa.string()), ("text", pa.string()),
        ("language", pa.string()), ("n_tokens", pa.int32()), ("sha256", pa.string()),
    ])
    # Sorted by document, then position in it (the zero-padded chunk index sorts as a number).
    ordered = sorted(rows, key=lambda row: (row.doc_id, row.chunk_id))
    table = pa.table({name: [getattr(row, name) for row in ordered] for name in COLUMNS}, schema=schema)
    pq.write_table(table, path, compression="zstd")
