"""Deterministic language detection (langdetect with a fixed seed, one profile set per run)."""

from typing import Any

# Below this many letters langdetect guesses wildly ("Hallo" -> Finnish): a short text is only matched
# against the allowed languages, so it is labelled with the closest of them instead of being refused.
SHORT_TEXT_LETTERS = 60
# langdetect reads at most this much; a longer prefix only costs time.
_MAX_CHARS = 10_000
UNKNOWN = "unknown"
# The languages langdetect (pinned at 1.0.9) has profiles for, known here so that validating a config needs
# no langdetect (the compile and submit installs do not have it); a test compares it with the installed set.
SUPPORTED_LANGUAGES: frozenset[str] = frozenset((
    "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi", "fr", "gu", "he",
    "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "mk", "ml", "mr", "ne", "nl", "no", "pa", "pl",
    "pt", "ro", "ru", "sk", "sl", "so", "sq", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi",
    "zh-cn", "zh-tw",
))


class LanguageDetector:
    def __init__(self, allowed: list[str], seed: int = 0) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        # A private factory rather than langdetect's module-level one: no shared state between runs.
        self._factory: Any = DetectorFactory()
        self._factory.load_profile(PROFILES_DIRECTORY)
        self._factory.set_seed(seed)
        known = set(self._factory.get_lang_list())
        unknown = [code for code in allowed if code not in known]
        if unknown:
            raise ValueError(f"languages {unknown} are not known to langdetect; known: {sorted(known)}")
        self._allowed = list(allowed)

    def detect(self, text: str) -> str:
        """An ISO 639-1 code, or "unknown" when the text has no letters to go on."""
        from langdetect.lang_detect_exception import LangDetectException

        sample = text[:_MAX_CHARS]
        detector = self._factory.create()
        if sum(ch.isalpha() for ch in sample) < SHORT_TEXT_LETTERS:
            detector.set_prior_map({code: 1.0 for code in self._allowed})
        detector.append(sample)
        try:
            return str(detector.detect())
        except LangDetectException:
            return UNKNOWN
