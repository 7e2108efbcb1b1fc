"""Each quarantine reason a reader can give, from hostile files made here, plus the formats that work."""

import gzip
import io
import json
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from steps.ingest.quarantine import QuarantineRecord, Reason
from steps.ingest.readers import SourceDocument, read_file
from steps.ingest.settings import IngestSettings

DEMO_PDF = Path(__file__).resolve().parents[2] / "pipelines" / "corpus" / "demo" / "guide-site-lyon.pdf"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


def _read(path: Path, settings: IngestSettings | None = None) -> list[SourceDocument | QuarantineRecord]:
    return read_file(path, path.name, settings or IngestSettings())


def _reason(path: Path, settings: IngestSettings | None = None) -> Reason:
    (outcome,) = _read(path, settings)
    assert isinstance(outcome, QuarantineRecord), outcome
    assert outcome.path == path.name and outcome.detail
    return outcome.reason


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner.txt", "hidden text")
    return buffer.getvalue()


def _tar_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("inner.md")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.md", b"", Reason.EMPTY),
    ("blank.txt", b"  \n\t\n", Reason.EMPTY),
    ("image.md", PNG, Reason.BINARY),
    ("controls.txt", b"abc" + bytes(range(1, 9)) * 20, Reason.BINARY),
    # Neither UTF-8 nor any legacy encoding reads these bytes cleanly: UTF-8 with stray Latin-1 inside.
    ("mixed.txt", "Grüße aus der ".encode() + "Größe".encode("latin-1"), Reason.UNDETECTED_ENCODING),
    ("high-bytes.md", bytes(range(0x80, 0x100)) * 4, Reason.UNDETECTED_ENCODING),
    ("utf16.txt", "Hallo Welt".encode("utf-16"), Reason.INVALID_UTF8),
    ("bundle.txt", _zip_bytes(), Reason.ARCHIVE),
    ("bundle.md", _tar_bytes(), Reason.ARCHIVE),
    ("notes.txt", gzip.compress(b"compressed notes"), Reason.ARCHIVE),
    ("report.docx", _zip_bytes(), Reason.ARCHIVE),
    ("table.csv", b"a,b\n1,2\n", Reason.UNSUPPORTED_FORMAT),
    ("fake.pdf", b"just text pretending to be a PDF", Reason.CORRUPT_PDF),
    ("cut.pdf", DEMO_PDF.read_bytes()[:2500], Reason.CORRUPT_PDF),
    ("deep.html", b"<html><body>" + b"<div>" * 100_000 + b"deep" + b"</div>" * 100_000 + b"</body></html>",
     Reason.TOO_DEEPLY_NESTED),
])
def test_hostile_files_are_quarantined(tmp_path: Path, name: str, content: bytes, reason: Reason) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert _reason(path) == reason


