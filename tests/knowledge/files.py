"""Real documents written by their own libraries, for the parser and chunker tests and the parse benchmark."""

from __future__ import annotations

import io
from collections.abc import Sequence


def pdf(pages: list[str], *, outline: Sequence[tuple[str, int]] = ()) -> bytes:
    """A text PDF, one string a page (lines split on newlines); `outline` is (title, 0-based page) bookmarks."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    for i, text in enumerate(pages):
        for title, page in outline:
            if page == i:
                c.bookmarkPage(f"p{i}-{title}")
                c.addOutlineEntry(title, f"p{i}-{title}", level=0)
        y = 800
        for line in text.split("\n"):
            c.drawString(40, y, line)
            y -= 14
        c.showPage()
    c.save()
    return buf.getvalue()


def encrypted_pdf(pages: list[str], password: str = "secret") -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf(pages))))
    writer.encrypt(password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx(blocks: list[tuple[str, str]], table: list[list[str]] | None = None) -> bytes:
    """(style, text) paragraphs: style "h1".."h3" is a heading, anything else body text; then an optional table."""
    import docx as python_docx

    document = python_docx.Document()
    for style, text in blocks:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        else:
            document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
