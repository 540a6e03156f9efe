"""A parsed document: its text and the sections it is made of, and the helpers every format's parser shares.

A section has where it starts in the document's text, its page (PDF, 1-based) and its heading path
("Guide > Install") where the format has headings.
"""

from __future__ import annotations

import bisect
import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass

from outcrop.knowledge.errors import CorruptDocument, EmptyDocument


@dataclass(frozen=True)
class Section:
    text: str
    start: int  # offset of text[0] in ParsedDocument.text
    page: int | None = None  # 1-based, PDF only
    heading: str | None = None  # heading path, outermost first, joined with " > "

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class ParsedDocument:
    name: str
    kind: str  # one of the values of _EXTENSIONS
    text: str  # the sections' texts joined by blank lines
    sections: tuple[Section, ...]

    def section_at(self, offset: int) -> Section:
        """The section holding character `offset` of text (the one before it when offset falls between two)."""
        i = bisect.bisect_right([s.start for s in self.sections], offset) - 1
        return self.sections[max(i, 0)]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def assemble(name: str, kind: str, parts: Iterable[tuple[str, int | None, str | None]]) -> ParsedDocument:
    """Sections from (text, page, heading) parts; empty parts are dropped."""
    sections: list[Section] = []
    offset = 0
    for raw, page, heading in parts:
        text = clean(raw)
        if not text:
            continue
        if sections:
            offset += 2  # the blank line between sections
        sections.append(Section(text, offset, page, heading))
        offset += len(text)
    if not sections:
        raise EmptyDocument(name, "no text could be extracted from it.")
    return ParsedDocument(name, kind, "\n\n".join(s.text for s in sections), tuple(sections))


def decode(data: bytes, name: str) -> str:
    """Text from bytes: a BOM, else UTF-8, else what charset-normalizer finds; binary data is refused."""
    boms = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
    for bom, encoding in boms:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise CorruptDocument(name, f"is not valid {encoding} text ({exc.reason}).") from None
    if b"\x00" in data[:8192]:
        raise CorruptDocument(name, "holds binary data, not text.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data[: 1 << 20])
    best = matches.best()
    if best is None or best.encoding is None:
        raise CorruptDocument(name, "is neither UTF-8 nor any text encoding that could be recognized.")
    # On short texts the detector's ranking among Latin code pages is noise; like browsers, take Windows-1252
    # when it reads about as cleanly as the best guess.
    encoding = best.encoding
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western is not None and western.chaos <= best.chaos + 0.1:
        encoding = "cp1252"
    return data.decode(encoding, errors="replace")


class Headings:
    """The heading path while walking a document: a heading of level n replaces levels n and below."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        self._path = [(lv, t) for lv, t in self._path if lv < level] + [(level, " ".join(title.split()))]

    @property
    def current(self) -> str | None:
        titles: list[str] = []
        for _, title in self._path:
            if title and (not titles or titles[-1] != title):  # an HTML <title> repeated by its <h1>
                titles.append(title)
        return " > ".join(titles) or None


def rows_text(rows: Iterable[list[str]]) -> str:
    """One line a row, each value after its column's header ("name: Ada; born: 1815"), so that a chunk holding
    a row keeps what its numbers mean."""
    header: list[str] | None = None
    lines: list[str] = []
    for row in rows:
        values = [" ".join(v.split()) for v in row]
        if not any(values):
            continue
        if header is None:
            header = values
            lines.append(" | ".join(values))
            continue
        names = [header[j] if j < len(header) and header[j] else f"column {j + 1}" for j in range(len(values))]
        lines.append("; ".join(f"{n}: {v}" for n, v in zip(names, values, strict=True) if v))
    return "\n".join(lines)
