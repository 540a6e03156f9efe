"""What the console's Usage page reads from usage records, on both databases: totals by key and by status over a
range of days (summarize), and latency percentiles per model computed in the store (latency_percentiles)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from outcrop import store
from outcrop.metering.usage import UsageRecord, UsageRecorder, latency_percentiles, summarize


def _rec(at: datetime, principal: str, model: str, latency_ms: int, status: str = "ok",
         key: str | None = None) -> UsageRecord:  # fmt: skip
    return UsageRecord(at, principal, model, "openai", "chat", 10, 5, 0, 0, latency_ms, None, status,
                       credential_id=key)  # fmt: skip


def test_by_key_status_and_range_and_percentiles(database_url: str) -> None:
    engine = store.connect(database_url)
    recorder = UsageRecorder(engine)
    now = datetime.now(UTC)
    week_ago = now - timedelta(days=7)
    for ms in range(1, 101):  # m1: 1..100 ms, ok
        recorder.record(_rec(now, "alice", "m1", ms, key="key_a"))
    recorder.record(_rec(now, "alice", "m1", 5000, "ModelFailure", key="key_a"))  # not a latency of an answer
    recorder.record(_rec(now, "bob", "m2", 7, key="key_b"))
    recorder.record(_rec(week_ago, "bob", "m2", 9000))  # before the range below; no key (local mode)
    asyncio.run(recorder.flush())
    today = now.date()
    got = {r["model"]: (r["requests"], r["p50"], r["p90"], r["p99"]) for r in latency_percentiles(engine)}
    assert got == {"m1": (100, 50, 90, 99), "m2": (2, 7, 9000, 9000)}
    assert latency_percentiles(engine, today, today, "bob") == [{"model": "m2", "requests": 1, "p50": 7, "p90": 7,
                                                                  "p99": 7}]  # fmt: skip
    keys = {(r["principal"], r["key"]): r["requests"] for r in summarize(engine, ("principal", "key"), today)}
    assert keys == {("alice", "key_a"): 101, ("bob", "key_b"): 1}
    statuses = {r["status"]: r["requests"] for r in summarize(engine, ("status",), principal="alice")}
    assert statuses == {"ok": 100, "ModelFailure": 1}
    old = summarize(engine, ("day", "principal"), until=(week_ago + timedelta(days=1)).date())
    assert [(r["day"], r["principal"], r["requests"]) for r in old] == [(week_ago.date().isoformat(), "bob", 1)]
