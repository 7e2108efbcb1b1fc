"""The published artifact: chunks.parquet, quarantine.jsonl and stats.json, reproducible byte for byte."""

from pathlib import Path

from steps.common.chunks import CHUNKS_FILE, write_chunks
from steps.ingest.corpus import IngestResult
from steps.ingest.quarantine import write_quarantine

QUARANTINE_FILE = "quarantine.jsonl"
STATS_FILE = "stats.json"


def write_artifact(result: IngestResult, directory: Path) -> None:
    write_chunks(result.chunks, directory / CHUNKS_FILE)
    write_quarantine(result.quarantine, directory / QUARANTINE_FILE)
    (directory / STATS_FILE).write_text(result.stats.to_json(), encoding="utf-8")

