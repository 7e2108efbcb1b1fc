"""The chunks artifact ingest publishes (chunks.parquet) and generate_qa reads: its columns and both sides."""

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

CHUNKS_FILE = "chunks.parquet"
COLUMNS = ("doc_id", "chunk_id", "text", "language", "n_tokens", "sha256")
READ_COLUMNS = COLUMNS[:4]  # what a reader needs: n_tokens and sha256 are ingest's bookkeeping


@dataclass(frozen=True)
class ChunkRow:
    """One row of chunks.parquet as ingest writes it."""

    doc_id: str
    chunk_id: str
    text: str
    language: str
    n_tokens: int
    sha256: str


class Chunk(BaseModel):
    """The columns of chunks.parquet a reader uses."""

    doc_id: str
    chunk_id: str
    text: str
    language: str


def write_chunks(rows: list[ChunkRow], path: Path) -> None:
    """Reproducible byte for byte: sorted by document, then position in it (the zero-padded chunk index
    sorts as a number)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("doc_id", pa.string()), ("chunk_id", pa.string()), ("text", pa.string()),
        ("language", pa.string()), ("n_tokens", pa.int32()), ("sha256", pa.string()),
    ])
    ordered = sorted(rows, key=lambda row: (row.doc_id, row.chunk_id))
    table = pa.table({name: [getattr(row, name) for row in ordered] for name in COLUMNS}, schema=schema)
    pq.write_table(table, path, compression="zstd")


def read_chunks(directory: Path, uri: str) -> list[Chunk]:
    """Every chunk of a materialized chunks artifact; a missing file, column or empty table is a clear error."""
    import pyarrow.parquet as pq

    path = directory / CHUNKS_FILE
    if not path.is_file():
        raise ValueError(f"{uri} has no {CHUNKS_FILE}: pass ingest's chunks_uri")
    table = pq.read_table(path)
    missing = [name for name in READ_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"{CHUNKS_FILE} at {uri} lacks columns {missing}")
    chunks = [Chunk.model_validate(row) for row in table.select(list(READ_COLUMNS)).to_pylist()]
    if not chunks:
        raise ValueError(f"{CHUNKS_FILE} at {uri} has no chunks")
    return chunks
