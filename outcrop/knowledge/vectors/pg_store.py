"""The vector store on PostgreSQL with pgvector (Bedrock's `RDS` storage type): one table per knowledge base.

    outcrop_vector_indexes(name, table_name, dimensions)
    kbv_<name>_<hash>: chunk ids, text, metadata (jsonb), location (jsonb), parent, embedding vector(dimensions),
                       tsv (generated English tsvector)
        HNSW (vector_cosine_ops) on embedding, GIN on tsv, btree on document_id

SEMANTIC search walks the HNSW index (approximate, as Bedrock's own stores); with a filter, pgvector 0.8's
iterative index scans keep looking until enough rows pass it (`hnsw.iterative_scan`). KEYWORD ranks with
`ts_rank_cd` (PostgreSQL has no BM25) over a query matching any of the words. Writes of one document are
serialized by a transaction-scoped advisory lock, so two ingestions of the same document cannot interleave.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from outcrop.errors import InvalidRequest
from outcrop.knowledge.vectors.base import (
    CANDIDATES,
    Chunk,
    DimensionMismatch,
    Hit,
    IndexNotFound,
    Query,
    Row,
    SearchType,
    check_chunks,
    check_dimensions,
    check_index_name,
    fuse_scores,
    hits,
    unit,
)
from outcrop.knowledge.vectors.filters import Compiler, kind

EF_SEARCH = 100  # HNSW candidate list (pgvector's default 40): recall@5 0.54 -> 0.82 on random 384-d unit
# vectors at 5k chunks for +0.7 ms p50 (benchmarks/knowledge_store.py); a search asking for more raises it
HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an HNSW index on `vector`; above it searches scan exactly
_REGISTRY = "outcrop_vector_indexes"


class _PgFilter(Compiler):
    def _at(self, key: str) -> tuple[str, str]:
        k = self.param(key)
        return f"({self.column} -> {k})", f"({self.column} ->> {k})"

    def present(self, key: str) -> str:
        return f"jsonb_exists({self.column}, {self.param(key)})"

    def equal(self, key: str, value: Any) -> str:
        j, _ = self._at(key)
        encoded = json.dumps(list(value) if isinstance(value, tuple) else value)
        return f"COALESCE({j} = CAST({self.param(encoded)} AS jsonb), false)"

    def compare(self, key: str, op: str, value: Any) -> str:
        j, t = self._at(key)
        if kind(value) == "number":
            test = f"CAST({t} AS numeric) {op} CAST({self.param(value)} AS numeric)"
            return f"COALESCE(CASE WHEN jsonb_typeof({j}) = 'number' THEN {test} END, false)"
        test = f'{t} COLLATE "C" {op} CAST({self.param(value)} AS text)'
        return f"COALESCE(CASE WHEN jsonb_typeof({j}) = 'string' THEN {test} END, false)"

    def starts_with(self, key: str, value: str) -> str:
        j, t = self._at(key)
        return f"COALESCE(jsonb_typeof({j}) = 'string' AND starts_with({t}, CAST({self.param(value)} AS text)), false)"

    def list_contains(self, key: str, value: Any) -> str:
        j, _ = self._at(key)
        member = self.param(json.dumps([value]))
        return f"COALESCE(jsonb_typeof({j}) = 'array' AND {j} @> CAST({member} AS jsonb), false)"

    def string_contains(self, key: str, value: str) -> str:
        j, t = self._at(key)
        v = f"CAST({self.param(value)} AS text)"
        members = (f"EXISTS (SELECT 1 FROM jsonb_array_elements({j}) m WHERE jsonb_typeof(m) = 'string' "
                   f"AND strpos(m #>> '{{}}', {v}) > 0)")  # fmt: skip
        return (f"COALESCE(CASE jsonb_typeof({j}) WHEN 'string' THEN strpos({t}, {v}) > 0 "
                f"WHEN 'array' THEN {members} ELSE false END, false)")  # fmt: skip


def _literal(vector: Sequence[float], index: str, dimensions: int) -> str:
    values = np.asarray(unit(vector, index, dimensions), dtype=np.float32)
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def table_name(index: str) -> str:
    digest = hashlib.sha1(index.encode()).hexdigest()[:8]  # names differing only in case stay apart
    return f"kbv_{index.lower().replace('-', '_')[:40]}_{digest}"


class PgVectorStore:
    """Indexes as tables in one PostgreSQL database (its URL is the knowledge base's RDS storage)."""

    def __init__(self, url: str) -> None:
        from outcrop import store

        self.engine: Engine = store.connect(url, migrate=False)
        self._dims: dict[str, int] = {}
        with self.engine.begin() as db:
            db.execute(text("SELECT pg_advisory_xact_lock(hashtext('outcrop_vector_indexes'))"))
            try:
                db.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            except ProgrammingError as exc:
                raise InvalidRequest(f"PostgreSQL at this URL cannot load pgvector: {exc.orig}") from None
            db.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {_REGISTRY} (name TEXT PRIMARY KEY, "
                               "table_name TEXT NOT NULL UNIQUE, dimensions INTEGER NOT NULL)")  # fmt: skip

    def create_index(self, index: str, dimensions: int) -> None:
        check_index_name(index)
        check_dimensions(dimensions)
        table = table_name(index)
        with self.engine.begin() as db:
            db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": table})
            got = db.execute(text(f"SELECT dimensions FROM {_REGISTRY} WHERE name = :n"), {"n": index}).first()
            if got is not None:
                if got[0] != dimensions:
                    raise DimensionMismatch(index, got[0], dimensions)
                return
            db.execute(text(f"INSERT INTO {_REGISTRY} VALUES (:n, :t, :d)"), {"n": index, "t": table, "d": dimensions})
            db.exec_driver_sql(
                f"CREATE TABLE {table} (rowid BIGSERIAL PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, "
                "document_id TEXT NOT NULL, text TEXT NOT NULL, metadata JSONB NOT NULL, location JSONB, "
                f"parent_id TEXT, parent_text TEXT, embedding vector({dimensions}) NOT NULL, "
                "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED)"
            )
            db.exec_driver_sql(f"CREATE INDEX {table}_doc ON {table} (document_id)")
            db.exec_driver_sql(f"CREATE INDEX {table}_tsv ON {table} USING gin (tsv)")
            if dimensions <= HNSW_MAX_DIMENSIONS:
                db.exec_driver_sql(f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)")

    def drop_index(self, index: str) -> None:
        table = table_name(check_index_name(index))
        with self.engine.begin() as db:
            db.execute(text(f"DELETE FROM {_REGISTRY} WHERE name = :n"), {"n": index})
            db.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        self._dims.pop(index, None)

    def dimensions(self, index: str) -> int | None:
        if index not in self._dims:
            with self.engine.connect() as db:
                got = db.execute(text(f"SELECT dimensions FROM {_REGISTRY} WHERE name = :n"), {"n": index}).first()
            if got is None:
                return None
            self._dims[index] = int(got[0])
        return self._dims[index]

    def _table(self, index: str) -> tuple[str, int]:
        dims = self.dimensions(index)
        if dims is None:
            raise IndexNotFound(index)
        return table_name(index), dims

    def upsert_document(self, index: str, document_id: str, chunks: Sequence[Chunk]) -> None:
        check_chunks(document_id, chunks)
        table, dims = self._table(index)
        rows = [
            {"c": c.id, "d": document_id, "t": c.text, "m": json.dumps(dict(c.metadata)),
             "l": None if c.location is None else json.dumps(c.location), "p": c.parent_id, "pt": c.parent_text,
             "v": _literal(c.vector, index, dims)}
            for c in chunks
        ]  # fmt: skip
        with self.engine.begin() as db:
            self._delete(db, table, document_id)
            if not rows:
                return
            try:
                db.execute(
                    text(f"INSERT INTO {table} (chunk_id, document_id, text, metadata, location, parent_id, "
                         "parent_text, embedding) VALUES (:c, :d, :t, CAST(:m AS jsonb), CAST(:l AS jsonb), :p, :pt, "
                         "CAST(:v AS vector))"),
                    rows,
                )  # fmt: skip
            except IntegrityError:
                raise InvalidRequest(f"A chunk id of document '{document_id}' is already another document's.") from None

    @staticmethod
    def _delete(db: Connection, table: str, document_id: str) -> int:
        db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t), hashtext(:d))"), {"t": table, "d": document_id})
        return db.execute(text(f"DELETE FROM {table} WHERE document_id = :d"), {"d": document_id}).rowcount

    def delete_document(self, index: str, document_id: str) -> int:
        table, _ = self._table(index)
        with self.engine.begin() as db:
            return self._delete(db, table, document_id)

    def count(self, index: str, document_id: str | None = None) -> int:
        table, _ = self._table(index)
        with self.engine.connect() as db:
            if document_id is None:
                return int(db.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
            got = db.execute(text(f"SELECT COUNT(*) FROM {table} WHERE document_id = :d"), {"d": document_id})
            return int(got.scalar_one())

    def document_ids(self, index: str) -> list[str]:
        table, _ = self._table(index)
        with self.engine.connect() as db:
            return [r[0] for r in db.exec_driver_sql(f"SELECT DISTINCT document_id FROM {table} ORDER BY 1")]

    def search(self, index: str, query: Query) -> list[Hit]:
        table, dims = self._table(index)
        n = query.number_of_results
        if not 1 <= n <= 100:
            raise InvalidRequest("numberOfResults must be between 1 and 100.")
        pool = n * CANDIDATES
        where, params = "", {}
        if query.filter is not None:
            compiler = _PgFilter("metadata")
            where = compiler.compile(query.filter)
            params = compiler.params
        rankings: list[list[tuple[int, float]]] = []
        with self.engine.begin() as db:
            if query.search_type in (SearchType.SEMANTIC, SearchType.HYBRID):
                if query.vector is None:
                    raise InvalidRequest(f"A {query.search_type.value} search needs a query vector.")
                db.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, pool)}")
                if where:
                    db.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
                sql = f"SELECT rowid, embedding <=> CAST(:q AS vector) AS d FROM {table}"
                sql += f" WHERE {where}" if where else ""
                got = db.execute(text(sql + " ORDER BY d LIMIT :k"),
                                 {"q": _literal(query.vector, index, dims), "k": pool, **params})  # fmt: skip
                ranked = sorted(((r[0], float(r[1])) for r in got), key=lambda r: r[1])  # relaxed order: sort here
                rankings.append([(rowid, (2.0 - d) / 2.0) for rowid, d in ranked])
            if query.search_type in (SearchType.KEYWORD, SearchType.HYBRID):
                tsq = "CAST(replace(CAST(plainto_tsquery('english', :w) AS text), '&', '|') AS tsquery)"
                sql = f"SELECT rowid, ts_rank_cd(tsv, q) FROM {table}, {tsq} q WHERE tsv @@ q"
                sql += f" AND {where}" if where else ""
                got = db.execute(text(sql + " ORDER BY ts_rank_cd(tsv, q) DESC, rowid LIMIT :k"),
                                 {"w": query.text, "k": pool, **params})  # fmt: skip
                rankings.append([(r[0], float(r[1])) for r in got])
            if query.search_type is SearchType.HYBRID:
                ranked_ids = fuse_scores([[(str(rowid), score) for rowid, score in r] for r in rankings])
            elif query.search_type is SearchType.KEYWORD:  # KEYWORD alone reports 1 / rank
                ranked_ids = [(str(rowid), 1.0 / rank) for rank, (rowid, _) in enumerate(rankings[0], start=1)]
            else:
                ranked_ids = [(str(rowid), score) for rowid, score in rankings[0]]
            rows = self._rows(db, table, [int(key) for key, _ in ranked_ids])
        by_chunk = [(rows[int(key)].chunk_id, score) for key, score in ranked_ids]
        return hits({r.chunk_id: r for r in rows.values()}, by_chunk, n)

    @staticmethod
    def _rows(db: Connection, table: str, rowids: list[int]) -> dict[int, Row]:
        if not rowids:
            return {}
        got = db.execute(
            text(f"SELECT rowid, chunk_id, document_id, text, metadata, location, parent_id, parent_text FROM {table} "
                 "WHERE rowid = ANY(:ids)"),
            {"ids": rowids},
        )  # fmt: skip
        return {r[0]: Row(r[1], r[2], r[3], {k: tuple(v) if isinstance(v, list) else v for k, v in r[4].items()},
                          r[5], r[6], r[7]) for r in got}  # fmt: skip

    def close(self) -> None:
        self.engine.dispose()
