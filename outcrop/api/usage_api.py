"""Usage as JSON for administrators: GET /outcrop/v1/usage?groupBy=principal,model,day&since=YYYY-MM-DD."""

from __future__ import annotations

import asyncio
from datetime import date

from starlette.requests import Request
from starlette.responses import Response

from outcrop import errors
from outcrop.api.http import Context, caller, json_body, route
from outcrop.metering.usage import summarize


async def usage(ctx: Context, request: Request) -> Response:
    if not caller(request).is_admin:
        raise errors.AccessDenied("Only an administrator may read usage.")
    recorder = ctx.inference.usage
    if recorder is None:
        raise errors.InvalidRequest("This server records no usage (it has no store).")
    group_by = tuple(g for g in request.query_params.get("groupBy", "principal,model,day").split(",") if g)
    since_raw = request.query_params.get("since")
    try:
        since = date.fromisoformat(since_raw) if since_raw else None
    except ValueError as exc:
        raise errors.InvalidRequest(f"since must be a date, YYYY-MM-DD: {exc}") from exc
    await recorder.flush()
    try:
        rows = await asyncio.to_thread(summarize, recorder.engine, group_by, since)
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from exc
    return json_body({"groupBy": list(group_by), "usage": rows, "buffered": recorder.recorded - recorder.written})


ROUTES = [route("GET", "/outcrop/v1/usage", usage, "bedrock")]
