"""Outcrop's own endpoints: liveness and per-model queue state (for operators and tests)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from outcrop import __version__, errors
from outcrop.api.http import Context, caller, json_body, route
from outcrop.metering.metrics import CONTENT_TYPE


async def healthz(ctx: Context, request: Request) -> Response:
    return json_body({"status": "ok", "version": __version__})


async def status(ctx: Context, request: Request) -> Response:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may read the server's status.")
    return json_body({"version": __version__, "models": ctx.registry.status()})


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
