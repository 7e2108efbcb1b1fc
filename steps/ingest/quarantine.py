"""Why a document was set aside: a reason code for machines, a detail for people, never the text itself."""

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path


class Reason(StrEnum):
    UNREADABLE = "unreadable"
    EMPTY = "empty"
    BINARY = "binary"
    INVALID_UTF8 = "invalid_utf8"
    UNDETECTED_ENCODING = "undetected_encoding"
    ENCRYPTED_PDF = "encrypted_pdf"
    CORRUPT_PDF = "corrupt_pdf"
    TOO_LARGE = "too_large"
    ARCHIVE = "archive"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    INVALID_JSONL_LINE = "invalid_jsonl_line"
    NO_TEXT_AFTER_CLEANING = "no_text_after_cleaning"
    LANGUAGE_NOT_ALLOWED = "language_not_allowed"
    TOO_SHORT = "too_short"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"


class Rejected(Exception):
    """Raised by readers and checks; the step turns it into a quarantine record and goes on."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class QuarantineRecord:
    path: str  # relative to the corpus root
    line: int | None  # 1-based line of a .jsonl file, None for whole files
    doc_id: str | None  # set once the text was read (duplicates, language), else None
    reason: Reason
    detail: str

    @property
    def sort_key(self) -> tuple[str, int]:
        return self.path, self.line or 0


def write_quarantine(records: list[QuarantineRecord], path: Path) -> None:
    """One JSON object per line, in corpus order (deterministic)."""
    with path.open("w", encoding="utf-8") as handle:
        for record in sorted(records, key=lambda r: r.sort_key):
            handle.write(json.dumps(asdict(record), ensure_ascii=False, sort_keys=True) + "\n")
