"""The vector store seam: what a knowledge base's index holds and how it is searched.

An index belongs to one knowledge base; its vector dimensions are fixed when it is created. Chunks are written a
document at a time: `upsert_document` replaces every chunk of that document in one transaction, so a reader sees
the old chunks or the new ones, never half of each and never both. Searches:

    SEMANTIC   k nearest vectors by cosine
    KEYWORD    full-text (SQLite FTS5 BM25 / PostgreSQL ts_rank_cd), our own addition for benchmarks and tests
    HYBRID     both, fused by their scaled scores (`fuse_scores`)

Scores are in [0, 1] and higher is better: SEMANTIC gives (1 + cosine) / 2; KEYWORD 1 / rank; HYBRID the mean of
both sides' scores, each scaled to [0, 1] over its own candidates (`fuse_scores`; 1.0 is first on both). A chunk
made by HIERARCHICAL chunking carries its parent: search matches the child and returns the parent's text, once per
parent.

The stores are synchronous (SQLAlchemy, as the rest of `store/`); async callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from outcrop.errors import InvalidRequest
from outcrop.knowledge.vectors.filters import Filter

Value = str | int | float | bool | tuple[str, ...]  # a metadata attribute's value (as metadata.py reads them)

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
MAX_DIMENSIONS = 16_000  # sqlite-vec takes up to 8192 per float column in practice; pgvector 16000
CANDIDATES = 4  # each side of a HYBRID search brings this many times numberOfResults


class SearchType(enum.Enum):
    SEMANTIC = "SEMANTIC"
    HYBRID = "HYBRID"
    KEYWORD = "KEYWORD"


class DimensionMismatch(InvalidRequest):
    """A vector whose length is not the index's dimensions (Bedrock answers ValidationException)."""

    def __init__(self, index: str, expected: int, got: int) -> None:
        super().__init__(
            f"The vector has {got} dimensions but knowledge base index '{index}' holds {expected}-dimensional "
            "vectors; use the embedding model (and dimensions) the knowledge base was created with."
        )
        self.expected, self.got = expected, got


class IndexNotFound(InvalidRequest):
    def __init__(self, index: str) -> None:
        super().__init__(f"The vector index '{index}' does not exist.")


@dataclass(frozen=True)
class Chunk:
    id: str
    document_id: str
    text: str
    vector: Sequence[float]
    metadata: Mapping[str, Value] = field(default_factory=dict)
    location: Mapping[str, Any] | None = None  # Bedrock's RetrievalResultLocation, as JSON
    parent_id: str | None = None  # HIERARCHICAL chunking: the parent this child belongs to
    parent_text: str | None = None


@dataclass(frozen=True)
class Query:
    text: str = ""
    vector: Sequence[float] | None = None
    search_type: SearchType = SearchType.SEMANTIC
    number_of_results: int = 5
    filter: Filter | None = None


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    text: str  # the parent's text for a HIERARCHICAL child
    score: float
    metadata: Mapping[str, Value]
    location: Mapping[str, Any] | None


class VectorStore(Protocol):
    """One database holding the indexes of many knowledge bases."""

    def create_index(self, index: str, dimensions: int) -> None:
        """Create it, or check an existing one has these dimensions (DimensionMismatch otherwise)."""

    def drop_index(self, index: str) -> None: ...

    def dimensions(self, index: str) -> int | None:
        """None when the index does not exist."""

    def upsert_document(self, index: str, document_id: str, chunks: Sequence[Chunk]) -> None:
        """Replace all of the document's chunks with these, atomically (an empty list deletes it)."""

    def delete_document(self, index: str, document_id: str) -> int:
        """How many chunks were deleted."""

    def count(self, index: str, document_id: str | None = None) -> int: ...

    def document_ids(self, index: str) -> list[str]: ...

    def search(self, index: str, query: Query) -> list[Hit]: ...

    def close(self) -> None: ...


