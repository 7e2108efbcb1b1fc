import pytest

from steps.common.language import UNKNOWN, LanguageDetector
from steps.ingest.settings import DEFAULT_LANGUAGES

SAMPLES = {
    "de": "Der Urlaubsantrag muss spätestens vierzehn Tage vor dem ersten Urlaubstag gestellt werden.",
    "fr": "La cantine est ouverte de onze heures trente à quatorze heures, du lundi au vendredi, pour tous.",
    "en": "Passwords must be at least fourteen characters long and are stored only in the password manager.",
    "nl": "De medewerkers mogen maximaal twee dagen per week thuiswerken na overleg met hun team.",
    "es": "Los empleados pueden trabajar desde casa dos días por semana después de hablarlo con su equipo.",
    "it": "I dipendenti possono lavorare da casa due giorni alla settimana dopo averne parlato con il team.",
}


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(DEFAULT_LANGUAGES)


def test_samples_cover_the_default_languages() -> None:
    assert sorted(SAMPLES) == sorted(DEFAULT_LANGUAGES)


@pytest.mark.parametrize("expected", sorted(SAMPLES))
def test_detects_each_default_language(detector: LanguageDetector, expected: str) -> None:
    assert detector.detect(SAMPLES[expected]) == expected


def test_detection_is_deterministic(detector: LanguageDetector) -> None:
    mixed = "Le télétravail ist possible. Deux jours per week, nach Absprache."
    assert len({LanguageDetector(DEFAULT_LANGUAGES).detect(mixed) for _ in range(3)}
               | {detector.detect(mixed) for _ in range(3)}) == 1


def test_short_text_is_matched_among_allowed_languages(detector: LanguageDetector) -> None:
    # Unrestricted, langdetect calls "Hallo" Finnish or Italian; short texts stay within the allowed set.
    assert detector.detect("Danke schön") == "de"
    assert detector.detect("Merci beaucoup") == "fr"
    assert detector.detect("Hallo") in DEFAULT_LANGUAGES


def test_other_languages_are_reported(detector: LanguageDetector) -> None:
    portuguese = ("Os funcionários podem trabalhar remotamente até dois dias por semana, depois de "
                  "combinarem os dias com a sua equipa e com a chefia direta.")
    assert detector.detect(portuguese) == "pt"
    assert detector.detect("12345 67 89 -- 2025") == UNKNOWN


def test_unknown_allowed_language_is_refused() -> None:
    with pytest.raises(ValueError, match="not known to langdetect"):
        LanguageDetector(["en", "xx"])
