"""Signed-out console sessions, kept in the store so that every process of the server refuses them, and a restart
does not bring them back (a session cookie is otherwise good until it expires).

Signing out writes the session id with its expiry and moves the auth epoch in the same transaction, so each process
reads the (short) list again on its next console request and otherwise answers from memory; where the epoch cannot
be read cheaply (PostgreSQL) the store is asked each time. Expired ids are deleted as new ones are written.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, delete, insert, select

from outcrop.store.epoch import AuthEpoch, bump
from outcrop.store.schema import console_signouts


class SignOuts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._epoch = AuthEpoch(engine)
        self._lock = threading.Lock()
        self._cached: tuple[int, frozenset[str]] | None = None  # (epoch, ended ids) as read at that epoch

    def end(self, sid: str, expires_at: int) -> None:
        now = int(time.time())
        c = console_signouts.c
        with self.engine.begin() as db:
            db.execute(delete(console_signouts).where((c.expires_at <= now) | (c.sid == sid)))
            db.execute(insert(console_signouts).values(sid=sid, expires_at=expires_at))
            bump(db)

    def ended(self, sid: str) -> bool:
        epoch = self._epoch.read()
        with self._lock:
            cached = self._cached
        if epoch is not None and cached is not None and cached[0] == epoch:
            return sid in cached[1]
        c = console_signouts.c
        with self.engine.connect() as db:
            if epoch is None:  # nothing may be cached: ask about this one id
                return db.execute(select(c.sid).where(c.sid == sid)).first() is not None
            ids = frozenset(db.execute(select(c.sid).where(c.expires_at > int(time.time()))).scalars())
        with self._lock:
            self._cached = (epoch, ids)
        return sid in ids
