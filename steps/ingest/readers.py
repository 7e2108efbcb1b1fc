"""From one file on disk to the raw text of its document(s), or a quarantine record saying why not.

The file size is checked before a single byte is read, and the read itself is capped at the limit; the
content is sniffed before the extension is trusted. Each format's reader raises `Rejected` for what it
cannot use; nothing here stops the corpus. A quarantine detail never carries a parser's or library's
message: those quote the bytes they choke on, i.e. document content.
"""

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from steps.ingest.quarantine import QuarantineRecord, Reason, Rejected
from steps.ingest.settings import IngestSettings
from steps.ingest.sniff import PDF_MAGIC, check_not_archive, check_text_bytes, decode_text, decode_utf8

if TYPE_CHECKING:
    from lxml.html import HtmlElement
    from pypdf import PageObject

FORMATS: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".txt": "text",
    ".html": "html", ".htm": "html", ".pdf": "pdf", ".jsonl": "jsonl",
}


@dataclass(frozen=True)
class SourceDocument:
    path: str  # relative to the corpus root
    line: int | None  # 1-based line of a .jsonl file
    format: str
    text: str  # extracted, not yet normalised
    encoding: str = "utf-8"  # what the file was decoded from (PDF and JSONL: their own rules)


Outcome = SourceDocument | QuarantineRecord


def read_file(path: Path, rel: str, settings: IngestSettings) -> list[Outcome]:
    """Every document in the file (several for .jsonl), or one record if the whole file is refused."""
    try:
        fmt, data = _load(path, settings)
        if fmt == "jsonl":
            return list(_jsonl_documents(data, rel, settings.jsonl_text_field))
        if fmt == "pdf":
            return [SourceDocument(rel, None, fmt, _read_pdf(data))]
        text, encoding = decode_text(data, settings.legacy_encodings, settings.max_encoding_chaos)
        if not text.strip():
            raise Rejected(Reason.EMPTY, "only whitespace")
        return [SourceDocument(rel, None, fmt, _TEXT_READERS[fmt](text), encoding)]
    except Rejected as rejected:
        return [QuarantineRecord(rel, None, None, rejected.reason, rejected.detail)]
    except Exception as exc:  # noqa: BLE001 - one unreadable file must never stop the corpus
        return [QuarantineRecord(rel, None, None, Reason.UNREADABLE, safe_detail(exc))]


def safe_detail(exc: BaseException) -> str:
    """What went wrong without the exception's message, which may quote the document."""
    return f"{type(exc).__name__} while reading (message withheld: it may quote the document)"


# Editors' backup, swap and lock files: copies of a document or no document at all.
_EDITOR_LEFTOVERS = re.compile(r"(~|\.sw[a-p]|\.bak|\.orig)$|^#.*#$", re.IGNORECASE)


def not_a_document(rel: str) -> bool:
    """Hidden files and folders (`.git/`, `.DS_Store`, an editor's `.#lock`) and editor leftovers
    (`notes.md~`, `.notes.md.swp`, `#notes.md#`): skipped and counted, not quarantined as bad documents."""
    parts = rel.split("/")
    return any(part.startswith(".") for part in parts) or bool(_EDITOR_LEFTOVERS.search(parts[-1]))


def file_format(path: Path) -> str:
    """The format its extension claims (for counting files; the content may still say otherwise)."""
    return FORMATS.get(path.suffix.lower(), "other")


def _load(path: Path, settings: IngestSettings) -> tuple[str, bytes]:
    size = path.stat().st_size
    if size > settings.max_document_bytes:
        raise Rejected(Reason.TOO_LARGE, f"{size} bytes, over max_document_mb={settings.max_document_mb}")
    if size == 0:
        raise Rejected(Reason.EMPTY, "0 bytes")
    with path.open("rb") as handle:
        # Never more than the limit in memory, even if the file grew since stat().
        data = handle.read(settings.max_document_bytes + 1)
    if len(data) > settings.max_document_bytes:
        raise Rejected(Reason.TOO_LARGE, f"grew past max_document_mb={settings.max_document_mb} while read")
    check_not_archive(data)
    if data.startswith(PDF_MAGIC):
        return "pdf", data  # a PDF is read as one, whatever it is named
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise Rejected(Reason.UNSUPPORTED_FORMAT,
                       f"extension {path.suffix or '(none)'!r}; supported: {', '.join(sorted(FORMATS))}")
    if fmt == "pdf":
        raise Rejected(Reason.CORRUPT_PDF, "no %PDF- header: not a PDF file")
    check_text_bytes(data)
    return fmt, data


