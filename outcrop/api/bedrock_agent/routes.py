"""bedrock-agent routes for knowledge bases and data sources (botocore's service model says the paths and shapes).
Thin: check the body against the model, resolve the embedding model, call the catalog, encode.

boto3's `bedrock-agent` client signs as service `bedrock` and sends to the same endpoint as `bedrock` and
`bedrock-runtime`; its paths (/knowledgebases/, /tags/) are its own, so one router serves all three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.bedrock.shapes import input_shape, problems
from outcrop.api.bedrock_agent import convert
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.principal import Principal
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.resources import (
    DataSource,
    EmbeddingModel,
    KnowledgeBase,
    check_data_source,
    check_knowledge_base,
    embedding_model_arn,
    tagged_resource,
)
from outcrop.knowledge.service import rds_url
from outcrop.store.paging import Page

DIALECT = "bedrock-agent"
SERVICE = "bedrock-agent"


def catalog(ctx: Context, principal: Principal, write: bool = False) -> KnowledgeCatalog:
    """The knowledge bases, for `principal` (anyone reads; `write`: only an administrator may). The web console
    goes through this too."""
    if write and not principal.is_admin:
        raise errors.AccessDenied("Only an administrator may create, change or delete knowledge bases.")
    if ctx.knowledge is None:
        raise errors.InvalidRequest("This server has no store to keep knowledge bases in.")
    return ctx.knowledge.catalog


def _catalog(ctx: Context, request: Request, write: bool = False) -> KnowledgeCatalog:
    return catalog(ctx, caller(request), write)


async def _body(
    request: Request, operation: str, path: dict[str, Any] | None = None, unchecked: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The body as botocore's model for `operation` says it must be, path parameters checked with it (except
    `unchecked` ones, which the handler checks)."""
    return checked(await read_json(request, {}), operation, path, unchecked)


def checked(
    body: object, operation: str, path: dict[str, Any] | None = None, unchecked: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`body` if botocore's model for `operation` takes it (with the path parameters); InvalidRequest otherwise."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    found = problems({**body, **(path or {})}, input_shape(SERVICE, operation), "body")
    found = [f for f in found if not any(f.startswith(f"body.{k} ") for k in unchecked)]
    for k in path or {}:
        found = [f.replace(f"body.{k} ", f"{k} (in the path) ", 1) for f in found]
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]) + more)
    return body


async def _embedding_model(ctx: Context, principal: Principal, arn: str) -> EmbeddingModel:
    """The served embedding model `arn` names, if the caller may use it; a ValidationException naming the served
    ones otherwise (a knowledge base is checked whole, so a bad model is a bad request, not a missing resource)."""
    where = "knowledgeBaseConfiguration.vectorKnowledgeBaseConfiguration.embeddingModelArn"
    served = ", ".join(ctx.registry.names("embedding")) or "none"
    try:
        model_id = ctx.registry.resolve(arn)
    except errors.NotFound:
        raise errors.InvalidRequest(
            f"{where} '{arn}' names no model served here. Embedding models: {served}."
        ) from None
    if ctx.registry.kind(model_id) != "embedding":
        raise errors.InvalidRequest(f"{where} '{arn}' is a chat model, not an embedding model. Embedding models: "
                                    f"{served}.")  # fmt: skip
    await ctx.inference.authorize(model_id, principal)
    _, embedder = await ctx.registry.embedder(model_id)
    return EmbeddingModel(model_id, embedder.dimensions, embedder.max_tokens)


def _page_size(body: dict[str, Any]) -> int:
    return int(body.get("maxResults", 1000))


def _listed(page: Page, key: str, encode: Callable[[Any], Any]) -> Response:
    """A List* answer: the page's items encoded under `key`, and its nextToken when there is a next page."""
    out: dict[str, Any] = {key: [encode(item) for item in page.items]}
    if page.next_token:
        out["nextToken"] = page.next_token
    return json_body(out)


# --- knowledge bases ---------------------------------------------------------------------------------------


async def make_knowledge_base(ctx: Context, principal: Principal, raw: object) -> KnowledgeBase:
    """CreateKnowledgeBase for `principal` (an administrator), `raw` in its wire shape (the web console too)."""
    found = catalog(ctx, principal, write=True)
    body = checked(raw, "CreateKnowledgeBase")
    model = await _embedding_model(ctx, principal, embedding_model_arn(body))
    dimensions = check_knowledge_base(body, model)
    if body.get("storageConfiguration"):
        rds_url(ctx.settings, body["storageConfiguration"])  # a resourceArn this server maps to a database
    return await asyncio.to_thread(found.create, body, model.model_id, dimensions)


