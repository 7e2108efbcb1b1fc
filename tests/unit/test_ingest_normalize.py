import unicodedata

from steps.ingest.normalize import normalize_text


def test_keeps_diacritics_and_apostrophes() -> None:
    text = "L’école d'été à Köln: Straße, Ärger, señor, città"
    assert normalize_text(text) == "L'école d'été à Köln: Straße, Ärger, señor, città"


def test_decomposed_input_becomes_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "l'école Übung")
    assert decomposed != "l'école Übung"
    assert normalize_text(decomposed) == "l'école Übung"


def test_typographic_apostrophes_become_one_form() -> None:
    variants = ["aujourd’hui", "aujourd‘hui", "aujourdʼhui", "aujourd'hui"]
    assert {normalize_text(v) for v in variants} == {"aujourd'hui"}


def test_whitespace_and_invisible_characters() -> None:
    raw = "  Prix :\u202f10\u00a0000 €\t\tTVA\r\nTrenn\u00adung\u200b ok\x07\r\n\r\n\r\n\r\nNext\u2029para "
    assert normalize_text(raw) == "Prix : 10 000 € TVA\nTrennung ok\n\nNext\n\npara"


def test_pdf_ligatures_are_expanded() -> None:
    assert normalize_text("ef\ufb01cient work\ufb02ow") == "efficient workflow"


def test_empty_and_blank_text() -> None:
    assert normalize_text("") == ""
    assert normalize_text(" \n\t \u00a0\n") == ""
