"""Shared state: SQLAlchemy over SQLite (default, WAL) or PostgreSQL (by URL), migrated by Alembic.

Several `outcrop serve` processes on one PostgreSQL database share keys, access decisions, quotas and
usage. Every table is defined in `schema.py`; every change to it is an Alembic migration under
`migrations/versions/`, applied on open.

A store that cannot answer (PostgreSQL down or restarting, a connection cut, SQLite still locked after its
busy timeout) raises `errors.ServiceUnavailable` from any statement, with one line in the log and no
traceback, so each API answers in its own envelope (Bedrock's ServiceUnavailableException, 503) and the CLI
says so plainly. Pooled PostgreSQL connections are checked before use (pre-ping), so requests succeed again
as soon as the server is back.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url

from outcrop import errors

MIGRATIONS = Path(__file__).with_name("migrations")
CONNECT_TIMEOUT_S = 5  # PostgreSQL: an unreachable host fails a request in this long, not the OS's minutes

log = logging.getLogger("outcrop.store")
_last_logged = 0.0


def _outage(ctx: ExceptionContext) -> bool:
    """Whether a failure means the store cannot answer now (rather than a bad statement, a constraint, a bug)."""
    if ctx.is_disconnect:
        return True
    exc = ctx.original_exception
    if ctx.dialect.name == "sqlite":  # (its OperationalError also means "no such table" and syntax errors)
        text = str(exc).lower()
        return "database is locked" in text or "database table is locked" in text or "unable to open" in text
    # PostgreSQL: connection refused or lost, the server shutting down or starting up (57P01, 57P03), too many
    # connections, a statement cancelled
    dbapi = ctx.dialect.loaded_dbapi
    return isinstance(exc, dbapi.OperationalError | dbapi.InterfaceError)


def _unavailable(ctx: ExceptionContext) -> BaseException | None:
    """SQLAlchemy's error hook: an outage becomes ServiceUnavailable (the pool still discards a dead connection)."""
    global _last_logged
    if ctx.is_pre_ping or not _outage(ctx):  # a failed pre-ping only means: reconnect
        return None
    now = time.monotonic()
    if now - _last_logged > 5:  # one line every few seconds while it lasts, not one a request
        _last_logged = now
        reason = str(ctx.original_exception).strip().splitlines()[0][:300] if str(ctx.original_exception) else ""
        log.warning("the store cannot answer: %s: %s", type(ctx.original_exception).__name__, reason)
    return errors.ServiceUnavailable("The server's database is not available right now; retry shortly.")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def default_url(home: Path) -> str:
    return f"sqlite:///{home / 'outcrop.db'}"


def connect(url: str, *, migrate: bool = True) -> Engine:
    """An engine for `url`, with the schema brought up to date."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args)
    event.listen(engine, "handle_error", _unavailable)
    if migrate:
        upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
