"""Playground: chat with any chat model this key may use, streamed as it is written, through Inference.stream
as the API routes do (access, quotas, guardrails, usage records: the console's calls are metered under the
dialect "console"); two models side by side on the same prompt (the page sends the turn to each); and the
request as boto3, openai and curl code."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from outcrop.api.http import json_body
from outcrop.api.streaming import event_response
from outcrop.console import chat
from outcrop.console.snippets import snippets
from outcrop.console.views.models import model_rows
from outcrop.console.web import Visit, view

PAGE = "playground"


async def _guardrails(visit: Visit) -> list[dict[str, Any]]:
    store = visit.ctx.guardrails
    if store is None:
        return []

    def read() -> list[dict[str, Any]]:
        return [{"id": g.id, "name": g.name, "versions": [v.version for v in store.list(g.id)]} for g in store.list()]

    return await asyncio.to_thread(read)


async def index(visit: Visit) -> Response:
    rows = await model_rows(visit.ctx, visit.principal)
    models = [r.id for r in rows if r.kind == "chat" and r.access in ("available", "granted")]
    wanted = visit.request.query_params.get("model")
    selected = wanted if wanted in models else (models[0] if models else None)
    guardrails = await _guardrails(visit)
    return visit.render("playground.html", title="Playground", models=models, selected=selected,
                        guardrails=guardrails, data={"guardrails": guardrails})  # fmt: skip


async def chat_stream(visit: Visit) -> Response:
    body = chat.decode(await visit.json())
    stream = await visit.ctx.inference.stream(chat.chat_request(body), visit.principal)
    return event_response(stream, chat.frames(stream), chat.error_line, chat.MEDIA_TYPE,
                          {"X-Accel-Buffering": "no"})  # fmt: skip


async def code(visit: Visit) -> Response:
    body = chat.decode(await visit.json())
    return json_body(snippets(body, visit.base_url, keys=not visit.sessions.local))


ROUTES = [
    view("GET", "/console/playground", index),
    view("POST", "/console/playground/chat", chat_stream, json=True),
    view("POST", "/console/playground/code", code, json=True),
]
