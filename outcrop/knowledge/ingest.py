"""Ingestion: StartIngestionJob's jobs and IngestKnowledgeBaseDocuments' documents, run in the server's event loop.

A job (one per data source at a time) scans the source (sources.py), diffs it against the ledger (ledger.py) and
works through the difference as a background task of the server:

    gone from the source           its chunks deleted                      numberOfDocumentsDeleted
    new (or failed before)         parsed, chunked, embedded, stored       numberOfNewDocumentsIndexed
    content changed                the same, replacing its chunks          numberOfModifiedDocumentsIndexed
    sidecar added/changed/removed  the same                                numberOfMetadataDocumentsModified
    unchanged                      nothing (the listing's ETag/size/time, else the bytes' hash, tell)
    cannot be read                 its old chunks deleted, its reason in failureReasons   numberOfDocumentsFailed

Each document goes through writer.py's steps: parsed and chunked in a thread, embedded through Knowledge.embed for
the principal who started the job (access, quotas and usage as for their own calls; several documents' chunks to a
call), its chunks replacing its old ones in one store transaction, then its ledger row and the job's counters
committed together. A job whose process died (kill -9, a power cut) is found by the next server to start (or by a
running one's sweep, every SWEEP_S) and resumed: it scans again and the diff skips what was done, so nothing is
indexed twice or left half-indexed, and the counters stay true. StopIngestionJob marks a job STOPPING; it stops
before its next document and is STOPPED.

Documents pushed by IngestKnowledgeBaseDocuments / DeleteKnowledgeBaseDocuments wait in the ledger (STARTING or
DELETING, with their content) for a worker of the data source; each request moves the document's generation on,
and a worker commits only the generation it took, so the newest request wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.knowledge import direct, indexing, sources
from outcrop.knowledge.chunking_config import ChunkingConfig
from outcrop.knowledge.errors import DocumentError
from outcrop.knowledge.indexing import Content
from outcrop.knowledge.ledger import WORKING, Document, Job, Ledger, principal_json, principal_of
from outcrop.knowledge.resources import DataSource, KnowledgeBase, request_hash
from outcrop.knowledge.service import Knowledge, index_name
from outcrop.knowledge.writer import BATCH_CHUNKS, DocumentWriter, Ready, chunking, ledger_row
from outcrop.store.processes import ProcessRegistry
from outcrop.store.schema import processes

log = logging.getLogger("outcrop.knowledge")

SWEEP_S = 30.0  # how often a server looks for jobs and documents whose process died
CLOSE_WAIT_S = 10.0  # at shutdown, work in progress may finish its document for this long


class _Closing(Exception):
    """The server is shutting down: leave the job as it is, for the next server to resume."""


class Ingestion:
    def __init__(self, knowledge: Knowledge, *, sweep_s: float = SWEEP_S, batch_chunks: int = BATCH_CHUNKS) -> None:
        self.knowledge = knowledge
        self.ledger = Ledger(knowledge.catalog.engine)
        self.sweep_s = sweep_s
        self.writer = DocumentWriter(knowledge, self.ledger, batch_chunks)
        self._registry: ProcessRegistry | None = None
        self._owner: str | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job id, or "docs/<data source id>": its task
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None

    # --- this process, and the others --------------------------------------------------------------

    def _processes(self) -> ProcessRegistry:
        if self._registry is None:
            self._registry = ProcessRegistry(self.ledger.engine)
        return self._registry

    @property
    def owner(self) -> str:
        """This process's id in the store: it registers (and starts its heartbeat) when it first owns work, so an
        idle server writes nothing."""
        self._owner = self._processes().id
        return self._owner

    def _alive(self) -> Callable[[str | None], bool]:
        """Whether a process (by its id) runs, judged on one reading of the `processes` table."""
        registry, mine = self._processes(), self._owner
        with self.ledger.engine.connect() as db:
            rows = {r.id: r for r in db.execute(select(processes))}
        at = time.time()
        return lambda pid: pid is not None and (pid == mine or registry.alive(rows.get(pid), at))

    def _spawn(self, key: str, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"ingestion {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._tasks.pop(key, None) if self._tasks.get(key) is t else None)

    # --- the server's lifespan ---------------------------------------------------------------------

    async def start(self) -> None:
        """At server start: resume what dead processes left, then keep looking every sweep_s."""
        self._closing = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="ingestion sweep")

    async def close(self) -> None:
        """At shutdown: let work in progress finish its document (CLOSE_WAIT_S at most); what is left stays in the
        store for the next server."""
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._registry is not None:
            self._registry.stop()

    async def _watch(self) -> None:
        while not self._closing:
            try:
                await self.sweep()
            except Exception:
                log.exception("ingestion sweep failed; trying again in %.0f s", self.sweep_s)
            await asyncio.sleep(self.sweep_s)

    async def sweep(self) -> None:
        """Resume the jobs and documents whose process is dead."""
        alive = await asyncio.to_thread(self._alive)
        for job in await asyncio.to_thread(self.ledger.orphans, alive):
            owner = await asyncio.to_thread(lambda: self.owner)
            if job.id not in self._tasks and await asyncio.to_thread(self.ledger.take_over, job, owner):
                log.info("resuming ingestion job %s of data source %s (its process died)", job.id, job.data_source_id)
                self._spawn(job.id, self._run(job.id))
        for ds_id in {d.data_source_id for d in await asyncio.to_thread(self.ledger.claimable, alive)}:
            self._kick(ds_id)

    # --- jobs --------------------------------------------------------------------------------------

    async def start_job(self, kb: KnowledgeBase, ds: DataSource, principal: Principal,
                        body: dict[str, Any]) -> Job:  # fmt: skip
        if kb.status != "ACTIVE":
            raise errors.InvalidRequest(f"The knowledge base '{kb.id}' is {kb.status}, not ACTIVE.")
        owner = await asyncio.to_thread(lambda: self.owner)
        job, made = await asyncio.to_thread(self.ledger.start_job, kb.id, ds.id, principal, body.get("description"),
                                            body.get("clientToken"), request_hash(body), owner)  # fmt: skip
        if made:
            self._spawn(job.id, self._run(job.id))
        return job

    async def stop_job(self, kb_id: str, ds_id: str, job_id: str) -> Job:
        job = await asyncio.to_thread(self.ledger.job, kb_id, ds_id, job_id)
        if job.status not in ("STARTING", "IN_PROGRESS"):
            raise errors.Conflict(f"The ingestion job '{job_id}' is {job.status}: only a job that is STARTING or "
                                  "IN_PROGRESS can be stopped.")  # fmt: skip
        await asyncio.to_thread(self.ledger.set_status, job_id, "STOPPING", only_from=("STARTING", "IN_PROGRESS"))
        alive = await asyncio.to_thread(self._alive)
        if job_id not in self._tasks and not alive(job.owner):  # nobody runs it: stopped now
            await asyncio.to_thread(self.ledger.set_status, job_id, "STOPPED", only_from=("STOPPING",))
        return await asyncio.to_thread(self.ledger.job, kb_id, ds_id, job_id)

    async def _run(self, job_id: str) -> None:
        ledger = self.ledger
        try:
            job = await asyncio.to_thread(ledger.job_by_id, job_id)
            if job is None:  # its data source was deleted
                return
            if job.status == "STOPPING":
                await asyncio.to_thread(ledger.set_status, job_id, "STOPPED", only_from=("STOPPING",))
                return
            kb = await asyncio.to_thread(self.knowledge.catalog.get, job.knowledge_base_id)
            ds = await asyncio.to_thread(self.knowledge.catalog.data_source, kb.id, job.data_source_id)
            await asyncio.to_thread(ledger.set_status, job_id, "IN_PROGRESS", only_from=("STARTING", "IN_PROGRESS"))
            done = True
            if ds.configuration["type"] == "S3":  # a CUSTOM data source has nothing to scan
                done = await self._sync(job, kb, ds)
            if done and await asyncio.to_thread(ledger.set_status, job_id, "COMPLETE", only_from=("IN_PROGRESS",)):
                return
            await asyncio.to_thread(ledger.set_status, job_id, "STOPPED", only_from=("STOPPING",))
        except (_Closing, asyncio.CancelledError):
            log.info("ingestion job %s left for the next server to resume", job_id)
        except errors.OutcropError as exc:
            log.info("ingestion job %s failed: %s", job_id, exc.message)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(ledger.fail, job_id, exc.message)
        except Exception as exc:
            log.exception("ingestion job %s failed", job_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(ledger.fail, job_id, f"Internal error: {type(exc).__name__}: {exc}")

    def _open(self, bucket: str) -> sources.Source:
        settings = self.knowledge.settings
        return sources.open_source(bucket, self.knowledge.folder, settings.s3_endpoint_url, settings.region)

    async def _continue(self, job_id: str) -> bool:
        """Whether the job goes on: False once it is asked to stop; _Closing when the server shuts down."""
        if self._closing:
            raise _Closing
        job = await asyncio.to_thread(self.ledger.job_by_id, job_id)
        return job is not None and job.status == "IN_PROGRESS"

    async def _sync(self, job: Job, kb: KnowledgeBase, ds: DataSource) -> bool:
        """Bring the index in line with the source; False when stopped first."""
        s3 = ds.configuration.get("s3Configuration", {})
        source = self._open(sources.bucket_of(ds.configuration))
        scan = await asyncio.to_thread(sources.scan, source, list(s3.get("inclusionPrefixes") or ()))
        await asyncio.to_thread(self.ledger.scanned, job.id, len(scan.documents), scan.sidecars)
        known = await asyncio.to_thread(self.ledger.documents, ds.id)
        listed = {indexing.document_id(ds.id, "S3", d.uri): d for d in scan.documents}
        store, index = self.knowledge.store(kb), index_name(kb)
        for doc_id, row in known.items():
            if row.kind != "S3" or doc_id in listed or row.status in WORKING:
                continue
            if not await self._continue(job.id):
                return False
            async with self.writer.lock(ds.id):
                await asyncio.to_thread(store.delete_document, index, doc_id)
                counted = ["deleted"] if row.status == "INDEXED" else []
                await asyncio.to_thread(self.ledger.commit_deleted, job.id, ds.id, doc_id, counted,
                                        generation=row.generation)  # fmt: skip
        config = chunking(ds)
        batch: list[Ready] = []
        for doc_id, found in listed.items():
            prior = known.get(doc_id)
            sidecar_tag = found.sidecar.tag if found.sidecar else None
            if prior is not None and (prior.status in WORKING or (
                    prior.source_tag == found.file.tag and prior.sidecar_tag == sidecar_tag
                    and (prior.status == "INDEXED" or prior.job_id == job.id))):  # fmt: skip
                continue  # unchanged (or done by this job before it was resumed), or a direct request has it
            if not await self._continue(job.id):
                return False
            ready = await self._read_and_prepare(job, kb, ds, source, found, prior, config)
            if ready is not None:
                batch.append(ready)
            if sum(len(r.prepared.chunks) for r in batch) >= self.writer.batch_chunks:
                await self.writer.store(kb, ds, batch, job.principal, job.id)
                batch = []
        if batch:
            await self.writer.store(kb, ds, batch, job.principal, job.id)
        return True

    async def _read_and_prepare(self, job: Job, kb: KnowledgeBase, ds: DataSource, source: sources.Source,
                                found: sources.SourceDocument, row: Document | None,
                                config: ChunkingConfig) -> Ready | None:  # fmt: skip
        """A changed or new document read and prepared, or None when it needs no embedding (its bytes did not
        change after all, or it failed: both committed here)."""
        generation = row.generation if row is not None else 0
        values = ledger_row(kb, ds, indexing.document_id(ds.id, "S3", found.uri), "S3", found.uri, found.file.tag,
                      found.sidecar.tag if found.sidecar else None)  # fmt: skip
        sidecar_uri = sources.s3_uri(source.bucket, found.sidecar.key) if found.sidecar else ""
        try:
            data = await asyncio.to_thread(source.read, found.key)
            metadata = await asyncio.to_thread(source.read, found.sidecar.key) if found.sidecar else None
        except errors.NotFound as exc:  # deleted since the scan: the next job removes it
            await self.writer.failed(job.id, kb, values, generation, exc.message)
            return None
        values.update(content_hash=indexing.digest(data), metadata_hash=indexing.digest(metadata))
        indexed = row is not None and row.status == "INDEXED"
        content_changed = not indexed or row is None or row.content_hash != values["content_hash"]
        metadata_changed = indexed and row is not None and row.metadata_hash != values["metadata_hash"]
        if indexed and not content_changed and not metadata_changed:  # touched, not changed
            assert row is not None
            values.update(status="INDEXED", chunks=row.chunks, reason=None)
            await asyncio.to_thread(self.ledger.commit_document, job.id, values, generation=generation)
            return None
        content = Content("S3", found.uri, found.uri, data, None, metadata, sidecar_uri)
        try:
            prepared = await self.writer.prepare(kb, ds, content, config, job.principal)
        except DocumentError as exc:
            await self.writer.failed(job.id, kb, values, generation, exc.message)
            return None
        counters = ["new_indexed"] if not indexed else ["modified_indexed"] if content_changed else []
        if metadata_changed:
            counters.append("metadata_modified")
        return Ready(prepared, values, counters, generation)

    # --- documents pushed directly -----------------------------------------------------------------

    async def ingest_documents(self, kb: KnowledgeBase, ds: DataSource, principal: Principal,
                               documents: list[dict[str, Any]]) -> list[Document]:  # fmt: skip
        if kb.status != "ACTIVE":
            raise errors.InvalidRequest(f"The knowledge base '{kb.id}' is {kb.status}, not ACTIVE.")
        kind = ds.configuration["type"]
        bucket = sources.bucket_of(ds.configuration) if kind == "S3" else None
        who = principal_json(principal)
        requests = [direct.decode(ds.id, kind, bucket, d, who) for d in documents]  # all checked before any is kept
        out = [await asyncio.to_thread(self.ledger.request, kb.id, ds.id, r.document_id, r.kind, r.uri, "STARTING",
                                       r.pending, r.data) for r in requests]  # fmt: skip
        self._kick(ds.id)
        return out

    async def delete_documents(
        self, kb: KnowledgeBase, ds: DataSource, identifiers: list[dict[str, Any]]
    ) -> list[tuple[str, str, Document | None]]:
        """(kind, uri, its row now: DELETING, or None when there was no such document) for each identifier."""
        kind = ds.configuration["type"]
        wanted = [direct.identifier(ds.id, i, kind) for i in identifiers]
        out: list[tuple[str, str, Document | None]] = []
        for doc_id, doc_kind, uri in wanted:
            row = await asyncio.to_thread(self.ledger.document, ds.id, doc_id)
            if row is not None:
                row = await asyncio.to_thread(self.ledger.request, kb.id, ds.id, doc_id, doc_kind, uri, "DELETING",
                                              None, None)  # fmt: skip
            out.append((doc_kind, uri, row))
        self._kick(ds.id)
        return out

    def _kick(self, ds_id: str) -> None:
        key = f"docs/{ds_id}"
        if key not in self._tasks and not self._closing:
            self._spawn(key, self._drain(ds_id))

    async def _drain(self, ds_id: str) -> None:
        """Work through the data source's waiting documents until none is left."""
        try:
            while not self._closing:
                alive = await asyncio.to_thread(self._alive)
                waiting = await asyncio.to_thread(self.ledger.claimable, alive, ds_id)
                if not waiting:
                    return
                for doc in waiting:
                    if self._closing:
                        return
                    await self._direct(doc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("documents of data source %s: the worker failed; the next sweep retries", ds_id)

    async def _direct(self, doc: Document) -> None:
        data = await asyncio.to_thread(lambda: self.ledger.claim(doc, self.owner))
        if data is False:
            return
        catalog = self.knowledge.catalog
        try:
            kb = await asyncio.to_thread(catalog.get, doc.knowledge_base_id)
            ds = await asyncio.to_thread(catalog.data_source, kb.id, doc.data_source_id)
        except errors.NotFound:
            return
        if doc.status == "DELETING":
            async with self.writer.lock(ds.id):
                await asyncio.to_thread(self.knowledge.store(kb).delete_document, index_name(kb), doc.document_id)
                await asyncio.to_thread(self.ledger.commit_deleted, None, ds.id, doc.document_id,
                                        generation=doc.generation)  # fmt: skip
            return
        pending = doc.pending or {}
        values = ledger_row(kb, ds, doc.document_id, doc.kind, doc.uri, None, None)
        principal = principal_of(pending["principal"])
        try:
            content = await asyncio.to_thread(direct.content, doc.kind, doc.uri, pending,
                                              data if isinstance(data, bytes) else None, self._open)  # fmt: skip
            values.update(content_hash=indexing.digest(content.data), metadata_hash=indexing.digest(content.metadata))
            prepared = await self.writer.prepare(kb, ds, content, chunking(ds), principal)
            await self.writer.store(kb, ds, [Ready(prepared, values, [], doc.generation)], principal, None)
        except errors.OutcropError as exc:  # the document, its S3 object, or the embedding model: it says why
            await self.writer.failed(None, kb, values, doc.generation, exc.message)
        except Exception as exc:
            log.exception("document %s of data source %s could not be ingested", doc.uri, ds.id)
            await self.writer.failed(None, kb, values, doc.generation, f"Internal error: {type(exc).__name__}")

    # --- deleting a data source --------------------------------------------------------------------

    async def forget_source(self, kb: KnowledgeBase, ds: DataSource) -> None:
        """Before a data source is deleted: stop its job and its worker, and (dataDeletionPolicy DELETE) delete its
        documents' chunks, including any a crashed job stored without committing."""
        job = await asyncio.to_thread(self.ledger.running_job, ds.id)
        if job is not None:
            await asyncio.to_thread(self.ledger.set_status, job.id, "STOPPING")
            task = self._tasks.get(job.id)
            if task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(task), CLOSE_WAIT_S)
        worker = self._tasks.get(f"docs/{ds.id}")
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        if ds.deletion_policy != "DELETE":
            return
        store, index = self.knowledge.store(kb), index_name(kb)
        known = set(await asyncio.to_thread(self.ledger.documents, ds.id))
        stored = {d for d in await asyncio.to_thread(store.document_ids, index) if d.startswith(f"{ds.id}-")}
        for doc_id in sorted(known | stored):
            await asyncio.to_thread(store.delete_document, index, doc_id)
