"""Counts about one ingest run for stats.json: how much went in, what came out, what was set aside.

Counts only, by design (data minimisation): never a text, never a redacted value.
"""

import json
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    files_by_format: Counter[str] = field(default_factory=Counter)
    files_skipped: int = 0  # hidden files and editor leftovers: not documents
    documents_by_format: Counter[str] = field(default_factory=Counter)
    documents_by_language: Counter[str] = field(default_factory=Counter)
    documents_by_encoding: Counter[str] = field(default_factory=Counter)  # text files not in UTF-8 show here
    chunks_by_language: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
    tokens: int = 0
    # exact / near: documents; exact_chunks: chunks repeating one already kept (shared boilerplate).
    duplicates_removed: Counter[str] = field(default_factory=lambda: Counter(exact=0, near=0, exact_chunks=0))
    chunks_below_min_tokens: int = 0
    chunks_language_not_allowed: int = 0  # dropped from documents whose other chunks were kept
    pii_redacted: Counter[str] = field(default_factory=lambda: Counter(email=0, phone=0, iban=0))
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def documents(self) -> int:
        return sum(self.documents_by_format.values())

    def to_json(self) -> str:
        body = {
            "files": sum(self.files_by_format.values()),
            "files_by_format": dict(self.files_by_format),
            "files_skipped": self.files_skipped,
            "documents": self.documents,
            "documents_by_format": dict(self.documents_by_format),
            "documents_by_language": dict(self.documents_by_language),
            "documents_by_encoding": dict(self.documents_by_encoding),
            "chunks": self.chunks,
            "chunks_by_language": dict(self.chunks_by_language),
            "tokens": self.tokens,
            "duplicates_removed": dict(self.duplicates_removed),
            "chunks_below_min_tokens": self.chunks_below_min_tokens,
            "chunks_language_not_allowed": self.chunks_language_not_allowed,
            "pii_redacted": dict(self.pii_redacted),
            "quarantined": sum(self.quarantined_by_reason.values()),
            "quarantined_by_reason": dict(self.quarantined_by_reason),
        }
        return json.dumps(body, indent=2, sort_keys=True) + "\n"
