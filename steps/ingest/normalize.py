"""Unicode and whitespace normalisation that keeps what carries meaning (diacritics, apostrophes, paragraphs).

NFC, not NFKC: NFKC would also rewrite superscripts, fractions and the like. The few compatibility
characters that do matter for text extracted from PDFs (ligatures) are expanded explicitly.
"""

import re
import unicodedata

_TRANSLATION = str.maketrans({
    # Apostrophes: one form everywhere, so "l’école" and "l'école" are the same text (and dedupe as such).
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201b": "'", "\u00b4": "'",
    # Spaces: no-break and the French narrow no-break space become plain spaces.
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u205f": " ", "\u3000": " ", "\t": " ",
    **{chr(c): " " for c in range(0x2000, 0x200B)},
    # Invisible characters: soft hyphen, zero-width space, word joiner, stray byte-order marks.
    "\u00ad": None, "\u200b": None, "\u2060": None, "\ufeff": None,
    # Line and paragraph separators (a form feed separates pages).
    "\u2028": "\n", "\u2029": "\n\n", "\x0b": "\n", "\x0c": "\n\n",
    # Ligatures that PDF text extraction produces.
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "st", "\ufb06": "st",
})
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r" {2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, one apostrophe and space form, no control characters, trimmed lines, at most one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROLS.sub("", text.translate(_TRANSLATION))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
