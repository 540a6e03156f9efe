"""Usage records: one per invocation, each written exactly once.

A completed invocation (the model finished its answer: the stream's last event, or the whole answer of a
non-streaming call, or an embedding) is `commit()`ted: its record is in the store before the answer's last
frame leaves for the client, so whatever a client received in full is recorded even if the process is killed
the next moment. Commits that arrive together are written together (one transaction, group commit), so the
wait is one short write however many finish at once. Should the store not answer within `commit_timeout_s`
(PostgreSQL restarting, say), the answer goes out anyway and the record stays in the buffer for the next
flush: recorded once the store is back, lost only if the process dies before that.

Everything else (failures, cancelled calls) is `record()`ed: appended to a bounded in-memory buffer that a
background task writes every `flush_interval_s` (default 1 s); a crash loses at most the last interval's.
If the store falls behind and the buffer fills, the oldest unwritten records are dropped and counted in
`dropped` (and logged), rather than slowing requests down or growing without bound.

Each record carries a unique `request_id` and rows are inserted with ON CONFLICT DO NOTHING on it, so a batch
written again (its commit went through but the acknowledgement was lost with the connection) adds nothing.
Every batch is one transaction: a process killed while writing leaves all of it or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, case, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from outcrop import errors
from outcrop.store.schema import usage_records

log = logging.getLogger("outcrop.usage")


class Periodic:
    """A background task that calls `tick()` every `interval_s`, and `flush()` once more on stop. A tick that fails
    does not end it."""

    interval_s: float = 1.0
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> None: ...

    async def flush(self) -> None: ...

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except errors.ServiceUnavailable:
                pass  # the store is down (it logged why): the next tick tries again
            except Exception:
                log.exception("%s failed; trying again in %g s", type(self).__name__, self.interval_s)

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
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # unique: written at most once
    credential_id: str | None = None  # the key the call was made with (None in local mode)


class UsageRecorder(Periodic):
    def __init__(self, engine: Engine, *, max_buffer: int = 100_000, flush_interval_s: float = 1.0,
                 commit_timeout_s: float = 5.0) -> None:  # fmt: skip
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.commit_timeout_s = commit_timeout_s
        self._buffer: deque[UsageRecord] = deque(maxlen=max_buffer)
        self._waiting: dict[str, asyncio.Future[None]] = {}  # request_id -> its commit(), until written
        self._lock: asyncio.Lock | None = None
        self._failing = False
        self.recorded = 0
        self.written = 0
        self.dropped = 0
        self.interval_s = flush_interval_s
        self._task: asyncio.Task[None] | None = None

    def record(self, rec: UsageRecord) -> None:
        """Buffer `rec` for the next flush (at most `flush_interval_s` away)."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("usage buffer full: %d records dropped so far", self.dropped)
            waiting = self._waiting.pop(self._buffer[0].request_id, None)
            if waiting is not None and not waiting.done():
                waiting.set_exception(errors.ServiceUnavailable("usage record dropped: the buffer is full"))
        self._buffer.append(rec)
        self.recorded += 1

    async def commit(self, rec: UsageRecord) -> bool:
        """Write `rec` now (with whatever else is waiting): True once it is in the store; False if the store did
        not take it within `commit_timeout_s` (it stays buffered, so a later flush writes it)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody may be left to read it
        self._waiting[rec.request_id] = done
        self.record(rec)
        try:
            async with asyncio.timeout(self.commit_timeout_s):
                await asyncio.shield(self._flush(until=done))  # a caller that goes away leaves the write running
        except TimeoutError:
            log.warning("the store took over %g s to write a usage record; it stays buffered", self.commit_timeout_s)
        finally:
            self._waiting.pop(rec.request_id, None)  # from now on, an ordinary buffered record
        return done.done() and not done.cancelled() and done.exception() is None

    def _write(self, batch: list[UsageRecord]) -> None:
        upsert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with self.engine.begin() as db:
            db.execute(upsert(usage_records).on_conflict_do_nothing(index_elements=["request_id"]),
                       [asdict(r) for r in batch])  # fmt: skip

    async def flush(self) -> None:
        await self._flush()

    async def _flush(self, until: asyncio.Future[None] | None = None) -> None:
        """Write the buffer, one batch after another; one writer at a time (a commit that arrives meanwhile finds
        its record written by the batch in progress, or by the next one)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while self._buffer and (until is None or not until.done()):
                batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), 5000))]
                try:
                    await asyncio.to_thread(self._write, batch)
                except Exception as exc:
                    self._buffer.extendleft(reversed(batch))
                    if isinstance(exc, errors.ServiceUnavailable):  # the store's log line says why
                        if not self._failing:
                            log.warning("could not write %d usage records; keeping them for the next flush",
                                        len(batch))  # fmt: skip
                    else:
                        log.exception("could not write %d usage records; keeping them for the next flush", len(batch))
                    self._failing = True
                    return
                if self._failing:
                    log.info("usage records written again")
                self._failing = False
                self.written += len(batch)
                for rec in batch:
                    waiting = self._waiting.pop(rec.request_id, None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)

    async def tick(self) -> None:
        await self.flush()


