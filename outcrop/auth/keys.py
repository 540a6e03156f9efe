"""Principals and their keys, kept in the store.

- API keys (`ocp_` + 43 random characters) serve as Bedrock API keys (`Authorization: Bearer`), OpenAI
  keys (`Authorization: Bearer`) and Anthropic keys (`x-api-key`). Only their SHA-256 is stored.
- AWS access keys (`OCAK…` id + 40-character secret) are verified by SigV4, which needs the secret
  itself: it is stored encrypted with Fernet under `$OUTCROP_HOME/secret.key`, created 0600.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.store.epoch import AuthEpoch, bump
from outcrop.store.schema import credentials, groups, memberships, principals

log = logging.getLogger("outcrop.keys")

API_KEY_PREFIX = "ocp_"
_UPPER = string.ascii_uppercase + string.digits


def _upsert(db: Any) -> Any:
    """The dialect's INSERT that can do nothing on a conflict."""
    return pg_insert if db.dialect.name == "postgresql" else sqlite_insert


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_fernet(key_file: Path) -> Fernet:
    """The server's encryption key; created on first use, readable by its owner only."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
    mode = key_file.stat().st_mode & 0o077
    if mode:
        raise errors.InvalidRequest(f"{key_file} is readable by others (mode {oct(mode)}); run: chmod 600 {key_file}")
    return Fernet(key_file.read_bytes().strip())


@dataclass(frozen=True)
class KeyInfo:
    id: str
    principal: str
    kind: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class PrincipalInfo:
    name: str
    kind: str
    is_admin: bool
    groups: tuple[str, ...]
    guardrail: str | None
    disabled_at: datetime | None


class Keyring:
    def __init__(self, engine: Engine, key_file: Path) -> None:
        self.engine = engine
        self.key_file = key_file
        self._fernet: Fernet | None = None
        # sha256(key) -> (principal or None, the auth epoch it was read at): keeps the store out of the hot path,
        # good until anything about keys or principals changes (store/epoch.py)
        self._epoch = AuthEpoch(engine)
        self._cache: dict[str, tuple[Principal | None, int]] = {}
        self._by_id: dict[str, tuple[Principal | None, int]] = {}  # credential id -> the same, for by_credential
        self._touched: dict[str, float] = {}

    @property
    def fernet(self) -> Fernet:
        if self._fernet is None:
            self._fernet = load_fernet(self.key_file)
        return self._fernet

    # --- principals ------------------------------------------------------------------------------

    def ensure_principal(
        self, name: str, *, kind: str = "user", admin: bool = False, group_names: tuple[str, ...] = ()
    ) -> str:
        """The principal's id, creating it (and its groups and memberships) if need be. Every step writes before
        it reads, as one insert that does nothing if the row exists: concurrent callers wait for SQLite's write
        lock (a transaction that read first could not take it, "database is locked") and never race to insert
        the same name on PostgreSQL."""
        with self.engine.begin() as db:
            upsert = _upsert(db)
            row = {
                "id": "p_" + secrets.token_hex(8),
                "name": name,
                "kind": kind,
                "is_admin": admin,
                "created_at": _now(),
            }
            db.execute(upsert(principals).values(**row).on_conflict_do_nothing())
            pid = db.execute(select(principals.c.id).where(principals.c.name == name)).scalar_one()
            if admin:
                db.execute(update(principals).where(principals.c.id == pid).values(is_admin=True))
            for g in group_names:
                db.execute(upsert(groups).values(id="g_" + secrets.token_hex(8), name=g, created_at=_now())
                           .on_conflict_do_nothing())  # fmt: skip
                gid = db.execute(select(groups.c.id).where(groups.c.name == g)).scalar_one()
                db.execute(upsert(memberships).values(principal_id=pid, group_id=gid).on_conflict_do_nothing())
            if admin or group_names:
                bump(db)
        return str(pid)

    def _principal(self, db: object, pid: str, credential_id: str) -> Principal | None:
        row = db.execute(select(principals).where(principals.c.id == pid)).first()  # type: ignore[attr-defined]
        if row is None or row.disabled_at is not None:
            return None
        names = db.execute(  # type: ignore[attr-defined]
            select(groups.c.name)
            .join(memberships, memberships.c.group_id == groups.c.id)
            .where(memberships.c.principal_id == pid)
        ).scalars()
        return Principal(row.id, row.name, tuple(sorted(names)), bool(row.is_admin), credential_id, row.guardrail)

    def join_group(self, name: str, group_names: tuple[str, ...]) -> bool:
        """Put the existing principal `name` in these groups (made if need be); False if there is no such
        principal (ensure_principal would make one)."""
        with self.engine.connect() as db:
            if db.execute(select(principals.c.id).where(principals.c.name == name)).first() is None:
                return False
        self.ensure_principal(name, group_names=group_names)
        return True

    def leave_group(self, name: str, group: str) -> bool:
        """Take principal `name` out of `group` (its grants and quotas stop applying to it from the next request
        on, in every process: the auth epoch moves); False if it was not a member. The group itself stays."""
        pid = select(principals.c.id).where(principals.c.name == name).scalar_subquery()
        gid = select(groups.c.id).where(groups.c.name == group).scalar_subquery()
        m = memberships.c
        with self.engine.begin() as db:
            done = db.execute(delete(memberships).where(m.principal_id == pid, m.group_id == gid))
            if done.rowcount:
                bump(db)
        return bool(done.rowcount)

    def principals(self) -> list[PrincipalInfo]:
        """Every principal with its groups, by name (no secrets: keys are listed by `list`)."""
        members = select(memberships.c.principal_id, groups.c.name).join(groups, memberships.c.group_id == groups.c.id)
        with self.engine.connect() as db:
            found: dict[str, list[str]] = {}
            for pid, group in db.execute(members):
                found.setdefault(pid, []).append(group)
            rows = db.execute(select(principals).order_by(principals.c.name)).all()
        return [
            PrincipalInfo(
                r.name, r.kind, bool(r.is_admin), tuple(sorted(found.get(r.id, ()))), r.guardrail, r.disabled_at
            )
            for r in rows
        ]

    def set_guardrail(self, name: str, guardrail: str | None) -> bool:
        """Give principal `name` a default guardrail (None removes it); False if there is no such principal."""
        with self.engine.begin() as db:
            done = db.execute(update(principals).where(principals.c.name == name).values(guardrail=guardrail))
            bump(db)
        return bool(done.rowcount)

    # --- keys ------------------------------------------------------------------------------------

    def create_api_key(self, principal_name: str, label: str | None = None) -> tuple[str, str]:
        pid = self.ensure_principal(principal_name)
        token = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(6)
        with self.engine.begin() as db:
            db.execute(
                insert(credentials).values(
                    id=key_id,
                    principal_id=pid,
                    kind="api_key",
                    secret_hash=_hash(token),
                    label=label,
                    created_at=_now(),
                )
            )
            bump(db)  # a process may have cached this key as unknown
        return key_id, token

    def create_aws_key(self, principal_name: str, label: str | None = None) -> tuple[str, str]:
        pid = self.ensure_principal(principal_name)
        akid = "OCAK" + "".join(secrets.choice(_UPPER) for _ in range(16))
        secret = secrets.token_urlsafe(30)[:40]
        with self.engine.begin() as db:
            db.execute(
                insert(credentials).values(
                    id=akid,
                    principal_id=pid,
                    kind="aws",
                    secret_encrypted=self.fernet.encrypt(secret.encode()).decode(),
                    label=label,
                    created_at=_now(),
                )
            )
        return akid, secret

    def revoke(self, key_id: str) -> bool:
        """Every process refuses the key from its next request on (the auth epoch moves with the revocation)."""
        with self.engine.begin() as db:
            done = db.execute(
                update(credentials)
                .where(credentials.c.id == key_id, credentials.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            bump(db)
        return bool(done.rowcount)

    def list(self) -> list[KeyInfo]:
        query = select(credentials, principals.c.name).join(principals).order_by(credentials.c.created_at)
        with self.engine.connect() as db:
            return [
                KeyInfo(r.id, r.name, r.kind, r.label, r.created_at, r.last_used_at, r.revoked_at)
                for r in db.execute(query)
            ]

    def _due(self, credential_id: str) -> bool:
        """Whether a key's last use should be written now: at most once a minute a key."""
        now = time.monotonic()
        if now - self._touched.get(credential_id, -1e9) < 60:
            return False
        self._touched[credential_id] = now
        return True

    def _write_use(self, credential_id: str) -> None:
        with self.engine.begin() as db:
            db.execute(update(credentials).where(credentials.c.id == credential_id).values(last_used_at=_now()))

    def touch(self, credential_id: str) -> None:
        """Remember that a key was used."""
        if self._due(credential_id):
            self._write_use(credential_id)

    def touch_later(self, credential_id: str) -> None:
        """`touch` off the request's path: on a worker thread, errors logged, never awaited."""
        if not self._due(credential_id):
            return

        def run() -> None:
            try:
                self._write_use(credential_id)
            except errors.ServiceUnavailable:
                log.warning("could not record the use of key %s: the store is not available", credential_id)
            except Exception:
                log.exception("could not record the use of key %s", credential_id)

        threading.Thread(target=run, daemon=True).start()

    def cached_api_key(self, token: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the in-memory cache, if nothing about keys or principals changed since it was
        read (one cheap read of the auth epoch; on PostgreSQL never a hit)."""
        hit = self._cache.get(_hash(token))
        if hit is None or hit[1] != self._epoch.read():
            return False, None
        return True, hit[0]

    def by_api_key(self, token: str) -> Principal | None:
        digest = _hash(token)
        epoch = self._epoch.read()  # before the read: a change made meanwhile moves it past what is cached
        with self.engine.connect() as db:
            row = db.execute(
                select(credentials).where(credentials.c.secret_hash == digest, credentials.c.kind == "api_key")
            ).first()
            principal = (
                None if row is None or row.revoked_at is not None else self._principal(db, row.principal_id, row.id)
            )
        if epoch is not None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (principal, epoch)
        return principal

    def by_credential(self, credential_id: str) -> Principal | None:
        """The principal an active key (API key or AWS access key) belongs to, by the key's id; None when the key is
        unknown or revoked, or its principal disabled (the web console re-reads its signed-in key this way)."""
        epoch = self._epoch.read()
        hit = self._by_id.get(credential_id)
        if hit is not None and epoch is not None and hit[1] == epoch:
            return hit[0]
        with self.engine.connect() as db:
            row = db.execute(select(credentials).where(credentials.c.id == credential_id)).first()
            principal = None if row is None or row.revoked_at is not None else self._principal(db, row.principal_id,
                                                                                                row.id)  # fmt: skip
        if epoch is not None:
            if len(self._by_id) > 100_000:
                self._by_id.clear()
            self._by_id[credential_id] = (principal, epoch)
        return principal

    def aws_secret(self, akid: str) -> tuple[Principal, str] | None:
        with self.engine.connect() as db:
            row = db.execute(select(credentials).where(credentials.c.id == akid, credentials.c.kind == "aws")).first()
            if row is None or row.revoked_at is not None:
                return None
            principal = self._principal(db, row.principal_id, row.id)
        if principal is None:
            return None
        try:
            secret = self.fernet.decrypt(row.secret_encrypted.encode()).decode()
        except InvalidToken as exc:
            raise errors.InternalFailure(
                f"The secret of {akid} cannot be decrypted with {self.key_file}: was the key file replaced?"
            ) from exc
        return principal, secret