async def create_knowledge_base(ctx: Context, request: Request) -> Response:
    made = await make_knowledge_base(ctx, caller(request), await read_json(request, {}))
    return json_body({"knowledgeBase": convert.knowledge_base(made, ctx.settings.region)}, status=202)


async def get_knowledge_base(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    catalog = _catalog(ctx, request)
    await _body(request, "GetKnowledgeBase", {"knowledgeBaseId": knowledgeBaseId})
    found = await asyncio.to_thread(catalog.get, knowledgeBaseId)
    return json_body({"knowledgeBase": convert.knowledge_base(found, ctx.settings.region)})


async def list_knowledge_bases(ctx: Context, request: Request) -> Response:
    catalog = _catalog(ctx, request)
    body = await _body(request, "ListKnowledgeBases")
    page = await asyncio.to_thread(catalog.list_knowledge_bases, _page_size(body), body.get("nextToken"))
    return _listed(page, "knowledgeBaseSummaries", convert.knowledge_base_summary)


async def update_knowledge_base(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    catalog = _catalog(ctx, request, write=True)
    body = await _body(request, "UpdateKnowledgeBase", {"knowledgeBaseId": knowledgeBaseId})
    await asyncio.to_thread(catalog.get, knowledgeBaseId)  # an unknown id is a 404 before the body is judged
    model = await _embedding_model(ctx, caller(request), embedding_model_arn(body))
    dimensions = check_knowledge_base(body, model)
    done = await asyncio.to_thread(catalog.update, knowledgeBaseId, body, model.model_id, dimensions)
    return json_body({"knowledgeBase": convert.knowledge_base(done, ctx.settings.region)}, status=202)


async def delete_knowledge_base(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    catalog = _catalog(ctx, request, write=True)
    await _body(request, "DeleteKnowledgeBase", {"knowledgeBaseId": knowledgeBaseId})
    gone = await asyncio.to_thread(catalog.delete, knowledgeBaseId)
    return json_body({"knowledgeBaseId": gone.id, "status": "DELETING"}, status=202)


# --- data sources ------------------------------------------------------------------------------------------


async def _source_model(ctx: Context, kbs: KnowledgeCatalog, kb_id: str) -> EmbeddingModel:
    kb = await asyncio.to_thread(kbs.get, kb_id)
    _, embedder = await ctx.registry.embedder(kb.embedding_model)
    return EmbeddingModel(kb.embedding_model, embedder.dimensions, embedder.max_tokens)


async def make_data_source(ctx: Context, principal: Principal, kb_id: str, raw: object) -> DataSource:
    """CreateDataSource for `principal` (an administrator), `raw` in its wire shape (the web console too)."""
    found = catalog(ctx, principal, write=True)
    body = checked(raw, "CreateDataSource", {"knowledgeBaseId": kb_id})
    check_data_source(body, await _source_model(ctx, found, kb_id))
    return await asyncio.to_thread(found.create_data_source, kb_id, body)


async def create_data_source(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    made = await make_data_source(ctx, caller(request), knowledgeBaseId, await read_json(request, {}))
    return json_body({"dataSource": convert.data_source(made)})


async def get_data_source(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    catalog = _catalog(ctx, request)
    await _body(request, "GetDataSource", {"knowledgeBaseId": knowledgeBaseId, "dataSourceId": dataSourceId})
    found = await asyncio.to_thread(catalog.data_source, knowledgeBaseId, dataSourceId)
    return json_body({"dataSource": convert.data_source(found)})


async def list_data_sources(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    catalog = _catalog(ctx, request)
    body = await _body(request, "ListDataSources", {"knowledgeBaseId": knowledgeBaseId})
    page = await asyncio.to_thread(catalog.list_data_sources, knowledgeBaseId, _page_size(body),
                                   body.get("nextToken"))  # fmt: skip
    return _listed(page, "dataSourceSummaries", convert.data_source_summary)


async def update_data_source(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    catalog = _catalog(ctx, request, write=True)
    path = {"knowledgeBaseId": knowledgeBaseId, "dataSourceId": dataSourceId}
    body = await _body(request, "UpdateDataSource", path)
    await asyncio.to_thread(catalog.data_source, knowledgeBaseId, dataSourceId)
    check_data_source(body, await _source_model(ctx, catalog, knowledgeBaseId))
    done = await asyncio.to_thread(catalog.update_data_source, knowledgeBaseId, dataSourceId, body)
    return json_body({"dataSource": convert.data_source(done)})


async def delete_data_source(ctx: Context, request: Request, knowledgeBaseId: str, dataSourceId: str) -> Response:
    catalog = _catalog(ctx, request, write=True)
    await _body(request, "DeleteDataSource", {"knowledgeBaseId": knowledgeBaseId, "dataSourceId": dataSourceId})
    ds = await asyncio.to_thread(catalog.data_source, knowledgeBaseId, dataSourceId)
    if ctx.knowledge is not None and ctx.knowledge.ingestion is not None:  # its job stops; DELETE: its chunks go
        await ctx.knowledge.ingestion.forget_source(await asyncio.to_thread(catalog.get, knowledgeBaseId), ds)
    gone = await asyncio.to_thread(catalog.delete_data_source, knowledgeBaseId, dataSourceId)
    return json_body({"knowledgeBaseId": gone.knowledge_base_id, "dataSourceId": gone.id, "status": "DELETING"},
                     status=202)  # fmt: skip


# --- tags --------------------------------------------------------------------------------------------------
# (resourceArn is not checked against the service model's pattern: it has `/d{12}` where `\d{12}` is meant, so
# no real ARN matches it.)


def _resource(arn: str) -> str:
    resource = tagged_resource(arn)
    if resource is None:
        raise errors.NotFound(f"The resource '{arn}' was not found.")
    return resource


def _tags_of(ctx: Context, request: Request, resource: str, write: bool = False) -> Any:
    """The catalog keeping `resource`'s tags: the knowledge bases', or the agents' (agents and their aliases)."""
    catalog = _catalog(ctx, request, write)
    if resource.startswith("agent"):
        if ctx.agents is None:
            raise errors.InvalidRequest("This server has no store to keep agents in.")
        return ctx.agents
    return catalog


async def tag_resource(ctx: Context, request: Request, resourceArn: str) -> Response:
    _catalog(ctx, request, write=True)
    body = await _body(request, "TagResource", {"resourceArn": resourceArn}, unchecked=("resourceArn",))
    resource = _resource(resourceArn)
    await asyncio.to_thread(_tags_of(ctx, request, resource, write=True).tag, resource, body["tags"])
    return json_body({})


async def untag_resource(ctx: Context, request: Request, resourceArn: str) -> Response:
    _catalog(ctx, request, write=True)
    keys = request.query_params.getlist("tagKeys")
    if not keys:
        raise errors.InvalidRequest("tagKeys (in the query) is required.")
    resource = _resource(resourceArn)
    await asyncio.to_thread(_tags_of(ctx, request, resource, write=True).untag, resource, keys)
    return json_body({})


async def list_tags(ctx: Context, request: Request, resourceArn: str) -> Response:
    resource = _resource(resourceArn)
    tags = await asyncio.to_thread(_tags_of(ctx, request, resource).tags, resource)
    return json_body({"tags": tags})


_KB = "/knowledgebases/{knowledgeBaseId}"
_DS = _KB + "/datasources/{dataSourceId}"
ROUTES = [
    route("PUT", "/knowledgebases/", create_knowledge_base, DIALECT),
    route("POST", "/knowledgebases/", list_knowledge_bases, DIALECT),
    route("GET", _KB, get_knowledge_base, DIALECT),
    route("PUT", _KB, update_knowledge_base, DIALECT),
    route("DELETE", _KB, delete_knowledge_base, DIALECT),
    route("PUT", _KB + "/datasources/", create_data_source, DIALECT),
    route("POST", _KB + "/datasources/", list_data_sources, DIALECT),
    route("GET", _DS, get_data_source, DIALECT),
    route("PUT", _DS, update_data_source, DIALECT),
    route("DELETE", _DS, delete_data_source, DIALECT),
    route("POST", "/tags/{resourceArn}", tag_resource, DIALECT),
    route("DELETE", "/tags/{resourceArn}", untag_resource, DIALECT),
    route("GET", "/tags/{resourceArn}", list_tags, DIALECT),
]
