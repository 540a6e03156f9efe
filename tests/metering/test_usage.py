"""Usage records: buffered, written in batches, summed by principal / model / dialect / day, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from outcrop import store
from outcrop.metering.usage import UsageRecord, UsageRecorder, summarize


def _rec(principal: str, model: str, at: datetime, status: str = "ok", out: int = 5) -> UsageRecord:
    return UsageRecord(at, principal, model, "bedrock", "converse_op", 10, out, 0, 0, 20, 5, status)


def test_buffer_flush_and_summary(database_url: str) -> None:
    engine = store.connect(database_url)
    recorder = UsageRecorder(engine, max_buffer=1000)
    today = datetime.now(UTC)
    yesterday = today - timedelta(days=1)
    for _ in range(3):
        recorder.record(_rec("alice", "m1", today))
    recorder.record(_rec("alice", "m1", yesterday, status="ThrottlingException", out=0))
    recorder.record(_rec("bob", "m2", today))
    assert summarize(engine) == []  # nothing written before a flush
    asyncio.run(recorder.flush())
    assert recorder.written == 5
    rows = summarize(engine, ("principal", "model", "day"))
    assert [(r["principal"], r["model"], r["day"], r["requests"], r["output_tokens"], r["errors"]) for r in rows] == [
        ("alice", "m1", yesterday.date().isoformat(), 1, 0, 1),
        ("alice", "m1", today.date().isoformat(), 3, 15, 0),
        ("bob", "m2", today.date().isoformat(), 1, 5, 0),
    ]
    by_model = summarize(engine, ("model",), since=date.today())
    assert [(r["model"], r["requests"], r["input_tokens"]) for r in by_model] == [("m1", 3, 30), ("m2", 1, 10)]


def test_full_buffer_drops_oldest(database_url: str) -> None:
    recorder = UsageRecorder(store.connect(database_url), max_buffer=2)
    for i in range(5):
        recorder.record(_rec(f"p{i}", "m", datetime.now(UTC)))
    assert recorder.dropped == 3 and recorder.recorded == 5
    asyncio.run(recorder.flush())
    assert [r["principal"] for r in summarize(recorder.engine, ("principal",))] == ["p3", "p4"]


def test_commit_is_in_the_store_when_it_returns_and_never_twice(database_url: str) -> None:
    engine = store.connect(database_url)
    recorder = UsageRecorder(engine)
    rec = _rec("alice", "m1", datetime.now(UTC))
    assert asyncio.run(recorder.commit(rec)) is True
    assert summarize(engine, ("principal",))[0]["requests"] == 1
    recorder._write([rec, _rec("alice", "m1", datetime.now(UTC))])  # written again (a lost acknowledgement)
    assert summarize(engine, ("principal",))[0]["requests"] == 2
    assert recorder.written == 1 and not recorder._buffer


def test_commit_while_the_store_is_down_keeps_the_record(database_url: str) -> None:
    from outcrop import errors

    engine = store.connect(database_url)
    recorder = UsageRecorder(engine)
    write = recorder._write

    def down(batch: list[UsageRecord]) -> None:
        raise errors.ServiceUnavailable("down")

    recorder._write = down  # type: ignore[method-assign]
    assert asyncio.run(recorder.commit(_rec("alice", "m1", datetime.now(UTC)))) is False  # the answer goes out
    assert summarize(engine) == [] and len(recorder._buffer) == 1
    recorder._write = write  # type: ignore[method-assign]
    asyncio.run(recorder.flush())  # the store is back
    assert summarize(engine, ("principal",))[0]["requests"] == 1 and not recorder._waiting


def test_commits_at_once_share_a_write() -> None:
    import tempfile
    from pathlib import Path

    engine = store.connect(f"sqlite:///{Path(tempfile.mkdtemp()) / 'o.db'}")
    recorder = UsageRecorder(engine)
    batches: list[int] = []
    write = recorder._write

    def counted(batch: list[UsageRecord]) -> None:
        batches.append(len(batch))
        write(batch)

    recorder._write = counted  # type: ignore[method-assign]

    async def many() -> list[bool]:
        return await asyncio.gather(*(recorder.commit(_rec(f"p{i}", "m", datetime.now(UTC))) for i in range(50)))

    assert asyncio.run(many()) == [True] * 50
    assert sum(batches) == 50 and len(batches) < 50  # group commit: the first write, then the rest together
