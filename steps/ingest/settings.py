"""Settings of the ingest step: limits on input documents, cleaning, language filter, chunking, dedup."""

from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

from steps.common.language import SUPPORTED_LANGUAGES

DEFAULT_LANGUAGES = ["en", "de", "fr", "es", "it", "nl"]


class IngestSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Checked on the file size before reading, so an oversized file never enters memory.
    max_document_mb: float = Field(20.0, gt=0, le=1024)
    # Replace e-mail addresses, phone numbers and IBANs by placeholders before anything is published.
    redact_pii: bool = True
    # ISO 639-1 codes as langdetect names them; documents in other languages are quarantined.
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES), min_length=1)
    # A text file that is not UTF-8 is decoded with the first of these legacy encodings that reads it
    # cleanly (charset-normalizer's detection, in this order of preference among equally clean readings:
    # cp1252 and ISO-8859-15 read the same bytes differently only for a few symbols). None fits: quarantined.
    legacy_encodings: list[str] = Field(default_factory=lambda: ["cp1252", "iso8859_15", "cp1250", "iso8859_2"])
    # charset-normalizer's "chaos" (0 = reads like text) above which a detection is not trusted.
    max_encoding_chaos: float = Field(0.1, ge=0, le=1)
    # Field holding the document text in each line of a .jsonl file (JSON is UTF-8 by its RFC: no detection).
    jsonl_text_field: str = Field("text", min_length=1)
    # Chunk sizes are counted with the base model's own tokenizer (the one that will train on them).
    chunk_tokens: int = Field(512, ge=32, le=32768)
    chunk_overlap_tokens: int = Field(64, ge=0)
    # Shorter chunks (a stray heading, a signature) hold no fact worth a question: dropped and counted.
    min_chunk_tokens: int = Field(16, ge=1)
    # Estimated Jaccard similarity of word 5-shingles at or above which a document is a near duplicate.
    near_duplicate_threshold: float = Field(0.85, ge=0.5, le=1.0)

    @field_validator("legacy_encodings")
    @classmethod
    def _known_encodings(cls, value: list[str]) -> list[str]:
        import codecs

        unknown = []
        for name in value:
            try:
                codecs.lookup(name)
            except LookupError:
                unknown.append(name)
        if unknown:
            raise ValueError(f"unknown encodings {unknown} (Python codec names such as 'cp1252', 'iso8859_15')")
        return value

    @field_validator("languages")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        codes = [code.strip().lower() for code in value]
        bad = [code for code in codes if code not in SUPPORTED_LANGUAGES]
        if bad:
            raise ValueError(f"not language codes language detection knows: {bad} (use ISO 639-1 codes such as "
                             f"'en', 'de'; known: {', '.join(sorted(SUPPORTED_LANGUAGES))})")
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate language codes in {codes}")
        return codes

    @model_validator(mode="after")
    def _sizes_consistent(self) -> Self:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be smaller than "
                             f"chunk_tokens ({self.chunk_tokens})")
        if self.min_chunk_tokens > self.chunk_tokens:
            raise ValueError(f"min_chunk_tokens ({self.min_chunk_tokens}) must not exceed "
                             f"chunk_tokens ({self.chunk_tokens})")
        return self

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * 1024 * 1024)
