"""Models: every served model with its ids, engine, context length, capabilities, load (administrators, as
GET /outcrop/status) and what this key may do with it (AccessControl, as the APIs decide; early access is
requested through the same AccessControl.request as POST /outcrop/v1/access-requests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, json_body
from outcrop.auth.principal import Principal
from outcrop.console.web import Visit, view

PAGE = "models"


@dataclass(frozen=True)
class ModelRow:
    id: str
    aliases: tuple[str, ...]
    engine: str
    kind: str  # chat | embedding
    context_length: int | None  # None: not known until the model is loaded (the configured n_ctx is shown)
    tools: bool | None
    grammar: bool | None
    state: str  # ga | early | disabled
    access: str  # available (GA) | granted | pending | request | disabled
    loaded: bool


async def _allowed(ctx: Context, principal: Principal, model_id: str) -> bool:
    cached = ctx.access.cached(principal, model_id)  # no store read for GA models or recent decisions
    return cached if cached is not None else await asyncio.to_thread(ctx.access.allowed, principal, model_id)


async def _pending(ctx: Context, principal: Principal) -> set[str]:
    if ctx.access.engine is None or "early" not in ctx.access.states.values():
        return set()
    found = await asyncio.to_thread(ctx.access.requests, "pending", principal.name)
    return {r.model_id for r in found}


async def model_rows(ctx: Context, principal: Principal) -> list[ModelRow]:
    """The catalog as `principal` sees it: disabled models only for administrators; early-access ones with
    whether this principal has access, has asked for it, or may ask."""
    status = ctx.registry.status()
    pending = await _pending(ctx, principal)
    loaded = ctx.registry.loaded()
    rows = []
    for spec in ctx.registry.specs():
        state = ctx.access.state(spec.id)
        if state == "disabled" and not principal.is_admin:
            continue
        if state == "disabled":
            access = "disabled"
        elif state == "ga":
            access = "available"
        elif await _allowed(ctx, principal, spec.id):
            access = "granted"
        else:
            access = "pending" if spec.id in pending else "request"
        engine: Any = loaded.get(spec.id)
        caps = getattr(engine, "capabilities", None)
        embedding = spec.kind == "embedding"
        rows.append(ModelRow(
            spec.id, spec.aliases, spec.engine, spec.kind,
            caps.context_length if caps else status[spec.id].get("context_length"),
            False if embedding else (caps.tools if caps else None),
            False if embedding else (caps.grammar if caps else None),
            state, access, engine is not None,
        ))  # fmt: skip
    return rows


def _load(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("loaded", "in_flight", "slots", "queued", "max_queue", "completed")
    return {k: entry[k] for k in keys if k in entry}


async def index(visit: Visit, message: str | None = None, status: int = 200) -> Response:
    rows = await model_rows(visit.ctx, visit.principal)
    requested = visit.request.query_params.get("requested")
    if requested and not any(r.id == requested for r in rows):
        requested = None
    load = {k: _load(v) for k, v in visit.ctx.registry.status().items()} if visit.principal.is_admin else {}
    return visit.render("models.html", status=status, title="Models", rows=rows, load=load, requested=requested,
                        message=message, keys=not visit.sessions.local)  # fmt: skip


async def load(visit: Visit) -> Response:
    """Slots and queues now, for the page to refresh (administrators: the same rule as GET /outcrop/status)."""
    if not visit.principal.is_admin:
        raise errors.AccessDenied("Only an administrator may read the server's status.")
    return json_body({"models": {k: _load(v) for k, v in visit.ctx.registry.status().items()}})


async def request_access(visit: Visit) -> Response:
    form = await visit.form()
    reason = form.get("reason", "").strip() or None
    try:
        model_id = visit.ctx.registry.resolve(form.get("model", ""))
        await asyncio.to_thread(visit.ctx.access.request, visit.principal, model_id, reason)
    except errors.InvalidRequest as exc:  # already granted, generally available, no store: said on the page
        return await index(visit, exc.message, 400)
    return visit.redirect("/console/models", requested=model_id)


ROUTES = [
    view("GET", "/console/models", index),
    view("GET", "/console/models/load", load, json=True),
    view("POST", "/console/models/access-requests", request_access),
]
