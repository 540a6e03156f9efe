"""OpenAI API routes under /v1. Thin: parse, call inference, encode."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop.api.http import Context, caller, guardrail_extras, header_guardrails, json_body, read_json, route
from outcrop.api.openai import convert
from outcrop.api.streaming import event_response
from outcrop.auth.access import WIRE_STATES
from outcrop.conversation import ChatRequest
from outcrop.registry import provider_of

DIALECT = "openai"
SSE = "text/event-stream"


async def _answer(ctx: Context, request: Request, chat: ChatRequest, body: Any, whole: Any, chunks: Any) -> Response:
    """Chat completions and completions alike: the whole answer, or its server-sent events."""
    chat = header_guardrails(request, chat)
    if not body.stream:
        result = await ctx.inference.complete(chat, caller(request))
        headers, extra = guardrail_extras(result)
        return json_body({**whole(body.model, result), **extra}, headers=headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = await ctx.inference.stream(chat, caller(request))
    return event_response(
        stream, chunks(body.model, include_usage), convert.encode_stream_error, SSE, closing=convert.DONE
    )


async def chat_completions(ctx: Context, request: Request) -> Response:
    chat, body = convert.decode_chat(await read_json(request))
    return await _answer(ctx, request, chat, body, convert.encode_chat, convert.ChatStream)


async def completions(ctx: Context, request: Request) -> Response:
    chat, body = convert.decode_completion(await read_json(request))
    return await _answer(ctx, request, chat, body, convert.encode_completion, convert.CompletionStream)


async def embeddings(ctx: Context, request: Request) -> Response:
    embed, body = convert.decode_embeddings(await read_json(request))
    result = await ctx.inference.embed(embed, caller(request))
    return json_body(convert.encode_embeddings(body.model, result, body.encoding_format))


async def moderations(ctx: Context, request: Request) -> Response:
    """OpenAI's moderation endpoint, answered by the guardrails' content classifier (guardrails/moderation.py)."""
    from outcrop.guardrails import moderation
    from outcrop.guardrails.runtime import require

    texts, model = convert.decode_moderation(await read_json(request), moderation.MODELS)  # any caller, as on OpenAI
    results = await require(ctx.inference.guardrails).checker.moderate(texts)
    return json_body(moderation.response(model, results))


def _model(ctx: Context, name: str) -> dict[str, object]:
    state = WIRE_STATES[ctx.access.state(ctx.registry.resolve(name))]
    return {"id": name, "object": "model", "created": 0, "owned_by": provider_of(name), "access": state}


async def list_models(ctx: Context, request: Request) -> Response:
    who = caller(request)
    names = [n for n in ctx.registry.names() if ctx.access.allowed(who, ctx.registry.resolve(n))]
    return json_body({"object": "list", "data": [_model(ctx, n) for n in names]})


async def get_model(ctx: Context, request: Request, model: str) -> Response:
    ctx.access.check(caller(request), ctx.registry.resolve(model))
    return json_body(_model(ctx, model))


ROUTES = [
    route("POST", "/v1/chat/completions", chat_completions, DIALECT, invocation="ChatCompletions"),
    route("POST", "/v1/completions", completions, DIALECT, invocation="Completions"),
    route("POST", "/v1/embeddings", embeddings, DIALECT, invocation="Embeddings"),
    route("POST", "/v1/moderations", moderations, DIALECT),
    route("GET", "/v1/models", list_models, DIALECT),
    route("GET", "/v1/models/{model}", get_model, DIALECT),
]
