"""The embedded vector store: one SQLite file per knowledge base, sqlite-vec for vectors, FTS5 for keywords.

    <root>/<index>.sqlite
        info(key, value)         the index's dimensions
        chunks                   one row per chunk: ids, text, metadata (JSON), location, parent
        vectors  (vec0)          rowid = chunks.rowid, float[dimensions], cosine distance
        keywords (fts5)          rowid = chunks.rowid, porter-stemmed unicode61 tokens, BM25
        changes                  one row per write transaction: what it removed and inserted (mirror.py)

One file per knowledge base rather than tables in outcrop.db: SQLite has one writer per file, so one knowledge
base's ingestion never holds up another's (or the server's keys and usage); deleting a knowledge base is deleting
a file, which gives its space back at once (vec0's and FTS5's shadow tables only shrink on VACUUM); and a vec0
column's dimensions are part of its declaration, which a per-file table states once.

Python's own sqlite3 is often built without extension loading (pyenv's and macOS's are), so the connection comes
from `sqlean.py`, a drop-in sqlite3 that bundles a current SQLite (FTS5 included) with loading enabled.
Searches read an in-memory mirror of the file (mirror.py: the vectors as a numpy matrix, the keywords as BM25
postings made from FTS5's own tokens), read lazily and kept in step through the `changes` log, so a search sees every
committed write, this process's or another's. The results are those of the file's own indexes: the exact cosine
(sqlite-vec 0.1.x has no approximate index either) and FTS5's bm25() (counting only the rows there are, where FTS5's
contentless table keeps counting removed ones). A filter is SQL over the chunk table giving the rowids it admits,
then a mask. `memory=False` searches the file itself instead, as before: sqlite-vec's scan
narrowed by `rowid IN (...)` and FTS5 ordered by bm25() (benchmarks/knowledge_store.py compares the two).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError

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
from outcrop.knowledge.vectors.mirror import LOG_TABLE, TOKENIZE, Mirror, View, log_change, next_rowid, query_terms

MAX_K = 4096  # sqlite-vec's limit on k
_RETRIES = 3  # read transactions a search starts before it searches the file instead of the mirror
_WORD = re.compile(r"\w+", re.UNICODE)


def _path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _SqliteFilter(Compiler):
    def _at(self, key: str) -> tuple[str, str]:
        path = self.param(_path(key))
        return f"json_type({self.column}, {path})", f"json_extract({self.column}, {path})"

    def present(self, key: str) -> str:
        t, _ = self._at(key)
        return f"({t} IS NOT NULL)"

    def _typed(self, t: str, value: Any) -> str:
        k = kind(value)
        if k == "boolean":
            return f"{t} = '{'true' if value else 'false'}'"
        if k == "number":
            return f"{t} IN ('integer', 'real')"
        return f"{t} = 'text'" if k == "string" else f"{t} = 'array'"

    def equal(self, key: str, value: Any) -> str:
        t, v = self._at(key)
        if isinstance(value, bool):
            return f"IFNULL({self._typed(t, value)}, 0)"
        if isinstance(value, tuple):  # a list equals a list with the same members in the same order
            return f"IFNULL({t} = 'array' AND json({v}) = json({self.param(json.dumps(list(value)))}), 0)"
        return f"IFNULL({self._typed(t, value)} AND {v} = {self.param(value)}, 0)"

    def compare(self, key: str, op: str, value: Any) -> str:
        t, v = self._at(key)
        return f"IFNULL({self._typed(t, value)} AND {v} {op} {self.param(value)}, 0)"

    def starts_with(self, key: str, value: str) -> str:
        t, v = self._at(key)
        return f"IFNULL({t} = 'text' AND substr({v}, 1, {len(value)}) = {self.param(value)}, 0)"

    def _member(self, key: str, test: str) -> str:
        path = self.param(_path(key))
        return (f"IFNULL(json_type({self.column}, {path}) = 'array' AND EXISTS (SELECT 1 FROM "
                f"json_each({self.column}, {path}) m WHERE {test}), 0)")  # fmt: skip

    def list_contains(self, key: str, value: Any) -> str:
        typed = self._typed("m.type", value)
        if isinstance(value, bool):
            return self._member(key, typed)
        return self._member(key, f"{typed} AND m.value = {self.param(value)}")

    def string_contains(self, key: str, value: str) -> str:
        t, v = self._at(key)
        needle = self.param(value)
        scalar = f"IFNULL({t} = 'text' AND instr({v}, {needle}) > 0, 0)"
        member = self._member(key, f"m.type = 'text' AND instr(m.value, {needle}) > 0")
        return f"({scalar} OR {member})"


def fts_query(query: str) -> str:
    """Free text -> an FTS5 query matching any of its words (each quoted, so no word is read as an operator)."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(_WORD.findall(query.lower())))


