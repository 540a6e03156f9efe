"""Ingestion jobs and the document ledger, kept in the store (tables `ingestion_jobs` and `knowledge_documents`).

The ledger holds, per data source, each document as last ingested: its fingerprints, status and chunk count. A
job diffs the source against it; every document's row is written in the same transaction as the job's counters
(`commit_document`, `commit_deleted`), after the document's chunks are in the vector store. So a crash leaves
each document either done and counted or not done and not counted, and a job resumed by another process
(`orphans`, `take_over`) finds the documents it had finished unchanged and the counters true.

One job runs per data source at a time: `ingestion_jobs.active` holds the data source's id while a job runs and
has a unique index, so two requests racing to start one cannot both succeed, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, asc, case, delete, desc, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.store.paging import Page
from outcrop.store.schema import ingestion_jobs, knowledge_documents

RUNNING = ("STARTING", "IN_PROGRESS", "STOPPING")
FINISHED = ("COMPLETE", "FAILED", "STOPPED")
WORKING = ("STARTING", "IN_PROGRESS", "DELETING")  # a document a direct request is working on
MAX_FAILURE_REASONS = 2048  # the service model's FailureReasons length
MAX_REASON_CHARS = 2048

# Counter columns and their names in IngestionJobStatistics.
STATISTICS = {
    "documents_scanned": "numberOfDocumentsScanned",
    "metadata_scanned": "numberOfMetadataDocumentsScanned",
    "new_indexed": "numberOfNewDocumentsIndexed",
    "modified_indexed": "numberOfModifiedDocumentsIndexed",
    "metadata_modified": "numberOfMetadataDocumentsModified",
    "deleted": "numberOfDocumentsDeleted",
    "failed": "numberOfDocumentsFailed",
}
_ID = string.ascii_uppercase + string.digits


def new_id() -> str:
    return "".join(secrets.choice(_ID) for _ in range(10))


def now() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite gives timestamps back without their zone


def principal_json(principal: Principal) -> str:
    return json.dumps({"id": principal.id, "name": principal.name, "groups": list(principal.groups),
                       "is_admin": principal.is_admin, "credential_id": principal.credential_id,
                       "guardrail": principal.guardrail})  # fmt: skip


def principal_of(text: str) -> Principal:
    raw = json.loads(text)
    return Principal(raw["id"], raw["name"], tuple(raw.get("groups") or ()), bool(raw.get("is_admin")),
                     raw.get("credential_id"), raw.get("guardrail"))  # fmt: skip


@dataclass(frozen=True)
class Job:
    id: str
    knowledge_base_id: str
    data_source_id: str
    status: str
    description: str | None
    statistics: dict[str, int]  # by the wire's names
    failure_reasons: tuple[str, ...]
    principal: Principal
    owner: str | None
    started_at: datetime
    updated_at: datetime


def _job(row: Row[Any]) -> Job:
    stats = {wire: int(getattr(row, column) or 0) for column, wire in STATISTICS.items()}
    return Job(row.id, row.knowledge_base_id, row.data_source_id, row.status, row.description, stats,
               tuple(json.loads(row.failure_reasons or "[]")), principal_of(row.principal), row.owner,
               _aware(row.started_at), _aware(row.updated_at))  # fmt: skip


@dataclass(frozen=True)
class Document:
    """A document's row in the ledger."""

    data_source_id: str
    document_id: str
    knowledge_base_id: str
    kind: str  # S3 | CUSTOM
    uri: str  # s3://bucket/key, or the CUSTOM document's id
    source_tag: str | None
    sidecar_tag: str | None
    content_hash: str | None
    metadata_hash: str | None
    status: str
    reason: str | None
    chunks: int
    job_id: str | None
    generation: int
    owner: str | None
    updated_at: datetime
    pending: dict[str, Any] | None = field(default=None, compare=False)


_DOC_COLUMNS = [c for c in knowledge_documents.c if c.name != "pending_data"]


def _document(row: Row[Any]) -> Document:
    return Document(row.data_source_id, row.document_id, row.knowledge_base_id, row.kind, row.uri, row.source_tag,
                    row.sidecar_tag, row.content_hash, row.metadata_hash, row.status, row.reason, int(row.chunks),
                    row.job_id, int(row.generation), row.owner, _aware(row.updated_at),
                    json.loads(row.pending) if row.pending else None)  # fmt: skip


