"""Who may use which model: generally available, early access (granted principals and groups), disabled.

A model's state comes from its config (`access = "ga" | "early" | "disabled"`). Early access is given
by grants in the store, to a principal or a group; a principal asks with an access request and an
administrator approves or denies it, and the decision is kept with who made it and when.
Administrators may use early-access models; nobody may use a disabled one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, or_, select, update

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.store.epoch import AuthEpoch, bump
from outcrop.store.schema import access_grants, access_requests

STATES = ("ga", "early", "disabled")
WIRE_STATES = {"ga": "GENERALLY_AVAILABLE", "early": "EARLY_ACCESS", "disabled": "DISABLED"}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AccessRequest:
    id: str
    model_id: str
    principal: str
    reason: str | None
    status: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "requestId": self.id,
            "modelId": self.model_id,
            "principal": self.principal,
            "reason": self.reason,
            "status": self.status.upper(),
            "requestedAt": self.requested_at.isoformat(),
            "decidedBy": self.decided_by,
            "decidedAt": self.decided_at.isoformat() if self.decided_at else None,
            "decisionNote": self.decision_note,
        }


def readable_owner(who: Principal, asked: str | None = None) -> str | None:
    """Whose records (access requests, usage) `who` may read: an administrator anyone's (`asked`, or None: everyone's),
    anyone else only their own, whatever they asked for (AccessDenied when they named another principal)."""
    if who.is_admin:
        return asked
    if asked is not None and asked != who.name:
        raise errors.AccessDenied("Only an administrator may read another principal's records.")
    return who.name


def _subjects(principal: Principal) -> list[str]:
    return [f"principal:{principal.name}", *(f"group:{g}" for g in principal.groups)]


class AccessControl:
    def __init__(self, engine: Engine | None, states: dict[str, str]) -> None:
        self.engine = engine
        self.states = states  # model id -> ga | early | disabled
        # decisions with the auth epoch they were read at: good until a grant changes (store/epoch.py)
        self._epoch = AuthEpoch(engine)
        self._cache: dict[tuple[str, tuple[str, ...], str], tuple[bool, int]] = {}

    def cached(self, principal: Principal, model_id: str) -> bool | None:
        """The decision for an early-access model from memory, or None if the store must be asked."""
        state = self.state(model_id)
        if state != "early" or principal.is_admin:
            return state != "disabled"
        hit = self._cache.get((principal.name, principal.groups, model_id))
        return hit[0] if hit is not None and hit[1] == self._epoch.read() else None

    def state(self, model_id: str) -> str:
        return self.states.get(model_id, "ga")

    def allowed(self, principal: Principal, model_id: str) -> bool:
        state = self.state(model_id)
        if state == "ga":
            return True
        if state == "disabled":
            return False
        if principal.is_admin:
            return True
        if self.engine is None:
            return False
        epoch = self._epoch.read()  # before the read: a grant changed meanwhile moves it past what is cached
        with self.engine.connect() as db:
            hit = db.execute(
                select(access_grants.c.subject).where(
                    access_grants.c.model_id == model_id, access_grants.c.subject.in_(_subjects(principal))
                )
            ).first()
        if epoch is not None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(principal.name, principal.groups, model_id)] = (hit is not None, epoch)
        return hit is not None

    def check(self, principal: Principal, model_id: str) -> None:
        if self.allowed(principal, model_id):
            return
        if self.state(model_id) == "disabled":
            raise errors.AccessDenied(f"The model '{model_id}' is disabled on this server.")
        raise errors.AccessDenied(
            f"You don't have access to the model '{model_id}': it is in early access. Ask for it with "
            f"`outcrop access request {model_id}` or POST /outcrop/v1/access-requests, and an administrator "
            "will decide."
        )

    def _db(self) -> Engine:
        if self.engine is None:
            raise errors.InvalidRequest('Access requests need a server with keys (auth = "keys") and its store.')
        return self.engine

    # --- requests and decisions ------------------------------------------------------------------

    def request(self, principal: Principal, model_id: str, reason: str | None) -> AccessRequest:
        if self.state(model_id) == "ga":
            raise errors.InvalidRequest(f"The model '{model_id}' is generally available: no request is needed.")
        if self.state(model_id) == "disabled":
            raise errors.InvalidRequest(f"The model '{model_id}' is disabled: access cannot be requested.")
        if self.allowed(principal, model_id):
            raise errors.InvalidRequest(f"You already have access to '{model_id}'.")
        with self._db().begin() as db:
            pending = db.execute(
                select(access_requests).where(
                    access_requests.c.model_id == model_id,
                    access_requests.c.principal == principal.name,
                    access_requests.c.status == "pending",
                )
            ).first()
            if pending is not None:
                return AccessRequest(*pending)
            rid = "ar_" + secrets.token_hex(6)
            row = {"id": rid, "model_id": model_id, "principal": principal.name, "reason": reason}
            db.execute(insert(access_requests).values(**row, status="pending", requested_at=_now()))
        return self.get(rid)

    def get(self, request_id: str) -> AccessRequest:
        with self._db().connect() as db:
            row = db.execute(select(access_requests).where(access_requests.c.id == request_id)).first()
        if row is None:
            raise errors.NotFound(f"There is no access request '{request_id}'.")
        return AccessRequest(*row)

    def requests(self, status: str | None = None, principal: str | None = None) -> list[AccessRequest]:
        query = select(access_requests).order_by(access_requests.c.requested_at)
        if status:
            query = query.where(access_requests.c.status == status.lower())
        if principal:
            query = query.where(access_requests.c.principal == principal)
        with self._db().connect() as db:
            return [AccessRequest(*r) for r in db.execute(query)]

    def decide(self, request_id: str, approve: bool, admin: str, note: str | None = None) -> AccessRequest:
        current = self.get(request_id)
        if current.status != "pending":
            raise errors.InvalidRequest(f"Access request '{request_id}' was already {current.status}.")
        with self._db().begin() as db:
            db.execute(
                update(access_requests)
                .where(access_requests.c.id == request_id)
                .values(
                    status="approved" if approve else "denied", decided_by=admin, decided_at=_now(), decision_note=note
                )
            )
            if approve:
                self._grant(db, current.model_id, f"principal:{current.principal}", admin)
                bump(db)
        return self.get(request_id)

    def _grant(self, db: object, model_id: str, subject: str, by: str) -> None:
        exists = db.execute(  # type: ignore[attr-defined]
            select(access_grants).where(access_grants.c.model_id == model_id, access_grants.c.subject == subject)
        ).first()
        if exists is None:
            grant = {"model_id": model_id, "subject": subject, "granted_by": by, "granted_at": _now()}
            db.execute(insert(access_grants).values(**grant))  # type: ignore[attr-defined]

    def grant(self, model_id: str, subject: str, by: str) -> None:
        if not subject.startswith(("principal:", "group:")):
            raise errors.InvalidRequest("A grant's subject is principal:NAME or group:NAME.")
        with self._db().begin() as db:
            self._grant(db, model_id, subject, by)
            bump(db)

    def revoke(self, model_id: str, subject: str) -> bool:
        with self._db().begin() as db:
            done = db.execute(
                delete(access_grants).where(access_grants.c.model_id == model_id, access_grants.c.subject == subject)
            )
            bump(db)
        return bool(done.rowcount)

    def grants(self, model_id: str | None = None) -> list[tuple[str, str, str, datetime]]:
        query = select(access_grants).order_by(access_grants.c.model_id, access_grants.c.subject)
        if model_id:
            query = query.where(or_(access_grants.c.model_id == model_id))
        with self._db().connect() as db:
            return [tuple(r) for r in db.execute(query)]  # type: ignore[misc]
