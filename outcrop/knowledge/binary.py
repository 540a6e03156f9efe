"""The binary formats, each through its library: PDF (pypdfium2), DOCX (python-docx), XLSX (openpyxl)."""

from __future__ import annotations

import io
import re
import threading
import zipfile

from outcrop.knowledge.document import Headings, ParsedDocument, assemble, rows_text
from outcrop.knowledge.errors import CorruptDocument, EmptyDocument, EncryptedDocument

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# -- PDF --------------------------------------------------------------------------------------------------------

# PDFium is not thread-safe: pypdfium2 asks callers to keep to one thread at a time.
_pdfium_lock = threading.Lock()


def pdf(data: bytes, name: str) -> ParsedDocument:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    if b"%PDF" not in data[:1024]:
        raise CorruptDocument(name, "is not a PDF (no %PDF header).")
    with _pdfium_lock:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
                message = "the PDF is encrypted and needs a password; upload it without one."
                raise EncryptedDocument(name, message) from None
            raise CorruptDocument(name, "is not a readable PDF (damaged or truncated).") from None
        try:
            pages: list[str] = []
            for i in range(len(doc)):
                page = doc[i]
                textpage = page.get_textpage()
                try:
                    pages.append(textpage.get_text_range())
                finally:
                    textpage.close()
                    page.close()
            headings = _pdf_outline(doc, len(pages))
        except pdfium.PdfiumError:
            raise CorruptDocument(name, "is a damaged PDF: a page could not be read.") from None
        finally:
            doc.close()
    try:
        return assemble(name, "pdf", ((text, i + 1, headings[i]) for i, text in enumerate(pages)))
    except EmptyDocument:
        message = "the PDF has no text layer (a scanned PDF needs OCR, which is not done here)."
        raise EmptyDocument(name, message) from None


def _pdf_outline(doc: object, n_pages: int) -> list[str | None]:
    """Each page's heading: the path of the last bookmark that points at it or at a page before it."""
    marks: list[tuple[int, int, str]] = []  # (page index, level, title) in outline order
    for mark in doc.get_toc():  # type: ignore[attr-defined]
        dest = mark.get_dest()
        index = dest.get_index() if dest is not None else None
        if index is not None and 0 <= index < n_pages:
            marks.append((index, mark.level, mark.get_title()))
    out: list[str | None] = []
    path = Headings()
    pending = sorted(marks, key=lambda m: m[0])  # stable: outline order among bookmarks of one page
    j = 0
    for page in range(n_pages):
        while j < len(pending) and pending[j][0] <= page:
            path.enter(pending[j][1], pending[j][2])
            j += 1
        out.append(path.current)
    return out


# -- DOCX -------------------------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"^(?:heading (\d)|title)$", re.IGNORECASE)


def _office_container(data: bytes, name: str) -> None:
    """Office files are zip packages; a password-protected one is an OLE file holding an EncryptedPackage."""
    if data.startswith(_OLE_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise EncryptedDocument(name, "the document is password-protected; save it without a password.")
        raise CorruptDocument(name, "is a legacy binary Office file, not an Office Open XML (zip) one.")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CorruptDocument(name, "is not an Office Open XML file (not a zip package).")


def docx(data: bytes, name: str) -> ParsedDocument:
    import docx
    from docx.table import Table

    _office_container(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception:  # python-docx raises KeyError, ValueError, lxml and zip errors for damaged packages
        raise CorruptDocument(name, "is not a readable DOCX document.") from None
    parts: list[tuple[str, int | None, str | None]] = []
    lines: list[str] = []
    path = Headings()
    style_names = {style.style_id: style.name or "" for style in document.styles}
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell repeats once per grid column it spans
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                if cells:
                    lines.append(" | ".join(cells))
            continue
        # Paragraph.style searches the style part on every call (most of the parse time); the paragraph's own
        # style id through a table made once is the same answer (no id: the default style, never a heading).
        style_id = block._p.style
        match = _HEADING_STYLE.match(style_names.get(style_id, "") if style_id else "")
        if match and block.text.strip():
            parts.append(("\n".join(lines), None, path.current))
            lines = []
            path.enter(int(match.group(1) or 0), block.text)
        lines.append(block.text)
    parts.append(("\n".join(lines), None, path.current))
    return assemble(name, "docx", parts)


def xlsx(data: bytes, name: str) -> ParsedDocument:
    import openpyxl

    _office_container(data, name)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises InvalidFileException, KeyError and zip errors for damaged packages
        raise CorruptDocument(name, "is not a readable XLSX workbook.") from None
    try:
        parts: list[tuple[str, int | None, str | None]] = []
        for sheet in book.worksheets:
            rows = ([("" if v is None else str(v)) for v in row] for row in sheet.iter_rows(values_only=True))
            parts.append((rows_text(rows), None, sheet.title))
    finally:
        book.close()
    return assemble(name, "xlsx", parts)
