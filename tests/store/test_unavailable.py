"""A store that cannot answer raises ServiceUnavailable (each API's 503), and the same engine works again once
it can; other database errors stay what they are."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import exc, insert, select, text

from outcrop import errors, store
from outcrop.store.schema import auth_epoch
from tests.conftest import free_port


def test_postgres_that_is_not_there() -> None:
    t = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable, match="database is not available"):
        store.connect(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/outcrop")
    assert time.monotonic() - t < 30


def test_sqlite_locked_past_its_busy_timeout(tmp_path: Path) -> None:
    engine = store.connect(f"sqlite:///{tmp_path / 'o.db'}")
    holder = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with engine.begin() as db, pytest.raises(errors.ServiceUnavailable):
            db.exec_driver_sql("PRAGMA busy_timeout=100")
            db.execute(insert(auth_epoch).values(name="x", value=1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with engine.connect() as db, pytest.raises(exc.OperationalError, match="no such table"):
        db.execute(text("SELECT * FROM nothing_here"))  # a bug stays a bug (a 500 with its log), not a 503


def test_postgres_restarted_under_an_engine() -> None:
    from tests.postgres import restartable_postgres

    with restartable_postgres(free_port()) as pg:
        engine = store.connect(pg.url)
        read = select(auth_epoch.c.value).where(auth_epoch.c.name == "auth")
        with engine.connect() as db:
            assert db.execute(read).scalar_one() == 0
        pg.stop()
        for _ in range(2):  # the pooled connection is dead, and no new one can be made
            with pytest.raises(errors.ServiceUnavailable), engine.connect() as db:
                db.execute(read)
        pg.start()
        with engine.connect() as db:  # no restart of ours: the pool checks its connections before use
            assert db.execute(read).scalar_one() == 0
        engine.dispose()
