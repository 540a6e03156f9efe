from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from outcrop.knowledge.chunk import chunk
from outcrop.knowledge.chunking_config import DEFAULT, FixedSize, Hierarchical, NoChunking, Semantic
from outcrop.knowledge.parse import parse
from outcrop.knowledge.tokens import count_tokens
from tests.knowledge import files


def _doc(text: str, name: str = "a.txt"):
    return parse(text.encode(), name)


def _sentences(n: int, words: int = 9) -> str:
    return " ".join(f"Sentence {i} says " + " ".join(f"w{i}x{j}" for j in range(words)) + "." for i in range(n))


def _invariants(doc, chunks, max_tokens: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.tokens == count_tokens(c.text) <= max_tokens
        section = doc.section_at(c.start)
        assert section.start <= c.start and c.end <= section.end  # never across a section
        assert (c.page, c.heading) == (section.page, section.heading)


def test_token_counts_are_minilm_wordpiece() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello world!") == 3
    assert count_tokens("tokenization") == 2  # token ##ization


def test_default_is_bedrocks_fixed_300_with_20_percent_overlap() -> None:
    assert FixedSize(300, 20) == DEFAULT
    doc = _doc(_sentences(200))
    chunks = chunk(doc, DEFAULT)
    _invariants(doc, chunks, 300)
    assert len(chunks) > 5
    assert all(c.text.endswith(".") for c in chunks[:-1])  # cut at sentence ends
    for a, b in pairwise(chunks):
        assert b.start < a.end  # overlapping
        overlap = count_tokens(doc.text[b.start : a.end])
        assert 0 < overlap <= 60


def test_fixed_size_covers_everything() -> None:
    doc = _doc(_sentences(50))
    chunks = chunk(doc, FixedSize(40, 10))
    _invariants(doc, chunks, 40)
    assert chunks[0].start == 0 and chunks[-1].end == len(doc.text)
    for a, b in pairwise(chunks):
        assert b.start <= a.end


def test_large_overlap_still_progresses() -> None:
    doc = _doc(_sentences(30))
    chunks = chunk(doc, FixedSize(20, 99))
    _invariants(doc, chunks, 20)
    assert all(b.start > a.start for a, b in pairwise(chunks))


def test_a_single_huge_sentence_is_cut_between_tokens() -> None:
    doc = _doc(" ".join(f"word{i}" for i in range(1000)))
    chunks = chunk(doc, FixedSize(100, 10))
    _invariants(doc, chunks, 100)
    assert chunks[-1].end == len(doc.text)
    assert max(c.tokens for c in chunks) == 100


def test_unicode_text() -> None:
    text = "Ünïcödé façade — naïve café. " * 20 + "日本語の文章です。これはテストです。" * 20 + " Emoji 😀🚀 end."
    doc = _doc(text)
    chunks = chunk(doc, FixedSize(30, 20))
    _invariants(doc, chunks, 30)
    assert chunks[-1].text.endswith("end.")


def test_one_chunk_when_it_fits_and_sections_split_chunks() -> None:
    doc = _doc("# A\nShort one.\n\n# B\nShort two.", "x.md")
    chunks = chunk(doc, DEFAULT)
    assert [(c.heading, c.text) for c in chunks] == [("A", "# A\nShort one."), ("B", "# B\nShort two.")]


def test_pdf_chunks_carry_pages() -> None:
    doc = parse(files.pdf([_sentences(3), _sentences(40)[:3000]]), "a.pdf")
    chunks = chunk(doc, FixedSize(50, 20))
    _invariants(doc, chunks, 50)
    assert chunks[0].page == 1 and chunks[-1].page == 2


def test_csv_rows_are_units() -> None:
    rows = "\n".join(f"{i},name {i},{'long text ' * 3}" for i in range(40))
    doc = parse(("id,name,notes\n" + rows).encode(), "t.csv")
    chunks = chunk(doc, FixedSize(60, 1))
    _invariants(doc, chunks, 60)
    assert all(c.text.startswith(("id", "id:")) for c in chunks)  # rows are never cut


def test_no_chunking_is_the_whole_document() -> None:
    doc = parse(files.pdf(["one", "two"]), "a.pdf")
    [only] = chunk(doc, NoChunking())
    assert only.text == doc.text == "one\n\ntwo" and only.page is None and only.tokens == 2
    [single] = chunk(parse(files.pdf(["one"]), "a.pdf"), NoChunking())
    assert single.page == 1


def test_hierarchical_children_carry_their_parent() -> None:
    doc = _doc(_sentences(100))
    chunks = chunk(doc, Hierarchical(200, 50, 10))
    _invariants(doc, chunks, 50)
    parents = {c.parent.index: c.parent for c in chunks if c.parent}
    assert len(parents) > 2 and len(chunks) > len(parents)
    for c in chunks:
        p = c.parent
        assert p is not None and p.tokens <= 200
        assert doc.text[p.start : p.end] == p.text
        assert p.start <= c.start and c.end <= p.end and c.text in p.text
    assert sorted(parents) == list(range(len(parents)))


def test_semantic_breaks_where_the_topic_changes() -> None:
    cats = [f"Cats purr and nap in the sun number {i}." for i in range(6)]
    rockets = [f"Rockets burn fuel to reach orbit number {i}." for i in range(6)]
    doc = _doc(" ".join(cats + rockets + cats))

    def embed(texts):  # a fake embedding: one axis per topic
        return np.array([[t.count("Cats"), t.count("Rockets"), 0.1] for t in texts], dtype=float)

    calls: list[int] = []

    def counted(texts):
        calls.append(len(texts))
        return embed(texts)

    chunks = chunk(doc, Semantic(300, 0, 90), embed=counted)
    _invariants(doc, chunks, 300)
    assert calls == [18]
    assert [c.text.split()[0] for c in chunks] == ["Cats", "Rockets", "Cats"]
    buffered = chunk(doc, Semantic(300, 1, 90), embed=embed)
    assert len(buffered) >= 2 and "".join(c.text for c in buffered).count("Rockets") == 6


def test_semantic_splits_oversized_groups() -> None:
    doc = _doc(_sentences(30))
    chunks = chunk(doc, Semantic(40, 0, 99), embed=lambda t: np.ones((len(t), 4)))
    _invariants(doc, chunks, 40)
    assert len(chunks) > 5


def test_semantic_needs_an_embed_function() -> None:
    with pytest.raises(ValueError, match="embed"):
        chunk(_doc("A. B. C."), Semantic())


def test_small_documents() -> None:
    doc = _doc("Just one sentence.")
    for config in (DEFAULT, Hierarchical(), NoChunking()):
        assert [c.text for c in chunk(doc, config)] == ["Just one sentence."]
    assert [c.text for c in chunk(doc, Semantic(), embed=lambda t: pytest.fail("no embedding needed"))] == [
        "Just one sentence."
    ]
