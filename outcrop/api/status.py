"""Outcrop's own endpoints: liveness and per-model queue state (for operators and tests)."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from outcrop import __version__, errors
from outcrop.api.http import Context, caller, json_body, route
from outcrop.engines.base import Embedder, Engine
from outcrop.metering.metrics import CONTENT_TYPE


async def healthz(ctx: Context, request: Request) -> Response:
    return json_body({"status": "ok", "version": __version__})


async def status(ctx: Context, request: Request) -> Response:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may read the server's status.")
    models = {}
    for spec in ctx.registry.specs():
        entry: dict[str, object] = {
            "loaded": False,
            "kind": spec.kind,
            "engine": spec.engine,
            "aliases": list(spec.aliases),
        }
        engine = ctx.registry.loaded().get(spec.id)
        if engine is not None:
            s = engine.stats()
            entry.update(
                loaded=True,
                in_flight=s.in_flight,
                slots=s.slots,
                queued=s.queued,
                max_queue=s.max_queue,
                completed=s.completed,
                cancelled=s.cancelled,
                kv_cells=s.kv_cells,
                kv_cells_used=s.kv_cells_used,
                prompt_tokens=s.prompt_tokens,
                prompt_cache_hit_tokens=s.prompt_cache_hit_tokens,
            )
            if spec.kind == "embedding":
                entry["dimensions"] = cast(Embedder, engine).dimensions
            else:
                entry["context_length"] = cast(Engine, engine).capabilities.context_length
        models[spec.id] = entry
    return json_body({"version": __version__, "models": models})


async def metrics(ctx: Context, request: Request) -> Response:
    if not caller(request).is_admin:
        raise errors.AccessDenied(
            "Only an administrator may read metrics (scrape with an admin key as a bearer token)."
        )
    return Response(ctx.inference.metrics.render(), media_type=CONTENT_TYPE)


ROUTES = [
    route("GET", "/healthz", healthz, "bedrock", public=True),
    route("GET", "/outcrop/status", status, "bedrock"),
    route("GET", "/metrics", metrics, "bedrock"),
]