def _connect(path: Path) -> Engine:
    import sqlean
    import sqlite_vec

    engine = create_engine(f"sqlite:///{path}", module=sqlean, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _setup(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # transactions are begun below, as SQLAlchemy's docs advise for pysqlite
        dbapi.enable_load_extension(True)
        sqlite_vec.load(dbapi)
        dbapi.enable_load_extension(False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "temp_store=MEMORY"):
            dbapi.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # a writer takes the write lock first: a read lock upgraded later fails with SQLITE_BUSY at once
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def _blob(vector: Sequence[float], index: str, dimensions: int) -> bytes:
    return np.asarray(unit(vector, index, dimensions), dtype=np.float32).tobytes()


class SqliteVectorStore:
    """Indexes as files under `root` (the data directory's knowledge/ folder).

    memory: search each index's in-memory mirror (mirror.py); False searches the file itself (sqlite-vec's scan and
    FTS5's bm25(): slower, no memory held; the benchmark's baseline).
    """

    def __init__(self, root: Path, memory: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.memory = memory
        self._engines: dict[str, Engine] = {}
        self._dims: dict[str, int] = {}
        self._mirrors: dict[str, Mirror] = {}
        self._lock = threading.Lock()

    def _file(self, index: str) -> Path:
        return self.root / f"{check_index_name(index)}.sqlite"

    def _engine(self, index: str, create: bool = False) -> Engine:
        with self._lock:
            engine = self._engines.get(index)
            if engine is None:
                path = self._file(index)
                if not create and not path.exists():
                    raise IndexNotFound(index)
                engine = _connect(path)
                if not create:
                    _add_log(engine)
                self._engines[index] = engine
            return engine

    def _writer(self, index: str) -> Any:
        return self._engine(index).connect().execution_options(write=True)

    def create_index(self, index: str, dimensions: int) -> None:
        check_dimensions(dimensions)
        engine = self._engine(index, create=True)
        with engine.connect().execution_options(write=True) as db, db.begin():
            db.exec_driver_sql("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute(text("SELECT value FROM info WHERE key = 'dimensions'")).first()
            if row is not None:
                if int(row[0]) != dimensions:
                    raise DimensionMismatch(index, int(row[0]), dimensions)
                return
            db.execute(text("INSERT INTO info VALUES ('dimensions', :d)"), {"d": str(dimensions)})
            db.exec_driver_sql(
                "CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, document_id TEXT NOT "
                "NULL, text TEXT NOT NULL, metadata TEXT NOT NULL, location TEXT, parent_id TEXT, parent_text TEXT)"
            )
            db.exec_driver_sql("CREATE INDEX chunks_document ON chunks (document_id)")
            db.exec_driver_sql(
                f"CREATE VIRTUAL TABLE vectors USING vec0(embedding float[{dimensions}] distance_metric=cosine)"
            )
            db.exec_driver_sql(
                "CREATE VIRTUAL TABLE keywords USING fts5(text, content='', contentless_delete=1, "
                f"tokenize='{TOKENIZE}')"
            )
            db.exec_driver_sql(LOG_TABLE)

    def drop_index(self, index: str) -> None:
        path = self._file(index)
        with self._lock:
            engine = self._engines.pop(index, None)
            self._dims.pop(index, None)
            self._mirrors.pop(index, None)
        if engine is not None:
            engine.dispose()
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)

    def dimensions(self, index: str) -> int | None:
        if index in self._dims:
            return self._dims[index]
        try:
            engine = self._engine(index)
        except IndexNotFound:
            return None
        with engine.connect() as db:
            try:
                row = db.execute(text("SELECT value FROM info WHERE key = 'dimensions'")).first()
            except Exception:  # a file made but never given its tables
                return None
        if row is None:
            return None
        self._dims[index] = int(row[0])
        return self._dims[index]

    def _dimensions(self, index: str) -> int:
        dims = self.dimensions(index)
        if dims is None:
            raise IndexNotFound(index)
        return dims

    def upsert_document(self, index: str, document_id: str, chunks: Sequence[Chunk]) -> None:
        check_chunks(document_id, chunks)
        dims = self._dimensions(index)
        blobs = [_blob(c.vector, index, dims) for c in chunks]  # checked before the transaction starts
        with self._writer(index) as db, db.begin():
            start = next_rowid(db)  # before the old chunks go: rowids are never used twice
            removed = self._delete(db, document_id)
            rows = [
                {"r": start + i, "c": c.id, "d": document_id, "t": c.text, "m": json.dumps(dict(c.metadata)),
                 "l": None if c.location is None else json.dumps(c.location), "p": c.parent_id, "pt": c.parent_text}
                for i, c in enumerate(chunks)
            ]  # fmt: skip
            if rows:
                try:
                    db.execute(text("INSERT INTO chunks VALUES (:r, :c, :d, :t, :m, :l, :p, :pt)"), rows)
                except IntegrityError:
                    raise InvalidRequest(
                        f"A chunk id of document '{document_id}' is already another document's."
                    ) from None
                db.execute(text("INSERT INTO vectors (rowid, embedding) VALUES (:r, :v)"),
                           [{"r": r["r"], "v": b} for r, b in zip(rows, blobs, strict=True)])  # fmt: skip
                db.execute(text("INSERT INTO keywords (rowid, text) VALUES (:r, :t)"), rows)
            log_change(db, removed, start, start + len(rows))

    @staticmethod
    def _delete(db: Connection, document_id: str) -> list[int]:
        rowids = [r[0] for r in db.execute(text("SELECT rowid FROM chunks WHERE document_id = :d"), {"d": document_id})]
        if rowids:
            params = [{"r": r} for r in rowids]
            for table in ("vectors", "keywords", "chunks"):
                db.execute(text(f"DELETE FROM {table} WHERE rowid = :r"), params)
        return rowids

    def delete_document(self, index: str, document_id: str) -> int:
        self._dimensions(index)
        with self._writer(index) as db, db.begin():
            start = next_rowid(db)
            removed = self._delete(db, document_id)
            log_change(db, removed, start, start)
            return len(removed)

    def count(self, index: str, document_id: str | None = None) -> int:
        self._dimensions(index)
        with self._engine(index).connect() as db:
            if document_id is None:
                return int(db.exec_driver_sql("SELECT COUNT(*) FROM chunks").scalar_one())
            return int(db.execute(text("SELECT COUNT(*) FROM chunks WHERE document_id = :d"),
                                  {"d": document_id}).scalar_one())  # fmt: skip

    def document_ids(self, index: str) -> list[str]:
        self._dimensions(index)
        with self._engine(index).connect() as db:
            return [r[0] for r in db.exec_driver_sql("SELECT DISTINCT document_id FROM chunks ORDER BY 1")]

    def search(self, index: str, query: Query) -> list[Hit]:
        dims = self._dimensions(index)
        n = query.number_of_results
        if not 1 <= n <= 100:
            raise InvalidRequest("numberOfResults must be between 1 and 100.")
        semantic = query.search_type in (SearchType.SEMANTIC, SearchType.HYBRID)
        if semantic and query.vector is None:
            raise InvalidRequest(f"A {query.search_type.value} search needs a query vector.")
        search = _Search(query, None if query.vector is None or not semantic else _blob(query.vector, index, dims),
                         min(MAX_K, n * CANDIDATES))  # fmt: skip
        with self._engine(index).connect() as db:
            for attempt in range(_RETRIES + 1):
                with db.begin():
                    view = None
                    if self.memory and attempt < _RETRIES:
                        view = self._mirror(index, dims).view(db, semantic, search.keyword)
                        if view is None:  # the mirror is past this transaction's version: start a newer one
                            continue
                    rankings = search.in_memory(db, view) if view is not None else search.in_file(db)
                    if query.search_type is SearchType.HYBRID:
                        ranked = fuse_scores([[(str(rowid), score) for rowid, score in r] for r in rankings])
                    else:
                        ranked = [(str(rowid), score) for rowid, score in (rankings[0] if rankings else [])]
                        if search.keyword:  # KEYWORD alone reports 1 / rank
                            ranked = [(key, 1.0 / rank) for rank, (key, _) in enumerate(ranked, start=1)]
                    rows = self._rows(db, [int(key) for key, _ in ranked])
                    break
        by_chunk = [(rows[int(key)].chunk_id, score) for key, score in ranked]
        return hits({r.chunk_id: r for r in rows.values()}, by_chunk, n)

    def _mirror(self, index: str, dims: int) -> Mirror:
        with self._lock:
            mirror = self._mirrors.get(index)
            if mirror is None:
                mirror = self._mirrors[index] = Mirror(dims)
            return mirror

    def memory_bytes(self, index: str) -> int:
        """What the index's mirror holds in memory (0 before its first search)."""
        with self._lock:
            mirror = self._mirrors.get(index)
        return 0 if mirror is None else mirror.nbytes

    @staticmethod
    def _rows(db: Connection, rowids: list[int]) -> dict[int, Row]:
        if not rowids:
            return {}
        got = db.execute(
            text("SELECT c.rowid, c.chunk_id, c.document_id, c.text, c.metadata, c.location, c.parent_id, "
                 "c.parent_text FROM chunks c WHERE c.rowid IN (SELECT value FROM json_each(:ids))"),
            {"ids": json.dumps(rowids)},
        )  # fmt: skip
        return {r[0]: Row(r[1], r[2], r[3], _metadata(r[4]), None if r[5] is None else json.loads(r[5]), r[6], r[7])
                for r in got}  # fmt: skip

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
            self._mirrors.clear()
        for engine in engines:
            engine.dispose()


class _Search:
    """One search's rankings ((rowid, score) best first; one list per side searched), from the mirror or the file."""

    def __init__(self, query: Query, vector: bytes | None, pool: int) -> None:
        self.query, self.vector, self.pool = query, vector, pool
        self.keyword = query.search_type in (SearchType.KEYWORD, SearchType.HYBRID)
        self.where, self.params = "", {}
        if query.filter is not None:
            compiler = _SqliteFilter("c.metadata")
            self.where = f"SELECT c.rowid FROM chunks c WHERE {compiler.compile(query.filter)}"
            self.params = compiler.params

    def in_memory(self, db: Connection, view: View) -> list[list[tuple[int, float]]]:
        allowed = None
        if self.where:
            got = db.execute(text(f"SELECT group_concat(rowid, ' ') FROM ({self.where})"), self.params).scalar()
            allowed = view.admit(np.fromstring(got or "", dtype=np.int64, sep=" "))
        rankings = []
        if self.vector is not None:
            q = np.frombuffer(self.vector, dtype=np.float32)
            rankings.append([(r, (1.0 + cos) / 2.0) for r, cos in view.nearest(q, self.pool, allowed)])
        if self.keyword:
            found = view.bm25(query_terms(db, self.query.text), self.pool, allowed)
            rankings.append([(r, float(score)) for r, score in found])  # BM25, higher is better
        return rankings

    def in_file(self, db: Connection) -> list[list[tuple[int, float]]]:
        where = f"rowid IN ({self.where})" if self.where else ""
        rankings = []
        if self.vector is not None:
            sql = "SELECT rowid, distance FROM vectors WHERE embedding MATCH :q AND k = :k"
            sql += f" AND {where}" if where else ""
            got = db.execute(text(sql), {"q": self.vector, "k": self.pool, **self.params})
            rankings.append([(r[0], (2.0 - r[1]) / 2.0) for r in got])  # cosine distance -> (1 + cos) / 2
        if self.keyword:
            match = fts_query(self.query.text)
            if match:
                sql = "SELECT rowid, -bm25(keywords) FROM keywords WHERE keywords MATCH :m"
                sql += f" AND {where}" if where else ""
                got = db.execute(text(sql + " ORDER BY bm25(keywords) LIMIT :k"),
                                 {"m": match, "k": self.pool, **self.params})  # fmt: skip
                rankings.append([(r[0], float(r[1])) for r in got])  # FTS5's bm25() is lower-is-better
            elif self.query.search_type is SearchType.HYBRID:
                rankings.append([])
        return rankings


def _add_log(engine: Engine) -> None:
    """A file made before the change log gets one (empty: a mirror reads such a file whole once)."""
    with engine.connect() as db:
        names = {r[0] for r in db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "chunks" in names and "changes" not in names:
        with engine.connect().execution_options(write=True) as db, db.begin():
            db.exec_driver_sql(LOG_TABLE)


def _metadata(raw: str) -> Mapping[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(raw).items()}
