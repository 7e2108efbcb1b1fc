"""Look at raw bytes before trusting a file extension: archives and binaries are refused, text is decoded as
UTF-8 or, failing that, as a legacy European encoding detected with confidence."""

import codecs
import re
from collections.abc import Sequence

from steps.ingest.quarantine import Reason, Rejected

# (magic, offset, name). Office documents (.docx, .odt) are zip containers and land here too.
_ARCHIVE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "zip container (.zip, .docx, .xlsx, .odt ...)"),
    (b"PK\x05\x06", 0, "empty zip archive"),
    (b"PK\x07\x08", 0, "spanned zip archive"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"BZh", 0, "bzip2"),
    (b"\xfd7zXZ\x00", 0, "xz"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-zip"),
    (b"Rar!\x1a\x07", 0, "rar"),
    (b"ustar", 257, "tar"),
)
PDF_MAGIC = b"%PDF-"
_TEXT_CONTROLS = b"\t\n\r\f"
# Every byte except the C0 controls (and DEL) that never appear in text: translate() deletes these,
# leaving only the suspicious bytes to count, in one pass at C speed.
_NOT_SUSPICIOUS = bytes(b for b in range(256) if not ((b < 0x20 and b not in _TEXT_CONTROLS) or b == 0x7F))
# Real text has essentially no such controls; a few stray ones (an old \x1a EOF marker) are tolerated.
_MAX_CONTROL_RATIO = 0.01


def archive_kind(head: bytes) -> str | None:
    """The archive format announced by the first bytes (at least 262 of them for tar), if any."""
    for magic, offset, name in _ARCHIVE_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def check_not_archive(data: bytes) -> None:
    kind = archive_kind(data[:512])
    if kind:
        raise Rejected(Reason.ARCHIVE, f"{kind} detected by its magic bytes; extract it and ingest the files")


def check_text_bytes(data: bytes) -> None:
    """Refuse UTF-16 and binary content (NUL bytes, many control characters) with a reason each."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise Rejected(Reason.INVALID_UTF8, "UTF-16 byte-order mark: re-save the file as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise Rejected(Reason.BINARY, f"NUL byte at offset {nul}: not a text file")
    controls = len(data.translate(None, _NOT_SUSPICIOUS))
    if controls > _MAX_CONTROL_RATIO * len(data):
        raise Rejected(Reason.BINARY, f"{controls} control bytes in {len(data)}: not a text file")


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def decode_text(data: bytes, legacy_encodings: Sequence[str], max_chaos: float) -> tuple[str, str]:
    """(text, encoding): strict UTF-8 (a leading BOM dropped), else the legacy encoding charset-normalizer
    finds clean, preferring the earlier of `legacy_encodings` among equally clean readings. Not confident
    (no clean reading): refused, since a wrong guess would silently corrupt every accented word."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    if _UTF8_MULTIBYTE.search(data):
        # Valid UTF-8 sequences beside invalid bytes: UTF-8 with stray legacy bytes (files pasted together).
        # Any single legacy reading would turn the UTF-8 part into mojibake ("GrĂĽĂźe").
        raise Rejected(Reason.UNDETECTED_ENCODING,
                       f"UTF-8 with an invalid byte at {first_bad}: mixed encodings; re-save the file as UTF-8")
    from charset_normalizer import from_bytes

    order = [codecs.lookup(name).name for name in legacy_encodings]
    candidates = []
    for match in from_bytes(data, cp_isolation=list(legacy_encodings)):
        if match.chaos <= max_chaos:
            # One match stands for every encoding that reads the bytes identically.
            names = {codecs.lookup(name).name for name in match.could_be_from_charset}
            candidates += [(match.chaos, order.index(name), name, str(match)) for name in names if name in order]
    if not candidates:
        raise Rejected(Reason.UNDETECTED_ENCODING,
                       f"not UTF-8 (invalid byte at {first_bad}) and no clean reading in {list(legacy_encodings)}: "
                       "re-save the file as UTF-8")
    _, _, encoding, text = min(candidates)
    return text, encoding


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a leading BOM is dropped): guessing an encoding would silently corrupt text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Rejected(Reason.INVALID_UTF8,
                       f"invalid UTF-8 at byte {exc.start}: re-save the file as UTF-8") from None
