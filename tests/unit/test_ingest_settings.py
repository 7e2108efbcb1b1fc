import pytest
from pydantic import ValidationError

from steps.ingest.settings import IngestSettings


def test_defaults_are_consistent() -> None:
    settings = IngestSettings()
    assert settings.chunk_tokens == 512
    assert settings.chunk_overlap_tokens < settings.chunk_tokens
    assert settings.languages == ["en", "de", "fr", "es", "it", "nl"]
    assert settings.redact_pii is True
    assert settings.max_document_bytes == 20 * 1024 * 1024


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValidationError, match=r"chunk_overlap_tokens .* must be smaller"):
        IngestSettings(chunk_tokens=64, chunk_overlap_tokens=64)


def test_all_field_errors_are_reported_together() -> None:
    with pytest.raises(ValidationError) as info:
        IngestSettings(chunk_tokens=8, max_document_mb=0, near_duplicate_threshold=1.5, colour="blue")
    fields = {error["loc"][0] for error in info.value.errors()}
    assert fields == {"chunk_tokens", "max_document_mb", "near_duplicate_threshold", "colour"}


def test_language_codes_are_normalised_and_checked() -> None:
    assert IngestSettings(languages=[" EN", "de"]).languages == ["en", "de"]
    with pytest.raises(ValidationError, match="not language codes"):
        IngestSettings(languages=["english"])
    with pytest.raises(ValidationError, match="duplicate"):
        IngestSettings(languages=["en", "EN"])