# ---- plain text and Markdown ---------------------------------------------------------------------------
def _read_text(text: str) -> str:
    return text


_MD_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)
_MD_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_MD_FENCE = re.compile(r"^\s*(```|~~~).*$\n?", re.MULTILINE)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$\n?", re.MULTILINE)
_MD_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
# A heading keeps its text and is glued to the paragraph it introduces, so chunking never orphans it.
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t#]*\n(?:[ \t]*\n)*", re.MULTILINE)
_MD_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
# Single * or _ emphasis only between non-word characters: snake_case names stay intact.
_MD_EMPHASIS = re.compile(r"(?<!\w)([*_])(?=\S)(.+?)(?<=\S)\1(?!\w)")
_MD_CODE = re.compile(r"`([^`\n]+)`")
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$\n?", re.MULTILINE)
_MD_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$", re.MULTILINE)
_MD_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)


def _read_markdown(text: str) -> str:
    """Markdown syntax off, text and structure (paragraphs, list items, table rows) kept."""
    text = "\n".join(text.splitlines())
    text = _MD_FRONT_MATTER.sub("", text)
    for pattern, replacement in (
        (_MD_COMMENT, ""), (_MD_FENCE, ""), (_MD_REFERENCE, ""), (_MD_TABLE_RULE, ""), (_MD_RULE, ""),
        (_MD_IMAGE, r"\1"), (_MD_LINK, r"\1"), (_MD_AUTOLINK, r"\1"), (_MD_HEADING, "\\1\n"),
        (_MD_STRONG, r"\2"), (_MD_EMPHASIS, r"\2"), (_MD_CODE, r"\1"), (_MD_QUOTE, ""),
    ):
        text = pattern.sub(replacement, text)
    return text


# ---- HTML ---------------------------------------------------------------------------------------------
# Page furniture and non-text elements: never part of the document's own text.
_HTML_DROP = " | ".join([
    *(f"//{tag}" for tag in ("script", "style", "noscript", "template", "nav", "aside", "button", "select",
                             "textarea", "svg", "iframe", "object")),
    # The page's banner and footer, not the <header> of an article (which holds its title).
    "//header[not(ancestor::article or ancestor::main)]",
    "//footer[not(ancestor::article or ancestor::main)]",
    # Some CMSs wrap the whole page in one <form>: keep a form that holds the main content.
    "//form[not(.//main or .//article or .//*[@role='main'])]",
    "//*[@hidden]",
])
_HTML_BLOCKS = frozenset({
    "p", "div", "section", "article", "main", "blockquote", "pre", "ul", "ol", "dl", "dd",
    "table", "figure", "figcaption", "address", "details", "summary", "hr",
})
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "caption", "dt"})
_HTML_LINES = frozenset({"br", "li", "tr"})
_HTML_CELLS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")


def _read_html(text: str) -> str:
    """Text of <main> (else the top-level <article>s, else <body>), with blocks as paragraphs."""
    from lxml import etree, html

    # Decoded like every text format; a <meta charset> in the page does not override what was detected.
    parser = html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True)
    try:
        root = html.document_fromstring(text.encode("utf-8"), parser=parser)
    except etree.ParserError:
        raise Rejected(Reason.NO_TEXT_AFTER_CLEANING, "no HTML element in the document") from None
    # libxml2 stops at a nesting depth of 256 and silently drops the rest: refuse instead of truncating.
    for error in parser.error_log:
        if error.level_name == "FATAL":
            if "depth" in error.message.lower():
                raise Rejected(Reason.TOO_DEEPLY_NESTED,
                               f"elements nested deeper than libxml2's limit (256) at line {error.line}")
            raise Rejected(Reason.UNREADABLE, f"HTML parser stopped at line {error.line} ({error.type_name})")
    for element in root.xpath(_HTML_DROP):
        element.drop_tree()
    containers = (root.xpath("//main | //*[@role='main']")[:1]
                  or root.xpath("//article[not(ancestor::article)]")
                  or root.xpath("//body") or [root])
    return "\n\n".join(_html_text(container) for container in containers)


