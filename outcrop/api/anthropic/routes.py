"""Anthropic API routes. Thin: parse, call inference, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from outcrop.api.anthropic import convert
from outcrop.api.http import Context, caller, guardrail_extras, header_guardrails, json_body, read_json, route
from outcrop.api.streaming import event_response

DIALECT = "anthropic"


async def messages(ctx: Context, request: Request) -> Response:
    chat, stream = convert.decode_request(await read_json(request))
    chat = header_guardrails(request, chat)
    model = chat.model
    if not stream:
        result = await ctx.inference.complete(chat, caller(request))
        headers, extra = guardrail_extras(result)
        return json_body({**convert.encode_response(model, result), **extra}, headers=headers)
    events = await ctx.inference.stream(chat, caller(request))
    return event_response(
        events,
        convert.StreamEncoder(model),
        convert.encode_stream_error,
        "text/event-stream",
        {"Cache-Control": "no-cache"},
    )


async def count_tokens(ctx: Context, request: Request) -> Response:
    chat = convert.decode_count_tokens(await read_json(request))
    return json_body({"input_tokens": await ctx.inference.count_tokens(chat, caller(request))})


ROUTES = [
    route("POST", "/v1/messages", messages, DIALECT, invocation="Messages"),
    route("POST", "/v1/messages/count_tokens", count_tokens, DIALECT),
]
