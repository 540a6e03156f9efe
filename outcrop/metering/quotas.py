"""Quotas: requests and tokens per minute per principal and model, concurrent streams per principal.

Counted in the store, so several `outcrop serve` processes on one database enforce one quota. Windows
are whole minutes; a request is admitted only if both its request and token counts are still under
their limits, by one conditional UPDATE (atomic in SQLite and PostgreSQL alike). Tokens are added once
the answer is known, so a minute can overshoot its token limit by one request's tokens, never more.

A stream in progress holds a lease (a row in active_streams) owned by its process. Leases of a process that
died (kill -9, a crash, a lost host) stop counting as soon as it is seen dead: at once on the same machine,
after store.processes.STALE_S from another one; they are deleted then, by the next admission that meets
them or the next heartbeat of any process (the first one runs when a process takes its first lease). A
lease whose release failed (the store was down) is deleted by its own process's next heartbeat.

    [[quotas]]
    principal = "alice"          # or group = "beta"; neither: everyone
    model = "*"                  # a model id, or every model (each counted on its own)
    requests_per_minute = 60
    tokens_per_minute = 100000
    concurrent_streams = 4

An administrator may also set rules at run time (the console's Keys page): they are kept in the store
(`quota_rules`) and count with the config file's, the strictest limit winning. Each process reads them again
once anything about them changes (the auth epoch, store/epoch.py: at once) on SQLite, and within about
STORED_TTL_S on PostgreSQL, where the epoch cannot be read cheaply (read in the background, off the requests' path).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.store.epoch import AuthEpoch, bump
from outcrop.store.processes import ProcessRegistry
from outcrop.store.schema import active_streams, processes, quota_rules, quota_usage

log = logging.getLogger("outcrop.quotas")

LEASE_S = 900  # a stream row without an owner (written before migration 0011) no longer counts past this
ORPHAN_MARGIN_S = 5.0  # a lease this process no longer holds is deleted by its heartbeat once this old
STORED_TTL_S = 2.0  # PostgreSQL: how long the rules set at run time are used before they are read again
LIMITS = ("requests_per_minute", "tokens_per_minute", "concurrent_streams")


@dataclass(frozen=True)
class QuotaRule:
    principal: str | None = None
    group: str | None = None
    model: str = "*"
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> QuotaRule:
        errors.check_keys(raw, (f.name for f in fields(cls)), where)
        rule = cls(**raw)
        for name in ("requests_per_minute", "tokens_per_minute", "concurrent_streams"):
            value = getattr(rule, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise errors.InvalidRequest(f"{where}: {name} must be a whole number >= 0")
        return rule

    def applies(self, principal: Principal, model_id: str) -> bool:
        if self.principal is not None and self.principal != principal.name:
            return False
        if self.group is not None and self.group not in principal.groups:
            return False
        return self.model in ("*", model_id)


@dataclass(frozen=True)
class StoredRule:
    """A rule an administrator set at run time."""

    id: str
    rule: QuotaRule
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Ticket:
    window: int  # the minute the request was counted in
    lease: str | None  # its row in active_streams, when concurrent streams are limited


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute, self.concurrent_streams))


def _strictest(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class Quotas:
    def __init__(self, engine: Engine | None, rules: tuple[QuotaRule, ...]) -> None:
        if rules and engine is None:
            raise errors.InvalidRequest("quotas need the store (a database)")
        self.engine = engine
        self.rules = rules
        self._processes: ProcessRegistry | None = None
        self._held: set[str] = set()  # leases of this process's streams in progress
        self._lock = threading.Lock()
        # the rules set at run time, with the auth epoch (SQLite) or the time (PostgreSQL) they were read at
        self._epoch = AuthEpoch(engine)
        self._stored: tuple[QuotaRule, ...] = ()
        self._stored_read: tuple[int | None, float] | None = None
        self._refreshing = False

    def liveness(self) -> ProcessRegistry:
        """This process's liveness in the store (registered, its heartbeat started, with its first lease)."""
        with self._lock:
            if self._processes is None:
                self._processes = ProcessRegistry(self._engine())
                self._processes.on_reap.append(self._reap)
            return self._processes

    def close(self) -> None:
        """Stop the heartbeat (a process that exits needs no call: its pid is gone)."""
        if self._processes is not None:
            self._processes.stop()

    def _reap(self, db: Connection, now: float, me: str) -> None:
        """In each heartbeat's transaction: delete leases of processes that have no row any more (dead), old leases
        without an owner, and leases of this process that none of its streams holds (their release failed)."""
        gone = and_(active_streams.c.owner.is_not(None), active_streams.c.owner.not_in(select(processes.c.id)))
        legacy = and_(active_streams.c.owner.is_(None), active_streams.c.started_at < now - LEASE_S)
        db.execute(delete(active_streams).where(or_(gone, legacy)))
        with self._lock:
            held, before = list(self._held), time.time() - ORPHAN_MARGIN_S  # a lease taken later starts later
        orphans = delete(active_streams).where(active_streams.c.owner == me, active_streams.c.started_at < before)
        if held:
            orphans = orphans.where(active_streams.c.id.not_in(held))
        db.execute(orphans)

    def _running(self, db: Connection, principal: str, now: float, registry: ProcessRegistry) -> int:
        """Streams the principal has in progress in live processes: in this one, those it holds (a lease whose
        release failed does not count); in others, their leases while they live. Leases of dead ones are deleted
        on the way."""
        owner = active_streams.c.owner
        process = (processes.c.id, processes.c.machine, processes.c.pid, processes.c.pid_started, processes.c.seen_at)
        counted = or_(owner.is_not(None), active_streams.c.started_at > now - LEASE_S)
        rows = db.execute(
            select(active_streams.c.id.label("lease"), owner, *process)
            .select_from(active_streams.outerjoin(processes, processes.c.id == owner))
            .where(active_streams.c.principal == principal, counted)
        ).all()
        me = registry.id
        with self._lock:
            held = set(self._held)
        running, dead = 0, set()
        for row in rows:
            if row.owner == me:
                running += row.lease in held
            elif row.owner is None or (row.owner not in dead and registry.alive(row, now)):
                running += 1
            else:
                dead.add(row.owner)
        if dead:
            db.execute(delete(active_streams).where(owner.in_(dead)))
            db.execute(delete(processes).where(processes.c.id.in_(dead)))
        return running

    # --- rules set at run time ----------------------------------------------------------------------

    def _current(self) -> tuple[QuotaRule, ...]:
        """The stored rules, from memory while nothing changed them. SQLite: read again once the auth epoch moves
        (a local read, at once). PostgreSQL, where every read is a round trip: read on the first call, then again
        in the background once STORED_TTL_S old, so that no request (and never the event loop, which calls this)
        waits for the store, or for its outage."""
        if self.engine is None:
            return ()
        epoch, read = self._epoch.read(), self._stored_read
        if epoch is not None:
            if read is None or read[0] != epoch:
                self._reload(epoch)
        elif read is None:
            self._reload(None)
        elif time.monotonic() - read[1] >= STORED_TTL_S and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh, daemon=True).start()
        return self._stored

    def _reload(self, epoch: int | None) -> None:
        now = time.monotonic()
        self._stored = tuple(s.rule for s in self.stored())
        self._stored_read = (epoch, now)

    def _refresh(self) -> None:
        try:
            self._reload(None)
        except Exception as exc:  # kept as they were; tried again in STORED_TTL_S
            self._stored_read = (None, time.monotonic())
            log.warning("could not read the quotas set at run time: %s", exc)
        finally:
            self._refreshing = False

    def stored(self) -> list[StoredRule]:
        """The rules set at run time, as kept in the store."""
        if self.engine is None:
            return []
        c = quota_rules.c
        with self.engine.connect() as db:
            rows = db.execute(select(quota_rules).order_by(c.principal, c.group_name, c.model, c.created_at)).all()
        rules = [
            (
                r,
                QuotaRule(
                    r.principal, r.group_name, r.model, r.requests_per_minute, r.tokens_per_minute, r.concurrent_streams
                ),
            )
            for r in rows
        ]
        return [StoredRule(r.id, rule, r.created_by, r.created_at) for r, rule in rules]

    def set_rule(self, rule: QuotaRule, by: str) -> str:
        """Keep `rule` in the store, in place of any stored rule for the same principal or group and model; every
        process counts it from its next request on. Its id."""
        if self.engine is None:
            raise errors.InvalidRequest("Quotas set at run time need the store (a server with keys).")
        QuotaRule.from_dict({k: getattr(rule, k) for k in LIMITS}, "quota")  # whole numbers >= 0
        if rule.principal is not None and rule.group is not None:
            raise errors.InvalidRequest("A quota is for a principal or for a group, not both.")
        c = quota_rules.c
        rid = "q_" + secrets.token_hex(6)
        same = and_(c.model == rule.model,
                    c.principal.is_(None) if rule.principal is None else c.principal == rule.principal,
                    c.group_name.is_(None) if rule.group is None else c.group_name == rule.group)  # fmt: skip
        with self.engine.begin() as db:
            db.execute(delete(quota_rules).where(same))
            db.execute(insert(quota_rules).values(
                id=rid, principal=rule.principal, group_name=rule.group, model=rule.model,
                requests_per_minute=rule.requests_per_minute, tokens_per_minute=rule.tokens_per_minute,
                concurrent_streams=rule.concurrent_streams, created_by=by, created_at=datetime.now(UTC),
            ))  # fmt: skip
            bump(db)
        return rid

    def remove_rule(self, rule_id: str) -> bool:
        """Delete a rule set at run time (those of the config file stay); False if there is none by that id."""
        if self.engine is None:
            return False
        with self.engine.begin() as db:
            done = db.execute(delete(quota_rules).where(quota_rules.c.id == rule_id))
            bump(db)
        return bool(done.rowcount)

    def limits(self, principal: Principal, model_id: str) -> Limits:
        rules = [r for r in (*self.rules, *self._current()) if r.applies(principal, model_id)]
        return Limits(
            _strictest([r.requests_per_minute for r in rules]),
            _strictest([r.tokens_per_minute for r in rules]),
            _strictest([r.concurrent_streams for r in rules]),
        )

    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def admit(self, principal: Principal, model_id: str, limits: Limits) -> Ticket:
        """Count one request, or raise QuotaExceeded. The ticket goes back to `settle` afterwards."""
        now = time.time()
        window = int(now // 60)
        retry = 60 - now % 60
        engine = self._engine()
        key = and_(
            quota_usage.c.principal == principal.name,
            quota_usage.c.model_id == model_id,
            quota_usage.c.window == window,
        )
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        if rpm is not None or tpm is not None:
            counted = None
            if rpm != 0 and tpm != 0:
                # One statement: create this minute's row, or count one more request only while under the limits.
                upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
                under = []
                if rpm is not None:
                    under.append(quota_usage.c.requests < rpm)
                if tpm is not None:
                    under.append(quota_usage.c.tokens < tpm)
                stmt = (
                    upsert(quota_usage)
                    .values(principal=principal.name, model_id=model_id, window=window, requests=1, tokens=0)
                    .on_conflict_do_update(
                        index_elements=["principal", "model_id", "window"],
                        set_={"requests": quota_usage.c.requests + 1},
                        where=and_(*under),
                    )
                    .returning(quota_usage.c.requests)
                )
                with engine.begin() as db:
                    counted = db.execute(stmt).first()
                    row = None if counted is not None else db.execute(select(quota_usage).where(key)).first()
            if counted is None:
                over_requests = rpm is not None and (rpm == 0 or (row is not None and row.requests >= rpm))
                what, limit = ("requests", rpm) if over_requests else ("tokens", tpm)
                raise errors.QuotaExceeded(
                    f"Quota exceeded for '{principal.name}' on model '{model_id}': {limit} {what} per minute. "
                    f"Retry in {retry:.0f} s.",
                    retry_after_s=retry,
                )
        if limits.concurrent_streams is None:
            return Ticket(window, None)
        registry = self.liveness()
        owner = registry.id  # registered before its first lease names it
        lease = "s_" + secrets.token_hex(8)
        with self._lock:
            self._held.add(lease)
        try:
            started = time.time()  # after it is held: the heartbeat takes no lease for an orphan (_reap)
            with engine.begin() as db:
                if engine.dialect.name == "postgresql":
                    # one principal's admissions one at a time: insert-then-count under READ COMMITTED would let
                    # two concurrent ones each miss the other's uncommitted lease and both pass (SQLite's write
                    # lock, taken by the insert, already serializes them)
                    db.execute(select(func.pg_advisory_xact_lock(func.hashtext(principal.name))))
                db.execute(insert(active_streams).values(id=lease, principal=principal.name, started_at=started,
                                                         owner=owner))  # fmt: skip
                over = self._running(db, principal.name, started, registry) > limits.concurrent_streams
                if over:  # committed without it (what was found dead stays deleted)
                    db.execute(delete(active_streams).where(active_streams.c.id == lease))
        except BaseException:
            self._release(lease)
            raise
        if over:
            self._release(lease)
            raise errors.QuotaExceeded(
                f"Too many concurrent requests for '{principal.name}': the limit is {limits.concurrent_streams}.",
                retry_after_s=1.0,
            )
        return Ticket(window, lease)

    def _release(self, lease: str) -> None:
        with self._lock:
            self._held.discard(lease)

    def settle(self, principal: Principal, model_id: str, tokens: int, ticket: Ticket) -> None:
        """After the answer: add its tokens to the minute it was admitted in, and end its stream lease (should the
        store be down, this process's heartbeat deletes the lease once it is back)."""
        if ticket.lease:
            self._release(ticket.lease)
        with self._engine().begin() as db:
            if tokens:
                db.execute(
                    update(quota_usage)
                    .where(
                        quota_usage.c.principal == principal.name,
                        quota_usage.c.model_id == model_id,
                        quota_usage.c.window == ticket.window,
                    )
                    .values(tokens=quota_usage.c.tokens + tokens)
                )
            if ticket.lease:
                db.execute(delete(active_streams).where(active_streams.c.id == ticket.lease))
