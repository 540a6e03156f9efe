"""bedrock-agent-runtime routes: Retrieve, RetrieveAndGenerate, RetrieveAndGenerateStream (botocore's model says
the paths and shapes). Thin: check the body against the model, decode, call the knowledge package, encode.

boto3's `bedrock-agent-runtime` client signs as service `bedrock` like the others; its paths are its own
(/knowledgebases/{id}/retrieve beside bedrock-agent's /knowledgebases/{id}), so one server answers all four.
The session operations of this API (CreateSession, ...) are agents' session store, not RetrieveAndGenerate's
sessionId, and are not served; RetrieveAndGenerate keeps its own sessions (outcrop/knowledge/sessions.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from outcrop import errors
from outcrop.api.bedrock import eventstream
from outcrop.api.bedrock.shapes import input_shape, problems
from outcrop.api.bedrock_agent_runtime import convert
from outcrop.api.bedrock_agent_runtime.errors import encode_stream_error
from outcrop.api.http import Context, caller, json_body, read_json, route
from outcrop.auth.principal import Principal
from outcrop.knowledge.rag import Rag, RagResult, guard_passages, guard_query
from outcrop.knowledge.retrieval import fingerprint, page_token, retrieve, token_offset
from outcrop.knowledge.service import Knowledge
from outcrop.knowledge.sessions import Sessions

DIALECT = "bedrock-agent-runtime"
SERVICE = "bedrock-agent-runtime"
SESSION_HEADER = "x-amzn-bedrock-knowledge-base-session-id"
log = logging.getLogger("outcrop.rag")


def _knowledge(ctx: Context) -> Knowledge:
    if ctx.knowledge is None:
        raise errors.InvalidRequest("This server has no store to keep knowledge bases in.")
    return ctx.knowledge


async def _body(request: Request, operation: str, path: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body as botocore's model for `operation` says it must be, path parameters checked with it."""
    return checked(await read_json(request, {}), operation, path)


def checked(body: object, operation: str, path: dict[str, Any] | None = None) -> dict[str, Any]:
    """`body` if botocore's model for `operation` takes it (with the path parameters); InvalidRequest otherwise."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    found = problems({**body, **(path or {})}, input_shape(SERVICE, operation), "body")
    for k in path or {}:
        found = [f.replace(f"body.{k} ", f"{k} (in the path) ", 1) for f in found]
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]) + more)
    return body


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


async def retrieved(ctx: Context, principal: Principal, kb_id: str, raw: object) -> dict[str, Any]:
    """Retrieve's answer for `principal`, `raw` its request body (the web console's test panel too)."""
    knowledge = _knowledge(ctx)
    body = checked(raw, "Retrieve", {"knowledgeBaseId": kb_id})
    query, config, ref = convert.decode_retrieve(body)
    marks = fingerprint(kb_id, query, body.get("retrievalConfiguration"), body.get("guardrailConfiguration"))
    offset = token_offset(body.get("nextToken"), marks)
    intervened: bool | None = None
    if ref is not None:
        blocked, intervened = await guard_query(knowledge, ref, query)
        if blocked:
            return convert.retrieve_response([], None, True)
    page = await retrieve(knowledge, kb_id, principal, query, config, offset=offset)
    passages = page.passages
    if ref is not None:
        passages, masked = await guard_passages(knowledge, ref, passages)
        intervened = bool(intervened or masked)
    token = page_token(page.next_offset, marks) if page.next_offset is not None else None
    return convert.retrieve_response(passages, token, intervened)


async def retrieve_op(ctx: Context, request: Request, knowledgeBaseId: str) -> Response:
    out = await retrieved(ctx, caller(request), knowledgeBaseId, await read_json(request, {}))
    return json_body(out, headers=_request_id())


def _rag(ctx: Context) -> Rag:
    knowledge = _knowledge(ctx)
    return Rag(knowledge, Sessions(knowledge.catalog.engine))


async def answered(ctx: Context, principal: Principal, raw: object) -> RagResult:
    """RetrieveAndGenerate's answer for `principal`, `raw` its request body (the web console's test panel too)."""
    return await _rag(ctx).answer(convert.decode_rag(checked(raw, "RetrieveAndGenerate")), principal)


async def retrieve_and_generate_op(ctx: Context, request: Request) -> Response:
    result = await answered(ctx, caller(request), await read_json(request, {}))
    t = result.timings  # the standard Server-Timing header: where the time went (benchmarks/knowledge_rag.py)
    steps = {"session": t.session_ms, "retrieve": t.retrieve_ms, "prompt": t.prompt_ms, "generate": t.generate_ms}
    timing = ", ".join(f"{name};dur={ms:.1f}" for name, ms in steps.items())
    return json_body(convert.rag_response(result), headers={**_request_id(), "Server-Timing": timing})


async def retrieve_and_generate_stream_op(ctx: Context, request: Request) -> Response:
    rag_request = convert.decode_rag(await _body(request, "RetrieveAndGenerateStream"))
    stream = await _rag(ctx).start(rag_request, caller(request))

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for event in stream:
                for frame in convert.encode_event(event):
                    yield frame
        except errors.OutcropError as exc:
            yield encode_stream_error(exc)
        except Exception as exc:
            yield encode_stream_error(errors.model_failure("RetrieveAndGenerateStream failed", exc, log))
        finally:
            await stream.aclose()

    headers = {SESSION_HEADER: stream.session_id, **_request_id()}
    return StreamingResponse(frames(), media_type=eventstream.CONTENT_TYPE, headers=headers)


_STREAM = "RetrieveAndGenerateStream"
ROUTES = [
    route("POST", "/knowledgebases/{knowledgeBaseId}/retrieve", retrieve_op, DIALECT),
    route("POST", "/retrieveAndGenerate", retrieve_and_generate_op, DIALECT, invocation="RetrieveAndGenerate"),
    route("POST", "/retrieveAndGenerateStream", retrieve_and_generate_stream_op, DIALECT, invocation=_STREAM),
]