def _html_text(container: "HtmlElement") -> str:
    # element.iter() walks the tree iteratively: a deep tree costs no Python recursion.
    in_pre = {node for pre in container.iter("pre") for node in pre.iter()}
    for element in container.iter():
        if not isinstance(element.tag, str):
            continue
        # Source line breaks and indentation mean nothing in HTML, except inside <pre>.
        if element not in in_pre:
            element.text = _WHITESPACE.sub(" ", element.text or "")
        if element.getparent() not in in_pre:
            element.tail = _WHITESPACE.sub(" ", element.tail or "")
        element.text, element.tail = element.text or "", element.tail or ""
        tag = element.tag
        if tag in _HTML_HEADINGS:
            element.text, element.tail = "\n\n" + element.text, "\n" + element.tail
        elif tag in _HTML_BLOCKS:
            element.text = ("" if _follows_heading(element) else "\n\n") + element.text
            element.tail = "\n\n" + element.tail
        elif tag in _HTML_LINES:
            element.tail = "\n" + element.tail
        elif tag in _HTML_CELLS:
            element.tail = " | " + element.tail
    return "".join(container.itertext())


def _follows_heading(element: "HtmlElement") -> bool:
    """A block right after a heading stays in the heading's paragraph, so chunking never orphans it."""
    previous = element.getprevious()
    return previous is not None and previous.tag in _HTML_HEADINGS and not (previous.tail or "").strip()


# ---- PDF ----------------------------------------------------------------------------------------------
def _read_pdf(data: bytes) -> str:
    with _pypdf_silenced():
        return _pdf_text(data)


@contextmanager
def _pypdf_silenced() -> Iterator[None]:
    """pypdf logs what it repairs with the raw bytes around it (document content): keep it out of logs."""
    pypdf_log = logging.getLogger("pypdf")
    before, pypdf_log.disabled = pypdf_log.disabled, True
    try:
        yield
    finally:
        pypdf_log.disabled = before


def _pdf_text(data: bytes) -> str:
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise Rejected(Reason.CORRUPT_PDF, safe_detail(exc)) from None
    if reader.is_encrypted:
        # Owner-password-only PDFs open with an empty user password; anything else needs a password we lack.
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception as exc:  # noqa: BLE001 - e.g. an unsupported cipher
            raise Rejected(Reason.ENCRYPTED_PDF, f"cannot decrypt: {safe_detail(exc)}") from None
        if not opened:
            raise Rejected(Reason.ENCRYPTED_PDF, "protected by a user password: provide an unencrypted copy")
    try:
        pages = [_pdf_page_text(page) for page in reader.pages]
    except Exception as exc:  # noqa: BLE001
        raise Rejected(Reason.CORRUPT_PDF, safe_detail(exc)) from None
    if not any(page.strip() for page in pages):
        raise Rejected(Reason.NO_TEXT_AFTER_CLEANING,
                       f"{len(pages)} page(s) without extractable text (scanned? OCR is not supported)")
    return "\n\n".join(_PDF_LINE_WRAP.sub(" ", page) for page in pages)


# A line break inside a paragraph (layout mode leaves a blank line between paragraphs), unless the next
# line starts a list item.
_PDF_LINE_WRAP = re.compile(r"(?<=\S)[ \t]*\n(?![ \t]*(?:\n|[•▪◦*–-]\s|\d{1,2}[.)]\s))[ \t]*")


def _pdf_page_text(page: "PageObject") -> str:
    # Layout mode keeps the vertical gaps between paragraphs as blank lines; it is newer and stricter
    # code in pypdf, so a page it cannot handle falls back to the plain extraction.
    try:
        return page.extract_text(extraction_mode="layout") or ""
    except Exception:  # noqa: BLE001
        return page.extract_text() or ""


# ---- JSONL --------------------------------------------------------------------------------------------
def _jsonl_documents(data: bytes, rel: str, field: str) -> Iterator[Outcome]:
    """One document per line; a bad line is quarantined with its line number and the others go on."""
    found = False
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        found = True
        try:
            yield SourceDocument(rel, number, "jsonl", _jsonl_text(raw, field))
        except Rejected as rejected:
            yield QuarantineRecord(rel, number, None, rejected.reason, rejected.detail)
    if not found:
        raise Rejected(Reason.EMPTY, "no non-blank line")


def _jsonl_text(raw: bytes, field: str) -> str:
    line = decode_utf8(raw)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise Rejected(Reason.INVALID_JSONL_LINE, f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise Rejected(Reason.INVALID_JSONL_LINE, "JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise Rejected(Reason.INVALID_JSONL_LINE, f"a JSON {type(record).__name__}, expected an object")
    value = record.get(field)
    if not isinstance(value, str):
        raise Rejected(Reason.INVALID_JSONL_LINE, f"no string field {field!r} (set jsonl_text_field)")
    if not value.strip():
        raise Rejected(Reason.EMPTY, f"field {field!r} is empty")
    return value


_TEXT_READERS: dict[str, Callable[[str], str]] = {"text": _read_text, "markdown": _read_markdown, "html": _read_html}
