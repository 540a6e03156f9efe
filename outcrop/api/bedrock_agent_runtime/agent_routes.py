"""bedrock-agent-runtime's agent routes: InvokeAgent (an agent of the control plane, through
`ctx.agents.definition(agentId, agentAliasId)`) and InvokeInlineAgent (the agent defined in the request). Thin:
check the body against botocore's model, build the definition and the turn, run it on the agent runtime
(outcrop/agents/loop.py), encode its events as an AWS event stream (agent_convert.py).

Everything that can fail before the first byte (bad body, unknown agent or alias, a model that may not be used, a
session of another caller or one in use, results for no pending returnControl) is a plain HTTP error in
bedrock-agent-runtime's shape; after it, an exception event of the `completion` union (errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from outcrop import errors
from outcrop.agents import definition as defs
from outcrop.agents.loop import AgentRuntime, Turn
from outcrop.agents.memory import Memories, SqlMemory
from outcrop.agents.sessions import MemorySessions, SessionStore, SqlSessions
from outcrop.api.bedrock import eventstream
from outcrop.api.bedrock.shapes import input_shape, problems
from outcrop.api.bedrock_agent_runtime import agent_convert
from outcrop.api.bedrock_agent_runtime.errors import encode_stream_error
from outcrop.api.http import Context, caller, json_body, read_json, route

DIALECT = "bedrock-agent-runtime"
SERVICE = "bedrock-agent-runtime"
log = logging.getLogger("outcrop.agents")


def _store_engine(ctx: Context) -> Any:
    """The store agent sessions are kept in: the server's database, wherever the context holds it."""
    for holder in (ctx.agents, ctx.knowledge.catalog if ctx.knowledge else None, ctx.guardrails):
        engine = getattr(holder, "engine", None)
        if engine is not None:
            return engine
    return None


def runtime(ctx: Context) -> AgentRuntime:
    """The server's agent runtime, made on first use."""
    if ctx.agent_runtime is None:
        engine = _store_engine(ctx)
        sessions: SessionStore = MemorySessions()
        memory = None
        if engine is not None:
            sessions = kept = SqlSessions(engine)
            memory = Memories(SqlMemory(engine), kept, ctx.inference)
        ctx.agent_runtime = AgentRuntime(ctx.inference, sessions, ctx.knowledge, memory=memory)
    return ctx.agent_runtime  # type: ignore[no-any-return]


async def _body(request: Request, operation: str, path: dict[str, Any]) -> dict[str, Any]:
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    found = problems({**body, **path}, input_shape(SERVICE, operation), "body")
    for k in path:
        found = [f.replace(f"body.{k} ", f"{k} (in the path) ", 1) for f in found]
    if found:
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]) + more)
    return body


async def _answer(ctx: Context, request: Request, turn: Turn) -> Response:
    stream = await runtime(ctx).start(turn, caller(request))
    definition = turn.definition

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for event in stream:
                frame = agent_convert.encode_event(event, definition, turn.session_id)
                if frame is not None:
                    yield frame
        except errors.OutcropError as exc:
            yield encode_stream_error(exc)
        except Exception as exc:
            yield encode_stream_error(errors.model_failure("The agent failed", exc, log))
        finally:
            await stream.aclose()

    headers = {"x-amzn-bedrock-agent-content-type": "application/json", "x-amz-bedrock-agent-session-id":
               turn.session_id, "x-amzn-RequestId": str(uuid.uuid4())}  # fmt: skip
    return StreamingResponse(frames(), media_type=eventstream.CONTENT_TYPE, headers=headers)


async def invoke_inline_agent_op(ctx: Context, request: Request, sessionId: str) -> Response:
    body = await _body(request, "InvokeInlineAgent", {"sessionId": sessionId})
    definition = defs.from_inline_request(body, getattr(ctx.settings, "agent_lambda_urls", None))
    return await _answer(ctx, request, agent_convert.decode_turn(definition, sessionId, body, "inlineSessionState"))


