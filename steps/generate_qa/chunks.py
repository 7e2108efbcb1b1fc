"""Read ingest's chunks artifact (chunks.parquet) into the rows generate_qa asks questions about."""

from pydantic import BaseModel

from steps.common.contract import RuntimeContext

CHUNKS_FILE = "chunks.parquet"
COLUMNS = ("doc_id", "chunk_id", "text", "language")


class Chunk(BaseModel):
    """The columns of chunks.parquet that generate_qa uses."""

    doc_id: str
    chunk_id: str
    text: str
    language: str


def read_chunks(context: RuntimeContext, chunks_uri: str, max_chunks: int | None) -> list[Chunk]:
    """The artifact's chunks, verified against its manifest; with `max_chunks`, a spread over documents."""
    import pyarrow.parquet as pq

    directory = context.store().materialize(chunks_uri, context.scratch() / "chunks")
    path = directory / CHUNKS_FILE
    if not path.is_file():
        raise ValueError(f"generate_qa: {chunks_uri} has no {CHUNKS_FILE}: pass ingest's chunks_uri")
    table = pq.read_table(path)
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"generate_qa: {CHUNKS_FILE} at {chunks_uri} lacks columns {missing}")
    chunks = [Chunk.model_validate(row) for row in table.select(list(COLUMNS)).to_pylist()]
    if not chunks:
        raise ValueError(f"generate_qa: {CHUNKS_FILE} at {chunks_uri} has no chunks")
    return chunks if max_chunks is None else spread(chunks, max_chunks)


def spread(chunks: list[Chunk], limit: int) -> list[Chunk]:
    """`limit` chunks taking every document's first chunk, then every second one, ...: a capped run still
    covers many documents (and languages), so the split by document keeps a test set."""
    position: dict[str, int] = {}
    ranked = []
    for index, chunk in enumerate(chunks):
        rank = position[chunk.doc_id] = position.get(chunk.doc_id, -1) + 1
        ranked.append((rank, index, chunk))
    return [chunk for _, _, chunk in sorted(ranked, key=lambda item: item[:2])[:limit]]
