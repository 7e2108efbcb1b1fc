"""Redact e-mail addresses, IBANs and phone numbers; count them per kind, never keep the values.

One pass with one alternation, e-mail first, then IBAN, then phone: at any position the earlier kind wins,
and an IBAN-shaped string that fails its checksum is skipped whole rather than half-read as a phone
number. IBANs are confirmed by length and the ISO 13616 mod-97 checksum, phone numbers by their digit
count and separators, so that amounts, dates and reference numbers are left alone.
"""

import re
from collections import Counter

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "phone": "[PHONE]"}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]+@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])")

# IBAN lengths of the SEPA countries; for the others only the generic 15-34 range is known.
_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22,
}
# Country, check digits, then characters optionally grouped by single spaces; trimmed to a valid IBAN below.
_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")

# International (+CC or 00CC) or national (leading 0 trunk prefix, optionally in parentheses) numbers:
# digit groups separated by one space, dash, slash or dot; "(0)" is allowed after the country code.
_PHONE_INTERNATIONAL = re.compile(
    r"(?<![\w+])(?:\+|00)\d{1,3}(?:[ ./-]?(?:\(0\)|\(\d{1,4}\)|\d{1,6})){2,8}(?![\w])")
_PHONE_NATIONAL = re.compile(r"(?<![\w+/.-])(?:\(0\d{1,5}\)|0\d{1,5})(?:[ ./-]?\d{2,8}){1,5}(?![\w])")
_SEPARATORS = re.compile(r"[ ./-]")
_PII = re.compile("|".join(f"(?P<{kind}>{pattern.pattern})" for kind, pattern in (
    ("email", _EMAIL), ("iban", _IBAN_CANDIDATE),
    ("phone_international", _PHONE_INTERNATIONAL), ("phone_national", _PHONE_NATIONAL),
)))


def iban_is_valid(candidate: str) -> bool:
    """ISO 13616: the country's length, then (rest + first four) as a number is 1 modulo 97."""
    iban = candidate.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(iban[:2])
    if not (15 <= len(iban) <= 34) or (expected is not None and len(iban) != expected):
        return False
    if not (iban[:2].isalpha() and iban[2:4].isdigit() and iban.isalnum() and iban.isascii()):
        return False
    digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def redact_pii(text: str) -> tuple[str, Counter[str]]:
    """The text with placeholders instead of PII, and how many of each kind were replaced."""
    counts: Counter[str] = Counter()

    def substitute(match: re.Match[str]) -> str:
        kind, found = match.lastgroup, match.group(0)
        if kind == "email":
            return _count(counts, "email")
        if kind == "iban":
            return _redact_iban(found, counts)
        return _redact_phone(found, counts, international=kind == "phone_international")

    return _PII.sub(substitute, text), counts


def _count(counts: Counter[str], kind: str) -> str:
    counts[kind] += 1
    return PLACEHOLDERS[kind]


def _redact_iban(candidate: str, counts: Counter[str]) -> str:
    # The pattern may run into a following word ("... 3000 BIC"): try the longest valid prefix.
    for end in range(len(candidate), 14, -1):
        if candidate[end - 1] != " " and iban_is_valid(candidate[:end]):
            return _count(counts, "iban") + candidate[end:]
    return candidate


def _redact_phone(candidate: str, counts: Counter[str], international: bool) -> str:
    digits = sum(ch.isdigit() for ch in candidate)
    if international:
        plausible = 8 <= digits <= 15  # E.164 allows at most 15 digits
    else:
        # At least 9 digits keeps dates (01.03.2025) out. After the area code one kind of separator only
        # ("030/123 45 67" is a number, "01.03.2025 10" a date and an hour).
        separators = _SEPARATORS.findall(candidate.replace("(", "").replace(")", " "))
        plausible = 9 <= digits <= 15 and len(set(separators[1:])) <= 1
    return _count(counts, "phone") if plausible else candidate
