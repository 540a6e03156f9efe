"""A SQLite file's connection of its own, for the few statements on a hot path that cost microseconds: a row read
by key, or a one-statement write. They run on the caller's thread — on the event loop — where a hop to a worker
thread and back through SQLAlchemy costs ten times the statement (benchmarks/agent_overhead.py).

Reads never wait in WAL mode. Writes never wait either: with no busy timeout, one that finds another writer holding
the database answers False at once, and the caller makes it again on a thread through SQLAlchemy, which waits the
store's busy timeout; so the event loop never blocks. Values come back as SQLite holds them: SQLAlchemy's DateTime
as its text (`stamp` writes it the same way).

PostgreSQL has no such shortcut (every statement is a round trip): `of(engine)` is None there, and for an
in-memory SQLite database.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine


def stamp(at: datetime) -> str:
    """A time as SQLAlchemy's DateTime writes it to SQLite (UTC; the store's times are UTC)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class DirectSqlite:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # as the store's own connections (store.__init__)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, engine: Engine) -> DirectSqlite | None:
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        return cls(path) if path and path != ":memory:" else None

    def row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            found = self._conn.execute(sql, params).fetchone()
        return None if found is None else tuple(found)

    def write(self, sql: str, params: tuple[Any, ...]) -> bool:
        """One statement, its own transaction; False (nothing written) when another writer holds the database."""
        try:
            with self._lock:
                self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        return True
