"""Text normalisation shared by the refusal detector, the grounding check and question dedup."""

import re
import unicodedata

_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Casefolded, NFC, apostrophes dropped, punctuation as spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text).casefold().replace("'", "").replace("\u2019", "")
    return " ".join(_NON_WORD.sub(" ", text).split())


def words(text: str) -> list[str]:
    """The normalised words of `text`, in order."""
    return normalise(text).split()
