"""Where a knowledge base's chunks are kept and searched: one protocol (base.VectorStore), two databases.

    SqliteVectorStore(folder)   embedded default: a SQLite file per knowledge base (sqlite-vec + FTS5)
    PgVectorStore(url)          PostgreSQL + pgvector, for Bedrock's RDS storage type

`open_store` picks by location: a postgresql:// URL or a folder.
"""

from __future__ import annotations

from pathlib import Path

from outcrop.knowledge.vectors.base import (
    Chunk,
    DimensionMismatch,
    Hit,
    IndexNotFound,
    Query,
    SearchType,
    VectorStore,
    fuse,
)
from outcrop.knowledge.vectors.filters import Filter, parse_filter

__all__ = ["Chunk", "DimensionMismatch", "Filter", "Hit", "IndexNotFound", "Query", "SearchType", "VectorStore",
           "fuse", "open_store", "parse_filter"]  # fmt: skip


def open_store(location: str | Path) -> VectorStore:
    if str(location).startswith(("postgresql://", "postgresql+", "postgres://")):
        from outcrop.knowledge.vectors.pg_store import PgVectorStore

        url = str(location).replace("postgres://", "postgresql+psycopg://", 1)
        if url.startswith("postgresql://"):
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return PgVectorStore(url)
    from outcrop.knowledge.vectors.sqlite_store import SqliteVectorStore

    return SqliteVectorStore(Path(location))
