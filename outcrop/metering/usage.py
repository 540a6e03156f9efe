"""Usage records: every invocation, written in batches so recording never blocks a request.

`record()` appends to a bounded in-memory buffer and returns at once. A background task writes the
buffer to the store every `flush_interval_s` (default 1 s), so a crash loses at most the last interval's
records. If the store falls behind and the buffer fills, the oldest unwritten records are dropped and
counted in `dropped` (and logged), rather than slowing requests down or growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, Integer, cast, func, insert, select

from outcrop.store.schema import usage_records

log = logging.getLogger("outcrop.usage")


class Periodic:
    """A background task that calls `tick()` every `interval_s`, and `flush()` once more on stop."""

    interval_s: float = 1.0
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> None: ...

    async def flush(self) -> None: ...

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.tick()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


@dataclass(frozen=True)
class UsageRecord:
    at: datetime
    principal: str
    model_id: str
    dialect: str
    operation: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int  # of input_tokens, those taken from the prompt cache
    cache_write_tokens: int  # of input_tokens, those computed up to the caller's last cache point
    latency_ms: int
    ttft_ms: int | None
    status: str


class UsageRecorder(Periodic):
    def __init__(self, engine: Engine, *, max_buffer: int = 100_000, flush_interval_s: float = 1.0) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self._buffer: deque[UsageRecord] = deque(maxlen=max_buffer)
        self.recorded = 0
        self.written = 0
        self.dropped = 0
        self.interval_s = flush_interval_s
        self._task: asyncio.Task[None] | None = None

    def record(self, rec: UsageRecord) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("usage buffer full: %d records dropped so far", self.dropped)
        self._buffer.append(rec)
        self.recorded += 1

    def _write(self, batch: list[UsageRecord]) -> None:
        with self.engine.begin() as db:
            db.execute(insert(usage_records), [asdict(r) for r in batch])

    async def flush(self) -> None:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), 5000))]
            try:
                await asyncio.to_thread(self._write, batch)
                self.written += len(batch)
            except Exception:
                log.exception("could not write %d usage records; keeping them for the next flush", len(batch))
                self._buffer.extendleft(reversed(batch))
                return

    async def tick(self) -> None:
        await self.flush()


GROUPS = {"principal": usage_records.c.principal, "model": usage_records.c.model_id, "dialect": usage_records.c.dialect}


def summarize(
    engine: Engine, group_by: tuple[str, ...] = ("principal", "model", "day"), since: date | None = None
) -> list[dict[str, Any]]:
    """Usage totals grouped by principal, model, dialect and/or day."""
    columns: list[Any] = []
    for name in group_by:
        if name == "day":
            if engine.dialect.name == "sqlite":
                columns.append(func.date(usage_records.c.at).label("day"))
            else:
                columns.append(cast(func.date_trunc("day", usage_records.c.at), usage_records.c.at.type).label("day"))
        elif name in GROUPS:
            columns.append(GROUPS[name].label(name))
        else:
            raise ValueError(f"cannot group usage by {name!r}; use {sorted([*GROUPS, 'day'])}")
    totals = [
        func.count().label("requests"),
        func.sum(usage_records.c.input_tokens).label("input_tokens"),
        func.sum(usage_records.c.output_tokens).label("output_tokens"),
        func.sum(usage_records.c.cache_read_tokens).label("cache_read_tokens"),
        func.sum(usage_records.c.cache_write_tokens).label("cache_write_tokens"),
        func.sum(cast(usage_records.c.status != "ok", Integer)).label("errors"),
        func.avg(usage_records.c.latency_ms).label("avg_latency_ms"),
    ]
    query = select(*columns, *totals).group_by(*columns).order_by(*columns)
    if since is not None:
        query = query.where(usage_records.c.at >= datetime(since.year, since.month, since.day, tzinfo=UTC))
    with engine.connect() as db:
        rows = db.execute(query).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        if "day" in item and item["day"] is not None and not isinstance(item["day"], str):
            item["day"] = item["day"].date().isoformat() if isinstance(item["day"], datetime) else str(item["day"])
        item["avg_latency_ms"] = round(float(item["avg_latency_ms"] or 0), 1)
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "errors"):
            item[k] = int(item[k] or 0)
        out.append(item)
    return out
