"""Knowledge bases: the list, a knowledge base with its data sources and their ingestion jobs, starting a job,
and a test panel for Retrieve and RetrieveAndGenerate. Everything goes through the functions the bedrock-agent and
bedrock-agent-runtime routes call (api/bedrock_agent/routes.py, ingestion_routes.py, api/bedrock_agent_runtime/
routes.py) with the signed-in principal, so the rules are the API's: anyone reads and tests; only an
administrator creates knowledge bases and data sources or starts ingestion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock_agent.ingestion_routes import start_job, stop_job
from outcrop.api.bedrock_agent.routes import catalog, make_data_source, make_knowledge_base
from outcrop.api.bedrock_agent_runtime.convert import rag_response
from outcrop.api.bedrock_agent_runtime.routes import answered, retrieved
from outcrop.api.http import Context, json_body
from outcrop.auth.principal import Principal
from outcrop.console import passages
from outcrop.console.views.models import model_rows
from outcrop.console.web import Visit, view
from outcrop.knowledge.ledger import Job
from outcrop.knowledge.resources import DataSource, KnowledgeBase
from outcrop.knowledge.sources import s3_uri
from outcrop.store.paging import Page

PAGE = "knowledge"
ROOT = "/console/knowledge-bases"
ROLE = "arn:aws:iam::000000000000:role/outcrop-console"  # kept and shown back by the API, never used
JOBS_SHOWN = 10  # ingestion jobs shown per data source, newest first
RUNNING = ("STARTING", "IN_PROGRESS", "STOPPING")
STATISTICS = (  # (wire name, what the page calls it)
    ("numberOfDocumentsScanned", "scanned"),
    ("numberOfNewDocumentsIndexed", "new indexed"),
    ("numberOfModifiedDocumentsIndexed", "modified indexed"),
    ("numberOfDocumentsFailed", "failed"),
    ("numberOfDocumentsDeleted", "deleted"),
)


@dataclass(frozen=True)
class SourceRow:
    source: DataSource
    kind: str
    location: str
    jobs: list[Job]


def source_location(ds: DataSource) -> str:
    """Where a data source's documents come from, in a few words."""
    config = ds.configuration
    if config.get("type") == "S3":
        s3 = config.get("s3Configuration") or {}
        bucket = str(s3.get("bucketArn", "")).rsplit(":", 1)[-1]
        prefixes = s3.get("inclusionPrefixes") or [""]
        return ", ".join(s3_uri(bucket, p) for p in prefixes)
    if config.get("type") == "CUSTOM":
        return "documents pushed through IngestKnowledgeBaseDocuments"
    return "-"