def _encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise errors.InvalidRequest("nextToken is not one this server gave out.") from None


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- jobs --------------------------------------------------------------------------------------

    def start_job(self, kb_id: str, ds_id: str, principal: Principal, description: str | None,
                  token: str | None, digest: str, owner: str) -> tuple[Job, bool]:  # fmt: skip
        """A new STARTING job, or the one `token` already started (then False): ConflictException when another
        job of the data source is running, or the token stood for another request."""
        c = ingestion_jobs.c
        job_id, at = new_id(), now()
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(ingestion_jobs).where(c.data_source_id == ds_id,
                                                               c.client_token == token)).first()  # fmt: skip
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different StartIngestionJob request.")
                    return _job(done), False
            running = db.execute(select(c.id).where(c.active == ds_id)).scalar()
            if running is not None:
                raise _busy(ds_id, running)
            try:
                db.execute(insert(ingestion_jobs).values(
                    id=job_id, knowledge_base_id=kb_id, data_source_id=ds_id, status="STARTING",
                    description=description, principal=principal_json(principal), owner=owner, active=ds_id,
                    client_token=token, request_hash=digest, started_at=at, updated_at=at,
                ))  # fmt: skip
            except IntegrityError:  # another request started one between the check and here
                raise _busy(ds_id, None) from None
        return self.job(kb_id, ds_id, job_id), True

    def job(self, kb_id: str, ds_id: str, job_id: str) -> Job:
        c = ingestion_jobs.c
        with self.engine.connect() as db:
            row = db.execute(select(ingestion_jobs).where(c.id == job_id, c.data_source_id == ds_id,
                                                          c.knowledge_base_id == kb_id)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"The ingestion job '{job_id}' was not found in data source '{ds_id}'.")
        return _job(row)

    def job_by_id(self, job_id: str) -> Job | None:
        with self.engine.connect() as db:
            row = db.execute(select(ingestion_jobs).where(ingestion_jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def running_job(self, ds_id: str) -> Job | None:
        with self.engine.connect() as db:
            row = db.execute(select(ingestion_jobs).where(ingestion_jobs.c.active == ds_id)).first()
        return None if row is None else _job(row)

    def list_jobs(self, kb_id: str, ds_id: str, statuses: list[str] | None, sort: str, descending: bool,
                  size: int, token: str | None) -> Page:  # fmt: skip
        """A page of jobs; `sort` is STATUS or STARTED_AT. The token holds the offset and what it was an offset in,
        so a token given with other filters or another order is refused."""
        c = ingestion_jobs.c
        key = [ds_id, statuses, sort, descending]
        offset = 0
        if token is not None:
            got = _decode_token(token)
            if not isinstance(got, list) or len(got) != 2 or got[0] != key or not isinstance(got[1], int):
                raise errors.InvalidRequest("nextToken was given out for another list (other filters or order).")
            offset = got[1]
        order = desc if descending else asc
        column = c.status if sort == "STATUS" else c.started_at
        query = select(ingestion_jobs).where(c.data_source_id == ds_id, c.knowledge_base_id == kb_id)
        if statuses is not None:
            query = query.where(c.status.in_(statuses))
        query = query.order_by(order(column), order(c.started_at), order(c.id)).offset(offset).limit(size + 1)
        with self.engine.connect() as db:
            rows = list(db.execute(query))
        more = len(rows) > size
        return Page(tuple(_job(r) for r in rows[:size]), _encode_token([key, offset + size]) if more else None)

    def set_status(self, job_id: str, status: str, *, only_from: Iterable[str] = RUNNING) -> bool:
        """Move a running job to `status` (only from those in `only_from`); whether it moved. A finished status
        frees the data source for the next job."""
        c = ingestion_jobs.c
        values: dict[str, Any] = {"status": status, "updated_at": now()}
        if status in FINISHED:
            values["active"] = None
        with self.engine.begin() as db:
            moved = db.execute(update(ingestion_jobs).where(c.id == job_id, c.status.in_(list(only_from)))
                               .values(**values))  # fmt: skip
        return bool(moved.rowcount)

    def fail(self, job_id: str, reason: str) -> None:
        with self.engine.begin() as db:
            reasons = self._reasons(db, job_id)
            reasons.append(reason[:MAX_REASON_CHARS])
            db.execute(update(ingestion_jobs).where(ingestion_jobs.c.id == job_id).values(
                status="FAILED", active=None, failure_reasons=json.dumps(reasons[-MAX_FAILURE_REASONS:]),
                updated_at=now(),
            ))  # fmt: skip

    def scanned(self, job_id: str, documents: int, sidecars: int) -> None:
        """What the scan found (set, not added: a resumed job scans again)."""
        with self.engine.begin() as db:
            db.execute(update(ingestion_jobs).where(ingestion_jobs.c.id == job_id).values(
                documents_scanned=documents, metadata_scanned=sidecars, updated_at=now()))  # fmt: skip

    def orphans(self, alive: Callable[[str | None], bool]) -> list[Job]:
        """Running jobs whose owner process is dead."""
        with self.engine.connect() as db:
            rows = list(db.execute(select(ingestion_jobs).where(ingestion_jobs.c.active.is_not(None))))
        return [_job(r) for r in rows if not alive(r.owner)]

    def take_over(self, job: Job, owner: str) -> bool:
        """Make `owner` the job's owner, if nobody else took it over first."""
        c = ingestion_jobs.c
        owned = c.owner.is_(None) if job.owner is None else c.owner == job.owner
        with self.engine.begin() as db:
            moved = db.execute(update(ingestion_jobs).where(c.id == job.id, owned, c.active.is_not(None))
                               .values(owner=owner, updated_at=now()))  # fmt: skip
        return bool(moved.rowcount)

    @staticmethod
    def _reasons(db: Connection, job_id: str) -> list[str]:
        text = db.execute(select(ingestion_jobs.c.failure_reasons).where(ingestion_jobs.c.id == job_id)).scalar()
        return list(json.loads(text or "[]"))

    # --- documents: what jobs write ----------------------------------------------------------------

    def documents(self, ds_id: str) -> dict[str, Document]:
        c = knowledge_documents.c
        with self.engine.connect() as db:
            rows = db.execute(select(*_DOC_COLUMNS).where(c.data_source_id == ds_id))
            return {r.document_id: _document(r) for r in rows}

    def document(self, ds_id: str, document_id: str) -> Document | None:
        c = knowledge_documents.c
        with self.engine.connect() as db:
            row = db.execute(select(*_DOC_COLUMNS).where(c.data_source_id == ds_id,
                                                         c.document_id == document_id)).first()  # fmt: skip
        return None if row is None else _document(row)

    def commit_document(self, job_id: str | None, doc: dict[str, Any], counters: Iterable[str] = (),
                        reason: str | None = None, *, generation: int | None = None) -> bool:  # fmt: skip
        """Write a document's row (all of its columns but the pending ones) and, in the same transaction, add 1 to
        each of the job's `counters` and `reason` to its failureReasons. With `generation`, only if the row still
        has it (a direct request that came meanwhile wins); whether it was written."""
        c = knowledge_documents.c
        values = {**doc, "job_id": job_id, "updated_at": now(), "owner": None, "pending": None, "pending_data": None}
        with self.engine.begin() as db:
            where = and_(c.data_source_id == doc["data_source_id"], c.document_id == doc["document_id"])
            current = db.execute(select(c.generation).where(where)).first()
            if generation is not None and (current.generation if current is not None else 0) != generation:
                return False  # (a document without a row is at generation 0)
            if current is None:
                db.execute(insert(knowledge_documents).values(**values, generation=0))
            else:
                db.execute(update(knowledge_documents).where(where).values(**values))
            self._count(db, job_id, counters, reason)
        return True

    def commit_deleted(self, job_id: str | None, ds_id: str, document_id: str, counters: Iterable[str] = (),
                       *, generation: int | None = None) -> bool:  # fmt: skip
        c = knowledge_documents.c
        where = and_(c.data_source_id == ds_id, c.document_id == document_id)
        if generation is not None:
            where = and_(where, c.generation == generation)
        with self.engine.begin() as db:
            gone = db.execute(delete(knowledge_documents).where(where)).rowcount
            if gone:
                self._count(db, job_id, counters, None)
        return bool(gone)

    def _count(self, db: Connection, job_id: str | None, counters: Iterable[str], reason: str | None) -> None:
        if job_id is None:
            return
        j = ingestion_jobs.c
        values: dict[str, Any] = {name: getattr(j, name) + 1 for name in counters}
        if reason is not None:
            reasons = self._reasons(db, job_id)
            if len(reasons) < MAX_FAILURE_REASONS:
                reasons.append(reason[:MAX_REASON_CHARS])
            values["failure_reasons"] = json.dumps(reasons)
        if values:
            db.execute(update(ingestion_jobs).where(j.id == job_id).values(**values, updated_at=now()))

    # --- documents: what direct requests (IngestKnowledgeBaseDocuments & co.) write --------------------

    def request(self, kb_id: str, ds_id: str, document_id: str, kind: str, uri: str, status: str,
                pending: dict[str, Any] | None, data: bytes | None) -> Document:  # fmt: skip
        """Mark a document STARTING (with what to ingest) or DELETING; its generation moves on."""
        c = knowledge_documents.c
        where = and_(c.data_source_id == ds_id, c.document_id == document_id)
        values = {"status": status, "pending": json.dumps(pending) if pending is not None else None,
                  "pending_data": data, "owner": None, "reason": None, "updated_at": now()}  # fmt: skip
        with self.engine.begin() as db:
            found = db.execute(select(c.generation).where(where)).first()
            if found is None:
                db.execute(insert(knowledge_documents).values(
                    data_source_id=ds_id, document_id=document_id, knowledge_base_id=kb_id, kind=kind, uri=uri,
                    chunks=0, generation=1, **values))  # fmt: skip
            else:
                db.execute(update(knowledge_documents).where(where).values(generation=c.generation + 1, **values))
        found_doc = self.document(ds_id, document_id)
        assert found_doc is not None
        return found_doc

    def claimable(self, alive: Callable[[str | None], bool], ds_id: str | None = None) -> list[Document]:
        """Documents a direct request is waiting on whose worker (if any) is dead."""
        c = knowledge_documents.c
        query = select(*_DOC_COLUMNS).where(c.status.in_(WORKING))
        if ds_id is not None:
            query = query.where(c.data_source_id == ds_id)
        with self.engine.connect() as db:
            rows = [_document(r) for r in db.execute(query.order_by(c.updated_at))]
        return [d for d in rows if d.owner is None or not alive(d.owner)]

    def claim(self, doc: Document, owner: str) -> bytes | bool | None:
        """Take a waiting document (False when another worker or a newer request got there first); its pending
        bytes (None when it has none)."""
        c = knowledge_documents.c
        owned = c.owner.is_(None) if doc.owner is None else c.owner == doc.owner
        which = and_(c.data_source_id == doc.data_source_id, c.document_id == doc.document_id,
                     c.generation == doc.generation)  # fmt: skip
        status = case((c.status == "STARTING", "IN_PROGRESS"), else_=c.status)
        with self.engine.begin() as db:
            taken = db.execute(update(knowledge_documents).where(which, owned).values(owner=owner, status=status))
            if not taken.rowcount:
                return False
            data = db.execute(select(c.pending_data).where(which)).scalar()
        return None if data is None else bytes(data)

    def list_documents(self, ds_id: str, size: int, token: str | None) -> Page:
        c = knowledge_documents.c
        query = select(*_DOC_COLUMNS).where(c.data_source_id == ds_id)
        if token is not None:
            last = _decode_token(token)
            if not isinstance(last, str):
                raise errors.InvalidRequest("nextToken is not one this server gave out.")
            query = query.where(c.document_id > last)
        with self.engine.connect() as db:
            rows = [_document(r) for r in db.execute(query.order_by(c.document_id).limit(size + 1))]
        more = len(rows) > size
        rows = rows[:size]
        return Page(tuple(rows), _encode_token(rows[-1].document_id) if more else None)

    def count_documents(self, ds_id: str) -> int:
        c = knowledge_documents.c
        with self.engine.connect() as db:
            return int(db.execute(select(func.count()).where(c.data_source_id == ds_id)).scalar_one())


def _busy(ds_id: str, job_id: str | None) -> errors.Conflict:
    which = f" ({job_id})" if job_id else ""
    return errors.Conflict(f"An ingestion job{which} is already running for data source '{ds_id}'; wait for it to "
                           "finish, or stop it with StopIngestionJob.")  # fmt: skip
