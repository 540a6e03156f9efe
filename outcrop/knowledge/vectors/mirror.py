"""An in-memory mirror of one embedded index, which is what its searches read: the chunks' unit vectors as one
float32 matrix and their words as BM25 postings. The SQLite file stays the truth (sqlite-vec's vec0 and FTS5 hold
the same data, durably); the mirror is read from it lazily, a part at a time, and follows it.

Why: at 100k 384-dimensional chunks sqlite-vec 0.1's exact scan took ~60 ms a search, and ordering by FTS5's bm25()
~28 ms (FTS5 calls bm25() on every matching row, which is most rows once a query holds a common word). The mirror
answers the same searches in ~10 ms (a float32 matrix-vector product: ~11 ms on one core, ~6 ms split over two) and
~2.6 ms (BM25 over numpy postings); benchmarks/knowledge_store.py measures both paths side by side. The results are
the same: the same exact cosine, and FTS5's own bm25 (k1 1.2, b 0.75, idf floored at 1e-6) from the tokens FTS5
itself made. One difference, on purpose: the row count and average length are the live rows', while FTS5's
contentless table, which cannot know a removed row's length, keeps counting every row ever removed (its idf drifts as
documents are re-ingested); on a file without removals the scores are FTS5's. Memory: 4 bytes a dimension a chunk
plus ~8 bytes per distinct word of a chunk (181 MB per 100k 384-d, 60-word chunks); reading it takes ~3 s at 100k.

Following the file. Each write transaction appends one row to the file's `changes` table (`log_change`): its version,
the rowids it removed and the range of rowids it inserted; rowids only grow, so new rows sort after the old ones.
A search reads the latest version inside its read transaction and the mirror catches up to exactly that version:
from the log (the new rows' vectors read from vec0, their texts tokenized by an FTS5 table in `temp` with the same
tokenizer), or by reading the file again when the log no longer reaches back far enough or the change is large. So
another process's writes are seen as soon as they commit, as a plain SQL search sees them.

Concurrency. A row is appended and never changed; removing it stamps the version it was removed at (`dead`); a
full array is replaced by a bigger copy. A `View` (the arrays as of one version) therefore stays valid while the
mirror moves on, and many searches read at once (numpy releases the GIL). A search whose read transaction is older
than the mirror gets None and starts a newer transaction. Removed rows are dropped (the arrays rebuilt) once they
are a quarter of the rows; new rows' postings are appended as small segments, merged when there are many.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

TOKENIZE = "porter unicode61 remove_diacritics 2"  # the keywords table's tokenizer, and the query tokenizer's
K1, B = 1.2, 0.75  # FTS5's bm25() parameters
LOG_KEEP = 4096  # changes the file keeps; a mirror further behind reads the file again
LIVE = np.iinfo(np.int64).max  # `dead` of a row not removed
MAX_SEGMENTS = 8  # postings segments before the newer ones are merged
SCAN_THREADS = 2  # threads a vector scan is split over (benchmarks/knowledge_store.py: 1 against 2)
SCAN_SPLIT = 32_768  # rows below which a scan is not split
MIN_COMPACT = 1024  # removed rows are dropped from the arrays once there are this many and a quarter of the rows
LOG_TABLE = (
    "CREATE TABLE IF NOT EXISTS changes (version INTEGER PRIMARY KEY, removed BLOB NOT NULL, first INTEGER NOT "
    "NULL, next INTEGER NOT NULL)"
)  # removed: little-endian int64 rowids; inserted: rowids first <= r < next


# --- the change log (written in the writer's transaction) -----------------------------------------------------


def current_version(db: Connection) -> int:
    return int(db.exec_driver_sql("SELECT IFNULL(MAX(version), 0) FROM changes").scalar_one())


def next_rowid(db: Connection) -> int:
    """The first rowid never used: past every row there is and every row the log says was inserted."""
    return int(db.exec_driver_sql(
        "SELECT MAX(IFNULL((SELECT MAX(rowid) FROM chunks), 0) + 1, "
        "IFNULL((SELECT next FROM changes ORDER BY version DESC LIMIT 1), 1))"
    ).scalar_one())  # fmt: skip


def log_change(db: Connection, removed: Sequence[int], first: int, next_: int) -> None:
    if not removed and next_ <= first:
        return
    blob = np.asarray(removed, dtype="<i8").tobytes()
    version = db.execute(text("INSERT INTO changes (removed, first, next) VALUES (:r, :f, :n) RETURNING version"),
                         {"r": blob, "f": first, "n": next_}).scalar_one()  # fmt: skip
    if version > LOG_KEEP:
        db.execute(text("DELETE FROM changes WHERE version <= :v"), {"v": version - LOG_KEEP})


# --- tokens, as FTS5 makes them -------------------------------------------------------------------------------


def _instances(db: Connection, vocab: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """An fts5vocab 'instance' table's tokens: the terms, each term's count, and the rowid of every token, grouped by
    term (in the vocabulary's order: by term, then rowid)."""
    got = db.exec_driver_sql(f"SELECT term, count(*), group_concat(doc, ' ') FROM {vocab} GROUP BY term").all()
    terms = [r[0] for r in got]
    counts = np.fromiter((r[1] for r in got), np.int64, len(got))
    docs = np.fromstring(" ".join(r[2] for r in got), dtype=np.int64, sep=" ")
    return terms, counts, docs


def _tokenizer(db: Connection) -> None:
    db.exec_driver_sql(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.tokenizer USING fts5(text, content='', contentless_delete=1, "
        f"tokenize='{TOKENIZE}')"
    )
    db.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS temp.tokenizer_terms USING fts5vocab(temp, tokenizer, "
                       "'instance')")  # fmt: skip


def tokenize(db: Connection, texts: Sequence[tuple[int, str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(rowid, text) pairs -> their tokens as `_instances` gives them, through FTS5 itself (a table in `temp`)."""
    _tokenizer(db)
    try:
        db.execute(text("INSERT INTO temp.tokenizer (rowid, text) VALUES (:r, :t)"),
                   [{"r": r, "t": t} for r, t in texts])  # fmt: skip
        return _instances(db, "temp.tokenizer_terms")
    finally:
        db.exec_driver_sql("INSERT INTO temp.tokenizer (tokenizer) VALUES ('delete-all')")


def query_terms(db: Connection, query: str) -> list[str]:
    """A query's distinct terms, stemmed as the index's."""
    if not query.strip():
        return []
    return tokenize(db, [(1, query)])[0]


# --- postings -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postings:
    """Per term, the rows holding it (positions in the mirror) and how often: compressed by term."""

    terms: dict[str, int]  # term -> its index (insertion order is index order)
    offsets: np.ndarray  # int64, len(terms) + 1
    rows: np.ndarray  # int32
    tf: np.ndarray  # float32

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.rows.nbytes + self.tf.nbytes + 80 * len(self.terms)

    def get(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        i = self.terms.get(term)
        if i is None:
            return None
        s, e = self.offsets[i], self.offsets[i + 1]
        return self.rows[s:e], self.tf[s:e]

    @staticmethod
    def of(
        terms: list[str], counts: np.ndarray, docs: np.ndarray, ids: np.ndarray, base: int
    ) -> tuple[Postings, np.ndarray]:
        """Postings from tokens (`_instances`) of the rows `ids` (ascending), which sit at positions base + i; and
        each row's token count. Tokens of rowids not in `ids` are left out."""
        term = np.repeat(np.arange(len(terms), dtype=np.int64), counts)
        pos = np.searchsorted(ids, docs)
        found = pos < len(ids)
        found[found] = ids[pos[found]] == docs[found]
        term, pos = term[found], pos[found]
        key = term * (len(ids) + 1) + pos
        if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
            order = np.argsort(key, kind="stable")
            term, pos, key = term[order], pos[order], key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        tf = np.diff(np.r_[starts, len(key)]).astype(np.float32)
        per_term = np.bincount(term[starts], minlength=len(terms))
        postings = Postings({t: i for i, t in enumerate(terms)}, np.r_[0, np.cumsum(per_term)].astype(np.int64),
                            (pos[starts] + base).astype(np.int32), tf)  # fmt: skip
        return postings, np.bincount(pos, minlength=len(ids)).astype(np.float64)


def merge(parts: Sequence[Postings], live: np.ndarray | None = None, moved: np.ndarray | None = None) -> Postings:
    """One segment holding `parts`; with `live` and `moved`, only live rows, at their new positions."""
    vocab: dict[str, int] = {}
    terms, rows, tfs = [], [], []
    for p in parts:
        local = np.fromiter((vocab.setdefault(t, len(vocab)) for t in p.terms), np.int64, len(p.terms))
        g, r, f = np.repeat(local, np.diff(p.offsets)), p.rows, p.tf
        if live is not None and moved is not None:
            keep = live[r]
            g, r, f = g[keep], moved[r[keep]], f[keep]
        terms.append(g)
        rows.append(r)
        tfs.append(f)
    g = np.concatenate(terms) if terms else np.zeros(0, np.int64)
    order = np.argsort(g, kind="stable")
    per_term = np.bincount(g, minlength=len(vocab))
    used = per_term > 0
    names = [t for t, u in zip(vocab, used.tolist(), strict=True) if u]
    return Postings({t: i for i, t in enumerate(names)}, np.r_[0, np.cumsum(per_term[used])].astype(np.int64),
                    np.concatenate(rows)[order].astype(np.int32) if rows else np.zeros(0, np.int32),
                    np.concatenate(tfs)[order] if tfs else np.zeros(0, np.float32))  # fmt: skip


# --- a search's view ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """The mirror as of one version: what one search reads, unchanged by later writes."""

    version: int
    ids: np.ndarray  # rowid per position, ascending
    dead: np.ndarray  # the version a row was removed at, LIVE if it was not
    removed: int  # how many rows are dead
    vectors: np.ndarray | None  # unit vectors per position (float32)
    lengths: np.ndarray | None  # tokens per position
    postings: tuple[Postings, ...]

    def _live(self) -> np.ndarray | None:
        return self.dead > self.version if self.removed else None

    def admit(self, rowids: np.ndarray) -> np.ndarray:
        """A mask of the positions of these rowids (a filter's answer)."""
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[_positions(self.ids, rowids)] = True
        return mask

    def nearest(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """The k rows closest to a unit vector (exact): (rowid, cosine), best first."""
        assert self.vectors is not None
        live = self._live()
        mask = allowed if live is None else (live if allowed is None else live & allowed)
        if mask is None:
            rows, scores = None, scan(self.vectors, vector)
        else:
            admitted = int(np.count_nonzero(mask))
            if admitted < len(mask) // 4:  # few rows: gather them rather than multiply them all
                rows = np.flatnonzero(mask)
                scores = scan(self.vectors[rows], vector)
            else:
                rows, scores = None, scan(self.vectors, vector)
                scores[~mask] = -np.inf
                k = min(k, admitted)
        top = _top(scores, k)
        at = top if rows is None else rows[top]
        return list(zip(self.ids[at].tolist(), scores[top].tolist(), strict=True))

    def bm25(self, terms: Sequence[str], k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """The k rows scoring highest by BM25 for any of `terms`, as FTS5's bm25() scores them: (rowid, score)."""
        assert self.lengths is not None
        live = self._live()
        n = len(self.ids) if live is None else int(np.count_nonzero(live))
        if not terms or n == 0:
            return []
        total = float(self.lengths.sum() if live is None else self.lengths[live].sum())
        avgdl = total / n if total > 0 else 1.0
        scores = np.zeros(len(self.ids))
        for term in terms:
            found = [p for p in (seg.get(term) for seg in self.postings) if p is not None]
            if not found:
                continue
            rows = np.concatenate([r for r, _ in found]) if len(found) > 1 else found[0][0]
            tf = np.concatenate([f for _, f in found]) if len(found) > 1 else found[0][1]
            if live is not None:
                keep = live[rows]
                rows, tf = rows[keep], tf[keep]
            df = len(rows)
            if df == 0:
                continue
            idf = math.log((n - df + 0.5) / (df + 0.5))
            idf = idf if idf > 0 else 1e-6  # as FTS5 does: a word in most rows still counts a little
            tf64 = tf.astype(np.float64)
            scores[rows] += idf * tf64 * (K1 + 1) / (tf64 + K1 * (1 - B + B * self.lengths[rows] / avgdl))
        if allowed is not None:
            scores[~allowed] = 0.0
        hit = np.flatnonzero(scores)
        top = hit[_top(scores[hit], k)]
        return list(zip(self.ids[top].tolist(), scores[top].tolist(), strict=True))


def scan(vectors: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """vectors @ vector, by numpy's own loop (einsum) rather than BLAS, on SCAN_THREADS threads of ours.

    OpenBLAS's worker threads spin for a while after each call: on a few cores they then take the CPU from the query
    embedding that comes next (torch's threads) and the other way round. A pool of plain threads sleeps instead."""
    out = np.empty(len(vectors), dtype=np.float32)
    threads = SCAN_THREADS if len(vectors) >= SCAN_SPLIT else 1
    if threads <= 1:
        np.einsum("ij,j->i", vectors, vector, out=out)
        return out
    bounds = np.linspace(0, len(vectors), threads + 1).astype(int).tolist()
    parts = list(itertools.pairwise(bounds))
    pool = _scan_pool(threads - 1)
    futures = [pool.submit(np.einsum, "ij,j->i", vectors[s:e], vector, out=out[s:e]) for s, e in parts[1:]]
    s, e = parts[0]
    np.einsum("ij,j->i", vectors[s:e], vector, out=out[s:e])
    for f in futures:
        f.result()
    return out


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _scan_pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="vector-scan")
        return pool


def _positions(ids: np.ndarray, rowids: np.ndarray) -> np.ndarray:
    """The positions in `ids` (ascending) of those of `rowids` it holds."""
    pos = np.searchsorted(ids, rowids)
    inside = pos < len(ids)
    pos = pos[inside]
    return pos[ids[pos] == rowids[inside]]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first (ties: lower index first)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    part = np.sort(part)
    return part[np.argsort(-scores[part], kind="stable")]


# --- the mirror -----------------------------------------------------------------------------------------------


def _grow(array: np.ndarray, n: int, extra: int) -> np.ndarray:
    """`array` (n rows used) with room for `extra` more: itself, or a bigger copy (views keep the old one)."""
    if n + extra <= len(array):
        return array
    bigger = np.empty((max(n + extra, len(array) + len(array) // 2, 1024), *array.shape[1:]), dtype=array.dtype)
    bigger[:n] = array[:n]
    return bigger


class Mirror:
    """One index file's mirror; `view` is all a search calls."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._lock = threading.Lock()
        self._version = -1  # nothing read yet
        self._n = 0
        self._ids = np.zeros(0, np.int64)
        self._dead = np.zeros(0, np.int64)
        self._removed = 0
        self._vectors: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        self._postings: list[Postings] = []
        self.reloads = 0  # times the file was read whole (for tests and benchmarks)

    @property
    def nbytes(self) -> int:
        parts: list[Any] = [self._ids, self._dead, self._vectors, self._lengths]
        return sum(p.nbytes for p in parts if p is not None) + sum(p.nbytes for p in self._postings)

    def view(self, db: Connection, vectors: bool, keywords: bool) -> View | None:
        """The mirror as of `db`'s read transaction, with the parts asked for; None when the mirror is already past
        that transaction's version (start a newer one)."""
        version = current_version(db)
        with self._lock:
            if self._version > version:
                return None
            if self._version < version or self._version < 0:
                self._catch_up(db, version)
            if vectors and self._vectors is None:
                self._read_vectors(db)
            if keywords and self._lengths is None:
                self._read_keywords(db)
            n = self._n
            return View(version, self._ids[:n], self._dead[:n], self._removed,
                        None if self._vectors is None else self._vectors[:n],
                        None if self._lengths is None else self._lengths[:n], tuple(self._postings))  # fmt: skip

    # -- reading the file whole --

    def _read_rows(self, db: Connection, version: int) -> None:
        got = db.exec_driver_sql("SELECT group_concat(rowid, ' ') FROM (SELECT rowid FROM chunks ORDER BY rowid)")
        ids = np.fromstring(got.scalar_one() or "", dtype=np.int64, sep=" ")
        self._n = len(ids)
        self._ids = _grow(ids, self._n, 0)
        self._dead = np.full(len(self._ids), LIVE, dtype=np.int64)
        self._removed = 0
        self._vectors, self._lengths, self._postings = None, None, []
        self._version = version
        self.reloads += 1

    def _read_vectors(self, db: Connection) -> None:
        rows = db.exec_driver_sql("SELECT rowid, embedding FROM vectors").all()
        self._vectors = np.zeros((len(self._ids), self.dimensions), dtype=np.float32)
        self._vectors[: self._n] = self._place(rows, self._ids[: self._n])

    def _place(self, rows: Sequence[Any], ids: np.ndarray) -> np.ndarray:
        """vec0 rows (rowid, float32 blob) -> a matrix with a row per id (zeros for ids it lacks: removed rows)."""
        out = np.zeros((len(ids), self.dimensions), dtype=np.float32)
        if not rows:
            return out
        got = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        pos = np.searchsorted(ids, got)
        if np.any(pos >= len(ids)) or np.any(ids[np.minimum(pos, len(ids) - 1)] != got):
            raise RuntimeError("The vector table holds rows the chunk table does not.")
        out[pos] = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dimensions)
        return out

    def _read_keywords(self, db: Connection) -> None:
        db.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS temp.keyword_terms USING fts5vocab(main, keywords, "
                           "'instance')")  # fmt: skip
        postings, lengths = Postings.of(*_instances(db, "temp.keyword_terms"), self._ids[: self._n], 0)
        self._lengths = np.zeros(len(self._ids), dtype=np.float64)
        self._lengths[: self._n] = lengths
        self._postings = [postings]

    # -- following the log --

    def _catch_up(self, db: Connection, version: int) -> None:
        if self._version < 0:
            self._read_rows(db, version)
            return
        log = db.execute(text("SELECT version, removed, first, next FROM changes WHERE version > :v ORDER BY version"),
                         {"v": self._version}).all()  # fmt: skip
        inserted = sum(max(0, int(r[3]) - int(r[2])) for r in log)
        if not log or log[0][0] != self._version + 1 or log[-1][0] != version or inserted > max(4096, self._n // 4):
            had_vectors, had_keywords = self._vectors is not None, self._lengths is not None
            self._read_rows(db, version)
            if had_vectors:
                self._read_vectors(db)
            if had_keywords:
                self._read_keywords(db)
            return
        n = self._n
        removed = np.concatenate([np.frombuffer(r[1], dtype="<i8") for r in log]).astype(np.int64)
        if len(removed) and n:
            pos = _positions(self._ids[:n], removed)
            pos = pos[self._dead[pos] == LIVE]
            self._dead[pos] = version
            self._removed += len(pos)
        if inserted:
            self._append(db, min(int(r[2]) for r in log if r[3] > r[2]))
        self._version = version
        self._tidy()

    def _append(self, db: Connection, first: int) -> None:
        keywords = self._lengths is not None
        rows = db.execute(text(f"SELECT rowid{', text' if keywords else ''} FROM chunks WHERE rowid >= :f ORDER BY "
                               "rowid"), {"f": first}).all()  # fmt: skip
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        n, m = self._n, len(rows)
        if n and ids[0] <= self._ids[n - 1]:
            raise RuntimeError("A new chunk's rowid is not past the old ones.")
        if self._vectors is not None:  # a join, so that vec0 is read by rowid (`rowid IN (...)` scans it all)
            got = db.execute(text("SELECT c.rowid, v.embedding FROM chunks c JOIN vectors v ON v.rowid = c.rowid "
                                  "WHERE c.rowid >= :f ORDER BY c.rowid"), {"f": first}).all()  # fmt: skip
            block = self._place(got, ids)
            self._vectors = _grow(self._vectors, n, m)
            self._vectors[n : n + m] = block
        if keywords:
            postings, lengths = Postings.of(*tokenize(db, [(r[0], r[1]) for r in rows]), ids, n)
            self._lengths = _grow(self._lengths, n, m)  # type: ignore[arg-type]
            self._lengths[n : n + m] = lengths
            self._postings.append(postings)
        self._ids = _grow(self._ids, n, m)
        self._ids[n : n + m] = ids
        self._dead = _grow(self._dead, n, m)
        self._dead[n : n + m] = LIVE
        self._n = n + m

    def _tidy(self) -> None:
        if self._removed >= max(MIN_COMPACT, self._n // 4):
            self._compact()
        elif len(self._postings) > MAX_SEGMENTS:
            newer = merge(self._postings[1:])
            base = self._postings[0]
            self._postings = [merge([base, newer])] if newer.rows.size * 4 >= base.rows.size else [base, newer]

    def _compact(self) -> None:
        """New arrays holding only the live rows (views keep the old ones)."""
        n = self._n
        live = self._dead[:n] == LIVE
        moved = np.cumsum(live) - 1
        m = int(np.count_nonzero(live))
        self._ids = _grow(self._ids[:n][live], m, 0)
        self._dead = np.full(len(self._ids), LIVE, dtype=np.int64)
        if self._vectors is not None:
            self._vectors = _grow(self._vectors[:n][live], m, 0)
        if self._lengths is not None:
            self._lengths = _grow(self._lengths[:n][live], m, 0)
            self._postings = [merge(self._postings, live, moved)]
        self._n, self._removed = m, 0
