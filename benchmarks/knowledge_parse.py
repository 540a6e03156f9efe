"""Knowledge-base parsing and chunking throughput per format, and the PDF libraries side by side.

What it measures
    In this process, on documents this script writes itself from one seeded pseudo-English text (sentences of
    6-18 words from a 400-word vocabulary, paragraphs of 3-7 sentences, a heading every 6 paragraphs):

    * a PDF of --pages A4 pages (reportlab, 60 lines a page, an outline entry per heading);
    * the same text as DOCX (python-docx, heading styles), HTML (h1/h2 + p), Markdown (#/##), plain text,
      and CSV (one row per paragraph: id, heading, text).

    Table 1, PDF text extraction: for each installed candidate (pypdf, the baseline; pypdfium2, what
    outcrop uses; pdfminer.six; PyMuPDF, AGPL: measured only, never a dependency), the time to open the PDF
    from bytes and extract every page's text. MB/s is the PDF's size over the median time; ratio is pypdf's
    median over the candidate's; "chars" is the text length extracted (a sanity check that all read the same).

    Table 2, per format: the median time of outcrop.knowledge.parse.parse(bytes) (MB/s of the file) and of
    outcrop.knowledge.chunk.chunk(parsed, DEFAULT) (FIXED_SIZE 300 tokens, 20 % overlap: tokenizing with
    MiniLM's WordPiece tokenizer and cutting; chunks/s and MB/s of the file), then parse + chunk together.
    The tokenizer is loaded once before timing. Each timing is the median of --rounds runs; every candidate
    and format runs once per round, in the same order, after one untimed warm-up.

    python benchmarks/knowledge_parse.py [--pages 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from outcrop.knowledge.chunk import chunk
from outcrop.knowledge.chunking_config import DEFAULT
from outcrop.knowledge.parse import parse
from outcrop.knowledge.tokens import default_counter

Paragraphs = list[tuple[str | None, str]]  # (heading starting here or None, paragraph)


def _corpus(pages: int, seed: int = 7) -> Paragraphs:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    out: Paragraphs = []
    target = pages * 60 * 11  # ~11 words a line, 60 lines a page
    words = 0
    while words < target:
        heading = f"Section {len(out) // 6 + 1} {rng.choice(vocab).title()}" if len(out) % 6 == 0 else None
        sentences = []
        for _ in range(rng.randint(3, 7)):
            n = rng.randint(6, 18)
            words += n
            sentences.append(" ".join(rng.choice(vocab) for _ in range(n)).capitalize() + ".")
        out.append((heading, " ".join(sentences)))
    return out


def _pdf(paras: Paragraphs) -> bytes:
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    y = 800
    for i, (heading, text) in enumerate(paras):
        lines = ([heading] if heading else []) + textwrap.wrap(text, 95) + [""]
        for j, line in enumerate(lines):
            if y < 40:
                c.showPage()
                y = 800
            if j == 0 and heading:
                c.bookmarkPage(f"h{i}")
                c.addOutlineEntry(heading, f"h{i}", level=0)
            c.drawString(40, y, line)
            y -= 13
    c.showPage()
    c.save()
    return buf.getvalue()


def _docx(paras: Paragraphs) -> bytes:
    import docx

    document = docx.Document()
    for heading, text in paras:
        if heading:
            document.add_heading(heading, level=1)
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _html(paras: Paragraphs) -> bytes:
    body = "".join((f"<h1>{h}</h1>" if h else "") + f"<p>{t}</p>\n" for h, t in paras)
    return f"<html><head><title>Bench</title></head><body>{body}</body></html>".encode()


def _markdown(paras: Paragraphs) -> bytes:
    return "".join((f"# {h}\n\n" if h else "") + f"{t}\n\n" for h, t in paras).encode()


def _text(paras: Paragraphs) -> bytes:
    return "\n\n".join(t for _, t in paras).encode()


def _csv(paras: Paragraphs) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "heading", "text"])
    heading = ""
    for i, (h, t) in enumerate(paras):
        heading = h or heading
        writer.writerow([i, heading, t])
    return out.getvalue().encode()


def _pdf_candidates() -> dict[str, Callable[[bytes], str]]:
    out: dict[str, Callable[[bytes], str]] = {}
    try:
        import pypdf

        out["pypdf"] = lambda data: "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages)
    except ImportError:
        pass
    try:
        import pypdfium2 as pdfium

        def _pdfium(data: bytes) -> str:
            doc = pdfium.PdfDocument(data)
            texts = []
            for i in range(len(doc)):
                page = doc[i]
                textpage = page.get_textpage()
                texts.append(textpage.get_text_range())
                textpage.close()
                page.close()
            doc.close()
            return "\n".join(texts)

        out["pypdfium2 (used)"] = _pdfium
    except ImportError:
        pass
    try:
        from pdfminer.high_level import extract_text

        out["pdfminer.six"] = lambda data: extract_text(io.BytesIO(data))
    except ImportError:
        pass
    try:
        import pymupdf

        out["PyMuPDF (AGPL)"] = lambda data: "\n".join(p.get_text() for p in pymupdf.open(stream=data))  # type: ignore[attr-defined]
    except ImportError:
        pass
    return out


def _median_time(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=100, help="size of the corpus in A4 pages of text")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    paras = _corpus(args.pages)
    files = {
        "pdf": ("bench.pdf", _pdf(paras)),
        "docx": ("bench.docx", _docx(paras)),
        "html": ("bench.html", _html(paras)),
        "markdown": ("bench.md", _markdown(paras)),
        "text": ("bench.txt", _text(paras)),
        "csv": ("bench.csv", _csv(paras)),
    }
    default_counter()
    pdf_bytes = files["pdf"][1]
    mb = len(pdf_bytes) / 1e6
    print(f"corpus: {len(paras)} paragraphs, {sum(len(t.split()) for _, t in paras):,} words; rounds {args.rounds}")
    print(f"\nPDF text extraction ({mb:.2f} MB, {len(parse(pdf_bytes, 'x.pdf').sections)} pages)")
    print(f"{'library':<18}{'median s':>10}{'MB/s':>9}{'ratio':>8}{'chars':>11}")
    base: float | None = None
    for name, fn in _pdf_candidates().items():
        t, text = _median_time(functools.partial(fn, pdf_bytes), args.rounds)
        base = base or t
        print(f"{name:<18}{t:>10.3f}{mb / t:>9.2f}{base / t:>8.2f}{len(text):>11,}")
    print("\nparse and chunk (FIXED_SIZE 300 tokens, 20 % overlap) per format")
    print(f"{'format':<10}{'MB':>7}{'parse MB/s':>12}{'chunks':>8}{'chunk/s':>10}{'chunk MB/s':>12}{'both MB/s':>11}")
    for kind, (name, data) in files.items():
        size = len(data) / 1e6
        t_parse, doc = _median_time(functools.partial(parse, data, name), args.rounds)
        t_chunk, chunks = _median_time(functools.partial(chunk, doc, DEFAULT), args.rounds)
        both = t_parse + t_chunk
        print(
            f"{kind:<10}{size:>7.2f}{size / t_parse:>12.2f}{len(chunks):>8}{len(chunks) / t_chunk:>10.0f}"
            f"{size / t_chunk:>12.2f}{size / both:>11.2f}"
        )


if __name__ == "__main__":
    main()
