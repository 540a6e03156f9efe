"""Quotas counted in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from outcrop import errors, store
from outcrop.auth.principal import Principal
from outcrop.metering.quotas import Limits, QuotaRule, Quotas

ALICE = Principal("p1", "alice")
BOB = Principal("p2", "bob", groups=("beta",))


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    return store.connect(database_url)


def test_rules_and_strictest_limit() -> None:
    rules = (
        QuotaRule(requests_per_minute=100, concurrent_streams=10),
        QuotaRule(group="beta", requests_per_minute=5),
        QuotaRule(principal="alice", model="m.big", tokens_per_minute=1000),
    )
    q = Quotas.__new__(Quotas)
    q.engine, q.rules = None, rules
    assert q.limits(ALICE, "m.small") == Limits(100, None, 10)
    assert q.limits(ALICE, "m.big") == Limits(100, 1000, 10)
    assert q.limits(BOB, "m.small") == Limits(5, None, 10)
    with pytest.raises(errors.InvalidRequest, match="store"):
        Quotas(None, rules)
    with pytest.raises(errors.InvalidRequest, match="requests_per_minte"):
        QuotaRule.from_dict({"requests_per_minte": 1}, "x")
    with pytest.raises(errors.InvalidRequest, match=">= 0"):
        QuotaRule.from_dict({"tokens_per_minute": -1}, "x")


def test_requests_per_minute(engine) -> None:  # type: ignore[no-untyped-def]
    q = Quotas(engine, (QuotaRule(requests_per_minute=3),))
    limits = q.limits(ALICE, "m")
    for _ in range(3):
        q.admit(ALICE, "m", limits)
    with pytest.raises(errors.QuotaExceeded, match="3 requests per minute") as err:
        q.admit(ALICE, "m", limits)
    assert 0 < err.value.retry_after_s <= 60
    q.admit(BOB, "m", q.limits(BOB, "m"))  # counted per principal...
    q.admit(ALICE, "other", q.limits(ALICE, "other"))  # ...and per model


def test_tokens_per_minute(engine) -> None:  # type: ignore[no-untyped-def]
    q = Quotas(engine, (QuotaRule(tokens_per_minute=100),))
    limits = q.limits(ALICE, "m")
    ticket = q.admit(ALICE, "m", limits)
    q.settle(ALICE, "m", 150, ticket)  # one request may overshoot; the next is refused
    with pytest.raises(errors.QuotaExceeded, match="100 tokens per minute"):
        q.admit(ALICE, "m", limits)


def test_concurrent_streams(engine) -> None:  # type: ignore[no-untyped-def]
    q = Quotas(engine, (QuotaRule(concurrent_streams=2),))
    limits = q.limits(ALICE, "m")
    first, second = q.admit(ALICE, "m", limits), q.admit(ALICE, "m", limits)
    with pytest.raises(errors.QuotaExceeded, match="concurrent"):
        q.admit(ALICE, "m", limits)
    q.settle(ALICE, "m", 0, first)
    third = q.admit(ALICE, "m", limits)
    q.settle(ALICE, "m", 0, second)
    q.settle(ALICE, "m", 0, third)


def test_concurrent_admissions_cannot_both_slip_under_the_limit(engine) -> None:  # type: ignore[no-untyped-def]
    """Sixteen admissions at once with a limit of one: exactly one lease (insert-then-count raced on PostgreSQL)."""
    import concurrent.futures
    import threading

    q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
    limits = q.limits(ALICE, "m")
    go = threading.Barrier(16)

    def one(_: int) -> bool:
        go.wait()
        try:
            q.admit(ALICE, "m", limits)
            return True
        except errors.QuotaExceeded:
            return False

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        admitted = list(pool.map(one, range(16)))
    assert admitted.count(True) == 1


# --- leases of dead processes ----------------------------------------------------------------------------------

CHILD = """
import sys, time
from outcrop import store
from outcrop.auth.principal import Principal
from outcrop.metering.quotas import QuotaRule, Quotas
q = Quotas(store.connect(sys.argv[1]), (QuotaRule(concurrent_streams=1),))
alice = Principal("p1", "alice")
q.admit(alice, "m", q.limits(alice, "m"))
print("admitted", flush=True)
time.sleep(600)
"""


def _leases(engine) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from outcrop.store.schema import active_streams

    with engine.connect() as db:
        return [(r.principal, r.owner) for r in db.execute(select(active_streams))]


def test_a_killed_process_leases_stop_counting_at_once(engine, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """Another process holds alice's only stream; killed with kill -9, its lease no longer counts: no 15 minutes."""
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", CHILD, database_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "admitted"
        q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
        limits = q.limits(ALICE, "m")
        with pytest.raises(errors.QuotaExceeded, match="concurrent"):
            q.admit(ALICE, "m", limits)  # alive: its lease counts
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        ticket = q.admit(ALICE, "m", limits)  # dead: it does not, and is deleted on the way
        assert [owner for _, owner in _leases(engine)] == [q.liveness().id]
        q.settle(ALICE, "m", 0, ticket)
        q.close()
    finally:
        child.kill()
        child.wait(timeout=30)


