"""Usage: requests and tokens a day by model and by key, latency percentiles per model, errors by type, drawn as
charts (charts.py, inline SVG) over a date range, and the same records as CSV. All from the usage records every
invocation leaves (metering.usage: summarize, latency_percentiles; the console's own playground calls included).

An administrator sees everyone's, or one principal's (?principal=NAME); anyone else only their own
(auth.access.readable_owner, the rule the access-request API follows too), the CSV export included.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.auth.access import readable_owner
from outcrop.console import charts
from outcrop.console.web import Visit, view
from outcrop.metering.usage import latency_percentiles, summarize

PAGE = "usage"
DAYS = 30  # the range shown when none is asked for: the last 30 days, today included
MAX_DAYS = 366  # a longer range is refused (a bar a day)
PERCENTILES = (50, 90, 99)
CSV_FIELDS = ("day", "principal", "key", "model", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
              "cache_write_tokens", "errors", "avg_latency_ms")  # fmt: skip


@dataclass(frozen=True)
class Scope:
    owner: str | None  # whose records: None = everyone's (administrators only)
    since: date
    until: date


def _day(raw: str | None, default: date, name: str) -> date:
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise errors.InvalidRequest(f"{name} must be a date, YYYY-MM-DD.") from None


def _scope(visit: Visit) -> Scope:
    query = visit.request.query_params
    owner = readable_owner(visit.principal, query.get("principal") or None)
    today = datetime.now(UTC).date()  # records are dated in UTC
    until = _day(query.get("until"), today, "until")
    since = _day(query.get("since"), until - timedelta(days=DAYS - 1), "since")
    if since > until:
        raise errors.InvalidRequest("since must be on or before until.")
    if (until - since).days >= MAX_DAYS:
        raise errors.InvalidRequest(f"Choose a range of at most {MAX_DAYS} days.")
    return Scope(owner, since, until)


def _key_name(row: dict[str, Any]) -> str:
    """A key as the charts and the CSV name it: its id and its principal ("alice" alone for calls made without a
    key: local mode, or records from before keys were recorded)."""
    return f"{row['key']} ({row['principal']})" if row.get("key") else str(row["principal"])


def _read(engine: Any, scope: Scope) -> dict[str, Any]:
    """Every figure the page shows (in a worker thread: these are store reads)."""
    span = (scope.since, scope.owner, scope.until)
    by_model = summarize(engine, ("day", "model"), *span)
    by_key = summarize(engine, ("day", "principal", "key"), *span)
    by_status = summarize(engine, ("day", "status"), *span)
    models = summarize(engine, ("model",), *span)
    table = summarize(engine, ("model", "day") if scope.owner is not None else ("principal", "model", "day"), *span)
    latency = latency_percentiles(engine, scope.since, scope.until, scope.owner, PERCENTILES)
    return {"by_model": by_model, "by_key": by_key, "by_status": by_status, "models": models, "rows": table,
            "latency": latency}  # fmt: skip


def _charts(data: dict[str, Any], scope: Scope) -> list[charts.Chart]:
    day_list = charts.days(scope.since, scope.until)
    tokens = "input_tokens", "output_tokens"

    def per_day(rows: list[dict[str, Any]], name: Any, value: Any) -> list[tuple[str, str, float]]:
        return [(r["day"], name(r), value(r)) for r in rows]

    model, key = (lambda r: r["model"]), _key_name
    requests, total_tokens = (lambda r: r["requests"]), (lambda r: sum(r[t] for t in tokens))
    failed = [r for r in data["by_status"] if r["status"] != "ok"]
    latency = [(r["model"], [(f"p{p}", r[f"p{p}"]) for p in PERCENTILES]) for r in data["latency"]]
    calls_by_model, calls_by_key = per_day(data["by_model"], model, requests), per_day(data["by_key"], key, requests)
    models, keys = charts.ranked(calls_by_model), charts.ranked(calls_by_key)  # one colour a series, both charts
    return [
        charts.stacked_by_day("requests-by-model", "Requests a day, by model", "requests", day_list, calls_by_model),
        charts.stacked_by_day("tokens-by-model", "Tokens a day (in + out), by model", "tokens", day_list,
                              per_day(data["by_model"], model, total_tokens), models),
        charts.stacked_by_day("requests-by-key", "Requests a day, by key", "requests", day_list, calls_by_key),
        charts.stacked_by_day("tokens-by-key", "Tokens a day (in + out), by key", "tokens", day_list,
                              per_day(data["by_key"], key, total_tokens), keys),
        charts.grouped("latency", "Latency of successful calls, by model (ms)", "ms", latency),
        charts.stacked_by_day("errors-by-type", "Failed calls a day, by error", "errors", day_list,
                              per_day(failed, lambda r: r["status"], requests)),
    ]  # fmt: skip


def _errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each kind of failure: how many, and its share of all calls in the range."""
    total = sum(r["requests"] for r in data["models"])
    counts: dict[str, int] = {}
    for r in data["by_status"]:
        if r["status"] != "ok":
            counts[r["status"]] = counts.get(r["status"], 0) + r["requests"]
    return [{"status": s, "count": n, "rate": n / total if total else 0.0}
            for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]  # fmt: skip


async def _figures(visit: Visit, scope: Scope) -> dict[str, Any] | None:
    recorder = visit.ctx.inference.usage
    if recorder is None:
        return None
    await recorder.flush()  # what was buffered (failures, cancelled calls) is counted too
    return await asyncio.to_thread(_read, recorder.engine, scope)


async def index(visit: Visit) -> Response:
    scope = _scope(visit)
    data = await _figures(visit, scope)
    values: dict[str, Any] = {"owner": scope.owner, "since": scope.since.isoformat(), "until": scope.until.isoformat(),
                              "recorded": data is not None, "by_principal": scope.owner is None}  # fmt: skip
    if data is not None:
        rows = data["rows"]
        totals = {k: sum(int(r[k]) for r in rows) for k in ("requests", "input_tokens", "output_tokens", "errors")}
        latency = {r["model"]: r for r in data["latency"]}
        per_model = [{**m, "error_rate": m["errors"] / m["requests"] if m["requests"] else 0.0,
                      **{f"p{p}": latency.get(m["model"], {}).get(f"p{p}") for p in PERCENTILES}}
                     for m in data["models"]]  # fmt: skip
        values.update(rows=rows, totals=totals, charts=_charts(data, scope), per_model=per_model,
                      errors=_errors(data), percentiles=PERCENTILES)  # fmt: skip
    return visit.render("usage.html", title="Usage", **values)


def _csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


async def export(visit: Visit) -> Response:
    """The usage records of the range, a row per day, principal, key and model: what the page draws, as CSV."""
    scope = _scope(visit)
    recorder = visit.ctx.inference.usage
    if recorder is None:
        raise errors.InvalidRequest("This server records no usage (record_usage = false, or no store).")
    await recorder.flush()
    rows = await asyncio.to_thread(summarize, recorder.engine, ("day", "principal", "key", "model"), scope.since,
                                   scope.owner, scope.until)  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow([_csv_cell(r[f]) for f in CSV_FIELDS])
    who = scope.owner or "everyone"
    name = f"outcrop-usage-{who}-{scope.since.isoformat()}-{scope.until.isoformat()}.csv"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})  # fmt: skip


ROUTES = [
    view("GET", "/console/usage", index),
    view("GET", "/console/usage/export.csv", export),
]
