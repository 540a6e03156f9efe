"""The Alembic migrations build exactly the tables, columns and indexes outcrop/store/schema.py declares, on SQLite
and on PostgreSQL: a change made in one and not the other fails here, not on a user's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from outcrop import store
from outcrop.store.schema import metadata


def _differences(url: str) -> list[object]:
    engine = store.connect(url)  # runs every migration up to head
    with engine.connect() as db:
        return list(compare_metadata(MigrationContext.configure(db), metadata))


def test_the_migrations_match_the_schema(database_url: str) -> None:
    assert _differences(database_url) == []
