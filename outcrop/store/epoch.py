"""The auth epoch: one counter that every change to keys, principals and access grants moves, in the same
transaction as the change. A process may answer from what it cached of them only while the counter reads as
it did when the cache entry was made, so a key revoked by any process stops working on the very next request
in every process: no cache window.

Reading the counter must cost next to nothing, since it happens on every request. On SQLite it is one row
read through a connection of its own (microseconds, no thread hop). On PostgreSQL a read is a round trip, no
cheaper than reading the key itself, so there is no epoch to read (`read()` is None) and callers read the
store every time.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, update

from outcrop.store.schema import auth_epoch


def bump(db: Any) -> None:
    """Move the counter, in the caller's transaction (`db`: a SQLAlchemy connection)."""
    db.execute(update(auth_epoch).where(auth_epoch.c.name == "auth").values(value=auth_epoch.c.value + 1))


class AuthEpoch:
    def __init__(self, engine: Engine | None) -> None:
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if engine is not None and engine.dialect.name == "sqlite":
            path = engine.url.database
            if path and path != ":memory:":
                self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA busy_timeout=10000")

    def read(self) -> int | None:
        """The counter now; None where it cannot be read cheaply (then nothing may be cached)."""
        if self._conn is None:
            return None
        with self._lock:
            row = self._conn.execute("SELECT value FROM auth_epoch WHERE name = 'auth'").fetchone()
        return None if row is None else int(row[0])
