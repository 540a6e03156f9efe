from __future__ import annotations

import pytest

from outcrop.errors import InvalidRequest
from outcrop.knowledge.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    UnsupportedDocument,
)
from outcrop.knowledge.parse import document_kind, parse
from tests.knowledge import files


def _check_offsets(doc) -> None:
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text
        assert doc.section_at(s.start) is s


def test_pdf_pages_and_outline_headings() -> None:
    data = files.pdf(["First page.\nStill first.", "Second page.", "Third page."], outline=[("Intro", 0), ("Body", 1)])
    doc = parse(data, "docs/report.pdf")
    assert doc.kind == "pdf"
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert [s.heading for s in doc.sections] == ["Intro", "Body", "Body"]
    assert doc.sections[0].text == "First page.\nStill first."
    _check_offsets(doc)


def test_pdf_skips_empty_pages_but_keeps_page_numbers() -> None:
    doc = parse(files.pdf(["one", "", "three"]), "a.pdf")
    assert [(s.page, s.text) for s in doc.sections] == [(1, "one"), (3, "three")]


def test_encrypted_pdf_is_refused_as_such() -> None:
    with pytest.raises(EncryptedDocument, match="encrypted") as info:
        parse(files.encrypted_pdf(["secret text"]), "locked.pdf")
    assert info.value.reason == "ENCRYPTED_FILE"
    assert isinstance(info.value, InvalidRequest)
    assert "locked.pdf" in info.value.message


@pytest.mark.parametrize(
    "data",
    [b"not a pdf at all", b"%PDF-1.4\n1 0 obj garbage", files.pdf(["x" * 50])[:300]],
    ids=["no-header", "garbage", "truncated"],
)
def test_corrupt_pdf(data: bytes) -> None:
    with pytest.raises(CorruptDocument):
        parse(data, "bad.pdf")


def test_pdf_without_text_says_so() -> None:
    with pytest.raises(EmptyDocument, match="OCR"):
        parse(files.pdf(["", ""]), "scan.pdf")


def test_docx_headings_paragraphs_and_tables() -> None:
    data = files.docx(
        [("p", "Preface."), ("h1", "Guide"), ("p", "Read this."), ("h2", "Install"), ("p", "Run pip."), ("h1", "FAQ")],
        table=[["question", "answer"], ["why", "because"]],
    )
    doc = parse(data, "guide.docx")
    assert [(s.heading, s.text) for s in doc.sections] == [
        (None, "Preface."),
        ("Guide", "Guide\nRead this."),
        ("Guide > Install", "Install\nRun pip."),
        ("FAQ", "FAQ\nquestion | answer\nwhy | because"),
    ]
    _check_offsets(doc)


def test_corrupt_docx() -> None:
    with pytest.raises(CorruptDocument):
        parse(b"PK\x03\x04 not really a zip", "bad.docx")
    with pytest.raises(CorruptDocument):
        parse(b"plain text", "bad.docx")


def test_password_protected_office_file() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100 + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 100
    with pytest.raises(EncryptedDocument):
        parse(ole, "locked.docx")


def test_html_headings_drop_scripts_and_keep_tables() -> None:
    html = """<html><head><title>Manual</title><style>p{}</style></head><body>
    <nav>menu</nav><p>Intro with <b>bold</b> words.</p><script>var x = 1;</script>
    <h1>Manual</h1><p>Overview.</p><h2>Setup</h2><p>Step&nbsp;one.</p>
    <table><tr><th>key</th><th>value</th></tr><tr><td>a</td><td>1</td></tr></table></body></html>"""
    doc = parse(html.encode(), "page.html")
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Manual", "Intro with bold words."),
        ("Manual", "Manual\nOverview."),
        ("Manual > Setup", "Setup\nStep one.\n\nkey | value\na | 1"),
    ]
    assert "var x" not in doc.text and "menu" not in doc.text
    _check_offsets(doc)


