"""The ingestion service in-process, with a fake embedding model that counts what it embeds: a job a dead process
left half done is resumed without embedding again what it had committed; a touched but unchanged file is not
embedded again; stopping a job nobody runs; a busy model waited out; HIERARCHICAL and SEMANTIC chunking through
a job; includeForEmbedding; pushed documents a dead worker had taken."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from outcrop import errors, store
from outcrop.api.app import build_app
from outcrop.auth.principal import LOCAL
from outcrop.config import ModelSpec, Settings
from outcrop.conversation import EmbedRequest, EmbedResult
from outcrop.engines.base import EngineStats
from outcrop.knowledge import indexing
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.chunking_config import FixedSize
from outcrop.knowledge.ingest import Ingestion
from outcrop.knowledge.ledger import Job
from outcrop.knowledge.resources import DataSource, KnowledgeBase
from outcrop.knowledge.service import Knowledge, index_name
from outcrop.registry import Registry

EMBED = "test.count-embed-v1:0"
DIMS = 16


class CountingEmbedder:
    """Vectors from hashed words (similar texts, similar vectors); every text it embeds is kept in `seen`."""

    dimensions = DIMS
    max_tokens = 512

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.busy = 0  # the next calls that answer Overloaded

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        if self.busy:
            self.busy -= 1
            raise errors.Overloaded("busy")
        self.seen.extend(request.texts)
        out = np.zeros((len(request.texts), DIMS), np.float32)
        for i, text in enumerate(request.texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return EmbedResult(out, sum(len(t.split()) for t in request.texts))

    def stats(self) -> EngineStats:
        return EngineStats(in_flight=0, queued=0, max_queue=8)

    async def close(self) -> None:
        return None


@dataclass
class Env:
    knowledge: Knowledge
    ingestion: Ingestion
    embedder: CountingEmbedder
    folders: Path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = Settings(config_path=tmp_path / "c.toml", builtin_model=False, builtin_embedding_model=False,
                        models=(ModelSpec(id=EMBED, kind="embedding", engine="sentence-transformers"),),
                        knowledge_dir=str(tmp_path / "knowledge"))  # fmt: skip
    embedder = CountingEmbedder()
    registry = Registry(settings, {EMBED: embedder})  # type: ignore[dict-item]
    app = build_app(settings, registry, knowledge=KnowledgeCatalog(store.connect(f"sqlite:///{tmp_path / 'o.db'}")))
    knowledge = app.context.knowledge
    assert knowledge is not None and knowledge.ingestion is not None
    yield Env(knowledge, knowledge.ingestion, embedder, tmp_path / "knowledge" / "folders")
    knowledge.close()


def _kb_ds(env: Env, bucket: str, chunking: dict[str, Any] | None = None) -> tuple[KnowledgeBase, DataSource]:
    catalog = env.knowledge.catalog
    kb = catalog.create({"name": f"kb-{bucket}", "roleArn": "r", "knowledgeBaseConfiguration": {
        "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED}}}, EMBED, DIMS)  # fmt: skip
    body: dict[str, Any] = {"name": "ds", "dataSourceConfiguration": {
        "type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{bucket}"}}}  # fmt: skip
    if chunking:
        body["vectorIngestionConfiguration"] = {"chunkingConfiguration": chunking}
    return kb, catalog.create_data_source(kb.id, body)


def _folder(env: Env, bucket: str, files: dict[str, str]) -> Path:
    folder = env.folders / bucket
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


async def _finished(env: Env, job: Job) -> Job:
    for _ in range(600):
        got = env.ingestion.ledger.job(job.knowledge_base_id, job.data_source_id, job.id)
        if got.status in ("COMPLETE", "FAILED", "STOPPED"):
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(got)


def _stats(job: Job) -> dict[str, int]:
    return {k: v for k, v in job.statistics.items() if v}


DOCS = {
    f"d{i}.txt": f"Document {i} says the {['red', 'green', 'blue', 'amber', 'violet'][i]} lamp is on." for i in range(5)
}


def test_a_job_a_dead_process_left_is_resumed(env: Env) -> None:
    folder = _folder(env, "half", DOCS)
    kb, ds = _kb_ds(env, "half")
    ledger, vectors, index = env.ingestion.ledger, env.knowledge.store(kb), index_name(kb)
    job, _ = ledger.start_job(kb.id, ds.id, LOCAL, None, None, "h", "p_dead")  # its process is gone
    ledger.set_status(job.id, "IN_PROGRESS")

    async def half_done() -> None:  # what the dead process had finished: two documents committed...
        ingestion = env.ingestion
        for name in ("d0.txt", "d1.txt", "d2.txt"):
            uri = f"s3://half/{name}"
            content = indexing.Content("S3", uri, uri, (folder / name).read_bytes())
            prepared = indexing.prepare(content, ds.id, FixedSize())
            vecs = await ingestion.writer.embed(kb, prepared.texts(), LOCAL)
            vectors.upsert_document(index, prepared.document_id, indexing.stored(prepared, ds.id, vecs.tolist()))
            if name != "d2.txt":  # ...and a third stored, its kill -9 coming before its ledger row was committed
                stat = (folder / name).stat()
                ledger.commit_document(job.id, {
                    "data_source_id": ds.id, "document_id": prepared.document_id, "knowledge_base_id": kb.id,
                    "kind": "S3", "uri": uri, "source_tag": f"{stat.st_size}:{stat.st_mtime_ns}", "sidecar_tag": None,
                    "content_hash": indexing.digest((folder / name).read_bytes()), "metadata_hash": None,
                    "status": "INDEXED", "reason": None, "chunks": 1}, ["new_indexed"], generation=0)  # fmt: skip

    async def resume() -> Job:
        await half_done()
        env.embedder.seen.clear()
        await env.ingestion.sweep()
        return await _finished(env, job)

    done = asyncio.run(resume())
    assert done.status == "COMPLETE" and done.owner == env.ingestion.owner
    assert _stats(done) == {"numberOfDocumentsScanned": 5, "numberOfNewDocumentsIndexed": 5}
    assert sorted(t.split(" says")[0] for t in env.embedder.seen) == ["Document 2", "Document 3", "Document 4"]
    assert len(vectors.document_ids(index)) == 5 and vectors.count(index) == 5  # one chunk each, none twice


def test_a_touched_file_is_not_embedded_again(env: Env) -> None:
    folder = _folder(env, "touch", DOCS)
    kb, ds = _kb_ds(env, "touch")

    async def run() -> tuple[Job, Job]:
        first = await _finished(env, await env.ingestion.start_job(kb, ds, LOCAL, {}))
        env.embedder.seen.clear()
        os.utime(folder / "d0.txt", ns=(10**18, 10**18))  # a new modification time, the same bytes
        return first, await _finished(env, await env.ingestion.start_job(kb, ds, LOCAL, {}))

    first, second = asyncio.run(run())
    assert _stats(first) == {"numberOfDocumentsScanned": 5, "numberOfNewDocumentsIndexed": 5}
    assert _stats(second) == {"numberOfDocumentsScanned": 5} and env.embedder.seen == []
    uri = "s3://touch/d0.txt"
    row = env.ingestion.ledger.document(ds.id, indexing.document_id(ds.id, "S3", uri))
    assert row is not None and row.source_tag is not None and row.source_tag.endswith(str(10**18))


def test_stopping_a_job_nobody_runs(env: Env) -> None:
    kb, ds = _kb_ds(env, "nobody")
    job, _ = env.ingestion.ledger.start_job(kb.id, ds.id, LOCAL, None, None, "h", "p_dead")
    stopped = asyncio.run(env.ingestion.stop_job(kb.id, ds.id, job.id))
    assert stopped.status == "STOPPED" and env.ingestion.ledger.running_job(ds.id) is None


def test_a_busy_model_is_waited_out(env: Env) -> None:
    _folder(env, "busy", {"a.txt": "Only one document here."})
    kb, ds = _kb_ds(env, "busy")
    env.embedder.busy = 2

    async def run() -> Job:
        return await _finished(env, await env.ingestion.start_job(kb, ds, LOCAL, {}))

    done = asyncio.run(run())
    assert done.status == "COMPLETE" and _stats(done) == {
        "numberOfDocumentsScanned": 1,
        "numberOfNewDocumentsIndexed": 1,
    }


LONG = "\n\n".join(f"Paragraph {i} is about {topic}. " + f"It keeps talking about {topic} for a while. " * 12
                   for i, topic in enumerate(["volcanoes", "glaciers", "deserts", "rivers"]))  # fmt: skip


def test_hierarchical_and_semantic_chunking_through_a_job(env: Env) -> None:
    _folder(env, "tree", {"long.md": "# Landforms\n\n" + LONG})
    kb, ds = _kb_ds(env, "tree", {"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {
        "levelConfigurations": [{"maxTokens": 200}, {"maxTokens": 60}], "overlapTokens": 10}})  # fmt: skip
    _folder(env, "sem", {"long.md": "# Landforms\n\n" + LONG})
    kb2, ds2 = _kb_ds(env, "sem", {"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {
        "maxTokens": 100, "bufferSize": 0, "breakpointPercentileThreshold": 80}})  # fmt: skip

    async def run() -> tuple[Job, Job]:
        a = await _finished(env, await env.ingestion.start_job(kb, ds, LOCAL, {}))
        b = await _finished(env, await env.ingestion.start_job(kb2, ds2, LOCAL, {}))
        return a, b

    a, b = asyncio.run(run())
    assert a.status == "COMPLETE" and b.status == "COMPLETE", (a, b)
    store_a, index_a = env.knowledge.store(kb), index_name(kb)
    assert store_a.count(index_a) > 4  # children
    hits = asyncio.run(env.knowledge.search(kb.id, LOCAL, "glaciers", number_of_results=3))
    assert hits and max(len(h.text) for h in hits) > 400  # a child found, its parent's text returned
    assert env.knowledge.store(kb2).count(index_name(kb2)) >= 2


def test_include_for_embedding_and_pushed_documents_of_a_dead_worker(env: Env) -> None:
    kb = env.knowledge.catalog.create({"name": "pushed", "roleArn": "r", "knowledgeBaseConfiguration": {
        "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBED}}}, EMBED, DIMS)  # fmt: skip
    ds = env.knowledge.catalog.create_data_source(kb.id, {"name": "c", "dataSourceConfiguration": {"type": "CUSTOM"}})
    ledger = env.ingestion.ledger
    typed = {"metadataAttributes": {"team": {"value": {"type": "STRING", "stringValue": "apollo"},
                                             "includeForEmbedding": True}}}  # fmt: skip
    pending = {"principal": '{"id": "local", "name": "local", "is_admin": true}',
               "content": {"name": "memo", "contentType": "text/plain"}, "metadata": {"inline": typed}}  # fmt: skip
    doc = ledger.request(kb.id, ds.id, indexing.document_id(ds.id, "CUSTOM", "memo"), "CUSTOM", "memo", "STARTING",
                         pending, b"Launch at dawn.")  # fmt: skip
    assert ledger.claim(doc, "p_dead") == b"Launch at dawn."  # a worker took it, then died

    async def run() -> None:
        await env.ingestion.sweep()
        for _ in range(500):
            row = ledger.document(ds.id, doc.document_id)
            if row is not None and row.status == "INDEXED":
                return
            await asyncio.sleep(0.02)
        raise AssertionError(row)

    asyncio.run(run())
    assert env.embedder.seen == ["team: apollo\nLaunch at dawn."]
    hits = asyncio.run(env.knowledge.search(kb.id, LOCAL, "dawn", number_of_results=1))
    assert hits[0].text == "Launch at dawn." and hits[0].metadata["team"] == "apollo"
