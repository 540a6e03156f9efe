"""Quotas an administrator sets at run time (Quotas.set_rule, the console's Keys page), on SQLite and PostgreSQL:
counted with the config file's rules, replaced when set again for the same subject and model, seen by every
process (SQLite: from its next request on; PostgreSQL: read again in the background, never on the caller's path)."""

from __future__ import annotations

import time

import pytest

from outcrop import errors, store
from outcrop.auth.principal import Principal
from outcrop.metering import quotas
from outcrop.metering.quotas import Limits, QuotaRule, Quotas

ALICE = Principal("p1", "alice")
BOB = Principal("p2", "bob", groups=("beta",))


def test_rules_set_at_run_time_count_with_the_config_files(database_url: str) -> None:
    engine = store.connect(database_url)
    q = Quotas(engine, (QuotaRule(principal="alice", requests_per_minute=100),))
    assert q.limits(ALICE, "m") == Limits(100) and q.stored() == []
    q.set_rule(QuotaRule(group="beta", model="m", tokens_per_minute=50), "root")
    q.set_rule(QuotaRule(principal="alice", requests_per_minute=30, concurrent_streams=2), "root")
    other = Quotas(engine, ())  # another process on the same store
    assert other.limits(BOB, "m") == Limits(None, 50, None) and other.limits(BOB, "n") == Limits()
    assert other.limits(ALICE, "m") == Limits(30, None, 2)
    q.set_rule(QuotaRule(group="beta", model="m", tokens_per_minute=70), "admin2")  # replaces beta's rule on m
    stored = {(s.rule.group, s.rule.principal): (s.rule.tokens_per_minute, s.created_by) for s in q.stored()}
    assert stored == {("beta", None): (70, "admin2"), (None, "alice"): (None, "root")}
    beta = next(s.id for s in q.stored() if s.rule.group == "beta")
    assert q.remove_rule(beta) and not q.remove_rule(beta)
    assert Quotas(engine, ()).limits(BOB, "m") == Limits()


def test_a_rule_is_refused_unless_it_is_whole(database_url: str) -> None:
    q = Quotas(store.connect(database_url), ())
    with pytest.raises(errors.InvalidRequest, match="whole number"):
        q.set_rule(QuotaRule(principal="alice", requests_per_minute=-1), "root")
    with pytest.raises(errors.InvalidRequest, match="not both"):
        q.set_rule(QuotaRule(principal="alice", group="beta", requests_per_minute=1), "root")
    with pytest.raises(errors.InvalidRequest, match="need the store"):
        Quotas(None, ()).set_rule(QuotaRule(requests_per_minute=1), "root")
    assert q.stored() == []


def test_a_running_process_sees_a_change_made_by_another(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quotas, "STORED_TTL_S", 0.0)
    engine = store.connect(database_url)
    running = Quotas(engine, ())
    assert running.limits(ALICE, "m") == Limits()
    Quotas(engine, ()).set_rule(QuotaRule(principal="alice", requests_per_minute=5), "root")
    if database_url.startswith("sqlite"):
        assert running.limits(ALICE, "m") == Limits(5)  # the auth epoch moved: read again at once
        return
    # PostgreSQL: the caller gets what was read so far while the rules are read again in the background
    for _ in range(3000):
        if running.limits(ALICE, "m") == Limits(5):
            break
        time.sleep(0.01)
    else:
        pytest.fail("the rule set by another process was never read")
