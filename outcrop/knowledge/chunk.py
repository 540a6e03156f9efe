"""Documents to chunks, as Bedrock's chunking strategies make them (configuration: chunking_config.py).

Every strategy but NONE works inside one section at a time (a PDF page, a heading's text), so each chunk has one
page and one heading for its citation, and cuts between sentences where it can: a window of at most maxTokens
ends at the last sentence boundary in its second half, else (a sentence too long for it) between tokens.
Overlap starts the next window that many tokens back, moved forward to the next sentence start inside the
overlap when there is one.

- FIXED_SIZE: windows of maxTokens, overlapping by overlapPercentage of maxTokens.
- HIERARCHICAL: parent windows, then child windows inside each parent; both overlap by overlapTokens. The
  children are the chunks (they get embedded); each carries its parent, whose text Retrieve returns.
- SEMANTIC: sentences (each with bufferSize neighbours either side) are embedded; a new chunk starts where the
  cosine distance between neighbouring groups is above the breakpointPercentileThreshold-th percentile of all
  such distances in the document; a chunk over maxTokens is then cut into windows.
- NONE: the whole document is one chunk (no page: Bedrock gives none either).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from outcrop.knowledge.chunking_config import ChunkingConfig, FixedSize, Hierarchical, NoChunking, Semantic
from outcrop.knowledge.parse import ParsedDocument, Section
from outcrop.knowledge.tokens import TokenCounter, default_counter

Embed = Callable[[Sequence[str]], Any]  # texts -> array-like of shape (len(texts), dimensions)


@dataclass(frozen=True)
class Parent:
    index: int
    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the document's chunk list
    text: str
    start: int  # character offsets in ParsedDocument.text: text == document.text[start:end]
    end: int
    tokens: int
    page: int | None = None
    heading: str | None = None
    parent: Parent | None = None  # HIERARCHICAL only


def chunk(
    document: ParsedDocument,
    config: ChunkingConfig,
    *,
    counter: TokenCounter | None = None,
    embed: Embed | None = None,
) -> list[Chunk]:
    """`document` cut as `config` says. SEMANTIC needs `embed` (the knowledge base's embedding model)."""
    counter = counter or default_counter()
    if isinstance(config, NoChunking):
        pages = {s.page for s in document.sections}
        page = pages.pop() if len(pages) == 1 else None
        return [Chunk(0, document.text, 0, len(document.text), len(counter.spans(document.text)), page)]
    views = [_View(s, counter, line_units=document.kind in ("csv", "xlsx")) for s in document.sections]
    views = [v for v in views if v.n_tokens]
    if isinstance(config, FixedSize):
        overlap = config.max_tokens * config.overlap_percentage // 100
        return _number([v.chunk(a, b) for v in views for a, b in v.windows(0, v.n_tokens, config.max_tokens, overlap)])
    if isinstance(config, Hierarchical):
        return _hierarchical(views, config)
    if embed is None:
        raise ValueError("SEMANTIC chunking needs an embed function")
    return _semantic(views, config, embed)


def _number(chunks: list[Chunk]) -> list[Chunk]:
    return [Chunk(i, c.text, c.start, c.end, c.tokens, c.page, c.heading, c.parent) for i, c in enumerate(chunks)]


# Sentence ends: terminal punctuation (with closing quotes/brackets) before whitespace, a blank line, or a line
# break before something that starts a line of its own (a list item, heading, quote, table row).
_SENTENCE_END = re.compile(
    r"""(?<=[.!?。！？…])["'”’)\]]*\s+|\n\s*\n\s*|\n(?=[ \t]*(?:[-*+#>|]|\d+[.)]\s))""",  # noqa: RUF001
)


class _View:
    """One section's tokens (character spans) and the token indexes where its sentences start."""

    def __init__(self, section: Section, counter: TokenCounter, *, line_units: bool) -> None:
        self.section = section
        self.spans = counter.spans(section.text)
        self.n_tokens = len(self.spans)
        starts = [s for s, _ in self.spans]
        ends = _LINE_END.finditer(section.text) if line_units else _SENTENCE_END.finditer(section.text)
        cuts = {bisect.bisect_left(starts, m.end()) for m in ends}
        self.boundaries = sorted({0, self.n_tokens} | {c for c in cuts if 0 < c < self.n_tokens})

    def windows(self, start: int, stop: int, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
        """Token ranges covering [start, stop): at most max_tokens each, ending on sentence boundaries where one
        falls inside the window, each starting about `overlap` tokens before the previous one ended."""
        out: list[tuple[int, int]] = []
        b = self.boundaries
        while start < stop:
            limit = start + max_tokens
            if limit >= stop:
                end = stop
            else:
                i = bisect.bisect_right(b, limit) - 1
                # a sentence boundary in the window's second half, else a cut between words: never a sliver
                end = b[i] if b[i] > start + max_tokens // 2 else self._word_cut(start, limit)
            out.append((start, end))
            if end >= stop:
                break
            target = max(end - overlap, start + 1)
            j = bisect.bisect_left(b, target)
            start = b[j] if j < len(b) and b[j] < end else self._word_start(target, end)
        return out

    def _starts_word(self, k: int) -> bool:
        before, here = self.spans[k - 1][1], self.spans[k][0]
        return here > before or not (self.section.text[before - 1].isalnum() and self.section.text[here].isalnum())

    def _word_start(self, target: int, end: int) -> int:
        """The first token index from target on (before end) that starts a word, else target."""
        return next((k for k in range(target, end) if self._starts_word(k)), target)

    def _word_cut(self, start: int, limit: int) -> int:
        """The last token index in the window's second half that starts a word (so that no WordPiece word is
        split, which would also change its count), else `limit` (a text without spaces: CJK, a long URL)."""
        return next((k for k in range(limit, start + max(1, (limit - start) // 2), -1) if self._starts_word(k)), limit)

    def chunk(self, a: int, b: int, parent: Parent | None = None) -> Chunk:
        s = self.section
        lo, hi = self.spans[a][0], self.spans[b - 1][1]
        return Chunk(0, s.text[lo:hi], s.start + lo, s.start + hi, b - a, s.page, s.heading, parent)

    def sentences(self) -> list[tuple[int, int]]:
        return list(itertools.pairwise(self.boundaries))


_LINE_END = re.compile(r"\n+")


def _hierarchical(views: list[_View], config: Hierarchical) -> list[Chunk]:
    chunks: list[Chunk] = []
    n_parents = 0
    for view in views:
        for pa, pb in view.windows(0, view.n_tokens, config.parent_max_tokens, config.overlap_tokens):
            outer = view.chunk(pa, pb)
            parent = Parent(n_parents, outer.text, outer.start, outer.end, outer.tokens)
            n_parents += 1
            for ca, cb in view.windows(pa, pb, config.child_max_tokens, config.overlap_tokens):
                chunks.append(view.chunk(ca, cb, parent))
    return _number(chunks)


def _semantic(views: list[_View], config: Semantic, embed: Embed) -> list[Chunk]:
    sentences = [(v, a, b) for v in views for a, b in v.sentences()]
    breaks: set[int] = set()  # sentence indexes that start a new chunk
    if len(sentences) > 2:
        groups = []
        for i in range(len(sentences)):
            lo, hi = max(0, i - config.buffer_size), min(len(sentences) - 1, i + config.buffer_size)
            groups.append(" ".join(_text(*sentences[k]) for k in range(lo, hi + 1)))
        vectors = np.asarray(embed(groups), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms == 0, 1.0, norms)
        distances = 1.0 - np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
        threshold = np.percentile(distances, config.breakpoint_percentile_threshold)
        breaks = {i + 1 for i in np.flatnonzero(distances > threshold).tolist()}
    chunks: list[Chunk] = []
    run_start = 0
    for i in range(1, len(sentences) + 1):
        if i < len(sentences) and i not in breaks and sentences[i][0] is sentences[run_start][0]:
            continue
        view, a, _ = sentences[run_start]
        b = sentences[i - 1][2]
        chunks.extend(view.chunk(x, y) for x, y in view.windows(a, b, config.max_tokens, 0))
        run_start = i
    return _number(chunks)


def _text(view: _View, a: int, b: int) -> str:
    return view.section.text[view.spans[a][0] : view.spans[b - 1][1]]
