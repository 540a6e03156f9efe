"""The steps every ingested document goes through, shared by jobs and pushed documents: prepare it (parse, read its
metadata, chunk) in a thread, embed the chunks of several documents in one call for the principal the work is done
for, then per document: replace its chunks in the vector store and commit its ledger row (with the job's counters)
under the data source's lock, unless a newer request for that document came meanwhile (its generation moved on).
A document that cannot be ingested loses its old chunks and its row says why.

A busy embedding model (Overloaded) or a spent quota is waited out, backing off, RETRIES times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.knowledge import indexing
from outcrop.knowledge.chunking_config import ChunkingConfig
from outcrop.knowledge.chunking_config import decode as decode_chunking
from outcrop.knowledge.indexing import Content, Prepared
from outcrop.knowledge.ledger import Ledger
from outcrop.knowledge.resources import DataSource, KnowledgeBase
from outcrop.knowledge.service import Knowledge, index_name

BATCH_CHUNKS = 64  # chunks embedded per call (from as many documents as it takes)
RETRIES = 8  # a busy model is asked again this often, backing off from 0.5 s to 30 s


@dataclass
class Ready:
    """A document prepared for the store: its chunks, and the ledger row to commit once they are stored."""

    prepared: Prepared
    row: dict[str, Any]
    counters: list[str]
    generation: int


class DocumentWriter:
    def __init__(self, knowledge: Knowledge, ledger: Ledger, batch_chunks: int = BATCH_CHUNKS) -> None:
        self.knowledge = knowledge
        self.ledger = ledger
        self.batch_chunks = batch_chunks
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, ds_id: str) -> asyncio.Lock:
        """Held while a document of the data source is written (its chunks, then its row)."""
        return self._locks.setdefault(ds_id, asyncio.Lock())

    async def failed(self, job_id: str | None, kb: KnowledgeBase, values: dict[str, Any], generation: int,
                     reason: str) -> None:  # fmt: skip
        """A document that cannot be ingested: its old chunks go, its row says why, the job counts it."""
        async with self.lock(values["data_source_id"]):  # (a document never committed may have chunks too)
            await asyncio.to_thread(self.knowledge.store(kb).delete_document, index_name(kb), values["document_id"])
            values.update(status="FAILED", chunks=0, reason=reason)
            await asyncio.to_thread(self.ledger.commit_document, job_id, values, ["failed"], reason,
                                    generation=generation)  # fmt: skip

    async def prepare(self, kb: KnowledgeBase, ds: DataSource, content: Content, config: ChunkingConfig,
                      principal: Principal) -> Prepared:  # fmt: skip
        loop = asyncio.get_running_loop()

        def embed(texts: Sequence[str]) -> np.ndarray:  # SEMANTIC chunking, from the parsing thread
            return asyncio.run_coroutine_threadsafe(self.embed(kb, list(texts), principal), loop).result()

        return await asyncio.to_thread(indexing.prepare, content, ds.id, config, embed)

    async def embed(self, kb: KnowledgeBase, texts: list[str], principal: Principal) -> np.ndarray:
        """Vectors of `texts`, BATCH_CHUNKS a call; a busy model or a spent quota is waited out (RETRIES times)."""
        parts = []
        for start in range(0, len(texts), self.batch_chunks):
            part = texts[start : start + self.batch_chunks]
            for attempt in range(RETRIES + 1):
                try:
                    parts.append(await self.knowledge.embed(kb, part, principal))
                    break
                except (errors.Overloaded, errors.QuotaExceeded):
                    if attempt == RETRIES:
                        raise
                    await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
        return np.concatenate(parts) if parts else np.zeros((0, kb.dimensions), np.float32)

    async def store(self, kb: KnowledgeBase, ds: DataSource, batch: list[Ready], principal: Principal,
                    job_id: str | None) -> None:  # fmt: skip
        """Embed a batch of prepared documents together, then store and commit each."""
        texts = [t for r in batch for t in r.prepared.texts()]
        vectors = await self.embed(kb, texts, principal)
        store, index = self.knowledge.store(kb), index_name(kb)
        at = 0
        for ready in batch:
            n = len(ready.prepared.chunks)
            chunks = indexing.stored(ready.prepared, ds.id, vectors[at : at + n].tolist())
            at += n
            async with self.lock(ds.id):
                current = await asyncio.to_thread(self.ledger.document, ds.id, ready.prepared.document_id)
                if (current.generation if current else 0) != ready.generation:
                    continue  # a direct request came for it meanwhile: that one wins
                await asyncio.to_thread(store.upsert_document, index, ready.prepared.document_id, chunks)
                ready.row.update(status="INDEXED", chunks=n, reason=None)
                await asyncio.to_thread(self.ledger.commit_document, job_id, ready.row, ready.counters,
                                        generation=ready.generation)  # fmt: skip


def chunking(ds: DataSource) -> ChunkingConfig:
    return decode_chunking((ds.ingestion or {}).get("chunkingConfiguration"))


def ledger_row(kb: KnowledgeBase, ds: DataSource, doc_id: str, kind: str, uri: str, source_tag: str | None,
               sidecar_tag: str | None) -> dict[str, Any]:  # fmt: skip
    """A ledger row's identity and listing fingerprints (the rest is filled in as the document is ingested)."""
    return {"data_source_id": ds.id, "document_id": doc_id, "knowledge_base_id": kb.id, "kind": kind, "uri": uri,
            "source_tag": source_tag, "sidecar_tag": sidecar_tag}  # fmt: skip