GROUPS = {"principal": usage_records.c.principal, "model": usage_records.c.model_id, "dialect": usage_records.c.dialect,
          "key": usage_records.c.credential_id, "status": usage_records.c.status}  # fmt: skip


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _scope(query: Any, since: date | None, until: date | None, principal: str | None) -> Any:
    """Only the records from `since` through `until` (whole UTC days, both included), of `principal` if given."""
    if since is not None:
        query = query.where(usage_records.c.at >= _midnight(since))
    if until is not None:
        query = query.where(usage_records.c.at < _midnight(until + timedelta(days=1)))
    if principal is not None:
        query = query.where(usage_records.c.principal == principal)
    return query


def summarize(
    engine: Engine,
    group_by: tuple[str, ...] = ("principal", "model", "day"),
    since: date | None = None,
    principal: str | None = None,
    until: date | None = None,
) -> list[dict[str, Any]]:
    """Usage totals grouped by principal, key, model, dialect, status and/or day; of one principal's calls when
    `principal` is given; from `since` through `until` (UTC days, both included)."""
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
    query = _scope(select(*columns, *totals).group_by(*columns).order_by(*columns), since, until, principal)
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


def latency_percentiles(
    engine: Engine,
    since: date | None = None,
    until: date | None = None,
    principal: str | None = None,
    percentiles: tuple[int, ...] = (50, 90, 99),
) -> list[dict[str, Any]]:
    """Per model, the latency (whole call, ms) of its successful calls at each percentile (nearest rank: the
    smallest latency with at least p% of the calls at or below it), computed in the store (window functions, in
    SQLite and PostgreSQL alike), so the records never leave it."""
    ranked = _scope(
        select(
            usage_records.c.model_id.label("model"),
            usage_records.c.latency_ms.label("latency_ms"),
            func.row_number().over(partition_by=usage_records.c.model_id, order_by=usage_records.c.latency_ms)
            .label("rank"),
            func.count().over(partition_by=usage_records.c.model_id).label("n"),
        ).where(usage_records.c.status == "ok"),
        since, until, principal,
    ).subquery()  # fmt: skip
    picks = [
        func.min(case((ranked.c.rank * 100 >= ranked.c.n * p, ranked.c.latency_ms))).label(f"p{p}") for p in percentiles
    ]
    query = select(ranked.c.model, func.count().label("requests"), *picks).group_by(ranked.c.model)
    with engine.connect() as db:
        rows = db.execute(query.order_by(ranked.c.model)).mappings().all()
    return [{k: (int(v) if k != "model" and v is not None else v) for k, v in row.items()} for row in rows]