def check_index_name(index: str) -> str:
    if not index or len(index) > 64 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in index):
        raise InvalidRequest(f"Index name {index!r} must be 1 to 64 letters, digits, '_' or '-'.")
    return index


def check_dimensions(dimensions: int) -> int:
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise InvalidRequest(f"dimensions must be between 1 and {MAX_DIMENSIONS}, not {dimensions}.")
    return dimensions


def unit(vector: Sequence[float], index: str, dimensions: int) -> list[float]:
    """The vector checked for length and finite values, scaled to unit length (cosine = dot product)."""
    if len(vector) != dimensions:
        raise DimensionMismatch(index, dimensions, len(vector))
    values = [float(v) for v in vector]
    norm = math.sqrt(sum(v * v for v in values))
    if not math.isfinite(norm):
        raise InvalidRequest("A vector holds a value that is not a finite number.")
    return [v / norm for v in values] if norm > 0 else values


def check_chunks(document_id: str, chunks: Sequence[Chunk]) -> None:
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"Document '{document_id}' has two chunks with the same id.")
    for c in chunks:
        if c.document_id != document_id:
            raise InvalidRequest(f"Chunk '{c.id}' belongs to document '{c.document_id}', not '{document_id}'.")


def fuse(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ids by sum of 1 / (k + rank), best first, scores scaled so 1.0 is first everywhere.
    (Measured against `fuse_scores` on SciFact in benchmarks/knowledge_quality.py; HYBRID uses fuse_scores.)"""
    lists = [list(r) for r in rankings]
    scores: dict[str, float] = {}
    for ranking in lists:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    best = len(lists) / (k + 1) or 1.0
    return sorted(((key, s / best) for key, s in scores.items()), key=lambda kv: -kv[1])


def fuse_scores(rankings: Iterable[Sequence[tuple[str, float]]]) -> list[tuple[str, float]]:
    """HYBRID's fusion: each side's scores (higher is better: cosine, BM25) scaled to [0, 1] over that side's own
    candidates (min-max; a side whose candidates all score alike gives them 1), then averaged over the sides, a
    chunk a side did not return counting 0 there. 1.0 is first on every side. Rank fusion throws away how far
    apart the scores are: on BEIR SciFact this gives nDCG@10 0.735 where RRF gave 0.706 (BM25 0.698, MiniLM 0.647;
    benchmarks/knowledge_quality.py)."""
    lists = [list(r) for r in rankings]
    fused: dict[str, float] = {}
    for ranking in lists:
        if not ranking:
            continue
        values = [score for _, score in ranking]
        lo, hi = min(values), max(values)
        for key, score in ranking:
            scaled = (score - lo) / (hi - lo) if hi > lo else 1.0
            fused[key] = fused.get(key, 0.0) + scaled
    n = len(lists) or 1
    return sorted(((key, s / n) for key, s in fused.items()), key=lambda kv: -kv[1])  # ties: semantic's order first


@dataclass(frozen=True)
class Row:
    """A stored chunk as a search returns it, before parents are folded in."""

    chunk_id: str
    document_id: str
    text: str
    metadata: Mapping[str, Value]
    location: Mapping[str, Any] | None
    parent_id: str | None
    parent_text: str | None


def hits(rows: Mapping[str, Row], ranked: Sequence[tuple[str, float]], limit: int) -> list[Hit]:
    """Ranked chunk ids -> at most `limit` hits, a HIERARCHICAL parent returned once (at its best child's rank)."""
    out: list[Hit] = []
    seen: set[tuple[str, str]] = set()
    for chunk_id, score in ranked:
        row = rows[chunk_id]
        key = (row.document_id, row.parent_id or "\0" + row.chunk_id)
        if key in seen:
            continue
        seen.add(key)
        text = row.parent_text if row.parent_text is not None else row.text
        out.append(Hit(row.chunk_id, row.document_id, text, score, row.metadata, row.location))
        if len(out) == limit:
            break
    return out
