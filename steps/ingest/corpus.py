"""The ingest pipeline over a list of files: read, clean, redact, chunk, detect each chunk's language, dedupe.

Pure with respect to storage: it gets local files and returns rows, quarantine records and counts.
Every document either becomes chunks or a quarantine record; one bad document never stops the others.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from steps.common.chunks import ChunkRow
from steps.common.language import UNKNOWN, LanguageDetector
from steps.common.progress import Progress
from steps.ingest.chunking import Chunk, TokenCounter, chunk_text
from steps.ingest.dedup import Deduplicator, sha256_text
from steps.ingest.normalize import normalize_text
from steps.ingest.pii import redact_pii
from steps.ingest.quarantine import QuarantineRecord, Reason, Rejected
from steps.ingest.readers import SourceDocument, file_format, not_a_document, read_file
from steps.ingest.settings import IngestSettings
from steps.ingest.stats import IngestStats

logger = logging.getLogger(__name__)


@dataclass
class IngestResult:
    chunks: list[ChunkRow] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    stats: IngestStats = field(default_factory=IngestStats)


def doc_id_for(document: SourceDocument, text: str) -> str:
    """Stable and readable: where the document came from plus a digest of its cleaned text."""
    line = f":L{document.line}" if document.line is not None else ""
    return f"{document.path}{line}@{sha256_text(text)[:12]}"


class CorpusIngester:
    def __init__(self, settings: IngestSettings, count: TokenCounter, detector: LanguageDetector) -> None:
        self.settings, self.count, self.detector = settings, count, detector
        self.result = IngestResult()
        self._dedup = Deduplicator(settings.near_duplicate_threshold)
        self._chunk_digests: set[str] = set()

    def ingest(self, files: list[tuple[Path, str]], progress: Progress) -> IngestResult:
        """Process (local path, path relative to the corpus root) pairs in the order given."""
        for path, rel in files:
            if not_a_document(rel):
                self.result.stats.files_skipped += 1
                continue
            self.result.stats.files_by_format[file_format(path)] += 1
            for outcome in read_file(path, rel, self.settings):
                if isinstance(outcome, QuarantineRecord):
                    self._quarantine(outcome)
                else:
                    self._document(outcome)
            progress.advance()
        return self.result

    def _quarantine(self, record: QuarantineRecord) -> None:
        logger.warning("quarantined %s%s: %s", record.path, f" line {record.line}" if record.line else "",
                       record.reason)
        self.result.quarantine.append(record)
        self.result.stats.quarantined_by_reason[record.reason] += 1

    def _document(self, document: SourceDocument) -> None:
        doc_id = None
        try:
            text = normalize_text(document.text)
            if not text:
                raise Rejected(Reason.NO_TEXT_AFTER_CLEANING, "nothing left without markup and whitespace")
            pii = None
            if self.settings.redact_pii:
                text, pii = redact_pii(text)
            doc_id = doc_id_for(document, text)
            rows = self._rows(doc_id, text)
        except Rejected as rejected:
            self._quarantine(QuarantineRecord(document.path, document.line, doc_id, rejected.reason,
                                              rejected.detail))
            return
        except Exception as exc:  # noqa: BLE001 - a document that breaks a component is set aside, not fatal
            self._quarantine(QuarantineRecord(document.path, document.line, doc_id, Reason.UNREADABLE,
                                              f"{type(exc).__name__} while processing"))
            return
        stats = self.result.stats
        stats.documents_by_format[document.format] += 1
        stats.documents_by_encoding[document.encoding] += 1
        # A document counts under the language most of its kept chunks are in (the first such on a tie).
        languages = Counter(row.language for row in rows)
        stats.documents_by_language[max(languages, key=languages.__getitem__)] += 1
        stats.chunks_by_language.update(languages)
        stats.chunks += len(rows)
        stats.tokens += sum(row.n_tokens for row in rows)
        if pii:
            stats.pii_redacted.update(pii)
        self.result.chunks.extend(rows)

    def _rows(self, doc_id: str, text: str) -> list[ChunkRow]:
        """Length, language and duplicate checks, then the chunks that are kept."""
        settings, stats = self.settings, self.result.stats
        n_tokens = self.count(text)
        if n_tokens < settings.min_chunk_tokens:
            raise Rejected(Reason.TOO_SHORT,
                           f"{n_tokens} tokens, fewer than min_chunk_tokens={settings.min_chunk_tokens}")
        chunks = chunk_text(text, self.count, settings.chunk_tokens, settings.chunk_overlap_tokens)
        languages = self._chunk_languages(text, chunks)
        allowed = [language in settings.languages for language in languages]
        if not any(allowed):
            raise Rejected(Reason.LANGUAGE_NOT_ALLOWED,
                           f"detected {sorted(set(languages))}; allowed: {settings.languages}")
        duplicate = self._dedup.check(doc_id, text)
        if duplicate:
            kind, original = duplicate
            stats.duplicates_removed[kind] += 1
            if kind == "exact":
                raise Rejected(Reason.DUPLICATE, f"same text as {original}")
            raise Rejected(Reason.NEAR_DUPLICATE,
                           f"estimated similarity >= {settings.near_duplicate_threshold} with {original}")
        rows, repeated = [], 0
        for index, (chunk, language, kept) in enumerate(zip(chunks, languages, allowed, strict=True)):
            digest = sha256_text(chunk.text)
            if not kept:
                stats.chunks_language_not_allowed += 1
            elif chunk.n_tokens < settings.min_chunk_tokens:
                stats.chunks_below_min_tokens += 1
            elif digest in self._chunk_digests:
                repeated += 1
            else:
                self._chunk_digests.add(digest)
                rows.append(ChunkRow(doc_id, f"{doc_id}#{index:05d}", chunk.text, language, chunk.n_tokens,
                                     digest))
        stats.duplicates_removed["exact_chunks"] += repeated
        if not rows:
            if repeated:
                raise Rejected(Reason.DUPLICATE, "every chunk repeats a chunk of an earlier document")
            raise Rejected(Reason.TOO_SHORT,
                           f"no chunk of min_chunk_tokens={settings.min_chunk_tokens} tokens")
        return rows

    def _chunk_languages(self, text: str, chunks: list[Chunk]) -> list[str]:
        """Each chunk's own language, so a document mixing languages gets each part right; a chunk the
        detector cannot place (numbers, a table) takes the language of the whole document."""
        if len(chunks) == 1:
            return [self.detector.detect(text)]
        document = None
        languages = []
        for chunk in chunks:
            language = self.detector.detect(chunk.text)
            if language == UNKNOWN:
                document = document or self.detector.detect(text)
                language = document
            languages.append(language)
        return languages
