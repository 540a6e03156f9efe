"""Ingestion throughput: a real ingestion job end to end against embedding the same chunks alone.

What it measures
    In this process, with the built-in MiniLM embedding model (outcrop.all-minilm-l6-v2, sentence-transformers on
    the CPU) and the embedded vector store (SQLite + sqlite-vec + FTS5) in a temporary folder, on --docs Markdown
    documents this script writes into a local folder standing for a bucket (knowledge_parse.py's seeded
    pseudo-English: headings every 6 paragraphs, --paragraphs paragraphs a document), chunked with Bedrock's
    default (FIXED_SIZE 300 tokens, 20 % overlap):

    * "embed alone" (the baseline, the floor for any ingestion): the texts of every chunk the job will store,
      prepared beforehand, embedded through Knowledge.embed (Inference.embed: access, usage) in calls of 64 texts,
      as the job embeds them. Nothing is parsed, stored or committed.
    * "parse + chunk alone": outcrop.knowledge.indexing.prepare (read the bytes, parse, chunk) for every document,
      in this thread; no embedding.
    * "ingestion job": from StartIngestionJob (Ingestion.start_job) until the job is COMPLETE: scan the folder,
      diff against the (empty) ledger, read, parse and chunk each document in a thread, embed 64 chunks a call,
      replace each document's chunks in the store and commit its ledger row and counters.
    * "re-ingest, nothing changed": a second job on the same folder (scan + diff only).
    * "re-ingest, 10 % changed": a third job after rewriting every tenth document.

    chunks/s is the number of chunks stored (or embedded, or cut) over the wall time; "ratio" is the stage's time
    over the baseline's (1.00 = as fast as embedding alone). The model is loaded and warmed (one call) before any
    timing; each stage runs once per round and the table shows the median of --rounds rounds (each round ingests
    into a fresh knowledge base). Other processes' CPU use during the run is printed: on a shared machine it
    inflates every figure.

    python benchmarks/knowledge_ingest.py [--docs 200] [--paragraphs 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CpuWatch, foreign_cpu_note, table
from knowledge_parse import _corpus

from outcrop import store
from outcrop.api.app import build_app
from outcrop.auth.principal import LOCAL
from outcrop.config import Settings
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.chunking_config import DEFAULT
from outcrop.knowledge.indexing import Content, prepare
from outcrop.knowledge.service import Knowledge, index_name
from outcrop.models import BUILTIN_EMBEDDING_ID
from outcrop.registry import Registry

BUCKET = "bench-docs"


def _documents(n: int, paragraphs: int) -> list[str]:
    corpus = _corpus(max(1, n * paragraphs // 40) + 1)
    out = []
    for i in range(n):
        parts = [f"# Document {i}"]
        for k in range(paragraphs):
            heading, text = corpus[(i * paragraphs + k) % len(corpus)]
            if heading:
                parts.append(f"## {heading}")
            parts.append(text)
        out.append("\n\n".join(parts) + "\n")
    return out


async def _job(knowledge: Knowledge, kb: Any, ds: Any) -> tuple[float, dict[str, int]]:
    ingestion = knowledge.ingestion
    assert ingestion is not None
    started = time.perf_counter()
    job = await ingestion.start_job(kb, ds, LOCAL, {})
    wait = 0.002
    while True:
        got = ingestion.ledger.job(kb.id, ds.id, job.id)
        if got.status in ("COMPLETE", "FAILED", "STOPPED"):
            break
        await asyncio.sleep(wait)
        wait = min(0.2, wait * 1.5)  # short jobs are timed closely; long ones are not slowed by the polling
    elapsed = time.perf_counter() - started
    if got.status != "COMPLETE":
        raise SystemExit(f"the job ended {got.status}: {got.failure_reasons}")
    return elapsed, got.statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--paragraphs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "knowledge" / "folders" / BUCKET
        folder.mkdir(parents=True)
        texts = _documents(args.docs, args.paragraphs)
        for i, text in enumerate(texts):
            (folder / f"doc-{i:04d}.md").write_text(text)
        settings = Settings(config_path=tmp / "c.toml", builtin_model=False, builtin_embedding_model=True,
                            knowledge_dir=str(tmp / "knowledge"))  # fmt: skip
        catalog = KnowledgeCatalog(store.connect(f"sqlite:///{tmp / 'outcrop.db'}"))
        app = build_app(settings, Registry(settings), knowledge=catalog)
        knowledge = app.context.knowledge
        assert knowledge is not None and knowledge.ingestion is not None
        rows: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        watch = CpuWatch()
        wall = time.perf_counter()

        async def rounds() -> None:
            for r in range(args.rounds):
                kb = catalog.create({"name": f"bench-{r}", "roleArn": "arn:aws:iam::123456789012:role/r",
                                     "knowledgeBaseConfiguration": {"type": "VECTOR",
                                     "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": BUILTIN_EMBEDDING_ID}}},
                                    BUILTIN_EMBEDDING_ID, 384)  # fmt: skip
                ds = catalog.create_data_source(kb.id, {"name": "docs", "dataSourceConfiguration": {
                    "type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{BUCKET}"}}})  # fmt: skip
                if r == 0:
                    await knowledge.embed(kb, ["warm up"], LOCAL)
                started = time.perf_counter()
                prepared = []
                for i in range(args.docs):
                    uri = f"s3://{BUCKET}/doc-{i:04d}.md"
                    prepared.append(prepare(Content("S3", uri, uri, (folder / f"doc-{i:04d}.md").read_bytes()),
                                            ds.id, DEFAULT))  # fmt: skip
                rows.setdefault("parse + chunk alone", []).append(time.perf_counter() - started)
                chunk_texts = [t for p in prepared for t in p.texts()]
                counts["parse + chunk alone"] = counts["embed alone"] = len(chunk_texts)
                started = time.perf_counter()
                for k in range(0, len(chunk_texts), 64):
                    await knowledge.embed(kb, chunk_texts[k : k + 64], LOCAL)
                rows.setdefault("embed alone", []).append(time.perf_counter() - started)

                elapsed, stats = await _job(knowledge, kb, ds)
                rows.setdefault("ingestion job", []).append(elapsed)
                counts["ingestion job"] = knowledge.store(kb).count(index_name(kb))
                assert stats["numberOfNewDocumentsIndexed"] == args.docs, stats
                elapsed, stats = await _job(knowledge, kb, ds)
                rows.setdefault("re-ingest, nothing changed", []).append(elapsed)
                counts["re-ingest, nothing changed"] = 0
                changed = list(range(0, args.docs, 10))
                for i in changed:
                    path = folder / f"doc-{i:04d}.md"
                    path.write_text(path.read_text() + f"\nRevision {r + 1} of document {i}.\n")
                before = knowledge.store(kb).count(index_name(kb))
                elapsed, stats = await _job(knowledge, kb, ds)
                assert stats["numberOfModifiedDocumentsIndexed"] == len(changed), stats
                rows.setdefault("re-ingest, 10 % changed", []).append(elapsed)
                counts["re-ingest, 10 % changed"] = sum(
                    knowledge.store(kb).count(index_name(kb), prepared[i].document_id) for i in changed
                )
                assert knowledge.store(kb).count(index_name(kb)) >= before  # (appending a line adds, never removes)
            await knowledge.ingestion.close()  # type: ignore[union-attr]

        asyncio.run(rounds())
        note = foreign_cpu_note(watch.foreign_cores(time.perf_counter() - wall))
        knowledge.close()

    base = statistics.median(rows["embed alone"])
    out = []
    for name in ("embed alone", "parse + chunk alone", "ingestion job", "re-ingest, nothing changed",
                 "re-ingest, 10 % changed"):  # fmt: skip
        seconds = statistics.median(rows[name])
        n = counts[name]
        out.append([name, f"{seconds:.2f}", str(n), f"{n / seconds:.1f}" if n else "-", f"{args.docs / seconds:.1f}",
                    f"{seconds / base:.2f}"])  # fmt: skip
    print(f"{args.docs} Markdown documents of {args.paragraphs} paragraphs, FIXED_SIZE 300 tokens / 20 %, "
          f"{BUILTIN_EMBEDDING_ID}, median of {args.rounds} rounds")  # fmt: skip
    print(table(["stage", "seconds", "chunks", "chunks/s", "docs/s", "ratio to embed alone"], out))
    print(note)


if __name__ == "__main__":
    main()
