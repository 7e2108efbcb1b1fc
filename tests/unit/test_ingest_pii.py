import pytest

from steps.ingest.pii import iban_is_valid, redact_pii

VALID_DE = "DE92 2001 2345 0004 7118 42"
VALID_FR = "FR9630004012340001234567890"


def test_iban_checksum() -> None:
    assert iban_is_valid(VALID_DE)
    assert iban_is_valid(VALID_FR)
    assert iban_is_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_is_valid("DE93 2001 2345 0004 7118 42")  # one check digit off
    assert not iban_is_valid("DE92 2001 2345 0004 7118 4")  # wrong length for DE


def test_valid_iban_is_redacted_and_counted() -> None:
    text, counts = redact_pii(f"Bitte überweisen an {VALID_DE} BIC NORDDEHHXXX, oder {VALID_FR}.")
    assert text == "Bitte überweisen an [IBAN] BIC NORDDEHHXXX, oder [IBAN]."
    assert counts["iban"] == 2


def test_invalid_iban_is_left_alone_entirely() -> None:
    original = "Kontonummer DE93 2001 2345 0004 7118 42 ist falsch."
    text, counts = redact_pii(original)
    assert text == original
    assert sum(counts.values()) == 0


@pytest.mark.parametrize("number", [
    "+49 30 1234567", "030/1234567", "+33 1 23 45 67 89", "01 23 45 67 89", "(030) 123 4567",
    "+49 (0)40 555 1234", "030/123 45 67", "0049 30 1234567", "+31-10-123-4567",
])
def test_phone_numbers(number: str) -> None:
    text, counts = redact_pii(f"Rufen Sie {number} an.")
    assert text == "Rufen Sie [PHONE] an."
    assert counts == {"phone": 1}


@pytest.mark.parametrize("text", [
    "Am 01.03.2025 10:00 Uhr, Rechnung 2024-03-15, Betrag 1.250,00 EUR.",
    "Version 0.21.2, PLZ 01067 Dresden, ISO 27001, 97.4 percent, ext. 4400.",
    "Paid 0,30 euros per kilometre; reference 2025-0412.",
])
def test_numbers_that_are_not_phone_numbers(text: str) -> None:
    redacted, counts = redact_pii(text)
    assert redacted == text
    assert sum(counts.values()) == 0


def test_email_addresses() -> None:
    text, counts = redact_pii("Schreiben Sie an katrin.albers@nordlicht-logistik.example oder hr+a@firma.de.")
    assert text == "Schreiben Sie an [EMAIL] oder [EMAIL]."
    assert counts == {"email": 2}


def test_mixed_counts_per_kind() -> None:
    text, counts = redact_pii(f"Mail a@b.eu, Tel. +49 40 5550 1234, IBAN {VALID_DE}, Fax 040/5550 1235")
    assert text == "Mail [EMAIL], Tel. [PHONE], IBAN [IBAN], Fax [PHONE]"
    assert counts == {"email": 1, "phone": 2, "iban": 1}
