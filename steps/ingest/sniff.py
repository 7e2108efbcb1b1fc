"""Look at raw bytes before trusting a file extension: archives, binaries and non-UTF-8 text are refused."""

import codecs

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


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a leading BOM is dropped): guessing an encoding would silently corrupt text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Rejected(Reason.INVALID_UTF8,
                       f"invalid UTF-8 at byte {exc.start}: re-save the file as UTF-8") from None
