"""Usage: requests and tokens by model and day, from the usage records every invocation leaves (the console's own
playground calls included). An administrator sees everyone's, or one principal's (?principal=NAME); anyone else
only their own (auth.access.readable_owner, the rule the access-request API follows too)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.auth.access import readable_owner
from outcrop.console.web import Visit, view
from outcrop.metering.usage import summarize

PAGE = "usage"
DAYS = 30


async def index(visit: Visit) -> Response:
    query = visit.request.query_params
    owner = readable_owner(visit.principal, query.get("principal") or None)
    try:
        since = date.fromisoformat(query["since"]) if query.get("since") else date.today() - timedelta(days=DAYS)
    except ValueError:
        raise errors.InvalidRequest("since must be a date, YYYY-MM-DD.") from None
    recorder = visit.ctx.inference.usage
    rows: list[dict[str, Any]] = []
    group_by = ("model", "day") if owner is not None else ("principal", "model", "day")
    if recorder is not None:
        await recorder.flush()
        rows = await asyncio.to_thread(summarize, recorder.engine, group_by, since, owner)
    totals = {k: sum(int(r[k]) for r in rows) for k in ("requests", "input_tokens", "output_tokens", "errors")}
    return visit.render("usage.html", title="Usage", rows=rows, totals=totals, owner=owner, since=since.isoformat(),
                        recorded=recorder is not None, by_principal=owner is None)  # fmt: skip


ROUTES = [view("GET", "/console/usage", index)]
