"""Documents to text with locations: PDF, DOCX, HTML, Markdown, plain text, CSV, XLSX and JSON.

A parsed document is its text and the sections it is made of, each with where it starts in that text, its page
(PDF, 1-based) and its heading path ("Guide > Install") where the format has headings. Chunking never merges
across sections (Bedrock: "does not merge content across these boundaries"), so a chunk has one page and one
heading for its citation.

The type comes from a known content type, else from the name's extension, as Bedrock's S3 data sources do.
Libraries, chosen by benchmarks/knowledge_parse.py: PDF through pypdfium2 (PDFium, Apache-2.0/BSD; ~4x pypdf's
speed, near PyMuPDF's, which is AGPL), DOCX through python-docx, HTML through beautifulsoup4 with the standard
library's parser, XLSX through openpyxl; Markdown, text, CSV and JSON need only the standard library.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable

from outcrop.knowledge import binary
from outcrop.knowledge.document import Headings, ParsedDocument, Section, assemble, decode, rows_text
from outcrop.knowledge.errors import CorruptDocument, DocumentTooLarge, EmptyDocument, UnsupportedDocument

__all__ = ["DEFAULT_MAX_BYTES", "ParsedDocument", "Section", "document_kind", "parse"]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # Bedrock's per-file quota

_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".json": "json",
}
_CONTENT_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/csv": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/json": "json",
}
# Formats Bedrock takes that have no parser here: say what to do instead of "unsupported".
_CONVERT = {".doc": ".docx", ".xls": ".xlsx"}


def document_kind(name: str, content_type: str | None = None) -> str:
    """The parser for a document: its content type where that names one, else its extension."""
    if content_type:
        kind = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if kind:
            return kind
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > name.rfind("/") else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in _CONVERT:
        raise UnsupportedDocument(name, f"{ext} files are not read here; save it as {_CONVERT[ext]}.")
    known = ", ".join(sorted(_EXTENSIONS))
    raise UnsupportedDocument(name, f"unsupported file type {ext or '(no extension)'!r}; supported: {known}.")


def parse(
    data: bytes, name: str, *, content_type: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedDocument:
    """`data` as text with locations; a DocumentError subclass says why it cannot be."""
    kind = document_kind(name, content_type)
    if not data:
        raise EmptyDocument(name, "the file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise DocumentTooLarge(name, f"the file is {len(data):,} bytes; the limit is {max_bytes:,}.")
    return _PARSERS[kind](data, name)


# -- HTML -------------------------------------------------------------------------------------------------------

_DROP = ["script", "style", "noscript", "template", "svg", "iframe", "head", "nav", "footer"]
_BLOCKS = [
    "p", "div", "li", "tr", "br", "table", "section", "article", "pre", "blockquote", "dd", "dt", "ul", "ol",
    "header", "main", "aside", "figure", "figcaption", "hr", "form", "fieldset", "address", "caption",
]  # fmt: skip
_MARK = "\ue000"  # a heading's place in the text (a private-use character, removed from the page's own text)
_SPACES = re.compile(r"[ \t\f\v\xa0]+")


def _html(data: bytes, name: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # finds <meta charset> itself when given bytes
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP):
        tag.decompose()
    for string in soup.find_all(string=True):
        if _MARK in string:
            string.replace_with(string.replace(_MARK, " "))
    for tag in soup.find_all(["td", "th"]):
        tag.append(" | ")
    for tag in soup.find_all(_BLOCKS):
        tag.append("\n")
    for tag in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        text = " ".join(tag.get_text(" ").split())
        tag.replace_with(f"\n{_MARK}{tag.name[1]}{_MARK}{text}{_MARK}\n{text}\n")
    text = _SPACES.sub(" ", soup.get_text())
    text = "\n".join(line.strip().strip("|").strip() for line in text.split("\n"))
    pieces = text.split(_MARK)
    parts: list[tuple[str, int | None, str | None]] = []
    path = Headings()
    if title:
        path.enter(0, title)
    parts.append((pieces[0], None, path.current))
    for i in range(1, len(pieces) - 2, 3):  # each heading: its level, its title, the text up to the next one
        path.enter(int(pieces[i]), pieces[i + 1])
        parts.append((pieces[i + 2], None, path.current))
    return assemble(name, "html", parts)


# -- Markdown and plain text ------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_NOT_SETEXT = re.compile(r"^ {0,3}(?:[-*+>|]|\d+[.)]\s)")  # a list item, quote or table row above "---"


def _markdown(data: bytes, name: str) -> ParsedDocument:
    lines = decode(data, name).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[0].strip() == "---":  # YAML front matter is metadata, not text
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            lines = lines[end + 1 :]
    parts: list[tuple[str, int | None, str | None]] = []
    current: list[str] = []
    path = Headings()
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        fenced = _FENCE.match(line)
        if fence is not None:
            if fenced and fenced.group(1)[0] == fence[0] and len(fenced.group(1)) >= len(fence):
                fence = None
        elif fenced:
            fence = fenced.group(1)
        else:
            level, title = 0, ""
            atx = _ATX.match(line)
            nxt = _SETEXT.match(lines[i + 1]) if i + 1 < len(lines) else None
            if atx:
                level, title = len(atx.group(1)), atx.group(2) or ""
            elif nxt and line.strip() and not _NOT_SETEXT.match(line):
                level, title = (1 if nxt.group(1)[0] == "=" else 2), line.strip()
            if level:
                parts.append(("\n".join(current), None, path.current))
                current = []
                path.enter(level, title)
                if not atx:  # the underline belongs to the heading
                    current.append(line)
                    line = lines[i + 1]
                    i += 1
        current.append(line)
        i += 1
    parts.append(("\n".join(current), None, path.current))
    return assemble(name, "markdown", parts)


def _text(data: bytes, name: str) -> ParsedDocument:
    return assemble(name, "text", [(decode(data, name), None, None)])


def _json(data: bytes, name: str) -> ParsedDocument:
    try:
        value = json.loads(decode(data, name))
    except json.JSONDecodeError as exc:
        raise CorruptDocument(name, f"is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    return assemble(name, "json", [(json.dumps(value, indent=2, ensure_ascii=False), None, None)])


# -- tables: CSV and XLSX ---------------------------------------------------------------------------------------


def _csv(data: bytes, name: str) -> ParsedDocument:
    text = decode(data, name)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise CorruptDocument(name, f"is not a readable CSV file ({exc}).") from None
    return assemble(name, "csv", [(rows_text(rows), None, None)])


_PARSERS: dict[str, Callable[[bytes, str], ParsedDocument]] = {
    "pdf": binary.pdf,
    "docx": binary.docx,
    "html": _html,
    "markdown": _markdown,
    "text": _text,
    "csv": _csv,
    "xlsx": binary.xlsx,
    "json": _json,
}