async def _all(read: Callable[..., Page], *args: Any) -> list[Any]:
    """Every item of a paged catalog list."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = await asyncio.to_thread(read, *args, 1000, token)
        items.extend(page.items)
        token = page.next_token
        if token is None:
            return items


def _embedding_models(ctx: Context) -> list[str]:
    return list(ctx.registry.names("embedding"))


async def index(visit: Visit, message: str | None = None, status: int = 200, form: dict[str, str] | None = None
                ) -> Response:  # fmt: skip
    kbs = catalog(visit.ctx, visit.principal)
    rows: list[KnowledgeBase] = await _all(kbs.list_knowledge_bases)
    return visit.render("knowledge.html", status=status, title="Knowledge bases", rows=rows, message=message,
                        form=form or {}, embedding_models=_embedding_models(visit.ctx))  # fmt: skip


async def create(visit: Visit) -> Response:
    form = await visit.form()
    config = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": form.get("model", "")}}
    body: dict[str, Any] = {"name": form.get("name", "").strip(), "roleArn": ROLE, "knowledgeBaseConfiguration": config}
    if form.get("description", "").strip():
        body["description"] = form["description"].strip()
    try:
        made = await make_knowledge_base(visit.ctx, visit.principal, body)
    except errors.OutcropError as exc:
        if isinstance(exc, errors.AccessDenied):
            raise
        return await index(visit, exc.message, 400, form)
    return visit.redirect(f"{ROOT}/{made.id}", created=made.id)


async def _sources(ctx: Context, principal: Principal, kb: KnowledgeBase) -> list[SourceRow]:
    kbs = catalog(ctx, principal)
    found: list[DataSource] = await _all(kbs.list_data_sources, kb.id)
    ingestion = ctx.knowledge.ingestion if ctx.knowledge is not None else None
    out = []
    for ds in found:
        jobs: list[Job] = []
        if ingestion is not None:
            page = await asyncio.to_thread(ingestion.ledger.list_jobs, kb.id, ds.id, None, "STARTED_AT", True,
                                           JOBS_SHOWN, None)  # fmt: skip
            jobs = list(page.items)
        out.append(SourceRow(ds, str(ds.configuration.get("type", "")), source_location(ds), jobs))
    return out


async def detail(visit: Visit, kb_id: str, message: str | None = None, status: int = 200,
                 form: dict[str, str] | None = None) -> Response:  # fmt: skip
    kbs = catalog(visit.ctx, visit.principal)
    kb = await asyncio.to_thread(kbs.get, kb_id)
    sources = await _sources(visit.ctx, visit.principal, kb)
    rows = await model_rows(visit.ctx, visit.principal)
    chat = [r.id for r in rows if r.kind == "chat" and r.access in ("available", "granted")]
    query = visit.request.query_params
    notice = None
    if query.get("created") == kb.id:
        notice = f"Knowledge base {kb.name} created."
    elif query.get("started"):
        notice = f"Ingestion job {query['started']} started."
    elif query.get("stopped"):
        notice = f"Ingestion job {query['stopped']} stopped: what it finished stays indexed."
    elif query.get("source"):
        notice = f"Data source {query['source']} created."
    running = any(j.status in RUNNING for s in sources for j in s.jobs)
    return visit.render("knowledge_base.html", status=status, title=f"Knowledge base {kb.name}", kb=kb,
                        sources=sources, chat_models=chat, statistics=STATISTICS, message=message, notice=notice,
                        form=form or {}, running=running, running_states=RUNNING)  # fmt: skip


async def create_source(visit: Visit, kb_id: str) -> Response:
    form = await visit.form()
    bucket = form.get("bucket", "").strip()
    s3: dict[str, Any] = {"bucketArn": f"arn:aws:s3:::{bucket}"}
    prefix = form.get("prefix", "").strip()
    if prefix:
        s3["inclusionPrefixes"] = [prefix]
    body = {"name": form.get("name", "").strip(), "dataSourceConfiguration": {"type": "S3", "s3Configuration": s3}}
    try:
        made = await make_data_source(visit.ctx, visit.principal, kb_id, body)
    except errors.OutcropError as exc:
        if isinstance(exc, errors.AccessDenied | errors.NotFound):
            raise
        return await detail(visit, kb_id, exc.message, 400, form)
    return visit.redirect(f"{ROOT}/{kb_id}", source=made.name)


async def start(visit: Visit, kb_id: str, ds_id: str) -> Response:
    try:
        job = await start_job(visit.ctx, visit.principal, kb_id, ds_id, {})
    except (errors.InvalidRequest, errors.Conflict) as exc:  # not ACTIVE, a job already running: said on the page
        return await detail(visit, kb_id, exc.message, 409 if isinstance(exc, errors.Conflict) else 400)
    return visit.redirect(f"{ROOT}/{kb_id}", started=job.id)


async def stop(visit: Visit, kb_id: str, ds_id: str, job_id: str) -> Response:
    try:
        job = await stop_job(visit.ctx, visit.principal, kb_id, ds_id, job_id, {})
    except (errors.InvalidRequest, errors.Conflict) as exc:  # finished meanwhile: said on the page
        return await detail(visit, kb_id, exc.message, 409 if isinstance(exc, errors.Conflict) else 400)
    return visit.redirect(f"{ROOT}/{kb_id}", stopped=job.id)


async def jobs(visit: Visit, kb_id: str) -> Response:
    """The ingestion jobs shown on the page, for its script to refresh while some run."""
    kb = await asyncio.to_thread(catalog(visit.ctx, visit.principal).get, kb_id)
    sources = await _sources(visit.ctx, visit.principal, kb)
    out = [{"id": j.id, "dataSource": s.source.id, "status": j.status, "statistics": j.statistics,
            "updated": j.updated_at.isoformat(timespec="seconds")} for s in sources for j in s.jobs]  # fmt: skip
    return json_body({"jobs": out})


def _count(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise errors.InvalidRequest("The number of results must be a whole number from 1 to 100.") from None


def _retrieval(body: dict[str, Any]) -> dict[str, Any]:
    search = str(body.get("searchType") or "SEMANTIC")
    return {"vectorSearchConfiguration": {"numberOfResults": _count(body.get("numberOfResults", 5)),
                                          "overrideSearchType": search}}  # fmt: skip


async def retrieve(visit: Visit, kb_id: str) -> Response:
    body = await visit.json()
    wire = {"retrievalQuery": {"text": str(body.get("query") or "")}, "retrievalConfiguration": _retrieval(body)}
    return json_body(passages.results(await retrieved(visit.ctx, visit.principal, kb_id, wire)))


async def generate(visit: Visit, kb_id: str) -> Response:
    body = await visit.json()
    config = {"knowledgeBaseId": kb_id, "modelArn": str(body.get("model") or ""),
              "retrievalConfiguration": _retrieval(body)}  # fmt: skip
    wire: dict[str, Any] = {"input": {"text": str(body.get("query") or "")},
                            "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE",
                                                                 "knowledgeBaseConfiguration": config}}  # fmt: skip
    if body.get("sessionId"):
        wire["sessionId"] = str(body["sessionId"])
    result = await answered(visit.ctx, visit.principal, wire)
    return json_body(passages.answer(rag_response(result)))


_KB = ROOT + "/{kb_id}"
ROUTES = [
    view("GET", ROOT, index),
    view("POST", ROOT, create),
    view("GET", _KB, detail),
    view("POST", _KB + "/data-sources", create_source),
    view("POST", _KB + "/data-sources/{ds_id}/ingestion-jobs", start),
    view("POST", _KB + "/data-sources/{ds_id}/ingestion-jobs/{job_id}/stop", stop),
    view("GET", _KB + "/ingestion-jobs", jobs, json=True),
    view("POST", _KB + "/retrieve", retrieve, json=True),
    view("POST", _KB + "/generate", generate, json=True),
]