def _process(engine, **values: object) -> None:  # type: ignore[no-untyped-def]
    import time

    from sqlalchemy import insert

    from outcrop.store.schema import active_streams, processes

    row = {"id": "p_other", "host": "other", "machine": "elsewhere", "pid": 1, "pid_started": None,
           "started_at": time.time(), "seen_at": time.time(), **values}  # fmt: skip
    with engine.begin() as db:
        db.execute(insert(processes).values(**row))
        db.execute(insert(active_streams).values(id="s_other", principal="alice", started_at=time.time(),
                                                 owner=row["id"]))  # fmt: skip


def test_a_process_on_another_machine_is_alive_while_its_heartbeat_is(engine) -> None:  # type: ignore[no-untyped-def]
    import time

    from sqlalchemy import update

    from outcrop.store.processes import STALE_S
    from outcrop.store.schema import processes

    _process(engine)
    q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
    limits = q.limits(ALICE, "m")
    with pytest.raises(errors.QuotaExceeded):
        q.admit(ALICE, "m", limits)
    with engine.begin() as db:  # its heartbeat stopped a while ago
        db.execute(update(processes).values(seen_at=time.time() - STALE_S - 1))
    q.settle(ALICE, "m", 0, q.admit(ALICE, "m", limits))
    assert _leases(engine) == []
    q.close()


def test_a_reused_pid_is_another_process(engine) -> None:  # type: ignore[no-untyped-def]
    """Same machine, a pid that runs (this test's own) but started at another time: the owner is dead."""
    import os

    from outcrop.store.processes import machine_key, pid_started

    if pid_started(os.getpid()) is None:
        pytest.skip("no /proc here")
    _process(engine, machine=machine_key(), pid=os.getpid(), pid_started="1")
    q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
    q.settle(ALICE, "m", 0, q.admit(ALICE, "m", q.limits(ALICE, "m")))
    assert _leases(engine) == []
    q.close()


def test_a_lease_whose_release_failed_neither_counts_nor_stays(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from outcrop.store.schema import active_streams

    q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
    limits = q.limits(ALICE, "m")
    lost = q.admit(ALICE, "m", limits)
    q._release(lost.lease or "")  # settle's delete failed (the store was down): the stream ended all the same
    ticket = q.admit(ALICE, "m", limits)  # this process holds no stream of alice's: admitted
    assert len(_leases(engine)) == 2
    with engine.begin() as db:
        db.execute(update(active_streams).values(started_at=active_streams.c.started_at - 60))
    q.liveness().beat()  # the heartbeat deletes what no stream holds
    assert len(_leases(engine)) == 1
    q.settle(ALICE, "m", 0, ticket)
    q.close()


def test_leases_from_before_owners_keep_their_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    import time

    from sqlalchemy import insert, update

    from outcrop.metering.quotas import LEASE_S
    from outcrop.store.schema import active_streams

    with engine.begin() as db:
        db.execute(insert(active_streams).values(id="s_old", principal="alice", started_at=time.time()))
    q = Quotas(engine, (QuotaRule(concurrent_streams=1),))
    limits = q.limits(ALICE, "m")
    with pytest.raises(errors.QuotaExceeded):
        q.admit(ALICE, "m", limits)
    with engine.begin() as db:
        db.execute(update(active_streams).values(started_at=time.time() - LEASE_S - 1))
    q.settle(ALICE, "m", 0, q.admit(ALICE, "m", limits))
    q.liveness().beat()
    assert _leases(engine) == []
    q.close()


def test_sixteen_processes_write_quotas_usage_and_heartbeats_at_once(database_url: str) -> None:
    """Sixteen writers, each with an engine of its own as separate processes have: admissions (requests per minute
    and concurrent streams), settlements, usage commits and heartbeats, all at once: no "database is locked"."""
    import asyncio
    import concurrent.futures
    import threading
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from outcrop.metering.usage import UsageRecord, UsageRecorder
    from outcrop.store.schema import quota_usage, usage_records

    store.connect(database_url).dispose()  # migrated once
    go = threading.Barrier(16)
    rules = (QuotaRule(requests_per_minute=10_000, concurrent_streams=100),)

    def one(i: int) -> int:
        engine = store.connect(database_url, migrate=False)
        q, recorder = Quotas(engine, rules), UsageRecorder(engine)
        limits = q.limits(ALICE, "m")
        committed = 0
        try:
            go.wait()
            for _ in range(8):
                ticket = q.admit(ALICE, "m", limits)
                q.settle(ALICE, "m", 7, ticket)
                rec = UsageRecord(datetime.now(UTC), "alice", "m", "bedrock", "converse", 3, 4, 0, 0, 10, 2, "ok")
                committed += asyncio.run(recorder.commit(rec))
                q.liveness().beat()
            return committed
        finally:
            q.close()
            engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(16))) == [8] * 16
    engine = store.connect(database_url, migrate=False)
    with engine.connect() as db:
        assert db.execute(select(func.count()).select_from(usage_records)).scalar_one() == 128
        assert db.execute(select(func.sum(quota_usage.c.requests), func.sum(quota_usage.c.tokens))).one() == (128, 896)
    assert _leases(engine) == []
    engine.dispose()