def test_html_declared_charset() -> None:
    html = '<html><head><meta charset="latin-1"></head><body><p>Café</p></body></html>'.encode("latin-1")
    assert parse(html, "a.htm").text == "Café"


def test_markdown_sections_fences_and_front_matter() -> None:
    md = "---\ntitle: x\n---\nPreamble.\n\n# Title\nIntro.\n\n## Part A #\n```python\n# not a heading\n```\n\nSetext\n======\nBody.\n"
    doc = parse(md.encode(), "README.md")
    assert [(s.heading, s.text) for s in doc.sections] == [
        (None, "Preamble."),
        ("Title", "# Title\nIntro."),
        ("Title > Part A", "## Part A #\n```python\n# not a heading\n```"),
        ("Setext", "Setext\n======\nBody."),
    ]
    _check_offsets(doc)


def test_plain_text_encodings() -> None:
    assert parse("naïve ☃ 日本".encode(), "a.txt").text == "naïve ☃ 日本"
    assert parse("\ufeffbom".encode(), "a.txt").text == "bom"
    assert parse("utf16 text".encode("utf-16"), "a.txt").text == "utf16 text"
    latin = "Ceci est un texte français assez long pour être reconnu: déjà, où, été, à côté.".encode("cp1252")
    assert "français" in parse(latin, "a.txt").text
    cyrillic = "Это русский текст для проверки кодировки, довольно длинный.".encode("cp1251")
    assert "русский" in parse(cyrillic, "a.txt").text
    assert parse(b"a\r\nb\rc\x07", "a.txt").text == "a\nb\nc"


def test_binary_data_is_not_text() -> None:
    with pytest.raises(CorruptDocument, match="binary"):
        parse(b"\x00\x01\x02\x03" * 10, "a.txt")


def test_csv_rows_keep_their_headers() -> None:
    doc = parse(b"name,born,field\nAda Lovelace,1815,maths\nAlan Turing,,computing\n", "people.csv")
    assert (
        doc.text
        == "name | born | field\nname: Ada Lovelace; born: 1815; field: maths\nname: Alan Turing; field: computing"
    )
    assert parse(b"a;b\n1;2\n", "x.csv").text == "a | b\na: 1; b: 2"


def test_xlsx_sheets_are_sections() -> None:
    data = files.xlsx({"Prices": [["item", "price"], ["tea", 2.5]], "Empty": [], "Notes": [["note"], ["hello"]]})
    doc = parse(data, "book.xlsx")
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Prices", "item | price\nitem: tea; price: 2.5"),
        ("Notes", "note\nnote: hello"),
    ]


def test_json() -> None:
    assert parse(b'{"a": [1, "\\u00e9"]}', "a.json").text == '{\n  "a": [\n    1,\n    "é"\n  ]\n}'
    with pytest.raises(CorruptDocument, match="JSON"):
        parse(b"{oops", "a.json")


def test_empty_file() -> None:
    with pytest.raises(EmptyDocument, match="0 bytes") as info:
        parse(b"", "empty.pdf")
    assert info.value.reason == "EMPTY_FILE"
    with pytest.raises(EmptyDocument):
        parse(b"  \n\t\n", "blank.txt")


def test_size_limit_is_configurable() -> None:
    with pytest.raises(DocumentTooLarge, match="limit is 10"):
        parse(b"x" * 11, "a.txt", max_bytes=10)
    assert parse(b"x" * 10, "a.txt", max_bytes=10).text == "x" * 10


def test_types() -> None:
    assert document_kind("a/B.PDF") == "pdf"
    assert document_kind("noext", "text/markdown; charset=utf-8") == "markdown"
    assert document_kind("x.md", "binary/octet-stream") == "markdown"
    with pytest.raises(UnsupportedDocument, match=r"\.docx"):
        document_kind("old.doc")
    with pytest.raises(UnsupportedDocument, match=r"'\.png'"):
        parse(b"\x89PNG", "image.png")
    with pytest.raises(UnsupportedDocument, match="no extension"):
        document_kind("dir.v2/README")
