"""Ingest step: raw documents (Markdown, text, HTML, PDF, JSONL) -> cleaned, PII-redacted, token-sized chunks.

Publishes `chunks.parquet` (doc_id, chunk_id, text, language, n_tokens, sha256), `quarantine.jsonl`
(every refused document with a reason) and `stats.json` (counts only). Heavy libraries (transformers,
pyarrow, pypdf, lxml, langdetect) are imported only while the step runs.
"""

import hashlib
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

from hera.workflows.io import Input, Output

from steps.common.contract import RuntimeContext, publishing, transient_exit
from steps.common.storage import local_path, sha256_file
from steps.ingest.quarantine import QuarantineRecord
from steps.ingest.settings import IngestSettings

logger = logging.getLogger(__name__)


class NoUsableDocuments(ValueError):
    """Every document of the corpus was quarantined (or there was none): nothing to publish."""

    def __init__(self, corpus_uri: str, quarantine: list[QuarantineRecord]) -> None:
        if not quarantine:
            message = f"ingest: corpus {corpus_uri} contains no files"
        else:
            reasons = Counter(record.reason.value for record in quarantine)
            examples = "; ".join(f"{r.path}{f' line {r.line}' if r.line else ''}: {r.reason} ({r.detail})"
                                 for r in quarantine[:5])
            message = (f"ingest: no usable document in corpus {corpus_uri}: all {len(quarantine)} were "
                       f"quarantined, by reason {dict(sorted(reasons.items()))}. First ones: {examples}")
        super().__init__(message)


class IngestInputs(Input):
    context: RuntimeContext
    settings: IngestSettings = IngestSettings()
    corpus_uri: str  # file:// directory or s3:// prefix of raw documents
    tokenizer_model: str = "embedded"  # the base model whose tokenizer sizes the chunks


class IngestOutputs(Output):
    chunks_uri: str
    n_documents: int
    n_chunks: int
    n_quarantined: int
    chunks_digest: str
    corpus_digest: str  # the files read: their paths and contents (lineage of the registered adapter)


@transient_exit
def run(inputs: IngestInputs) -> IngestOutputs:
    from steps.common.language import LanguageDetector
    from steps.common.models import resolve_model_dir
    from steps.common.progress import Progress
    from steps.ingest.artifact import write_artifact
    from steps.ingest.corpus import CorpusIngester
    from steps.ingest.tokens import load_token_counter

    started = time.monotonic()
    context, settings = inputs.context, inputs.settings
    store = context.store()
    with tempfile.TemporaryDirectory(prefix="ingest-corpus-", dir=context.scratch()) as download:
        files = store.download_prefix(inputs.corpus_uri, Path(download))
        root = _corpus_root(inputs.corpus_uri, Path(download))
        listed = [(path, path.relative_to(root).as_posix()) for path in files]
        corpus_digest = _corpus_digest(listed)
        logger.info("ingest: %d files in %s", len(listed), inputs.corpus_uri)
        count = load_token_counter(resolve_model_dir(inputs.tokenizer_model, context))
        detector = LanguageDetector(settings.languages)
        result = CorpusIngester(settings, count, detector).ingest(listed, Progress(len(listed)))
    if not result.chunks:
        raise NoUsableDocuments(inputs.corpus_uri, result.quarantine)
    with publishing(context, "ingest", "chunks") as (directory, uri):
        write_artifact(result, directory)
    digest = store.read_manifest(uri).digest
    stats = result.stats
    logger.info("ingest: %d documents, %d chunks, %d tokens, %d quarantined in %.1f s", stats.documents,
                stats.chunks, stats.tokens, len(result.quarantine), time.monotonic() - started)
    return IngestOutputs(chunks_uri=uri, n_documents=stats.documents, n_chunks=stats.chunks,
                         n_quarantined=len(result.quarantine), chunks_digest=digest,
                         corpus_digest=corpus_digest)


def _corpus_digest(listed: list[tuple[Path, str]]) -> str:
    """Digest of the corpus as read: each file's relative path and content hash, in path order."""
    digest = hashlib.sha256()
    for path, relative in sorted(listed, key=lambda item: item[1]):
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def _corpus_root(corpus_uri: str, download: Path) -> Path:
    """Where relative paths start: the download folder for s3://, the folder itself for file://."""
    if corpus_uri.startswith("s3://"):
        return download
    return local_path(corpus_uri)
