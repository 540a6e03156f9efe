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