async def invoke_agent_op(ctx: Context, request: Request, agentId: str, agentAliasId: str, sessionId: str) -> Response:
    path = {"agentId": agentId, "agentAliasId": agentAliasId, "sessionId": sessionId}
    body = await _body(request, "InvokeAgent", path)
    if ctx.agents is None:
        raise errors.NotFound(f"Agent {agentId} not found: this server keeps no agents (it has no store).")
    definition: defs.AgentDefinition = await _definition(ctx, agentId, agentAliasId)
    return await _answer(ctx, request, agent_convert.decode_turn(definition, sessionId, body, "sessionState"))


async def _definition(ctx: Context, agent_id: str, alias_id: str) -> defs.AgentDefinition:
    """The control plane's definition of the agent behind this alias: the one kept built when a read cheap enough
    for the event loop shows it unchanged, else built (or checked) off the event loop."""
    agents = ctx.agents
    assert agents is not None
    kept = agents.kept_definition(agent_id, alias_id)
    return kept if kept is not None else await asyncio.to_thread(agents.definition, agent_id, alias_id)


def _memory(ctx: Context, request: Request, operation: str, path: dict[str, str]) -> tuple[Memories, dict[str, Any]]:
    """The runtime's memory and the operation's query parameters, checked against botocore's model."""
    query: dict[str, Any] = dict(request.query_params)
    if "maxItems" in query:
        try:
            query["maxItems"] = int(query["maxItems"])
        except ValueError:
            raise errors.InvalidRequest("maxItems must be an integer.") from None
    found = problems({**query, **path}, input_shape(SERVICE, operation), "request")
    if found:
        raise errors.InvalidRequest(f"{len(found)} validation error(s) detected: " + "; ".join(found[:5]))
    memory = runtime(ctx).memory
    if ctx.agents is None or memory is None:
        raise errors.NotFound(f"Agent {path['agentId']} not found: this server keeps no agents (it has no store).")
    return memory, query


async def get_agent_memory_op(ctx: Context, request: Request, agentId: str, agentAliasId: str) -> Response:
    """GetAgentMemory: the caller's session summaries of one memoryId, newest first (sessions that reached their
    idle TTL are summarized first)."""
    memory, query = _memory(ctx, request, "GetAgentMemory", {"agentId": agentId, "agentAliasId": agentAliasId})
    assert ctx.agents is not None
    await asyncio.to_thread(ctx.agents.alias, agentId, agentAliasId)  # ResourceNotFound for unknown ids
    await memory.sweep()
    items, token = await asyncio.to_thread(memory.store.page, agentId, query["memoryId"], caller(request).name,
                                           int(query.get("maxItems") or 100), query.get("nextToken"))  # fmt: skip
    contents = [{"sessionSummary": {"memoryId": s.memory_id, "sessionId": s.session_id, "summaryText": s.text,
                                    "sessionStartTime": s.session_start.isoformat(),
                                    "sessionExpiryTime": s.session_expiry.isoformat()}} for s in items]  # fmt: skip
    return json_body({"memoryContents": contents, **({"nextToken": token} if token else {})})


async def delete_agent_memory_op(ctx: Context, request: Request, agentId: str, agentAliasId: str) -> Response:
    """DeleteAgentMemory: the caller's summaries of one memoryId (or one session of it; neither: all of the
    agent's)."""
    memory, query = _memory(ctx, request, "DeleteAgentMemory", {"agentId": agentId, "agentAliasId": agentAliasId})
    assert ctx.agents is not None
    await asyncio.to_thread(ctx.agents.alias, agentId, agentAliasId)
    await asyncio.to_thread(memory.store.delete, agentId, caller(request).name, query.get("memoryId"),
                            query.get("sessionId"))  # fmt: skip
    return json_body({}, 202)


_INVOKE = "/agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text"
_MEMORIES = "/agents/{agentId}/agentAliases/{agentAliasId}/memories"
ROUTES = [
    route("POST", _INVOKE, invoke_agent_op, DIALECT, invocation="InvokeAgent"),
    route("GET", _MEMORIES, get_agent_memory_op, DIALECT),
    route("DELETE", _MEMORIES, delete_agent_memory_op, DIALECT),
    route("POST", "/agents/{sessionId}", invoke_inline_agent_op, DIALECT, invocation="InvokeInlineAgent"),
]
