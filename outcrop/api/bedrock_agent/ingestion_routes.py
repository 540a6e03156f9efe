"""bedrock-agent routes for ingestion: Start/Get/List/StopIngestionJob and Ingest/Delete/Get/ListKnowledgeBaseDocuments
(botocore's service model says the paths and shapes). Thin: check the body, find the resources, call the ingestion
service (outcrop/knowledge/ingest.py), encode.

Starting, stopping, pushing and deleting documents change a knowledge base, so only an administrator may (as the
control plane's other writes); anyone may read jobs and documents.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock_agent import convert
from outcrop.api.bedrock_agent.routes import DIALECT, _body, _catalog, _listed, catalog, checked
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.principal import Principal
from outcrop.knowledge.direct import identifier
from outcrop.knowledge.ingest import Ingestion
from outcrop.knowledge.ledger import Job
from outcrop.knowledge.resources import DataSource, KnowledgeBase

_STATUSES = ("STARTING", "IN_PROGRESS", "COMPLETE", "FAILED", "STOPPING", "STOPPED")


def _ingestion(ctx: Context) -> Ingestion:
    service = ctx.knowledge.ingestion if ctx.knowledge is not None else None
    if service is None:
        raise errors.InvalidRequest("This server has no store to keep knowledge bases in.")
    return service


async def _resources(ctx: Context, request: Request, kb_id: str, ds_id: str,
                     write: bool = False) -> tuple[KnowledgeBase, DataSource]:  # fmt: skip
    catalog = _catalog(ctx, request, write)
    kb = await asyncio.to_thread(catalog.get, kb_id)
    return kb, await asyncio.to_thread(catalog.data_source, kb_id, ds_id)


def _path(kb_id: str, ds_id: str, **more: str) -> dict[str, str]:
    return {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, **more}


# --- ingestion jobs ----------------------------------------------------------------------------------------


async def start_job(ctx: Context, principal: Principal, kb_id: str, ds_id: str, raw: object) -> Job:
    """StartIngestionJob for `principal` (an administrator), `raw` in its wire shape (the web console too)."""
    ingestion = _ingestion(ctx)
    body = checked(raw, "StartIngestionJob", _path(kb_id, ds_id))
    kbs = catalog(ctx, principal, write=True)
    kb = await asyncio.to_thread(kbs.get, kb_id)
    ds = await asyncio.to_thread(kbs.data_source, kb_id, ds_id)
    return await ingestion.start_job(kb, ds, principal, body)


async def start_ingestion_job(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    job = await start_job(ctx, caller(request), knowledgeBaseId, dataSourceId, await read_json(request, {}))
    return json_body({"ingestionJob": convert.ingestion_job(job)}, status=202)


async def get_ingestion_job(
    ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str, ingestionJobId: str
) -> Response:
    ingestion = _ingestion(ctx)
    await _body(request, "GetIngestionJob", _path(knowledgeBaseId, dataSourceId, ingestionJobId=ingestionJobId))
    await _resources(ctx, request, knowledgeBaseId, dataSourceId)
    job = await asyncio.to_thread(ingestion.ledger.job, knowledgeBaseId, dataSourceId, ingestionJobId)
    return json_body({"ingestionJob": convert.ingestion_job(job)})


async def list_ingestion_jobs(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    ingestion = _ingestion(ctx)
    body = await _body(request, "ListIngestionJobs", _path(knowledgeBaseId, dataSourceId))
    await _resources(ctx, request, knowledgeBaseId, dataSourceId)
    statuses: list[str] | None = None
    for f in body.get("filters") or ():  # the model allows one filter: STATUS EQ values
        unknown = sorted(set(f["values"]) - set(_STATUSES))
        if unknown:
            raise errors.InvalidRequest(f"filters: {', '.join(unknown)} is not an ingestion job status; statuses: "
                                        f"{', '.join(_STATUSES)}.")  # fmt: skip
        statuses = list(f["values"])
    sort = body.get("sortBy") or {"attribute": "STARTED_AT", "order": "DESCENDING"}
    page = await asyncio.to_thread(ingestion.ledger.list_jobs, knowledgeBaseId, dataSourceId, statuses,
                                   sort["attribute"], sort["order"] == "DESCENDING", int(body.get("maxResults", 1000)),
                                   body.get("nextToken"))  # fmt: skip
    return _listed(page, "ingestionJobSummaries", convert.ingestion_job_summary)


async def stop_job(ctx: Context, principal: Principal, kb_id: str, ds_id: str, job_id: str, raw: object) -> Job:
    """StopIngestionJob for `principal` (an administrator), `raw` in its wire shape (the web console too)."""
    ingestion = _ingestion(ctx)
    checked(raw, "StopIngestionJob", _path(kb_id, ds_id, ingestionJobId=job_id))
    kbs = catalog(ctx, principal, write=True)
    await asyncio.to_thread(kbs.get, kb_id)
    await asyncio.to_thread(kbs.data_source, kb_id, ds_id)
    return await ingestion.stop_job(kb_id, ds_id, job_id)


async def stop_ingestion_job(
    ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str, ingestionJobId: str
) -> Response:
    job = await stop_job(ctx, caller(request), knowledgeBaseId, dataSourceId, ingestionJobId,
                         await read_json(request, {}))  # fmt: skip
    return json_body({"ingestionJob": convert.ingestion_job(job)}, status=202)


# --- documents ---------------------------------------------------------------------------------------------


async def ingest_documents(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    ingestion = _ingestion(ctx)
    body = await _body(request, "IngestKnowledgeBaseDocuments", _path(knowledgeBaseId, dataSourceId))
    kb, ds = await _resources(ctx, request, knowledgeBaseId, dataSourceId, write=True)
    done = await ingestion.ingest_documents(kb, ds, caller(request), body["documents"])
    details = [convert.document_detail(kb.id, ds.id, d.kind, d.uri, d) for d in done]
    return json_body({"documentDetails": details}, status=202)


async def delete_documents(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    ingestion = _ingestion(ctx)
    body = await _body(request, "DeleteKnowledgeBaseDocuments", _path(knowledgeBaseId, dataSourceId))
    kb, ds = await _resources(ctx, request, knowledgeBaseId, dataSourceId, write=True)
    done = await ingestion.delete_documents(kb, ds, body["documentIdentifiers"])
    details = [convert.document_detail(kb.id, ds.id, kind, uri, row) for kind, uri, row in done]
    return json_body({"documentDetails": details}, status=202)


async def get_documents(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    ingestion = _ingestion(ctx)
    body = await _body(request, "GetKnowledgeBaseDocuments", _path(knowledgeBaseId, dataSourceId))
    kb, ds = await _resources(ctx, request, knowledgeBaseId, dataSourceId)
    details = []
    for value in body["documentIdentifiers"]:
        doc_id, kind, uri = identifier(ds.id, value, ds.configuration["type"])
        row = await asyncio.to_thread(ingestion.ledger.document, ds.id, doc_id)
        details.append(convert.document_detail(kb.id, ds.id, kind, uri, row))
    return json_body({"documentDetails": details})


async def list_documents(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    ingestion = _ingestion(ctx)
    body = await _body(request, "ListKnowledgeBaseDocuments", _path(knowledgeBaseId, dataSourceId))
    kb, ds = await _resources(ctx, request, knowledgeBaseId, dataSourceId)
    page = await asyncio.to_thread(ingestion.ledger.list_documents, ds.id, int(body.get("maxResults", 1000)),
                                   body.get("nextToken"))  # fmt: skip
    return _listed(page, "documentDetails", lambda d: convert.document_detail(kb.id, ds.id, d.kind, d.uri, d))


_DS = "/knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}"
_JOB = _DS + "/ingestionjobs/{ingestionJobId}"
ROUTES = [
    route("PUT", _DS + "/ingestionjobs/", start_ingestion_job, DIALECT),
    route("POST", _DS + "/ingestionjobs/", list_ingestion_jobs, DIALECT),
    route("GET", _JOB, get_ingestion_job, DIALECT),
    route("POST", _JOB + "/stop", stop_ingestion_job, DIALECT),
    route("PUT", _DS + "/documents", ingest_documents, DIALECT),
    route("POST", _DS + "/documents", list_documents, DIALECT),
    route("POST", _DS + "/documents/deleteDocuments", delete_documents, DIALECT),
    route("POST", _DS + "/documents/getDocuments", get_documents, DIALECT),
]
