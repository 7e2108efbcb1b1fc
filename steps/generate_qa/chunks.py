"""The chunks generate_qa asks questions about: ingest's artifact, verified, optionally a spread over documents."""

from steps.common.chunks import Chunk
from steps.common.chunks import read_chunks as read_artifact
from steps.common.contract import RuntimeContext


def read_chunks(context: RuntimeContext, chunks_uri: str, max_chunks: int | None) -> list[Chunk]:
    """The artifact's chunks, verified against its manifest; with `max_chunks`, a spread over documents."""
    directory = context.store().materialize(chunks_uri, context.scratch() / "chunks")
    chunks = read_artifact(directory, chunks_uri)
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