@pytest.mark.parametrize(("name", "text", "encoding", "detected"), [
    ("urlaub.txt", "Die Mitarbeiterin beantragt Überstunden bis zum 15. März; Urlaubsanträge gehen an die "
                   "Personalabteilung. Größere Beträge über 100 € zeichnet die Leitung ab.", "cp1252", "cp1252"),
    ("conges.md", "# Congés\n\nL'employé déclare ses congés à l'avance ; la société rembourse les frais de "
                  "déplacement et l'hôtel.", "iso8859_15", "cp1252"),  # same bytes, same text in both
    ("reise.html", "<html><body><main><p>Reisekosten: Übernachtung in Köln, Frühstück inbegriffen.</p>"
                   "</main></body></html>", "iso8859_15", "cp1252"),
    ("urlop.txt", "Pracownik musi złożyć wniosek o urlop z wyprzedzeniem; zwrot kosztów podróży służbowej.",
     "cp1250", "cp1250"),
    ("kurz.txt", "Café à Paris, große Straße", "latin-1", "cp1252"),
])
def test_legacy_encodings_are_detected_recorded_and_read_without_damage(
        tmp_path: Path, name: str, text: str, encoding: str, detected: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    (document,) = _read(path)
    assert isinstance(document, SourceDocument), document
    assert document.encoding == detected
    for word in ("Überstunden", "déclare", "Übernachtung", "złożyć", "große"):
        if word in text:
            assert word in document.text


def test_utf8_stays_utf8_and_a_line_of_jsonl_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("Grüße, l'été", encoding="utf-8")
    assert _read(path)[0].encoding == "utf-8"


def test_the_legacy_encodings_setting_names_real_codecs() -> None:
    with pytest.raises(ValueError, match="unknown encodings \\['latin-9x'\\]"):
        IngestSettings(legacy_encodings=["cp1252", "latin-9x"])


def _encrypted_pdf(tmp_path: Path, user_password: str) -> Path:
    writer = PdfWriter()
    writer.append(PdfReader(DEMO_PDF))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    path = tmp_path / f"encrypted-{bool(user_password)}.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def test_password_protected_pdf_is_quarantined(tmp_path: Path) -> None:
    assert _reason(_encrypted_pdf(tmp_path, user_password="secret")) == Reason.ENCRYPTED_PDF


def test_owner_password_only_pdf_is_read(tmp_path: Path) -> None:
    (document,) = _read(_encrypted_pdf(tmp_path, user_password=""))
    assert isinstance(document, SourceDocument) and "Claire Dubois" in document.text


def test_pdf_without_text_is_quarantined(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    path = tmp_path / "scan.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    assert _reason(path) == Reason.NO_TEXT_AFTER_CLEANING


def test_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse: 200 MB that take no disk space
    tracemalloc.start()
    try:
        reason = _reason(path, IngestSettings(max_document_mb=1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == Reason.TOO_LARGE
    assert peak < 1024 * 1024  # the 200 MB never entered memory


def test_html_the_parser_would_truncate_is_unreadable(tmp_path: Path) -> None:
    # libxml2 caps a text node at 10 MB and silently drops the rest: refused rather than half-read.
    path = tmp_path / "one-node.html"
    path.write_text("<html><body><p>" + "lorem ipsum " * 1_000_000 + "</p></body></html>", encoding="utf-8")
    assert _reason(path) == Reason.UNREADABLE


def test_pdf_is_recognised_whatever_its_extension(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_bytes(DEMO_PDF.read_bytes())
    (document,) = _read(path)
    assert isinstance(document, SourceDocument) and document.format == "pdf"
    # Layout extraction keeps paragraphs apart and joins the lines wrapped inside them.
    assert "Il couvre 24 000 mètres carrés, dont 6 000 mètres carrés" in document.text


def test_html_keeps_main_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("""<!doctype html><html><head><title>T</title><style>p{color:red}</style>
        <script>alert("tracking")</script></head><body>
        <header>Banner</header><nav><a href="/">Home</a></nav>
        <main><h1>Sicherheit</h1><p>Sicherheitsschuhe   der Klasse S3
        sind Pflicht.</p><ul><li>Warnweste</li><li>Handschuhe</li></ul>
        <form><input name="q"><button>Suchen</button></form></main>
        <aside>Related</aside><footer>© 2025</footer></body></html>""", encoding="utf-8")
    (document,) = _read(path)
    assert isinstance(document, SourceDocument)
    text = " ".join(document.text.split())
    assert text == "Sicherheit Sicherheitsschuhe der Klasse S3 sind Pflicht. Warnweste Handschuhe"
    assert "Sicherheit\nSicherheitsschuhe" in document.text  # the heading stays with its paragraph


def test_html_with_only_scripts_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "scripts.html"
    path.write_text("<html><head><script>var a = 1;</script></head><body><script>go()</script>"
                    "<style>b{}</style></body></html>", encoding="utf-8")
    (document,) = _read(path)
    assert isinstance(document, SourceDocument) and not document.text.strip()  # refused after cleaning


def test_markdown_syntax_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text("---\ntitle: x\n---\n# Leave **rules**\n\nSee [the portal](https://intra.example/leave) "
                    "and `leave_request`.\n![logo](logo.png)\n\n| Days | Who |\n|---|---|\n| 30 | all |\n",
                    encoding="utf-8")
    (document,) = _read(path)
    assert isinstance(document, SourceDocument)
    assert document.text.strip() == ("Leave rules\nSee the portal and leave_request.\nlogo\n\n"
                                     "| Days | Who |\n| 30 | all |")


def test_jsonl_lines_are_documents_and_bad_lines_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    lines = [
        json.dumps({"text": "Erste Antwort."}).encode(),
        b"{not json",
        json.dumps({"body": "wrong field"}).encode(),
        b"",
        json.dumps(["a", "list"]).encode(),
        '{"text": "caf\xe9"}'.encode("latin-1"),
        json.dumps({"text": "   "}).encode(),
        json.dumps({"text": "Dernière réponse."}, ensure_ascii=False).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    outcomes = _read(path)
    documents = [o for o in outcomes if isinstance(o, SourceDocument)]
    records = {o.line: o.reason for o in outcomes if isinstance(o, QuarantineRecord)}
    assert [(d.line, d.text) for d in documents] == [(1, "Erste Antwort."), (8, "Dernière réponse.")]
    assert records == {2: Reason.INVALID_JSONL_LINE, 3: Reason.INVALID_JSONL_LINE,
                       5: Reason.INVALID_JSONL_LINE, 6: Reason.INVALID_UTF8, 7: Reason.EMPTY}


def test_jsonl_text_field_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"body": "Inhalt"}) + "\n", encoding="utf-8")
    (document,) = _read(path, IngestSettings(jsonl_text_field="body"))
    assert isinstance(document, SourceDocument) and document.text == "Inhalt"


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF with a valid cross-reference table over the given objects (numbered from 1)."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer << /Root 1 0 R /Size %d >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_quarantine_detail_and_logs_never_quote_the_document(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # pypdf's error for this page object quotes the bytes around it, secret included.
    path = tmp_path / "broken.pdf"
    path.write_bytes(_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                           b"?CONFIDENTIAL-PATIENT-4711"]))
    caplog.set_level("DEBUG")
    (record,) = _read(path)
    assert isinstance(record, QuarantineRecord) and record.reason == Reason.CORRUPT_PDF
    assert record.detail.startswith("PdfReadError while reading")
    assert "4711" not in record.detail and "4711" not in caplog.text


class _GrowingPath(type(Path())):  # type: ignore[misc]
    """A file that stat() reports small but that has grown by the time it is read."""

    def stat(self, *, follow_symlinks: bool = True) -> object:
        real = super().stat(follow_symlinks=follow_symlinks)
        return type("Stat", (), {"st_size": 10})() if real.st_size else real


def test_read_is_capped_even_if_the_file_grew_after_stat(tmp_path: Path) -> None:
    path = _GrowingPath(tmp_path / "log.txt")
    path.write_text("line of text\n" * 200_000, encoding="utf-8")  # 2.6 MB
    assert _reason(path, IngestSettings(max_document_mb=1)) == Reason.TOO_LARGE
